"""Accumulation models for MX dot products and GEMMs.

The spec fixes ``Dot(A, B) = X_A * X_B * sum_i P_i^A * P_i^B`` for one block
and ``DotGeneral`` as the sum of Dots over blocks, but leaves the internal
precision and the order of summation to the implementation.  Each model
below is one explicit, documented choice, so a hardware team can ask for the
one its accelerator claims.  Their exact definitions are in ``docs/gemm.md``
and, normatively, in the oracle :mod:`mxref.ref.gemm`.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
"""

from __future__ import annotations

from dataclasses import dataclass

from mxref.policies import Policy
from mxref.registry import Registry


class AlignRounding(Policy):
    """How a product aligned to a group's largest exponent loses its low bits."""

    #: Drop the bits below the kept width (toward zero, as sign-magnitude shifts do).
    TRUNCATE = "truncate"
    #: Round to nearest, ties to even, at the kept width.
    RNE = "rne"


@dataclass(frozen=True)
class Exact:
    """Infinitely precise sum over all of K, then one RNE rounding to the output.

    Scales are applied exactly (their product spans 2**-254 .. 2**254, beyond
    float32); C, when given, is added exactly before that single rounding.
    """

    @property
    def name(self) -> str:
        """The string form accepted by :func:`parse_accum`."""
        return "exact"


@dataclass(frozen=True)
class BlockFP32:
    """Each block's Dot exact and exactly scaled, added to a float32 accumulator.

    The accumulator starts at C (or +0) and takes the blocks in K order, with
    one RNE rounding per add.  ``flush_subnormals`` flushes a subnormal
    accumulator to a zero of the same sign after every add.
    """

    flush_subnormals: bool = False

    @property
    def name(self) -> str:
        """The string form accepted by :func:`parse_accum`."""
        return "block_fp32" + (":ftz" if self.flush_subnormals else "")


@dataclass(frozen=True)
class FixedPoint:
    """Groups of products aligned to their largest exponent and kept to ``width`` bits.

    For each group of ``group`` consecutive K indices, the exactly scaled
    products are aligned to the largest exponent among them; each keeps
    ``width`` bits counted from that exponent's leading bit (the low bits are
    truncated toward zero or rounded to nearest even), the kept values are
    summed exactly, and the group sum is added to a float32 accumulator
    (starting at C or +0) with RNE.

    Parameters
    ----------
    width : int
        Bits kept, 2 to 56 (kept values of a group of 128 are summed in 63 bits).
    group : int
        K elements per group: 32, 64 or 128.
    rounding : AlignRounding
    flush_subnormals : bool
    """

    width: int
    group: int = 32
    rounding: AlignRounding = AlignRounding.TRUNCATE
    flush_subnormals: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int):
            raise TypeError(f"fixed_point width must be an int; got {self.width!r}")
        if not 2 <= self.width <= 56:
            raise ValueError(f"fixed_point width must be in [2, 56]; got {self.width}")
        if self.group not in (32, 64, 128):
            raise ValueError(f"fixed_point group must be 32, 64 or 128; got {self.group}")
        object.__setattr__(self, "rounding", AlignRounding.parse(self.rounding, "rounding"))

    @property
    def name(self) -> str:
        """The string form accepted by :func:`parse_accum`."""
        tail = ":rne" if self.rounding is AlignRounding.RNE else ""
        return f"fixed_point:{self.width}:{self.group}{tail}" + (
            ":ftz" if self.flush_subnormals else ""
        )


AccumModel = Exact | BlockFP32 | FixedPoint


@dataclass(frozen=True)
class Profile:
    """A named accumulation model with its provenance."""

    name: str
    model: AccumModel
    verified: bool
    source: str


#: Named profiles.  The fixed-point ones come from community measurements, not
#: vendor documentation, and are marked unverified.
PROFILES: Registry[Profile] = Registry(
    "accumulation profile",
    Profile,
    (
        Profile("exact", Exact(), True, "definition: infinitely precise DotGeneral"),
        Profile("block_fp32", BlockFP32(), True, "definition: per-block Dot, fp32 accumulate"),
        Profile(
            "b200-f8f6f4",
            FixedPoint(width=25, group=32),
            False,
            "unverified: ~25 mantissa bits measured for tcgen05 kind::f8f6f4 on B200 "
            "(deepseek-ai/DeepGEMM issue #176); alignment and truncation assumed",
        ),
        Profile(
            "hopper-fp8",
            FixedPoint(width=14, group=32),
            False,
            "unverified: ~13-14 bits kept after aligning 32 products on Hopper FP8 MMA "
            "(DeepSeek-V3 report; thu-ml/SageAttention#287; deepseek-ai/DeepGEMM#37); "
            "Hopper has no MX instructions, so this only models its FP8 accumulation",
        ),
    ),
)


def parse_accum(spec: str | AccumModel) -> AccumModel:
    """Return the accumulation model named by ``spec``.

    Parameters
    ----------
    spec : str or model
        ``"exact"``, ``"block_fp32"``, ``"fixed_point:W:G"``,
        ``"fixed_point:W:G:rne"`` (or ``:truncate``), a profile name from
        :data:`PROFILES`, optionally followed by ``":ftz"`` to flush subnormal
        partial sums (not for exact); or a model object, returned as is.

    Raises
    ------
    ValueError
        Naming the bad part and the accepted forms.

    Spec: OCP MX v1.0 section 6.2 leaves the accumulation implementation-defined.
    """
    if isinstance(spec, Exact | BlockFP32 | FixedPoint):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"accum must be a string or an accumulation model; got {spec!r}")
    forms = ", ".join(PROFILES) + ", fixed_point:W:G[:rne|:truncate]"
    text = spec.strip().lower()
    ftz = text.endswith(":ftz")
    if ftz:
        text = text[: -len(":ftz")]
    if text in PROFILES:
        model = PROFILES[text].model
    else:
        parts = text.split(":")
        if parts[0] != "fixed_point" or len(parts) not in (3, 4):
            raise ValueError(f"accum {spec!r} is not one of: {forms}")
        try:
            width, group = int(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"accum {spec!r}: W and G must be integers ({forms})") from None
        rounding = AlignRounding.parse(parts[3] if len(parts) == 4 else "truncate", "rounding")
        model = FixedPoint(width=width, group=group, rounding=rounding)
    if ftz:
        if isinstance(model, Exact):
            raise ValueError("accum 'exact' has no partial sums to flush; drop ':ftz'")
        model = type(model)(**{**model.__dict__, "flush_subnormals": True})
    return model
