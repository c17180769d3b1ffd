"""Kernel twin of :mod:`mxref.ref.scale`: the shared exponent from amax bits.

The exponent and the significand of amax are read from its bit fields (a
subnormal amax is normalised by counting its leading zeros), never with
``log2``, which is wrong just below powers of two in float32.

Spec: OCP MX v1.0 sections 5.4.1 and 6.3.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mxref.policies import SCALE_RULE_CODES, ScaleRule

# rule codes (plain module ints: numba folds them as compile-time constants)
FLOOR = SCALE_RULE_CODES[ScaleRule.FLOOR]
CEIL = SCALE_RULE_CODES[ScaleRule.CEIL]
EVEN = SCALE_RULE_CODES[ScaleRule.EVEN]
RCEIL = SCALE_RULE_CODES[ScaleRule.RCEIL]
FLOOR_LOG2_FP32 = SCALE_RULE_CODES[ScaleRule.FLOOR_LOG2_FP32]
RCEIL_FP32_DIV = SCALE_RULE_CODES[ScaleRule.RCEIL_FP32_DIV]


@njit(cache=True)
def shared_exponent(amax_bits, host_mbits, host_bias, emax, mbits, max_mant, rule):
    """Return the unclamped shared exponent for a positive finite amax.

    Parameters
    ----------
    amax_bits : int
        Bit pattern of amax (sign clear) in the host format.
    host_mbits, host_bias : int
        Mantissa width and bias of the host format (23/127 or 52/1023).
    emax, mbits, max_mant : int
        The element format's emax, mantissa width and max-normal mantissa.
    rule : int
        ScaleRule code.

    Spec: OCP MX v1.0 section 6.3.
    """
    a = np.int64(amax_bits)
    one = np.int64(1) << host_mbits
    field = a >> host_mbits
    frac = a & (one - 1)
    if field == 0:
        # subnormal amax: normalise so frac holds the bits below the leading one
        width = 0
        while (frac >> width) != 0:
            width += 1
        e = width - host_mbits - host_bias
        frac = (frac << (host_mbits + 1 - width)) & (one - 1)
    else:
        e = field - host_bias
    if rule == FLOOR_LOG2_FP32:
        # RN32(log2(amax)) = RN32(e + log2(sig)) reaches n = e + 1 exactly when
        # 1 - log2(sig) < g/2, g the float32 spacing next to n on the side of
        # the value, i.e. when sig > 2**(1 - g/2); no log2 is evaluated.
        n = e + 1
        if n != 0:
            m = n - 1 if n > 0 else -n
            width = 0
            while (m >> width) != 0:
                width += 1
            half_spacing = math.ldexp(1.0, width - 25)
            sig = 1.0 + math.ldexp(float(frac), -host_mbits)
            if sig > math.pow(2.0, 1.0 - half_spacing):
                e = n
        return e - emax
    if rule == RCEIL_FP32_DIV:
        amax = math.ldexp(1.0 + math.ldexp(float(frac), -host_mbits), e)
        max_normal = math.ldexp(float((np.int64(1) << mbits) + max_mant), emax - mbits)
        q = np.float32(amax / max_normal)  # RN64 then RN32, as the oracle defines
        if q == 0:
            return np.int64(-127)
        if not math.isfinite(q):
            return np.int64(128)
        qbits = np.int64(np.float32(q).view(np.int32))
        qfield = qbits >> 23
        if qfield == 0:
            return np.int64(-126)  # ROUND_UP carries a subnormal into 2**-126
        return qfield - 127 + np.int64((qbits & 0x7FFFFF) != 0)
    e = e - emax
    if rule == CEIL:
        e += np.int64(frac != 0)
    elif rule == EVEN:
        e += np.int64(frac >= one - (np.int64(1) << (host_mbits - mbits - 1)))
    elif rule == RCEIL:
        e += np.int64(frac > (np.int64(max_mant) << (host_mbits - mbits)))
    return e


@njit(cache=True)
def encode_scale(amax_bits, special, host_mbits, host_bias, emax, mbits, max_mant, rule):
    """Return the E8M0 byte: 0xFF if ``special``, 0 for amax 0, else clamped exponent + 127.

    Spec: OCP MX v1.0 section 5.4.1, Table 7.
    """
    if special:
        return 255
    if amax_bits == 0:
        return 0
    field = np.int64(amax_bits) >> host_mbits
    if rule == FLOOR and field != 0:
        # shared_exponent's own result for a normal amax under FLOOR, without
        # the call, which would cost more than the rest of a block's scale
        e = field - host_bias - emax
    else:
        e = shared_exponent(amax_bits, host_mbits, host_bias, emax, mbits, max_mant, rule)
    return min(max(e, np.int64(-127)), np.int64(127)) + 127


@njit(cache=True)
def decode_scale(byte):
    """Return the scale ``2**(byte - 127)`` as float64, NaN for 0xFF.

    Spec: OCP MX v1.0 section 5.4.1, Table 7.
    """
    if byte == 255:
        return np.nan
    return math.ldexp(1.0, np.int64(byte) - 127)
