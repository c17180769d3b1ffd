"""Kernel twin of :mod:`mxref.ref.element`: encode and decode one element.

The encoder works on the float value and its bit fields; no ``log2``.

- Round to nearest even uses the FPU itself: adding ``C = 2**(t - mbits +
  host_mbits)`` to a magnitude in binade ``t`` leaves exactly the rounded
  count of quanta in the low bits of the sum, because the FPU rounds that add
  to nearest even (numba never sets fastmath, so nothing reassociates it).
- The other modes scale the magnitude by ``2**(mbits - t)`` (exact), split it
  into integer and fraction (both exact), and decide the carry from the
  fraction.

Both give the magnitude code ``q + ((t - emin) << mbits)`` of the oracle's
``round_magnitude``.  The integer parameter tuple ``ip`` is built by
:func:`mxref.kernels.params.element_params`; its layout is the ``IP_*``
indices below.

Spec: OCP MX v1.0 sections 5.3 and 6.3.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mxref.kernels.bits import bits_float, float_bits, float_like, host_mbits, sign_bit, uint_like
from mxref.policies import ROUNDING_CODES, Rounding

# rounding codes (plain module ints: numba folds them as compile-time constants)
RNE = ROUNDING_CODES[Rounding.RNE]
AWAY = ROUNDING_CODES[Rounding.AWAY]
ZERO = ROUNDING_CODES[Rounding.ZERO]
STOCHASTIC = ROUNDING_CODES[Rounding.STOCHASTIC]

# indices into the integer parameter tuple (built by mxref.kernels.params)
IP_PMIN_BITS = 0  # host bits of 2**emin
IP_EXP_MASK = 1  # host exponent field mask (also the bits of +Inf)
IP_RNE_OFFSET = 2  # (host_mbits - mbits) << host_mbits: bits(2**t) -> bits(C)
IP_INVERSE_BASE = 3  # (host_bias + mbits) << host_mbits: t << host_mbits -> bits(2**(mbits-t))
IP_QUANTUM_OFFSET = 4  # mbits << host_mbits: bits(2**t) -> bits(2**(t-mbits))
IP_TWO_POW_MBITS = 5  # 2**mbits
IP_OVERFLOW_CODE = 6  # what an overflowing magnitude becomes under the chosen policy
IP_SIGN_XOR = 7  # sign bit (sign-magnitude) or code mask (two's complement)
IP_SIGN_ADD = 8  # 0 (sign-magnitude) or 1 (two's complement)
IP_CODE_MASK = 9
IP_NEGATIVE_ZERO = 10  # 1 if the format has -0
IP_CLAMP_BITS = 11  # host bits of 2**(emax+1): larger magnitudes all overflow
IP_ABS_MASK = 12  # host bits of everything but the sign
IP_ONE_BITS = 13  # host bits of 1.0: bits(2**t) - this = t << host_mbits
IP_COUNT = 14


@njit(cache=True, inline="always")
def round_magnitude(y, ip, rounding, random32):
    """Round ``y >= 0`` (already scaled) to a magnitude code.

    Returns ``(code, rounded)``: the magnitude code, which may exceed
    max_code on overflow, and the rounded magnitude as a float of ``y``'s type.
    ``y`` must not exceed ``2**(emax+1)``; the caller clamps it.

    Integer work stays in the float's own unsigned width and shifts only by
    the compile-time host mantissa width, so LLVM vectorises it.
    """
    # numba widens integer arithmetic to 64 bits; narrowing every result back
    # to the float's width (uint_like) keeps float32 work in 32-bit lanes.
    yb = float_bits(y)
    pb = max(uint_like(yb & ip[IP_EXP_MASK], y), ip[IP_PMIN_BITS])
    binade = uint_like(uint_like(pb - ip[IP_PMIN_BITS], y) >> host_mbits(y), y)
    binade_code = uint_like(binade * ip[IP_TWO_POW_MBITS], y)
    if rounding == RNE:
        cb = uint_like(pb + ip[IP_RNE_OFFSET], y)
        c = bits_float(cb, y)
        total = y + c
        quanta = uint_like(float_bits(total) - cb, y)
        return uint_like(quanta + binade_code, y), total - c
    # exact: multiplying by a power of two
    scaled = y * bits_float(ip[IP_INVERSE_BASE] - (pb - ip[IP_ONE_BITS]), y)
    whole = np.floor(scaled)
    frac = scaled - whole  # exact: the fraction of a float is a float
    # RNE took the branch above; the remaining modes are AWAY, ZERO, STOCHASTIC
    if rounding == AWAY:
        up = frac >= 0.5
    elif rounding == ZERO:
        up = False
    else:
        up = np.float64(random32) < math.floor(np.float64(frac) * 4294967296.0)
    q = np.int64(whole) + np.int64(up)
    code = uint_like(uint_like(q, y) + binade_code, y)
    return code, float_like(q, y) * bits_float(pb - ip[IP_QUANTUM_OFFSET], y)


@njit(cache=True, inline="always")
def encode_element(x, inv_scale, ip, fp, rounding, random32):
    """Encode one input element given ``inv_scale = 1/X``.

    ``fp`` is ``(overflow_value, max_normal)`` in the host float type.
    Returns ``(code, rounded)``: the full code (sign applied) and the rounded
    magnitude after overflow handling (``overflow_value`` on overflow).

    Spec: OCP MX v1.0 section 6.3.
    """
    clamp = bits_float(ip[IP_CLAMP_BITS], x)
    # |x| * 2**-s is exact unless it underflows below the host's normal range,
    # where every element grid (quantum >= 2**-16) rounds it to zero anyway.
    y = min(abs(x) * inv_scale, clamp)
    code, rounded = round_magnitude(y, ip, rounding, random32)
    # rounding is monotonic, so the float test equals code > max_code; it lets
    # the fake-quant path drop the integer code work entirely
    if rounded > fp[1]:
        code = ip[IP_OVERFLOW_CODE]
        rounded = fp[0]
    sign = sign_bit(x)
    flipped = uint_like(code ^ uint_like(sign * ip[IP_SIGN_XOR], x), x)
    signed = uint_like(flipped + uint_like(sign * ip[IP_SIGN_ADD], x), x)
    full = uint_like(signed & ip[IP_CODE_MASK], x)
    return full, rounded


@njit(cache=True)
def decode_element(code, ebits, mbits, bias, specials, twos_complement):
    """Decode one code to float64 exactly (NaN/Inf for special codes).

    Parameters
    ----------
    specials : int
        0 none, 1 NaN only at the top (E4M3), 2 IEEE (E5M2).

    Spec: OCP MX v1.0 section 5.3.
    """
    nbits = 1 + ebits + mbits
    emin = 1 - bias
    if twos_complement:
        signed = code - (1 << nbits) if code >= (1 << (nbits - 1)) else code
        return math.ldexp(float(signed), emin - mbits)
    sign = -1.0 if (code >> (ebits + mbits)) & 1 else 1.0
    mag = code & ((1 << (ebits + mbits)) - 1)
    biased = mag >> mbits
    mant = mag & ((1 << mbits) - 1)
    top = (1 << ebits) - 1
    if specials == 2 and biased == top:
        return math.copysign(np.inf if mant == 0 else np.nan, sign)
    if specials == 1 and mag == (1 << (ebits + mbits)) - 1:
        return math.copysign(np.nan, sign)
    if biased == 0:
        return sign * math.ldexp(float(mant), emin - mbits)
    return sign * math.ldexp(float((1 << mbits) + mant), biased - bias - mbits)


@njit(cache=True)
def decode_table(ebits, mbits, bias, specials, twos_complement):
    """Return the float64 value of every code, indexed by code."""
    n = 1 << (1 + ebits + mbits)
    out = np.empty(n, np.float64)
    for code in range(n):
        out[code] = decode_element(code, ebits, mbits, bias, specials, twos_complement)
    return out
