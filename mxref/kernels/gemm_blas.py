"""Fast, still exact, GEMM paths that let BLAS do the multiply-adds.

BLAS sums in any order and may fuse multiply-adds, so it is exact only when
every partial sum is representable.  These kernels prepare operands whose
entries are integers (element integers, shifted by each block's scale
relative to the row's smallest scale) and bound every partial sum: below
2**24 it is exact in float32, below 2**53 in float64.  Entries for which the
bound fails, or whose row or column holds NaN/Inf, are recomputed by the
exact kernel in :mod:`mxref.kernels.gemm`.

- ``exact``: one BLAS product of the folded operands, then one scaling by a
  power of two and one rounding (with C added by TwoSum and rounded to odd,
  so that the final RNE cast is a single correct rounding).
- ``block_fp32`` where its accumulator never rounds (:func:`never_rounds`):
  when every partial sum ``C + Dot_1 + ... + Dot_t`` is a float32, each of
  the model's float32 adds is exact, so its result is the exact sum: the
  ``exact`` path above gives it, bit for bit.
- ``block_fp32`` elsewhere: one BLAS product per K block of the unshifted
  integers, each added to the float32 accumulator with a single correct
  rounding.

Spec: OCP MX v1.0 section 6.2.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# the largest shift between blocks of one row that the folded operand keeps
MAX_FOLD_SHIFT = 60
# below this, a bound on integer partial sums proves them exact in float32 (the
# margin covers the float64 rounding of the bound itself)
FLOAT32_EXACT_BOUND = float(2**24) * (1 - 2.0**-20)
# the largest quantum exponent that keeps 2**24 quanta below float32's overflow
MAX_QUANTUM_EXPONENT = 127 - 24


@njit(cache=True, inline="always")
def _fold_factor(scale_byte, lowest, keep):
    """``2**(e_b - lowest)`` as float32 for a foldable row, else 0.

    A shift beyond MAX_FOLD_SHIFT (or below float32's range) belongs to a
    block of zeros, whose factor is then 0 rather than Inf (0 * Inf is NaN).
    """
    shift = np.int64(scale_byte) - 127 - lowest
    if not keep or shift > MAX_FOLD_SHIFT:
        return np.float32(0.0)
    return np.float32(math.ldexp(1.0, shift))  # a power of two, or 0 far below


@njit(cache=True, parallel=True)
def fold_with_stats(codes, scales, magnitudes, values, block_size, out):
    """Fold one operand's scales into its entries and return what bounds them.

    Writes ``out[i, k] = n(code) * 2**(e_b - low_exp[i])`` in float32 for
    every foldable row, zeros elsewhere.  Each row's codes are read twice,
    the second time from cache: once for the facts below, once to write.
    Every entry and product is exact in float32: |n| has at most 8
    significant bits and a foldable row's shifts stay within MAX_FOLD_SHIFT.

    Parameters
    ----------
    codes : (rows, K) uint8
    scales : (rows, nblocks) uint8
    magnitudes : float64 per code
        ``|n|``, and +Inf for NaN and Inf codes (so one lookup finds both).
    values : float32 per code
        ``n`` (0 for NaN and Inf codes).
    block_size : int
    out : (rows, K) float32

    Returns
    -------
    special : (rows,) bool
        The row holds a NaN scale or a NaN/Inf element (the exact kernel's).
    low_exp : (rows,) int64
        The smallest block exponent among blocks holding a nonzero element
        (0 for a row of zeros): ``out`` is in units of ``2**low_exp`` times
        the element quantum.
    foldable : (rows,) bool
        Not special, and those exponents at most MAX_FOLD_SHIFT apart.
    row_max, row_l1 : (rows,) float64
        The largest entry magnitude and the sum of magnitudes of the folded
        row (zero for special rows), to within float64 rounding of the sum.
    int_max : (rows,) float64
        The largest |n| of the row, unshifted.
    """
    rows, k_len = codes.shape
    nblk = scales.shape[1]
    special = np.zeros(rows, np.bool_)
    low_exp = np.zeros(rows, np.int64)
    foldable = np.zeros(rows, np.bool_)
    row_max = np.zeros(rows, np.float64)
    row_l1 = np.zeros(rows, np.float64)
    int_max = np.zeros(rows, np.float64)
    for i in prange(rows):
        lowest = 1 << 20
        highest = -(1 << 20)
        biggest = 0.0
        scaled_max = 0.0
        scaled_sum = 0.0
        is_special = False
        for b in range(nblk):
            top = 0.0
            total = 0.0  # exact: at most 4096 * 2**32
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                v = magnitudes[codes[i, k]]
                top = max(top, v)
                total += v
            if scales[i, b] == 255 or top == np.inf:
                is_special = True
            elif top != 0.0:
                e = np.int64(scales[i, b]) - 127
                lowest = min(lowest, e)
                highest = max(highest, e)
                power = math.ldexp(1.0, e)  # exact; the products below too
                scaled_max = max(scaled_max, top * power)
                scaled_sum += total * power
            biggest = max(biggest, top)
        if highest < lowest:
            lowest = highest = 0
        keep = not is_special and highest - lowest <= MAX_FOLD_SHIFT
        special[i] = is_special
        low_exp[i] = lowest
        foldable[i] = keep
        if not is_special:
            int_max[i] = biggest
            unit = math.ldexp(1.0, -lowest)  # exact: both stay normal float64
            row_max[i] = scaled_max * unit
            row_l1[i] = scaled_sum * unit
        for b in range(nblk):
            factor = _fold_factor(scales[i, b], lowest, keep)
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                out[i, k] = values[codes[i, k]] * factor
    return special, low_exp, foldable, row_max, row_l1, int_max


@njit(cache=True, parallel=True)
def fold_columns_with_stats(codes, scales, magnitudes, values, block_size, out):
    """:func:`fold_with_stats` for an operand blocked along axis 0, in its own layout.

    Column ``j`` of ``codes`` (K, N) and ``scales`` (nblocks, N) is row ``j``
    of :func:`fold_with_stats`; ``out`` is (K, N) too, so both read and write
    run along rows (no transposed copy of the codes), and the results are the
    same, per column.  Columns go to threads in chunks of 64.
    """
    k_len, cols = codes.shape
    nblk = scales.shape[0]
    special = np.zeros(cols, np.bool_)
    low_exp = np.zeros(cols, np.int64)
    foldable = np.zeros(cols, np.bool_)
    row_max = np.zeros(cols, np.float64)
    row_l1 = np.zeros(cols, np.float64)
    int_max = np.zeros(cols, np.float64)
    width = 64
    for chunk in prange((cols + width - 1) // width):
        j0 = chunk * width
        w = min(cols, j0 + width) - j0
        lowest = np.full(w, 1 << 20, np.int64)
        highest = np.full(w, -(1 << 20), np.int64)
        biggest = np.zeros(w, np.float64)
        scaled_max = np.zeros(w, np.float64)
        scaled_sum = np.zeros(w, np.float64)
        is_special = np.zeros(w, np.bool_)
        top = np.zeros(w, np.float64)
        total = np.zeros(w, np.float64)
        for b in range(nblk):
            top[:] = 0.0
            total[:] = 0.0
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                for jj in range(w):
                    v = magnitudes[codes[k, j0 + jj]]
                    top[jj] = max(top[jj], v)
                    total[jj] += v
            for jj in range(w):
                if scales[b, j0 + jj] == 255 or top[jj] == np.inf:
                    is_special[jj] = True
                elif top[jj] != 0.0:
                    e = np.int64(scales[b, j0 + jj]) - 127
                    lowest[jj] = min(lowest[jj], e)
                    highest[jj] = max(highest[jj], e)
                    power = math.ldexp(1.0, e)
                    scaled_max[jj] = max(scaled_max[jj], top[jj] * power)
                    scaled_sum[jj] += total[jj] * power
                biggest[jj] = max(biggest[jj], top[jj])
        keep = np.zeros(w, np.bool_)
        for jj in range(w):
            if highest[jj] < lowest[jj]:
                lowest[jj] = highest[jj] = 0
            keep[jj] = not is_special[jj] and highest[jj] - lowest[jj] <= MAX_FOLD_SHIFT
            j = j0 + jj
            special[j] = is_special[jj]
            low_exp[j] = lowest[jj]
            foldable[j] = keep[jj]
            if not is_special[jj]:
                int_max[j] = biggest[jj]
                unit = math.ldexp(1.0, -lowest[jj])
                row_max[j] = scaled_max[jj] * unit
                row_l1[j] = scaled_sum[jj] * unit
        factor = np.zeros(w, np.float32)
        for b in range(nblk):
            for jj in range(w):
                factor[jj] = _fold_factor(scales[b, j0 + jj], lowest[jj], keep[jj])
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                for jj in range(w):
                    out[k, j0 + jj] = values[codes[k, j0 + jj]] * factor[jj]
    return special, low_exp, foldable, row_max, row_l1, int_max


@njit(cache=True, parallel=True)
def integer_rows(codes, n_table, out):
    """``out[i, k] = n(code)``, the plain element integers (NaN/Inf codes give 0)."""
    rows, k_len = codes.shape
    for i in prange(rows):
        for k in range(k_len):
            out[i, k] = n_table[codes[i, k]]


@njit(cache=True, parallel=True)
def never_rounds(a_l1, a_max, a_exp, a_foldable, a_special, b_l1, b_max, b_exp, b_foldable,
                 b_special, q_ab, lowest_quantum, c, has_c, passed):  # fmt: skip
    """Mark the outputs whose ``block_fp32`` accumulator never rounds.

    Every partial sum ``C + Dot_1 + ... + Dot_t`` of output (i, j) is an
    integer number of quanta ``2**Q``, ``Q = a_exp[i] + b_exp[j] + q_ab``,
    whose magnitude is at most ``|C| / 2**Q + U`` with ``U = sum_k |a_ik b_jk|``
    (folded entries), and ``U`` is at most ``a_l1[i] * b_max[j]`` and at most
    ``a_max[i] * b_l1[j]`` (sums and maxima of magnitudes).  When
    that stays within 2**24 quanta, C is a whole number of quanta and
    ``lowest_quantum <= Q <= MAX_QUANTUM_EXPONENT``, every partial sum is a
    float32 (a normal one where ``lowest_quantum`` is -126, as flushing
    subnormals needs), so every float32 add of the model is exact.

    Only rows and columns marked ``foldable`` (folded without loss) can
    pass; those marked ``special`` are the exact kernel's in any case.

    Returns
    -------
    (rows,) int64
        Per row of A, how many outputs did not pass, not counting those
        whose row or column is special.
    """
    m = a_l1.shape[0]
    n = b_l1.shape[0]
    misses = np.zeros(m, np.int64)
    for i in prange(m):
        for j in range(n):
            q = a_exp[i] + b_exp[j] + q_ab
            units = min(a_l1[i] * b_max[j], a_max[i] * b_l1[j])
            ok = a_foldable[i] and b_foldable[j] and lowest_quantum <= q <= MAX_QUANTUM_EXPONENT
            if has_c and ok:
                cv = np.float64(c[i, j])
                if math.isfinite(cv):
                    c_units = math.ldexp(abs(cv), -q)  # exact: q leaves it a normal float64
                    ok = c_units == math.floor(c_units)
                    units += c_units
                else:
                    ok = False
            ok = ok and units < FLOAT32_EXACT_BOUND
            passed[i, j] = ok
            if not ok and not a_special[i] and not b_special[j]:
                misses[i] += 1
    return misses


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
    """``out = S * 2**(e_a + e_b + q) (+ C)``, rounded to odd in float64 when inexact.

    ``out`` is float64 (the caller casts it to the output dtype with RNE,
    which is then one correct rounding of the exact value) or float32 (the
    store is that RNE cast).  An exact zero is +0; a NaN is the canonical one.
    """
    m, n = s.shape
    b_pow = np.empty(n, np.float64)
    for j in range(n):
        b_pow[j] = math.ldexp(1.0, b_exp[j])
    for i in prange(m):
        a_pow = math.ldexp(1.0, a_exp[i] + q_ab)
        for j in range(n):
            # exact: |S| < 2**53 and the powers keep it inside float64's normal
            # range; adding +0.0 makes an exact zero +0 whatever BLAS signed it
            v = (np.float64(s[i, j]) + 0.0) * a_pow * b_pow[j]
            if has_c:
                cv = np.float64(c[i, j])
                if math.isfinite(cv):
                    total = v + cv
                    z = total - v
                    err = (v - (total - z)) + (cv - z)  # TwoSum: total + err == v + cv
                    v = round_to_odd(total, err)
                else:
                    v = v + cv
                    if v != v:
                        v = np.nan  # the canonical quiet NaN, whatever C carried
            out[i, j] = v


@njit(cache=True)
def add_block_fp32(acc, s, a_pow, b_pow, flush, float32_exact):
    """``acc = RN32(acc + S * a_pow[i] * b_pow[j])`` elementwise, one rounding each.

    ``acc`` is float32; ``S`` exact; the powers of two are float64, so the
    scaled block value is exact in float64.  When ``float32_exact`` the caller
    has checked that every scaled value is a float32, and float32 addition is
    the single rounding; otherwise the float64 sum, turned to round-to-odd by
    its TwoSum error, is rounded once more to float32, which is one correct
    rounding (see :func:`round_to_odd`).  An Inf or NaN accumulator stays
    (the caller canonicalises NaN).

    The loop body has no branches (selects only), so it vectorises; it runs
    on one thread because the caller calls it once per block and row tile,
    and a parallel region that short waits on the slowest thread.
    """
    tiny = np.float32(1.1754943508222875e-38)
    for i in range(acc.shape[0]):
        ap = a_pow[i]
        for j in range(acc.shape[1]):
            a = acc[i, j]
            v = np.float64(s[i, j]) * ap * b_pow[j]  # exact: powers of two
            if float32_exact:
                r = a + np.float32(v)  # v is a float32: one float32 rounding
            else:
                a64 = np.float64(a)
                total = a64 + v  # -0 + +0 = +0, as IEEE says
                z = total - a64
                err = (a64 - (total - z)) + (v - z)  # TwoSum: total + err == a + v
                # round to odd: an inexact even total moves one step toward err
                # (bits +- 1 is the neighbour, total never being zero when inexact)
                bits = np.float64(total).view(np.int64)
                step = np.int64(1) if (err > 0.0) == (total > 0.0) else np.int64(-1)
                odd = bits + step if err != 0.0 and (bits & 1) == 0 else bits
                rounded = np.float32(np.int64(odd).view(np.float64))
                r = rounded if math.isfinite(a) else a
            if flush and r != 0 and abs(r) < tiny:
                r = np.float32(math.copysign(0.0, r))
            acc[i, j] = r
