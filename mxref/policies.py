"""Conversion policies: scale rule, element rounding and overflow.

Each policy is an enum whose values are the strings the API and the CLI
accept.  The defaults are the spec's: FLOOR scale, round-to-nearest-even,
saturation.  :data:`SCALE_RULE_CODES` and :data:`ROUNDING_CODES` give the
small integers the numba kernels receive instead (kernels take plain
integers, not enums).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

_E = TypeVar("_E", bound="Policy")


class Policy(StrEnum):
    """A string enum that parses user input with a clear error (base of every policy)."""

    @classmethod
    def parse(cls: type[_E], value: object, argname: str = "value") -> _E:
        """Return the member named by ``value`` (a member or its string).

        Raises
        ------
        ValueError
            Naming ``argname`` and listing the accepted values.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for member in cls:
                if member.value == key:
                    return member
        choices = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{argname} must be one of {choices}; got {value!r}")


class ScaleRule(Policy):
    """How the shared E8M0 exponent is chosen from the block's amax.

    Spec: OCP MX v1.0 section 6.3 defines FLOOR; the others are in wide use.
    """

    #: floor(log2 amax) - emax_elem (the spec).  Values above max normal saturate.
    FLOOR = "floor"
    #: ceil(log2 amax) - emax_elem (torchao CEIL).  Never saturates.
    CEIL = "ceil"
    #: amax rounded half-up to the element's mantissa bits, then FLOOR (torchao EVEN, AMD Quark).
    EVEN = "even"
    #: ceil(log2(amax / max_normal)) (cuBLAS, Transformer Engine, Triton ROUND_UP).
    RCEIL = "rceil"
    #: floor(RN32(log2(amax))) - emax_elem: the float32 ``log2`` of microxcaling's
    #: Python path, which rounds up to the next integer just below most powers of two.
    FLOOR_LOG2_FP32 = "floor_log2_fp32"
    #: ceil(log2(q)) with q = RN32(RN64(amax / max_normal)), a subnormal q giving
    #: 2**-126 and q = 0 the byte 0x00: Triton's ROUND_UP bit formula on a float32 quotient.
    RCEIL_FP32_DIV = "rceil_fp32_div"


class Rounding(Policy):
    """How a scaled element is rounded onto the element grid.

    Spec: OCP MX v1.0 section 6.3 requires roundTiesToEven; others are optional.
    """

    #: Round to nearest, ties to even (the spec's required mode).
    RNE = "rne"
    #: Round to nearest, ties away from zero (microxcaling's default "nearest").
    AWAY = "away"
    #: Round toward zero (truncate the magnitude).
    ZERO = "zero"
    #: Stochastic rounding with 32 random bits per element, reproducible from ``seed``.
    STOCHASTIC = "stochastic"


class Overflow(Policy):
    """What a rounded magnitude above max normal becomes.

    Spec: OCP MX v1.0 section 6.3 clamps to max normal (SATURATE).
    """

    #: Clamp to +-max normal, keeping the sign (the spec).
    SATURATE = "saturate"
    #: As IEEE casts do: NaN for E4M3, Inf for E5M2; formats with neither saturate.
    IEEE = "ieee"


# The integers the numba kernels receive for a policy (kernels take plain
# integers, never enums).  An explicit table, not the member's position, so
# that adding or reordering a member cannot silently change what a kernel
# does; the kernels import their constants from here.

#: ScaleRule -> kernel code (mxref.kernels.scale).
SCALE_RULE_CODES: Mapping[ScaleRule, int] = MappingProxyType({
    ScaleRule.FLOOR: 0,
    ScaleRule.CEIL: 1,
    ScaleRule.EVEN: 2,
    ScaleRule.RCEIL: 3,
    ScaleRule.FLOOR_LOG2_FP32: 4,
    ScaleRule.RCEIL_FP32_DIV: 5,
})  # fmt: skip
#: Rounding -> kernel code (mxref.kernels.element and block).
ROUNDING_CODES: Mapping[Rounding, int] = MappingProxyType({
    Rounding.RNE: 0,
    Rounding.AWAY: 1,
    Rounding.ZERO: 2,
    Rounding.STOCHASTIC: 3,
})  # fmt: skip
