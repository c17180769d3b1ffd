"""Kernel twin of :mod:`mxref.ref.block`: quantize and dequantize one block.

The block is a 1-D array view (contiguous or strided).  ``quantize_block``
writes codes, fake-quantized values, or both; the drivers in
:mod:`mxref.kernels.array` pick which, and the unused branch is compiled out.

Spec: OCP MX v1.0 sections 5.1 and 6.3.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mxref.kernels.bits import float_bits, float_like, pow2_float64, sign_bit, uint_like
from mxref.kernels.element import (
    IP_ABS_MASK,
    IP_CODE_MASK,
    IP_EXP_MASK,
    IP_NEGATIVE_ZERO,
    IP_SIGN_ADD,
    IP_SIGN_XOR,
    RNE,
    STOCHASTIC,
    encode_element,
)
from mxref.kernels.scale import encode_scale, shared_exponent
from mxref.kernels.stochastic import random_u32


@njit(cache=True, inline="always")
def quantize_block(
    xb, codes, values, ip, fp, sp, rounding, seed, counter0, given_byte, write_codes,
    write_values,
):  # fmt: skip
    """Quantize the block ``xb``; return its E8M0 byte.

    Parameters
    ----------
    xb : 1-D float32/float64 array view
        The block's inputs (a short last block is simply shorter).
    codes, values : 1-D array views
        Outputs: element codes (uint8) and fake-quantized values (``xb``'s type).
    ip, fp, sp
        Parameter tuples from :mod:`mxref.kernels.params`.
    rounding : int
    seed, counter0 : int
        Stochastic rounding key and the counter of the block's first lane.
    given_byte : int
        -1 derives the byte from the block's amax by the scale rule; 0 to 254
        is a given byte (static scales) to encode against instead, for a block
        the caller has checked to be finite; no amax is taken then.
    write_codes, write_values : bool

    Spec: OCP MX v1.0 section 6.3.
    """
    if given_byte >= 0:
        # static scales: the scale is fixed, so the amax pass has nothing to decide
        byte = np.int64(given_byte)
    else:
        n = xb.shape[0]
        amax = uint_like(0, xb[0])
        for j in range(n):
            amax = max(amax, uint_like(float_bits(xb[j]) & ip[IP_ABS_MASK], xb[0]))
        special = amax >= ip[IP_EXP_MASK]
        byte = encode_scale(amax, special, sp[0], sp[1], sp[2], sp[3], sp[4], sp[5])
        if sp[7] != 0 and not special and amax != 0:
            # compressed-tensors: the rounded amax lives in the input's format (Inf past
            # its top binade) and the byte is clamped to 255, the NaN scale, not 254
            e = shared_exponent(amax, sp[0], sp[1], sp[2], sp[3], sp[4], sp[5])
            if e + sp[2] > sp[8] or e > 127:
                byte = np.int64(255)
                # the elements are divided by an Inf scale: zeros, whose sign the
                # preset's zero addend settles
                for j in range(xb.shape[0]):
                    sign = sign_bit(xb[j] * 0.0 + fp[2])
                    if write_codes:
                        codes[j] = (sign * ip[IP_SIGN_XOR] + sign * ip[IP_SIGN_ADD]) \
                            & ip[IP_CODE_MASK]  # fmt: skip
                    if write_values:
                        values[j] = float_like(math.copysign(np.nan, -1.0 if sign else 1.0),
                                               xb[0])  # fmt: skip
                return byte
        if special:
            # NaN/Inf block: scale 0xFF, every code a signed zero, every value NaN
            for j in range(n):
                sign = sign_bit(xb[j] + fp[2])
                if write_codes:
                    codes[j] = (sign * ip[IP_SIGN_XOR] + sign * ip[IP_SIGN_ADD]) & ip[IP_CODE_MASK]
                if write_values:
                    neg = sign == 1 and ip[IP_NEGATIVE_ZERO] == 1
                    values[j] = float_like(math.copysign(np.nan, -1.0 if neg else 1.0), xb[0])
            return byte
    # the divisor may be clamped above the stored scale (sp[6]; a vendor quirk)
    inv_scale = float_like(pow2_float64(127 - max(byte, sp[6])), xb[0])  # exact: 2**-127 too
    scale = float_like(pow2_float64(byte - 127), xb[0])
    if rounding == RNE:
        # a literal mode lets the compiler drop every other rounding branch
        # from the element loop, which then vectorises
        encode_span(xb, codes, values, ip, fp, inv_scale, scale, RNE, seed,
                    counter0, write_codes, write_values)  # fmt: skip
    else:
        encode_span(xb, codes, values, ip, fp, inv_scale, scale, rounding, seed,
                    counter0, write_codes, write_values)  # fmt: skip
    return byte


@njit(cache=True, inline="always")
def encode_span(
    xb, codes, values, ip, fp, inv_scale, scale, rounding, seed, counter0,
    write_codes, write_values,
):  # fmt: skip
    """Encode every element of a block whose scale is known."""
    random32 = np.int64(0)
    zero_addend = float_like(-0.0 if ip[IP_NEGATIVE_ZERO] == 1 else 0.0, scale)
    for j in range(xb.shape[0]):
        x = xb[j] + fp[2]  # the identity, or -0.0 -> +0.0 where a preset says so
        if rounding == STOCHASTIC:
            random32 = random_u32(seed, counter0 + j)
        code, rounded = encode_element(x, inv_scale, ip, fp, rounding, random32)
        if write_codes:
            codes[j] = code
        if write_values:
            # adding zero_addend turns -0 into +0 for two's complement (+0.0)
            # and is the identity for sign-magnitude formats (-0.0)
            values[j] = math.copysign(rounded * scale, x) + zero_addend


@njit(cache=True, inline="always")
def dequantize_block(codes, byte, table, out):
    """Decode one block: ``out[j] = table[codes[j]] * 2**(byte - 127)``.

    ``table`` holds every code's value in ``out``'s type (exact).  A NaN scale
    gives NaN with each code's sign.

    Spec: OCP MX v1.0 section 5.1.
    """
    n = codes.shape[0]
    if byte == 255:
        for j in range(n):
            out[j] = float_like(math.copysign(np.nan, table[codes[j]]), table[0])
        return
    scale = float_like(pow2_float64(np.int64(byte) - 127), table[0])
    for j in range(n):
        out[j] = table[codes[j]] * scale
