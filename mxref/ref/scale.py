"""Oracle: the shared E8M0 scale of a block, from its exact amax.

Spec: OCP MX v1.0 sections 5.4.1 (E8M0) and 6.3 (conversion, step 1).
"""

from __future__ import annotations

import math
from fractions import Fraction

from mxref.formats import (
    SCALE_BIAS,
    SCALE_MAX_EXPONENT,
    SCALE_MIN_EXPONENT,
    SCALE_NAN,
    ElementFormat,
)
from mxref.policies import ScaleRule
from mxref.ref.element import ceil_log2, floor_log2, pow2


def shared_exponent(amax: Fraction, fmt: ElementFormat, rule: ScaleRule) -> int:
    """Return the unclamped shared exponent for a block with ``amax > 0``.

    Parameters
    ----------
    amax : Fraction
        Largest magnitude in the block, positive and finite.
    fmt : ElementFormat
    rule : ScaleRule
        FLOOR: ``floor(log2 amax) - emax``.  CEIL: ``ceil(log2 amax) - emax``.
        EVEN: amax rounded half-up to ``mbits`` fraction bits, then FLOOR.
        RCEIL: ``ceil(log2(amax / max_normal))``.

    Spec: OCP MX v1.0 section 6.3 ("the largest power-of-two less than or
    equal to max(|V_i|), divided by the largest power-of-two representable in
    the element data type").
    """
    if rule is ScaleRule.FLOOR:
        return floor_log2(amax) - fmt.emax
    if rule is ScaleRule.CEIL:
        return ceil_log2(amax) - fmt.emax
    if rule is ScaleRule.EVEN:
        quantum = pow2(floor_log2(amax) - fmt.mbits)
        rounded = math.floor(amax / quantum + Fraction(1, 2)) * quantum
        return floor_log2(rounded) - fmt.emax
    return ceil_log2(amax / fmt.max_normal)


def encode_scale(amax: Fraction | None, fmt: ElementFormat, rule: ScaleRule) -> int:
    """Return the E8M0 byte for a block.

    Parameters
    ----------
    amax : Fraction or None
        The block's largest magnitude, or None when the block holds NaN or Inf.

    Returns
    -------
    int
        0xFF for a NaN/Inf block, 0x00 for an all-zero block, otherwise the
        shared exponent clamped to [-127, 127] plus the bias 127.

    Spec: OCP MX v1.0 section 5.4.1, Table 7 (0xFF is NaN; no Inf, no zero).
    """
    if amax is None:
        return SCALE_NAN
    if amax == 0:
        return 0
    e = shared_exponent(amax, fmt, rule)
    return min(max(e, SCALE_MIN_EXPONENT), SCALE_MAX_EXPONENT) + SCALE_BIAS


def decode_scale(byte: int) -> Fraction | None:
    """Return the scale ``2**(byte - 127)``, or None for the NaN byte 0xFF.

    Spec: OCP MX v1.0 section 5.4.1, Table 7.
    """
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"E8M0 byte out of range: {byte}")
    return None if byte == SCALE_NAN else pow2(byte - SCALE_BIAS)
