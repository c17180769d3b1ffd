"""Float layouts and what a bit pattern means: the vocabulary of :mod:`mxref.conformance.compare`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from mxref.io import InputError


@dataclasses.dataclass(frozen=True)
class FloatLayout:
    """The bit layout of an IEEE-style binary float format.

    Attributes
    ----------
    name : str
        ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``.
    bits, exp_bits, mant_bits : int
        Total width, exponent field width and stored mantissa width.
    """

    name: str
    bits: int
    exp_bits: int
    mant_bits: int

    @property
    def bias(self) -> int:
        """Exponent bias."""
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def inf_bits(self) -> int:
        """Bit pattern of +Inf; larger magnitudes are NaN."""
        return ((1 << self.exp_bits) - 1) << self.mant_bits

    @property
    def uint(self) -> np.dtype[Any]:
        """Native unsigned integer dtype of the same width."""
        return np.dtype(f"u{self.bits // 8}")

    @property
    def n_buckets(self) -> int:
        """Histogram buckets needed: distances stay below ``2**bits``."""
        return self.bits + 2


#: Formats mxref compare reads, by name.
LAYOUTS: dict[str, FloatLayout] = {
    "float32": FloatLayout("float32", 32, 8, 23),
    "float16": FloatLayout("float16", 16, 5, 10),
    "bfloat16": FloatLayout("bfloat16", 16, 8, 7),
    "float64": FloatLayout("float64", 64, 11, 52),
}


# Upper bounds of the histogram buckets 0, 1, 2, 3-4, 5-8, ...: bucket k holds
# the distances d with _BUCKET_HI[k-1] < d <= _BUCKET_HI[k], so searchsorted
# gives the bucket of every distance at once.  uint64 throughout, because a
# float64 distance can exceed 2**63; the last bound is the largest uint64.
_BUCKET_HI = np.array([0] + [1 << i for i in range(64)] + [(1 << 64) - 1], dtype=np.uint64)


def bucket_bounds(k: int) -> tuple[int, int]:
    """Return the smallest and largest ULP distance in histogram bucket ``k``.

    Parameters
    ----------
    k : int
        Bucket index: 0 holds distance 0, 1 holds 1, 2 holds 2, and bucket
        ``k >= 3`` holds ``2**(k-2) + 1`` to ``2**(k-1)``.

    Returns
    -------
    tuple of int
        ``(lo, hi)``, both inclusive.
    """
    if k <= 2:
        return k, k
    return (1 << (k - 2)) + 1, 1 << (k - 1)


def bucket_label(k: int) -> str:
    """Return the text label of histogram bucket ``k``: ``"0"``, ``"1"``, ``"3-4"``, ..."""
    lo, hi = bucket_bounds(k)
    return str(lo) if lo == hi else f"{lo}-{hi}"


@dataclasses.dataclass(frozen=True)
class DecodedValue:
    """One element's bit pattern, its fields and its value.

    Attributes
    ----------
    hex : str
        The bit pattern, e.g. ``"0x3f800001"``.
    sign : int
        0 or 1.
    exponent : int or None
        Unbiased exponent: ``field - bias`` for normals, ``1 - bias`` for
        subnormals and zeros (the exponent their mantissa is scaled by), None
        for Inf and NaN.
    mantissa : str
        The stored mantissa bits in hex (without the implicit bit).
    kind : str
        ``"normal"``, ``"subnormal"``, ``"zero"``, ``"inf"`` or ``"nan"``.
    value : str
        The value as text: Python's ``repr`` of it as a float64, which every
        format here converts to exactly; ``"nan"``/``"-nan"`` for NaN.
    """

    hex: str
    sign: int
    exponent: int | None
    mantissa: str
    kind: str
    value: str


def decode_bits(bits: int, dtype: str) -> DecodedValue:
    """Split a bit pattern into sign, exponent and mantissa, and give its value.

    Parameters
    ----------
    bits : int
        The pattern, as an unsigned integer.
    dtype : str
        A name in :data:`LAYOUTS`.

    Returns
    -------
    DecodedValue
    """
    lay = _layout(dtype)
    bits = int(bits)
    sign = bits >> (lay.bits - 1)
    field = (bits >> lay.mant_bits) & ((1 << lay.exp_bits) - 1)
    mant = bits & ((1 << lay.mant_bits) - 1)
    exponent: int | None
    if field == (1 << lay.exp_bits) - 1:
        exponent = None
        kind = "nan" if mant else "inf"
        value = ("-" if sign else "") + kind
    else:
        if field == 0:
            exponent = 1 - lay.bias
            kind = "subnormal" if mant else "zero"
            significand = mant
        else:
            exponent = field - lay.bias
            kind = "normal"
            significand = mant | (1 << lay.mant_bits)
        # exact: at most 53 significant bits, and float64's exponent range
        # covers every format here, subnormals of float64 included
        magnitude = math.ldexp(significand, exponent - lay.mant_bits)
        value = repr(-magnitude if sign else magnitude)
    return DecodedValue(
        hex=f"0x{bits:0{lay.bits // 4}x}",
        sign=sign,
        exponent=exponent,
        mantissa=f"0x{mant:0{-(-lay.mant_bits // 4)}x}",
        kind=kind,
        value=value,
    )


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
def _layout(name: object, what: str = "dtype") -> FloatLayout:
    key = name.strip().lower() if isinstance(name, str) else None
    if key is None or key not in LAYOUTS:
        raise InputError(f"unknown {what} {name!r}; expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[key]


def percent_text(part: int, whole: int, digits: int = 4) -> str:
    """``part / whole`` as a percentage that never rounds a miss up to 100% (or a hit to 0%).

    Exact integer arithmetic, truncated: ``percent_text(999_999, 1_000_000)``
    is ``"99.9999%"`` and ``percent_text(9_999_999, 10_000_000)`` is
    ``"> 99.9999%"``, not ``"100.0000%"``.
    """
    unit = 10**digits
    if whole == 0 or part == whole:
        return f"100.{'0' * digits}%"
    scaled = part * 100 * unit // whole  # floor of the percentage in units of 10**-digits
    if scaled >= 100 * unit - 1 and part * 100 * unit > (100 * unit - 1) * whole:
        return f"> {_fixed(100 * unit - 1, digits)}%"
    if scaled == 0 and part:
        return f"< {_fixed(1, digits)}%"
    return f"{_fixed(scaled, digits)}%"


def _fixed(scaled: int, digits: int) -> str:
    return f"{scaled // 10**digits}.{scaled % 10**digits:0{digits}d}"
