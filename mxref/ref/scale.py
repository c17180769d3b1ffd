"""Oracle: the shared E8M0 scale of a block, from its exact amax.

Spec: OCP MX v1.0 sections 5.4.1 (E8M0) and 6.3 (conversion, step 1).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

from mxref.formats import (
    SCALE_BIAS,
    SCALE_MAX_EXPONENT,
    SCALE_MIN_EXPONENT,
    SCALE_NAN,
    ElementFormat,
)
from mxref.policies import ScaleRule
from mxref.ref.element import (
    BINARY32,
    BINARY64,
    ceil_log2,
    decode_element,
    encode_float,
    floor_log2,
    pow2,
)

_DIGITS = 60  # decimal digits for log2 decisions: far below any float32 spacing


def _rn32_bits(value: Fraction) -> int:
    """float32 bits of a positive exact value rounded once (RNE)."""
    return encode_float((0, value), BINARY32)


def _float32_below(n: int) -> Fraction:
    """The float32 next below the integer ``n`` (toward minus infinity)."""
    if n > 0:
        sign, mag = decode_element(_rn32_bits(Fraction(n)) - 1, BINARY32)
    elif n < 0:
        sign, mag = decode_element(_rn32_bits(Fraction(-n)) + 1 | 0x80000000, BINARY32)
    else:
        sign, mag = 1, Fraction(1, 2**149)
    assert isinstance(mag, Fraction)
    return -mag if sign else mag


def _rn32_log2_reaches(amax: Fraction, n: int) -> bool:
    """Whether float32 rounding of log2(amax) (which lies in [n-1, n)) gives n.

    log2 of a non-power-of-two rational is irrational, so there are no ties;
    60 decimal digits decide the comparison with the float32 midpoint below n.
    """
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        log2 = (Decimal(amax.numerator).ln() - Decimal(amax.denominator).ln()) / Decimal(2).ln()
        mid = (_float32_below(n) + n) / 2
        midpoint = Decimal(mid.numerator) / Decimal(mid.denominator)
        return log2 > midpoint


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
        FLOOR_LOG2_FP32: ``floor(RN32(log2(amax))) - emax`` (microxcaling).
        RCEIL_FP32_DIV: ``ceil(log2(q))``, ``q = RN32(RN64(amax / max_normal))``,
        with a subnormal q giving -126 and q = 0 giving -127 (Triton).

    Spec: OCP MX v1.0 section 6.3 ("the largest power-of-two less than or
    equal to max(|V_i|), divided by the largest power-of-two representable in
    the element data type").
    """
    if rule is ScaleRule.FLOOR:
        return floor_log2(amax) - fmt.emax
    if rule is ScaleRule.CEIL:
        return ceil_log2(amax) - fmt.emax
    if rule is ScaleRule.FLOOR_LOG2_FP32:
        e = floor_log2(amax)
        if pow2(e) != amax and _rn32_log2_reaches(amax, e + 1):
            e += 1
        return e - fmt.emax
    if rule is ScaleRule.RCEIL_FP32_DIV:
        _, q64 = decode_element(encode_float((0, amax / fmt.max_normal), BINARY64), BINARY64)
        assert isinstance(q64, Fraction)
        bits = _rn32_bits(q64)
        field = bits >> 23
        if bits == 0:
            return -127
        if field == 0xFF:
            return 128
        if field == 0:
            return -126  # ROUND_UP's carry turns any subnormal into 2**-126
        return field - 127 + (1 if bits & 0x7FFFFF else 0)
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


def encode_scale_unclamped(amax: Fraction | None, fmt: ElementFormat, rule: ScaleRule,
                           input_emax: int) -> int:  # fmt: skip
    """The E8M0 byte as compressed-tensors forms it: clamped to [0, 255], not [0, 254].

    The amax that the rule rounds (EVEN: half-up to ``mbits`` fraction bits)
    is held in the input's float format, whose largest binade is
    ``2**input_emax``: a rounded amax reaching ``2**(input_emax + 1)`` is Inf
    there, so its exponent is infinite.  The byte ``127 + e`` is then clamped
    to [0, 255], and 255 is the NaN scale.  Otherwise as :func:`encode_scale`.

    Parameters
    ----------
    amax : Fraction or None
    fmt : ElementFormat
    rule : ScaleRule
    input_emax : int
        127 for float32 and bfloat16 inputs, 15 for float16, 1023 for float64.
    """
    if amax is None or amax == 0:
        return encode_scale(amax, fmt, rule)
    e = shared_exponent(amax, fmt, rule)
    if e + fmt.emax > input_emax:  # the rounded amax overflowed the input's format: Inf
        return SCALE_NAN
    return min(max(e, SCALE_MIN_EXPONENT), SCALE_MAX_EXPONENT + 1) + SCALE_BIAS


def decode_scale(byte: int) -> Fraction | None:
    """Return the scale ``2**(byte - 127)``, or None for the NaN byte 0xFF.

    Spec: OCP MX v1.0 section 5.4.1, Table 7.
    """
    if not 0 <= byte <= 0xFF:
        raise ValueError(f"E8M0 byte out of range: {byte}")
    return None if byte == SCALE_NAN else pow2(byte - SCALE_BIAS)
