"""Kernels of the NVFP4 GEMM (:mod:`mxref.nvfp4_gemm`), twin of :mod:`mxref.ref.nvfp4_gemm`.

Every E4M3 block scale is ``s = M * 2**E`` with ``M`` an odd integer below
16 (or 0), read from per-byte tables the caller derives from the scale
format.  Folding ``M`` into the E2M1 element integers ``n`` (units of
``2**(emin - mbits)``) gives integers ``n * M`` of at most 12 * 15 = 180, and
``E`` becomes an E8M0-like byte ``127 + E`` (255 for the NaN scale), so the
MX kernel :func:`mxref.kernels.gemm.matmul_exact_kernel` computes every
accumulation model on NVFP4 operands unchanged: its products of two such
integers stay far below the 2**32 it splits at, and its Kulisch accumulator
reaches far below the smallest NVFP4 product, 2**-20.

The tensor scales enter once, in :func:`epilogue`, which rounds
``X / (G_a * G_b) + C`` to the output format: exactly where it can prove
the float64 evaluation decides the rounding, and otherwise marks the output
for the caller's exact fallback.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral); the NVFP4 scaling is
NVIDIA's (PTX ISA ``kind::mxf4nvf4`` with ue4m3 scales).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from mxref.kernels.gemm_blas import round_to_odd


@njit(cache=True, inline="always")
def _lowest_exponent(scales_row, s_mult, s_exp, s_nan):
    """The smallest E among a row's nonzero, non-NaN block scales (0 if none).

    Every nonzero product of the row is a multiple of ``2**lowest`` times the
    element quantum (a block with scale zero has only zero products).
    """
    lowest = np.int64(1 << 20)
    for b in range(scales_row.shape[0]):
        byte = scales_row[b]
        if s_mult[byte] != 0 and not s_nan[byte]:
            lowest = min(lowest, s_exp[byte])
    return lowest if lowest != 1 << 20 else np.int64(0)


@njit(cache=True, parallel=True)
def fold_integers(codes, scales, n_table, s_mult, s_exp, s_nan, block_size, out_n, out_bytes):
    """``out_n = n * M`` per element and ``out_bytes = 127 + E`` (255: NaN) per block.

    Parameters
    ----------
    codes : (rows, K) uint8
        E2M1 codes, blocked along K.
    scales : (rows, nblocks) uint8
        E4M3 scale bytes.
    n_table : int64 per element code
        The element integer ``n``.
    s_mult, s_exp : int64 per scale byte
        ``M`` and ``E`` with ``s = M * 2**E`` (``M`` = 0 for a zero scale).
    s_nan : bool per scale byte
        Whether the byte is E4M3's NaN.
    block_size : int
    out_n : (rows, K) int64
    out_bytes : (rows, nblocks) uint8

    Returns
    -------
    nan_row : (rows,) bool
        The row holds a NaN scale.
    low_exp : (rows,) int64
        The smallest ``E`` among the row's nonzero, non-NaN scales (0 if
        none): every product of the row is a multiple of ``2**low_exp``
        times the element quantum.
    """
    rows, k_len = codes.shape
    nblk = scales.shape[1]
    nan_row = np.zeros(rows, np.bool_)
    low_exp = np.zeros(rows, np.int64)
    for i in prange(rows):
        low_exp[i] = _lowest_exponent(scales[i], s_mult, s_exp, s_nan)
        for b in range(nblk):
            byte = scales[i, b]
            mult = s_mult[byte]
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                out_n[i, k] = n_table[codes[i, k]] * mult
            if s_nan[byte]:
                nan_row[i] = True
                out_bytes[i, b] = 255
            else:
                out_bytes[i, b] = 127 + s_exp[byte]
    return nan_row, low_exp


@njit(cache=True, parallel=True)
def fold_values(codes, scales, n_table, s_mult, s_exp, s_nan, block_size, out):
    """``out = n * M * 2**(E - low_exp[row])``: integers, exact in float32 and float64.

    The shift ``E - low_exp`` is at most the spread of E4M3's ``E`` (-9 to
    8, see :func:`mxref.nvfp4_gemm.scale_tables`), 17, so an entry is below
    180 * 2**17 < 2**25, with at most 8 significant bits.  Rows with
    a NaN scale get zeros (the caller fills their outputs with NaN).

    Returns
    -------
    nan_row, low_exp : as :func:`fold_integers`
    row_max, row_l1 : (rows,) float64
        The largest magnitude and the sum of magnitudes of the row's entries
        (exact: below K * 2**25 <= 2**53 for any K up to 2**28).
    """
    rows, k_len = codes.shape
    nblk = scales.shape[1]
    nan_row = np.zeros(rows, np.bool_)
    low_exp = np.zeros(rows, np.int64)
    row_max = np.zeros(rows, np.float64)
    row_l1 = np.zeros(rows, np.float64)
    for i in prange(rows):
        lowest = _lowest_exponent(scales[i], s_mult, s_exp, s_nan)
        is_nan = False
        for b in range(nblk):
            is_nan = is_nan or s_nan[scales[i, b]]
        nan_row[i] = is_nan
        low_exp[i] = lowest
        top = 0.0
        total = 0.0
        for b in range(nblk):
            byte = scales[i, b]
            factor = 0.0 if is_nan else math.ldexp(float(s_mult[byte]), s_exp[byte] - lowest)
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                v = n_table[codes[i, k]] * factor
                out[i, k] = v
                top = max(top, abs(v))
                total += abs(v)
        row_max[i] = top
        row_l1[i] = total
    return nan_row, low_exp, row_max, row_l1


@njit(cache=True, parallel=True)
def fold_values_columns(codes, scales, n_table, s_mult, s_exp, s_nan, block_size, out):
    """:func:`fold_values` for an operand blocked along axis 0, in its own layout.

    Column ``j`` of ``codes`` (K, N) and ``scales`` (nblocks, N) is row ``j``
    of :func:`fold_values`, and ``out`` is (K, N): reads and writes run along
    rows, with no transposed copy.  Columns go to threads in chunks of 64.
    """
    k_len, cols = codes.shape
    nblk = scales.shape[0]
    nan_col = np.zeros(cols, np.bool_)
    low_exp = np.zeros(cols, np.int64)
    col_max = np.zeros(cols, np.float64)
    col_l1 = np.zeros(cols, np.float64)
    width = 64
    for chunk in prange((cols + width - 1) // width):
        j0 = chunk * width
        w = min(cols, j0 + width) - j0
        for jj in range(w):
            lowest = np.int64(1 << 20)
            for b in range(nblk):
                byte = scales[b, j0 + jj]
                if s_nan[byte]:
                    nan_col[j0 + jj] = True
                elif s_mult[byte] != 0:
                    lowest = min(lowest, s_exp[byte])
            low_exp[j0 + jj] = lowest if lowest != 1 << 20 else 0
        top = np.zeros(w, np.float64)
        total = np.zeros(w, np.float64)
        factor = np.zeros(w, np.float64)
        for b in range(nblk):
            for jj in range(w):
                byte = scales[b, j0 + jj]
                factor[jj] = (
                    0.0
                    if nan_col[j0 + jj]
                    else math.ldexp(float(s_mult[byte]), s_exp[byte] - low_exp[j0 + jj])
                )
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                for jj in range(w):
                    v = n_table[codes[k, j0 + jj]] * factor[jj]
                    out[k, j0 + jj] = v
                    top[jj] = max(top[jj], abs(v))
                    total[jj] += abs(v)
        for jj in range(w):
            col_max[j0 + jj] = top[jj]
            col_l1[j0 + jj] = total[jj]
    return nan_col, low_exp, col_max, col_l1


@njit(cache=True)
def round_to_format(v, precision, min_exponent, max_exponent):
    """``v`` rounded once (RNE) to a binary format, as a float64; overflow gives Inf.

    ``precision`` counts the leading bit; ``min_exponent`` is the exponent of
    the smallest subnormal's quantum.  A nonzero value that rounds to zero
    keeps its sign.  Exponents come from frexp, and every step is exact.
    """
    if v == 0.0 or not math.isfinite(v):
        return v
    _, e = math.frexp(v)  # 2**(e-1) <= |v| < 2**e
    q = max(e - precision, min_exponent)
    scaled = math.ldexp(abs(v), -q)  # exact: below 2**precision, and never subnormal
    whole = math.floor(scaled)
    rest = scaled - whole  # exact
    if rest > 0.5 or (rest == 0.5 and whole % 2.0 == 1.0):
        whole += 1.0
    r = math.ldexp(whole, q)
    if r >= math.ldexp(1.0, max_exponent + 1):
        r = np.inf
    return -r if v < 0 else r  # a zero result keeps v's sign


#: states of an output after an epilogue pass
DONE, KERNEL, UNDECIDED = 0, 1, 2


@njit(cache=True, inline="always")
def _round_out(v, precision, min_exponent, max_exponent):
    """RNE to the output format; float32 by the hardware conversion (one rounding)."""
    if precision == 24:
        return np.float64(np.float32(v))
    return round_to_format(v, precision, min_exponent, max_exponent)


@njit(cache=True, inline="always")
def _finish_quotient(q, exact, cv, precision, min_exponent, max_exponent):
    """``(RNE_out(X / P + C), decided)`` from ``q``, X / P to within 2**-50 relative.

    X and C are finite.  When ``exact`` (q is X / P itself, +0 for zero),
    TwoSum with round-to-odd makes ``q + C`` one correct rounding.
    Otherwise ``y = fl(q + C)`` lies within ``(|q| + |C|) * 2**-49`` of the
    exact value (q's error, at most five roundings of 2**-53, and one more
    for the sum); ``err`` is eight times that, which also covers the
    roundings of ``y -+ err``.  The exact value lies between those two, so
    where both round to the same bits, so does it; otherwise the output is
    undecided.
    """
    if exact:
        y = q + cv  # +0 + -0 is +0: an exact zero sum is +0
        z = y - q
        e = (q - (y - z)) + (cv - z)  # TwoSum: y + e == q + cv
        return _round_out(round_to_odd(y, e), precision, min_exponent, max_exponent), True
    y = q + cv
    err = (abs(q) + abs(cv)) * 2.0**-46
    lo = _round_out(y - err, precision, min_exponent, max_exponent)
    hi = _round_out(y + err, precision, min_exponent, max_exponent)
    same = np.float64(lo).view(np.int64) == np.float64(hi).view(np.int64)
    return lo, same


@njit(cache=True, inline="always")
def _special(xv, p, cv):
    """``X / P + C`` under IEEE rules where X or C is NaN or Inf; NaN canonical."""
    v = xv / p + cv  # NaN stays; Inf + -Inf is NaN
    return v if v == v else np.nan


@njit(cache=True, parallel=True)
def epilogue_blas(s, a_low, b_low, q_ab, a_l1, a_max, b_l1, b_max, limit, a_g, b_g, a_pow2,
                  b_pow2, a_nan, b_nan, c, has_c, precision, min_exponent, max_exponent, out,
                  state):  # fmt: skip
    """Finish every output from the BLAS sums that a bound proves exact.

    ``s[i, j]`` is the BLAS product of the folded rows, in units of
    ``2**(a_low[i] + b_low[j] + q_ab)``.  Every partial sum of it is a whole
    number of units of magnitude at most ``U = sum_k |a_ik b_jk|``, itself
    at most ``a_l1[i] * b_max[j]`` and ``a_max[i] * b_l1[j]``; where that is
    below ``limit`` (2**53 for float64 sums, 2**24 for float32 ones or for a
    float32 accumulator that must never round), BLAS summed exactly in any
    order, and the output is finished here (:func:`_finish`).

    ``state[i, j]`` becomes DONE, KERNEL (the bound failed: the exact kernel
    must compute X) or UNDECIDED (the caller's exact fallback, to which
    ``s[i, j]`` then hands the value X).  Rows and columns with a NaN scale
    give NaN.
    """
    m, n = state.shape
    a_f = np.empty(m, np.float64)
    for i in range(m):
        a_f[i] = math.ldexp(1.0, a_low[i] + q_ab) / a_g[i]
    b_f = np.empty(n, np.float64)
    for j in range(n):
        b_f[j] = math.ldexp(1.0, b_low[j]) / b_g[j]
    for i in prange(m):
        for j in range(n):
            state[i, j] = DONE
            if a_nan[i] or b_nan[j]:
                out[i, j] = np.nan
                continue
            if min(a_l1[i] * b_max[j], a_max[i] * b_l1[j]) >= limit:
                state[i, j] = KERNEL
                continue
            cv = np.float64(c[i, j]) if has_c else 0.0
            # X / P as (S * (2**e_a / G_a)) * (2**e_b / G_b): four roundings of
            # 2**-53 at most, none when both G are powers of two
            q = (np.float64(s[i, j]) * a_f[i]) * b_f[j] + 0.0  # an exact zero is +0
            if not math.isfinite(cv):
                out[i, j] = q + cv if cv == cv else np.nan  # IEEE; X is finite here
                continue
            v, ok = _finish_quotient(q, (a_pow2[i] and b_pow2[j]) or q == 0.0, cv, precision,
                                     min_exponent, max_exponent)  # fmt: skip
            out[i, j] = v
            if not ok:
                state[i, j] = UNDECIDED
                # X for the fallback, exact: the units times a power of two
                s[i, j] = math.ldexp(np.float64(s[i, j]), a_low[i] + b_low[j] + q_ab)


@njit(cache=True, parallel=True)
def epilogue_pairs(pairs, x, x_exact, a_low, b_low, q_ab, a_g, b_g, a_pow2, b_pow2, a_nan,
                   b_nan, c, has_c, precision, min_exponent, max_exponent, out,
                   state):  # fmt: skip
    """``out = RNE_out(X / (G_a * G_b) + C)`` for the (i, j) rows of ``pairs``.

    Parameters
    ----------
    pairs : (P, 2) int64
    x : (M, N) float64
        ``X`` at those pairs: the exact-model sum ``S`` (exact, or rounded
        once to 53 bits where ``|X| >= 2**(53 + a_low[i] + b_low[j] + q_ab)``,
        below which every multiple of the output's product quantum is a
        float64), or an accumulating model's float32 accumulator (then
        ``x_exact``).
    x_exact : bool
        Every X is exact.
    a_g, b_g : float64
        The tensor scales, per row of A and per column of B; their product
        ``P`` is exact in float64 (24 + 24 bits, within range).
    a_pow2, b_pow2 : bool
        Whether each tensor scale is a power of two.
    a_nan, b_nan : bool
        Rows and columns with a NaN block scale: their outputs are NaN.
    c : (M, N) float32, read when has_c
    out : (M, N) float32 or float64
        Receives values of the output format (the caller's cast is exact).
    state : (M, N) uint8
        DONE, or UNDECIDED where the caller's exact fallback must round.
    """
    for t in prange(pairs.shape[0]):
        i, j = pairs[t, 0], pairs[t, 1]
        state[i, j] = DONE
        if a_nan[i] or b_nan[j]:
            out[i, j] = np.nan
            continue
        xv = x[i, j]
        cv = np.float64(c[i, j]) if has_c else 0.0
        p = a_g[i] * b_g[j]
        if not (math.isfinite(xv) and math.isfinite(cv)):
            out[i, j] = _special(xv, p, cv)
            continue
        exact = x_exact or abs(xv) < math.ldexp(1.0, 53 + a_low[i] + b_low[j] + q_ab)
        # X / P is exact from an exact X and a power-of-two P (or X = 0)
        q = xv / p + 0.0  # an exact zero is +0
        v, ok = _finish_quotient(q, exact and (xv == 0.0 or (a_pow2[i] and b_pow2[j])), cv,
                                 precision, min_exponent, max_exponent)  # fmt: skip
        out[i, j] = v
        if not ok:
            state[i, j] = UNDECIDED
