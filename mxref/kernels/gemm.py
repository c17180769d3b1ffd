"""Kernel twin of :mod:`mxref.ref.gemm`: every accumulation model, exactly.

Elements are integers: every finite code of a format is ``n * 2**(emin -
mbits)`` with ``n`` an integer (|n| < 2**32 for all formats), so a block's
Dot is an integer times a power of two.  Products are split so that nothing
overflows: ``n_b = hi * 2**16 + lo`` gives two partial sums below 2**53.

Exact sums across blocks go into a Kulisch accumulator: signed 32-bit digits
held in int64, covering every bit a term can reach: from 2**-352 (the
smallest product of two subnormal elements under two 2**-127 scales, less a
fixed-point group's kept width) up to 2**480.  Rounding reads the
accumulator once, with round-to-nearest-even.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# model codes
EXACT, BLOCK_FP32, FIXED_POINT = 0, 1, 2
# special-value classes of an element code
FINITE, POS_INF, NEG_INF, NAN = 0, 1, 2, 3

# The lowest bit sits below the smallest quantum a fixed-point group can use
# (smallest product 2**-286, minus up to 56 kept bits); 26 digits reach 2**480.
LSB = -352  # exponent of the accumulator's lowest bit
DIGITS = 26
DIGIT = np.int64(1) << 32


@njit(cache=True, inline="always")
def acc_clear(acc):
    """Zero a Kulisch accumulator."""
    for d in range(DIGITS):
        acc[d] = 0


@njit(cache=True)
def acc_add(acc, value, exponent):
    """Add ``value * 2**exponent`` exactly; ``|value| < 2**63``.

    Digits take signed chunks lazily; a digit grows by less than 2**32 per
    call, so int64 digits absorb about 2**31 calls before normalisation.
    """
    if value == 0:
        return
    sign = np.int64(1) if value > 0 else np.int64(-1)
    m = np.uint64(value) if value > 0 else np.uint64(-value)
    offset = exponent - LSB
    d = offset // 32
    r = np.uint64(offset - d * 32)
    low_mask = (np.uint64(1) << (np.uint64(32) - r)) - np.uint64(1)
    c0 = (m & low_mask) << r
    m1 = m >> (np.uint64(32) - r)
    c1 = m1 & np.uint64(0xFFFFFFFF)
    c2 = m1 >> np.uint64(32)
    acc[d] += sign * np.int64(c0)
    acc[d + 1] += sign * np.int64(c1)
    acc[d + 2] += sign * np.int64(c2)


@njit(cache=True)
def acc_add_float(acc, x):
    """Add a finite float (float32 or float64 value) exactly."""
    if x == 0:
        return
    mant, exp = math.frexp(x)  # x = mant * 2**exp, 0.5 <= |mant| < 1
    acc_add(acc, np.int64(mant * 9007199254740992.0), exp - 53)


@njit(cache=True)
def acc_round(acc, precision, min_exponent, max_exponent):
    """Round the accumulator once (RNE) to a binary float format; return float64.

    Parameters
    ----------
    precision : int
        Significand bits including the leading one (24 for float32).
    min_exponent : int
        Exponent of the smallest subnormal's quantum (-149 for float32).
    max_exponent : int
        Values at or above ``2**(max_exponent + 1)`` after rounding are Inf.

    The accumulator is normalised in place.  An exact zero gives +0.
    """
    # carry-propagate into digits in [0, 2**32); the top digit keeps the sign
    carry = np.int64(0)
    for d in range(DIGITS - 1):
        v = acc[d] + carry
        carry = v >> 32  # floor division by 2**32
        acc[d] = v - (carry << 32)
    acc[DIGITS - 1] += carry
    negative = acc[DIGITS - 1] < 0
    if negative:
        # negate: two's complement over the digit vector
        carry = np.int64(0)
        for d in range(DIGITS - 1):
            v = -acc[d] + carry
            carry = v >> 32
            acc[d] = v - (carry << 32)
        acc[DIGITS - 1] = -acc[DIGITS - 1] + carry
    top = DIGITS - 1
    while top >= 0 and acc[top] == 0:
        top -= 1
    if top < 0:
        return 0.0
    width = 0
    while (acc[top] >> width) != 0:
        width += 1
    lead = LSB + top * 32 + width - 1  # exponent of the leading one
    q = max(lead - (precision - 1), min_exponent)
    # integer of the bits at and above q, plus round and sticky bits below
    off = q - LSB
    n = np.int64(0)
    for b in range(lead - q, -1, -1):
        pos = off + b
        n = (n << 1) | ((acc[pos // 32] >> (pos % 32)) & 1)
    half_pos = off - 1
    round_bit = (acc[half_pos // 32] >> (half_pos % 32)) & 1 if half_pos >= 0 else 0
    sticky = False
    if half_pos > 0:
        dd = half_pos // 32
        if acc[dd] & ((np.int64(1) << (half_pos % 32)) - 1):
            sticky = True
        for d in range(dd):
            if acc[d] != 0:
                sticky = True
                break
    if round_bit == 1 and (sticky or (n & 1) == 1):
        n += 1
    value = math.ldexp(float(n), q)
    if value >= math.ldexp(1.0, max_exponent + 1):
        value = np.inf
    return -value if negative else value


@njit(cache=True, inline="always")
def round_float32(acc):
    """Round to float32 (as a float64 holding it)."""
    return acc_round(acc, 24, -149, 127)


@njit(cache=True)
def block_integer_parts(a_n, a_sp, b_n, b_sp, lo_k, hi_k):
    """Exact integer Dot of one block pair, unscaled, and its special class.

    Returns ``(high, low, cls)``: the Dot is ``high * 2**16 + low`` (in units
    of the two formats' quanta) when ``cls`` is FINITE, else POS_INF, NEG_INF
    or NAN by IEEE rules (NaN element, Inf * 0, Infs of both signs).
    """
    high = np.int64(0)
    low = np.int64(0)
    pos_inf = False
    neg_inf = False
    nan = False
    for k in range(lo_k, hi_k):
        sa = a_sp[k]
        sb = b_sp[k]
        if sa == FINITE and sb == FINITE:
            nb = b_n[k]
            neg_b = nb < 0
            mb = -nb if neg_b else nb
            hb = mb >> 16
            lb = mb & 0xFFFF
            na = -a_n[k] if neg_b else a_n[k]
            high += na * hb
            low += na * lb
        elif sa == NAN or sb == NAN:
            nan = True
        else:
            # at least one infinity: Inf * 0 is NaN, else an Inf with the product's sign
            zero = (sa == FINITE and a_n[k] == 0) or (sb == FINITE and b_n[k] == 0)
            if zero:
                nan = True
            else:
                neg = (sa == NEG_INF or (sa == FINITE and a_n[k] < 0)) != (
                    sb == NEG_INF or (sb == FINITE and b_n[k] < 0)
                )
                if neg:
                    neg_inf = True
                else:
                    pos_inf = True
    if nan or (pos_inf and neg_inf):
        return high, low, NAN
    if pos_inf:
        return high, low, POS_INF
    if neg_inf:
        return high, low, NEG_INF
    return high, low, FINITE


@njit(cache=True, inline="always")
def special_value(cls):
    """The float64 for a special class."""
    if cls == POS_INF:
        return np.inf
    if cls == NEG_INF:
        return -np.inf
    return np.nan


@njit(cache=True)
def add_rounded_float32(acc, acc_value, term_high, term_low, exponent, flush):
    """``RN32(acc_value + (high * 2**16 + low) * 2**exponent)``, optionally flushing subnormals."""
    if not math.isfinite(acc_value):
        return acc_value
    acc_clear(acc)
    acc_add_float(acc, acc_value)
    acc_add(acc, term_high, exponent + 16)
    acc_add(acc, term_low, exponent)
    # IEEE: x + (+0) is x, except -0 + +0 = +0
    zero_term = term_high == 0 and term_low == 0
    out = acc_value + 0.0 if zero_term else round_float32(acc)
    if flush and out != 0 and abs(out) < 1.1754943508222875e-38:
        out = math.copysign(0.0, out)
    return out


@njit(cache=True)
def fixed_point_group(a_n, a_sp, b_n, b_sp, a_sc, b_sc, q_ab, lo_k, hi_k, block_size, width,
                      rne):  # fmt: skip
    """Aligned, width-limited sum of one group of products.

    Returns ``(sum, exponent, cls)``: the group value is ``sum * 2**exponent``
    when ``cls`` is FINITE.
    """
    # pass 1: specials and the largest product exponent
    e_max = np.int64(-(1 << 40))
    any_nonzero = False
    nan = False
    pos_inf = False
    neg_inf = False
    for k in range(lo_k, hi_k):
        b = k // block_size
        if a_sc[b] == 255 or b_sc[b] == 255:
            nan = True
            continue
        sa = a_sp[k]
        sb = b_sp[k]
        if sa != FINITE or sb != FINITE:
            zero = (sa == FINITE and a_n[k] == 0) or (sb == FINITE and b_n[k] == 0)
            if sa == NAN or sb == NAN or zero:
                nan = True
            elif (sa == NEG_INF or (sa == FINITE and a_n[k] < 0)) != (
                sb == NEG_INF or (sb == FINITE and b_n[k] < 0)
            ):
                neg_inf = True
            else:
                pos_inf = True
            continue
        u = np.uint64(abs(a_n[k])) * np.uint64(abs(b_n[k]))
        if u == 0:
            continue
        bits = 0
        while (u >> np.uint64(bits)) != 0:
            bits += 1
        e = bits - 1 + q_ab + (np.int64(a_sc[b]) - 127) + (np.int64(b_sc[b]) - 127)
        if e > e_max:
            e_max = e
        any_nonzero = True
    if nan or (pos_inf and neg_inf):
        return np.int64(0), np.int64(0), NAN
    if pos_inf:
        return np.int64(0), np.int64(0), POS_INF
    if neg_inf:
        return np.int64(0), np.int64(0), NEG_INF
    if not any_nonzero:
        return np.int64(0), np.int64(0), FINITE
    quantum = e_max + 1 - width
    total = np.int64(0)
    for k in range(lo_k, hi_k):
        b = k // block_size
        u = np.uint64(abs(a_n[k])) * np.uint64(abs(b_n[k]))
        if u == 0:
            continue
        shift = q_ab + (np.int64(a_sc[b]) - 127) + (np.int64(b_sc[b]) - 127) - quantum
        if shift >= 0:
            kept = u << np.uint64(shift)  # below 2**width: the product is at most 2**(e_max+1)
        elif shift <= -64:
            kept = np.uint64(0)
            if rne and shift == -64 and (u >> np.uint64(63)) == 1:
                # exactly half or more of one quantum
                rest = u & ((np.uint64(1) << np.uint64(63)) - np.uint64(1))
                kept = np.uint64(1) if rest != 0 else np.uint64(0)
        else:
            s = np.uint64(-shift)
            kept = u >> s
            if rne:
                rem = u & ((np.uint64(1) << s) - np.uint64(1))
                half = np.uint64(1) << (s - np.uint64(1))
                if rem > half or (rem == half and (kept & np.uint64(1)) == 1):
                    kept += np.uint64(1)
        negative = (a_n[k] < 0) != (b_n[k] < 0)
        total += -np.int64(kept) if negative else np.int64(kept)
    return total, quantum, FINITE


@njit(cache=True)
def matmul_entry(i, j, a_n, a_sp, a_sc, b_n, b_sp, b_sc, q_ab, block_size, model, width, group,
                 rne, flush, c, has_c, precision, min_exponent, max_exponent, acc):  # fmt: skip
    """One output D[i, j] under one accumulation model, exactly (see the oracle).

    Returns a float64 holding a value of the output format (float32 for the
    accumulating models, which the caller rounds to the output dtype).
    """
    k_len = a_n.shape[1]
    nblk = a_sc.shape[1]
    c_val = np.float64(c[i, j]) if has_c else 0.0
    if model == EXACT:
        acc_clear(acc)
        nan = False
        pos_inf = False
        neg_inf = False
        if not math.isfinite(c_val):
            if math.isnan(c_val):
                nan = True
            elif c_val > 0:
                pos_inf = True
            else:
                neg_inf = True
        else:
            acc_add_float(acc, c_val)
        for b in range(nblk):
            lo_k = b * block_size
            hi_k = min(k_len, lo_k + block_size)
            if a_sc[i, b] == 255 or b_sc[j, b] == 255:
                nan = True
                continue
            high, low, cls = block_integer_parts(a_n[i], a_sp[i], b_n[j], b_sp[j], lo_k, hi_k)
            if cls == NAN:
                nan = True
            elif cls == POS_INF:
                pos_inf = True
            elif cls == NEG_INF:
                neg_inf = True
            else:
                e = q_ab + (np.int64(a_sc[i, b]) - 127) + (np.int64(b_sc[j, b]) - 127)
                acc_add(acc, high, e + 16)
                acc_add(acc, low, e)
        if nan or (pos_inf and neg_inf):
            return np.nan
        if pos_inf:
            return np.inf
        if neg_inf:
            return -np.inf
        return acc_round(acc, precision, min_exponent, max_exponent)
    value = c_val
    if model == BLOCK_FP32:
        for b in range(nblk):
            lo_k = b * block_size
            hi_k = min(k_len, lo_k + block_size)
            if a_sc[i, b] == 255 or b_sc[j, b] == 255:
                value = value + np.nan
                continue
            high, low, cls = block_integer_parts(a_n[i], a_sp[i], b_n[j], b_sp[j], lo_k, hi_k)
            if cls != FINITE:
                value = value + special_value(cls)
            else:
                e = q_ab + (np.int64(a_sc[i, b]) - 127) + (np.int64(b_sc[j, b]) - 127)
                value = add_rounded_float32(acc, value, high, low, e, flush)
    else:
        for g0 in range(0, k_len, group):
            g1 = min(k_len, g0 + group)
            total, exponent, cls = fixed_point_group(
                a_n[i], a_sp[i], b_n[j], b_sp[j], a_sc[i], b_sc[j], q_ab, g0, g1,
                block_size, width, rne,
            )  # fmt: skip
            if cls != FINITE:
                value = value + special_value(cls)
            else:
                value = add_rounded_float32(acc, value, np.int64(0), total, exponent, flush)
    return value if value == value else np.nan  # one canonical NaN


@njit(cache=True, parallel=True)
def matmul_exact_kernel(a_n, a_sp, a_sc, b_n, b_sp, b_sc, q_ab, block_size, model, width, group,
                        rne, flush, c, has_c, precision, min_exponent, max_exponent,
                        out):  # fmt: skip
    """D = A @ B.T for K-major integer operands under one accumulation model.

    Parameters
    ----------
    a_n, b_n : (M, K), (N, K) int64 element integers (units of 2**(emin-mbits))
    a_sp, b_sp : int8 special classes of the same shapes
    a_sc, b_sc : (M, nb), (N, nb) uint8 E8M0 bytes
    q_ab : int
        Sum of both formats' quantum exponents.
    model : int
        EXACT, BLOCK_FP32 or FIXED_POINT.
    c : (M, N) float32, used when has_c
    precision, min_exponent, max_exponent
        The output format, for the exact model's single rounding.
    out : (M, N) float64
    """
    for i in prange(a_n.shape[0]):
        acc = np.zeros(DIGITS, np.int64)
        for j in range(b_n.shape[0]):
            out[i, j] = matmul_entry(
                i, j, a_n, a_sp, a_sc, b_n, b_sp, b_sc, q_ab, block_size, model, width, group,
                rne, flush, c, has_c, precision, min_exponent, max_exponent, acc,
            )  # fmt: skip


@njit(cache=True, parallel=True)
def matmul_exact_pairs(pairs, a_n, a_sp, a_sc, b_n, b_sp, b_sc, q_ab, block_size, model, width,
                       group, rne, flush, c, has_c, precision, min_exponent, max_exponent,
                       out):  # fmt: skip
    """Like :func:`matmul_exact_kernel`, for the (i, j) rows of ``pairs`` only."""
    for p in prange(pairs.shape[0]):
        acc = np.zeros(DIGITS, np.int64)
        i, j = pairs[p, 0], pairs[p, 1]
        out[i, j] = matmul_entry(
            i, j, a_n, a_sp, a_sc, b_n, b_sp, b_sc, q_ab, block_size, model, width, group,
            rne, flush, c, has_c, precision, min_exponent, max_exponent, acc,
        )  # fmt: skip


@njit(cache=True)
def element_integers(ebits, mbits, bias, specials, twos_complement):
    """Per-code integer ``n`` (value = n * 2**(emin - mbits)) and special class."""
    nbits = 1 + ebits + mbits
    count = 1 << nbits
    n = np.zeros(count, np.int64)
    cls = np.zeros(count, np.int8)
    for code in range(count):
        if twos_complement:
            n[code] = code - count if code >= count // 2 else code
            continue
        negative = (code >> (ebits + mbits)) & 1
        mag = code & ((1 << (ebits + mbits)) - 1)
        biased = mag >> mbits
        mant = mag & ((1 << mbits) - 1)
        if specials == 2 and biased == (1 << ebits) - 1:
            cls[code] = NAN if mant != 0 else (NEG_INF if negative else POS_INF)
            continue
        if specials == 1 and mag == (1 << (ebits + mbits)) - 1:
            cls[code] = NAN
            continue
        v = mant if biased == 0 else ((1 << mbits) + mant) << (biased - 1)
        n[code] = -v if negative else v
    return n, cls
