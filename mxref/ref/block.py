"""Oracle: quantize and dequantize one block exactly.

Spec: OCP MX v1.0 sections 5.1 (decoding) and 6.3 (conversion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from mxref.formats import SCALE_NAN, ElementFormat
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.element import Value, apply_sign, decode_element, encode_element
from mxref.ref.scale import decode_scale, encode_scale, encode_scale_unclamped


def quantize_block(
    values: Sequence[Value],
    fmt: ElementFormat,
    scale_rule: ScaleRule = ScaleRule.FLOOR,
    rounding: Rounding = Rounding.RNE,
    overflow: Overflow = Overflow.SATURATE,
    random32: Sequence[int] | None = None,
    divisor_min_exponent: int = -127,
    keep_negative_zero: bool = True,
    scale_byte: int | None = None,
    overflow_input_emax: int | None = None,
) -> tuple[int, list[int]]:
    """Quantize one block of exact values.

    Parameters
    ----------
    values : sequence of (sign, magnitude)
        The block's inputs, exactly (see :mod:`mxref.ref.element`).
    fmt, scale_rule, rounding, overflow
        The policies.
    random32 : sequence of int, optional
        One 32-bit draw per element, for stochastic rounding.
    divisor_min_exponent : int
        Elements are divided by ``2**max(shared_exponent, this)``; the spec's
        -127 divides by X itself (torchao 0.18 uses -126 while storing X).
    keep_negative_zero : bool
        False reads a -0.0 input as +0.0 (microxcaling).
    scale_byte : int, optional
        A given E8M0 byte (0x00 to 0xFE) to encode against instead of the
        one ``scale_rule`` derives from the amax ("static scales"); the
        divisor is still ``2**max(scale_byte - 127, divisor_min_exponent)``
        and rounding and overflow apply as usual, so elements beyond max
        normal times the scale overflow.  ``scale_rule`` is then unused.
    overflow_input_emax : int, optional
        The scale-byte overflow quirk (``Preset.scale_overflow_nan``): the
        byte is :func:`~mxref.ref.scale.encode_scale_unclamped`'s for an
        input format whose largest binade is ``2**overflow_input_emax``; a
        finite block given 0xFF this way has its elements divided by an Inf
        scale, so every code is a zero (+0 unless ``keep_negative_zero``).

    Returns
    -------
    (int, list of int)
        The E8M0 byte and the element codes.  A block holding NaN or Inf gets
        byte 0xFF and every element the signed zero code (sign of its input;
        two's complement has only +0).  An all-zero block gets byte 0x00.
        With ``scale_byte`` the byte is ``scale_byte``.

    Raises
    ------
    ValueError
        ``scale_byte`` outside 0x00-0xFE, or a NaN or Inf value with
        ``scale_byte`` (a finite scale gives them no encoding).

    Spec: OCP MX v1.0 section 6.3.
    """
    draws = list(random32) if random32 is not None else [0] * len(values)
    if not keep_negative_zero:
        values = [(0, mag) if mag == 0 else (s, mag) for s, mag in values]
    special = any(isinstance(mag, float) for _, mag in values)
    if scale_byte is not None:
        if not 0 <= scale_byte < SCALE_NAN:
            raise ValueError(f"scale_byte must be an E8M0 byte 0x00-0xFE; got {scale_byte:#x}")
        if special:
            raise ValueError("values must be finite with a given scale_byte")
        byte = scale_byte
    elif special:
        return encode_scale(None, fmt, scale_rule), [apply_sign(s, 0, fmt) for s, _ in values]
    else:
        amax = max((mag for _, mag in values), default=Fraction(0))
        assert isinstance(amax, Fraction)
        if overflow_input_emax is None:
            byte = encode_scale(amax, fmt, scale_rule)
        else:
            byte = encode_scale_unclamped(amax, fmt, scale_rule, overflow_input_emax)
            if byte == SCALE_NAN:
                return byte, [apply_sign(s if keep_negative_zero else 0, 0, fmt)
                              for s, _ in values]  # fmt: skip
    scale = decode_scale(max(byte, divisor_min_exponent + 127))
    assert scale is not None
    codes = [
        encode_element(sign, Fraction(mag) / scale, fmt, rounding, overflow, draw)
        for (sign, mag), draw in zip(values, draws, strict=True)
    ]
    return byte, codes


def dequantize_block(byte: int, codes: Sequence[int], fmt: ElementFormat) -> list[Value]:
    """Decode one block to exact values: ``X * P_i``.

    A NaN scale makes every element NaN; NaN and Inf element codes decode as
    themselves.

    Spec: OCP MX v1.0 section 5.1.
    """
    scale = decode_scale(byte)
    out: list[Value] = []
    for code in codes:
        sign, mag = decode_element(code, fmt)
        if scale is None:
            out.append((sign, math.nan))
        elif isinstance(mag, float):
            out.append((sign, mag))
        else:
            out.append((sign, mag * scale))
    return out
