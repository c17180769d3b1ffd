"""MX element formats, and NVFP4, as data.

Every format is one frozen :class:`ElementFormat` holding only its primary
fields (exponent bits, mantissa bits, bias, special-value policy, sign
encoding, and how its blocks are scaled).  Every limit -- emax, max normal,
the largest finite code, the code an overflow produces -- is derived from
those fields, so adding a format means adding one line to :data:`FORMATS`,
never a branch.

MXINT8 is described as an E1M6 magnitude grid with bias 1 and a two's
complement sign: with one exponent bit, biased exponent 0 gives the values
``k * 2**-6`` for ``k < 64`` and biased exponent 1 gives ``1 + k * 2**-6``, so
the magnitude codes 0..127 are exactly the integers 0..127 times 2**-6, which
is the spec's "two's complement with an implicit scale of 2^-6".

NVFP4 (NVIDIA) has the E2M1 element of MXFP4, but blocks of 16 share an FP8
E4M3 scale byte under a float32 scale per tensor: the same dataclass with
``scale_format`` set and ``tensor_scale=True``.  The functions that take MX
formats only refuse it by name (:func:`get_format`); those that implement it
ask for it with ``two_level=True``.

Spec: OCP MX v1.0 section 5 (Tables 1-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from mxref.registry import Registry


class Specials(Enum):
    """Which codes of an element format are not finite numbers.

    Spec: OCP MX v1.0 section 5.3 (FP8 follows OFP8; FP6/FP4 have no specials).
    """

    #: Every code is a finite number (FP6, FP4, INT8).
    NONE = "none"
    #: Only the all-ones exponent-and-mantissa pattern is NaN; no Inf (E4M3).
    NAN_ONLY = "nan_only"
    #: IEEE 754 style: the all-ones exponent holds Inf (mantissa 0) and NaN (E5M2).
    IEEE = "ieee"


class SignEncoding(Enum):
    """How the sign is stored in a code."""

    #: A sign bit above the exponent and mantissa fields (all FP formats).
    SIGN_MAGNITUDE = "sign_magnitude"
    #: The whole code is a two's complement integer (MXINT8).
    TWOS_COMPLEMENT = "twos_complement"


@dataclass(frozen=True)
class ElementFormat:
    """An element encoding: primary fields only, every limit derived.

    Parameters
    ----------
    name : str
        Public name, e.g. ``"mxfp4"``.
    ebits : int
        Exponent field width.
    mbits : int
        Mantissa (fraction) field width.
    bias : int
        Exponent bias.
    specials : Specials
        Which codes are NaN or Inf.
    sign : SignEncoding
        Sign encoding.
    block_size : int
        Elements per block scale: 32 for every MX format, 16 for NVFP4.
    scale_format : ElementFormat or None
        The encoding of a block's scale byte: None for E8M0 (a power of two,
        MX), E4M3 for NVFP4.
    tensor_scale : bool
        Whether a float32 scale per tensor sits above the block scales (NVFP4).

    Spec: OCP MX v1.0 section 5.3, Table 1.
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    specials: Specials
    sign: SignEncoding = SignEncoding.SIGN_MAGNITUDE
    block_size: int = 32
    scale_format: ElementFormat | None = None
    tensor_scale: bool = False

    def __post_init__(self) -> None:
        if self.ebits < 1 or self.mbits < 0:
            raise ValueError(f"format {self.name!r}: ebits must be >= 1 and mbits >= 0")
        if self.tensor_scale != (self.scale_format is not None):
            raise ValueError(f"format {self.name!r}: a tensor scale goes with a scale_format")

    @property
    def two_level(self) -> bool:
        """Whether blocks carry FP8 scales under a float32 tensor scale (NVFP4), not E8M0."""
        return self.tensor_scale

    # --- derived widths -------------------------------------------------
    @property
    def bits(self) -> int:
        """Width of one code in bits (sign included)."""
        return 1 + self.ebits + self.mbits

    @property
    def code_count(self) -> int:
        """Number of distinct codes, ``2**bits``."""
        return 1 << self.bits

    @property
    def magnitude_bits(self) -> int:
        """Width of the exponent-and-mantissa part of a code."""
        return self.ebits + self.mbits

    @property
    def sign_bit(self) -> int:
        """Value of the sign bit in a sign-magnitude code."""
        return 1 << self.magnitude_bits

    # --- derived exponent range ----------------------------------------
    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number, ``1 - bias``."""
        return 1 - self.bias

    @property
    def max_biased_exponent(self) -> int:
        """Largest biased exponent that holds finite numbers."""
        top = (1 << self.ebits) - 1
        return top - 1 if self.specials is Specials.IEEE else top

    @property
    def emax(self) -> int:
        """Exponent of the largest normal number (the spec's emax_elem)."""
        return self.max_biased_exponent - self.bias

    # --- derived codes ---------------------------------------------------
    @property
    def max_code(self) -> int:
        """Magnitude code of the largest finite value (max normal)."""
        mant = (1 << self.mbits) - 1
        if self.specials is Specials.NAN_ONLY:
            mant -= 1  # the all-ones mantissa at the top exponent is NaN
        return (self.max_biased_exponent << self.mbits) | mant

    @property
    def overflow_code(self) -> int | None:
        """Magnitude code an IEEE-style overflow produces, or None.

        NaN for NAN_ONLY formats (E4M3) and Inf for IEEE formats (E5M2); formats
        without specials have nothing to overflow to.
        """
        if self.specials is Specials.NAN_ONLY:
            return (1 << self.magnitude_bits) - 1
        if self.specials is Specials.IEEE:
            return ((1 << self.ebits) - 1) << self.mbits
        return None

    @property
    def nan_code(self) -> int | None:
        """A canonical positive NaN magnitude code, or None."""
        if self.specials is Specials.NAN_ONLY:
            return (1 << self.magnitude_bits) - 1
        if self.specials is Specials.IEEE:
            return (((1 << self.ebits) - 1) << self.mbits) | (1 << max(self.mbits - 1, 0))
        return None

    @property
    def inf_code(self) -> int | None:
        """The positive infinity magnitude code, or None."""
        if self.specials is Specials.IEEE:
            return ((1 << self.ebits) - 1) << self.mbits
        return None

    # --- derived values (exact) ------------------------------------------
    @property
    def max_normal(self) -> Fraction:
        """Largest finite magnitude."""
        mant = self.max_code & ((1 << self.mbits) - 1)
        return Fraction((1 << self.mbits) + mant, 1 << self.mbits) * Fraction(2) ** self.emax

    @property
    def min_normal(self) -> Fraction:
        """Smallest normal magnitude, ``2**emin``."""
        return Fraction(2) ** self.emin

    @property
    def min_subnormal(self) -> Fraction:
        """Smallest nonzero magnitude, ``2**(emin - mbits)``."""
        return Fraction(2) ** (self.emin - self.mbits)

    @property
    def max_significand_mantissa(self) -> int:
        """Mantissa field of max normal: its significand is ``1 + this / 2**mbits``."""
        return self.max_code & ((1 << self.mbits) - 1)

    @property
    def has_negative_zero(self) -> bool:
        """Whether -0 has its own code (not in two's complement)."""
        return self.sign is SignEncoding.SIGN_MAGNITUDE

    def __str__(self) -> str:
        return self.name


#: E8M0 scale: unsigned 8-bit exponent, bias 127; 0xFF is NaN.
#: Spec: OCP MX v1.0 section 5.4.1, Table 7.
SCALE_BIAS = 127
SCALE_NAN = 0xFF
SCALE_MIN_EXPONENT = -127
SCALE_MAX_EXPONENT = 127

#: Block size of every concrete MX format.  Spec: OCP MX v1.0 section 5.2, Table 1.
DEFAULT_BLOCK_SIZE = 32

#: NVFP4's block scale: an OFP8 E4M3 byte (positive; 0x7F is NaN).
NV_SCALE_FORMAT = ElementFormat("e4m3_scale", ebits=4, mbits=3, bias=7, specials=Specials.NAN_ONLY)

FORMATS: Registry[ElementFormat] = Registry(
    "format",
    ElementFormat,
    (
        ElementFormat("mxfp4", ebits=2, mbits=1, bias=1, specials=Specials.NONE),
        ElementFormat("mxfp6_e2m3", ebits=2, mbits=3, bias=1, specials=Specials.NONE),
        ElementFormat("mxfp6_e3m2", ebits=3, mbits=2, bias=3, specials=Specials.NONE),
        ElementFormat("mxfp8_e4m3", ebits=4, mbits=3, bias=7, specials=Specials.NAN_ONLY),
        ElementFormat("mxfp8_e5m2", ebits=5, mbits=2, bias=15, specials=Specials.IEEE),
        ElementFormat(
            "mxint8",
            ebits=1,
            mbits=6,
            bias=1,
            specials=Specials.NONE,
            sign=SignEncoding.TWOS_COMPLEMENT,
        ),
        ElementFormat(
            "nvfp4",
            ebits=2,
            mbits=1,
            bias=1,
            specials=Specials.NONE,
            block_size=16,
            scale_format=NV_SCALE_FORMAT,
            tensor_scale=True,
        ),
    ),
    unknown="unknown {kind} {name}; known formats: {known}",
)
#: Other libraries' names for the element formats (ml_dtypes, torch, torchao).
FORMAT_ALIASES: dict[str, tuple[str, ...]] = {
    "mxfp4": ("float4_e2m1fn", "fp4_e2m1", "e2m1"),
    "mxfp6_e2m3": ("float6_e2m3fn", "fp6_e2m3", "e2m3"),
    "mxfp6_e3m2": ("float6_e3m2fn", "fp6_e3m2", "e3m2"),
    "mxfp8_e4m3": ("float8_e4m3fn", "fp8_e4m3", "e4m3"),
    "mxfp8_e5m2": ("float8_e5m2", "fp8_e5m2", "e5m2"),
}
for _name, _aliases in FORMAT_ALIASES.items():
    FORMATS.register(FORMATS[_name], aliases=_aliases, replace=True)


def get_format(fmt: str | ElementFormat, *, two_level: bool = False) -> ElementFormat:
    """Return the element format called ``fmt``.

    Parameters
    ----------
    fmt : str or ElementFormat
        A public name (``"mxfp4"``, ``"mxfp6_e2m3"``, ``"mxfp6_e3m2"``,
        ``"mxfp8_e4m3"``, ``"mxfp8_e5m2"``, ``"mxint8"``; ``"nvfp4"`` where
        ``two_level``), case-insensitive, or a format object, which is
        returned as is.  ml_dtypes/torch names are aliases
        (``"float4_e2m1fn"``, ``"float8_e4m3fn"``, ...; :data:`FORMATS`).
    two_level : bool
        Whether the caller implements two-level formats (NVFP4).  Without
        it, NVFP4 is refused by name, so that no MX-only path computes an
        E8M0 scale for it.

    Returns
    -------
    ElementFormat

    Raises
    ------
    ValueError
        If the name is not a known format (the message lists the known ones),
        or is a two-level format the caller does not take.

    Spec: OCP MX v1.0 section 5.2, Table 1.
    """
    if not isinstance(fmt, str | ElementFormat):
        raise TypeError(f"fmt must be a format name or ElementFormat, got {type(fmt).__name__}")
    found = FORMATS.resolve(fmt)
    if found.two_level and not two_level:
        raise ValueError(
            f"format {found.name!r} has E4M3 block scales under a float32 tensor scale; this "
            f"takes the MX formats only ({', '.join(mx_format_names())})"
        )
    return found


def mx_format_names() -> list[str]:
    """The names of the MX formats (E8M0 block scales), in registry order."""
    return [name for name, f in FORMATS.items() if not f.two_level]
