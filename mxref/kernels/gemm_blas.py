"""Fast, still exact, GEMM paths that let BLAS do the multiply-adds.

BLAS sums in any order and may fuse multiply-adds, so it is exact only when
every partial sum is representable.  These kernels prepare operands whose
entries are integers (element integers, shifted by each block's scale
relative to the row's smallest scale) and check the bound that makes every
partial sum an integer below 2**24 (float32) or 2**53 (float64).  Entries for
which the bound fails, or whose row or column holds NaN/Inf, are recomputed
by the exact kernel in :mod:`mxref.kernels.gemm`.

- ``exact``: one BLAS product of the folded operands, then one scaling by a
  power of two and one rounding (with C added by TwoSum and rounded to odd,
  so that the final RNE cast is a single correct rounding).
- ``block_fp32``: one BLAS product per K block of the unshifted integers,
  each added to the float32 accumulator with a single correct rounding.

Spec: OCP MX v1.0 section 6.2.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from mxref.kernels.gemm import FINITE

# the largest shift between blocks of one row that the folded operand keeps
MAX_FOLD_SHIFT = 60


@njit(cache=True, parallel=True)
def fold_rows(codes, scales, n_table, cls_table, block_size, shift, out):
    """Fold one operand's scales into integer entries, row by row.

    ``out[i, k] = n(code) * 2**(e_b - e_min_i)`` when ``shift`` (else the
    plain element integer).  Returns per row: the largest |entry|, the
    smallest block exponent ``e_min_i`` among blocks holding a nonzero
    element, and whether the row holds a NaN scale, a special element, or a
    shift beyond MAX_FOLD_SHIFT (then the row is left to the exact kernel).
    """
    rows, k_len = codes.shape
    nblk = scales.shape[1]
    row_max = np.zeros(rows, np.float64)
    row_min_exp = np.zeros(rows, np.int64)
    row_slow = np.zeros(rows, np.bool_)
    for i in prange(rows):
        lowest = 1 << 20
        highest = -(1 << 20)
        for b in range(nblk):
            lo_k = b * block_size
            hi_k = min(k_len, lo_k + block_size)
            if scales[i, b] == 255:
                row_slow[i] = True
            nonzero = False
            for k in range(lo_k, hi_k):
                c = codes[i, k]
                if cls_table[c] != FINITE:
                    row_slow[i] = True
                if n_table[c] != 0:
                    nonzero = True
            if nonzero:
                e = np.int64(scales[i, b]) - 127
                lowest = min(lowest, e)
                highest = max(highest, e)
        if highest >= lowest and shift and highest - lowest > MAX_FOLD_SHIFT:
            row_slow[i] = True
        if highest < lowest:
            lowest = 0
        row_min_exp[i] = lowest
        biggest = 0.0
        for b in range(nblk):
            lo_k = b * block_size
            hi_k = min(k_len, lo_k + block_size)
            factor = 1.0
            if shift and not row_slow[i]:
                factor = math.ldexp(1.0, np.int64(scales[i, b]) - 127 - lowest)
            for k in range(lo_k, hi_k):
                v = 0.0 if row_slow[i] else n_table[codes[i, k]] * factor
                out[i, k] = v
                biggest = max(biggest, abs(v))
        row_max[i] = biggest
    return row_max, row_min_exp, row_slow


@njit(cache=True, inline="always")
def round_to_odd(s, err):
    """Turn ``s = RN(x)`` with ``x = s + err`` into round-to-odd of x.

    Rounding to odd at 53 bits then to nearest-even at p <= 51 bits equals
    one correct rounding of x (Boldo and Melquiond, 2008).
    """
    if err != 0.0:
        bits = np.float64(s).view(np.int64)
        if bits & 1 == 0:
            # toward the side err lies on (s + err may round back to s itself)
            s = np.nextafter(s, np.inf if err > 0.0 else -np.inf)
    return s


@njit(cache=True, parallel=True)
def finish_exact(s, a_exp, b_exp, q_ab, c, has_c, out):
    """``out = S * 2**(e_a + e_b + q) (+ C)`` in float64, rounded to odd when inexact.

    The caller casts ``out`` to the output dtype with RNE, which is then one
    correct rounding of the exact value.
    """
    for i in prange(s.shape[0]):
        for j in range(s.shape[1]):
            v = math.ldexp(np.float64(s[i, j]), a_exp[i] + b_exp[j] + q_ab)  # exact
            if has_c:
                cv = np.float64(c[i, j])
                if math.isfinite(cv):
                    total = v + cv
                    z = total - v
                    err = (v - (total - z)) + (cv - z)  # TwoSum: total + err == v + cv
                    v = round_to_odd(total, err)
                else:
                    v = v + cv
            out[i, j] = v


@njit(cache=True)
def add_block_fp32(acc, s, a_pow, b_pow, flush, float32_exact):
    """``acc = RN32(acc + S * a_pow[i] * b_pow[j])`` elementwise, one rounding each.

    ``acc`` is float32; ``S`` exact; the powers of two are float64, so the
    scaled block value is exact in float64.  When ``float32_exact`` the caller
    has checked that every scaled value is a float32, and float32 addition is
    the single rounding; otherwise TwoSum and round-to-odd make it one.
    """
    tiny = np.float32(1.1754943508222875e-38)
    for i in range(acc.shape[0]):
        ap = a_pow[i]
        for j in range(acc.shape[1]):
            a = acc[i, j]
            v = np.float64(s[i, j]) * ap * b_pow[j]  # exact: powers of two
            if float32_exact:
                r = a + np.float32(v)  # v is a float32: one float32 rounding
            elif not math.isfinite(a):
                r = a  # Inf or NaN stays (NaN canonicalised by the caller)
            elif v == 0.0:
                r = a + np.float32(0.0)  # -0 + +0 = +0, as IEEE says
            else:
                a64 = np.float64(a)
                total = a64 + v
                z = total - a64
                err = (a64 - (total - z)) + (v - z)
                r = np.float32(round_to_odd(total, err))
            if flush and r != 0 and abs(r) < tiny:
                r = np.float32(math.copysign(0.0, r))
            acc[i, j] = r
