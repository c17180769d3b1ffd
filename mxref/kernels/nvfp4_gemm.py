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
        The smallest ``E`` among blocks with a nonzero ``n * M`` (0 if none):
        every product of the row is a multiple of ``2**low_exp`` times the
        element quantum.
    """
    rows, k_len = codes.shape
    nblk = scales.shape[1]
    nan_row = np.zeros(rows, np.bool_)
    low_exp = np.zeros(rows, np.int64)
    for i in prange(rows):
        lowest = np.int64(1 << 20)
        for b in range(nblk):
            byte = scales[i, b]
            mult = s_mult[byte]
            nonzero = False
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                v = n_table[codes[i, k]] * mult
                out_n[i, k] = v
                nonzero = nonzero or v != 0
            if s_nan[byte]:
                nan_row[i] = True
                out_bytes[i, b] = 255
            else:
                out_bytes[i, b] = 127 + s_exp[byte]
                if nonzero:
                    lowest = min(lowest, s_exp[byte])
        low_exp[i] = lowest if lowest != 1 << 20 else 0
    return nan_row, low_exp


@njit(cache=True, parallel=True)
def fold_values(codes, scales, n_table, s_mult, s_exp, s_nan, block_size, out):
    """``out = n * M * 2**(E - low_exp[row])``: integers, exact in float32 and float64.

    The shift ``E - low_exp`` is at most the E4M3 exponent range (14), so an
    entry is at most 180 * 2**14, with at most 8 significant bits.  Rows with
    a NaN scale get zeros (the caller fills their outputs with NaN).

    Returns
    -------
    nan_row, low_exp : as :func:`fold_integers`
    row_max, row_l1 : (rows,) float64
        The largest magnitude and the sum of magnitudes of the row's entries
        (exact: at most K * 2**22 < 2**53 for any K below 2**31).
    """
    rows, k_len = codes.shape
    nblk = scales.shape[1]
    nan_row = np.zeros(rows, np.bool_)
    low_exp = np.zeros(rows, np.int64)
    row_max = np.zeros(rows, np.float64)
    row_l1 = np.zeros(rows, np.float64)
    for i in prange(rows):
        lowest = np.int64(1 << 20)
        is_nan = False
        for b in range(nblk):
            byte = scales[i, b]
            if s_nan[byte]:
                is_nan = True
                continue
            mult = s_mult[byte]
            for k in range(b * block_size, min(k_len, (b + 1) * block_size)):
                if n_table[codes[i, k]] * mult != 0:
                    lowest = min(lowest, s_exp[byte])
                    break
        if lowest == 1 << 20:
            lowest = 0
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
def take_blas(s, a_low, b_low, q_ab, a_l1, a_max, b_l1, b_max, a_nan, b_nan, limit, x, rest):
    """Keep the BLAS sums proven exact, as values; mark the others for the exact kernel.

    ``s[i, j]`` is the BLAS product of the folded rows, in units of
    ``2**(a_low[i] + b_low[j] + q_ab)``.  Every partial sum of it is a whole
    number of units of magnitude at most ``U = sum_k |a_ik b_jk|``, itself at
    most ``a_l1[i] * b_max[j]`` and ``a_max[i] * b_l1[j]``; where that is
    below ``limit`` (2**53 for float64 sums, 2**24 for float32 ones or for a
    float32 accumulator that must never round), BLAS summed exactly in any
    order, and ``x[i, j]`` gets the value ``S`` itself.  Elsewhere ``rest``
    is set (not for rows or columns with a NaN scale, which are NaN anyway).
    """
    m, n = x.shape
    for i in prange(m):
        for j in range(n):
            units = min(a_l1[i] * b_max[j], a_max[i] * b_l1[j])
            if units < limit:
                x[i, j] = math.ldexp(np.float64(s[i, j]) + 0.0, a_low[i] + b_low[j] + q_ab)
                rest[i, j] = False
            else:
                rest[i, j] = not (a_nan[i] or b_nan[j])


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


@njit(cache=True, inline="always")
def _same_bits(x, y):
    return np.float64(x).view(np.int64) == np.float64(y).view(np.int64)


@njit(cache=True, parallel=True)
def epilogue(x, x_exact, a_g, b_g, a_pow2, b_pow2, a_nan, b_nan, a_low, b_low, q_ab, c, has_c,
             precision, min_exponent, max_exponent, out, undecided):  # fmt: skip
    """``out = RNE_out(X / (G_a * G_b) + C)``, rounded once; mark what float64 cannot decide.

    Parameters
    ----------
    x : (M, N) float64
        ``X``: the exact-model sum ``S`` (exact, or rounded once to 53 bits
        where ``|X| >= 2**(53 + a_low[i] + b_low[j] + q_ab)``, below which
        every multiple of the output's product quantum is a float64), or an
        accumulating model's float32 accumulator (then ``x_exact``).
    x_exact : bool
        Every X is exact.
    a_g, b_g : float64
        The tensor scales, per row of A and per column of B.
    a_pow2, b_pow2 : bool
        Whether each tensor scale is a power of two.
    a_nan, b_nan : bool
        Rows and columns with a NaN block scale: their outputs are NaN.
    c : (M, N) float32, read when has_c
    out : (M, N) float64
        Receives values of the output format (the caller's cast is exact).
    undecided : (M, N) bool
        Set where ``out`` is left to the caller's exact fallback.

    Notes
    -----
    ``P = G_a * G_b`` is exact in float64 (24 + 24 bits, within range).
    When X is exact and P a power of two (or X is 0), ``X / P`` is exact, and
    TwoSum with round-to-odd makes ``X / P + C`` one correct rounding.
    Otherwise ``y = fl(fl(X / P) + C)`` is within ``(|X / P| + |C|) * 2**-51``
    of the exact value (three roundings of 2**-53 at most); ``err`` is four
    times that, and covers the rounding of ``y -+ err`` themselves.  Where
    both round to the same bits, so does the exact value, which lies
    between them; otherwise the output is undecided.
    """
    m, n = x.shape
    for i in prange(m):
        for j in range(n):
            undecided[i, j] = False
            if a_nan[i] or b_nan[j]:
                out[i, j] = np.nan
                continue
            xv = x[i, j]
            cv = np.float64(c[i, j]) if has_c else 0.0
            p = a_g[i] * b_g[j]
            if not (math.isfinite(xv) and math.isfinite(cv)):
                v = xv / p + cv  # IEEE: NaN stays, Inf + -Inf is NaN
                out[i, j] = v if v == v else np.nan
                continue
            exact = x_exact or abs(xv) < math.ldexp(1.0, 53 + a_low[i] + b_low[j] + q_ab)
            if exact and (xv == 0.0 or (a_pow2[i] and b_pow2[j])):
                q = xv / p + 0.0  # exact; an exact zero is +0
                y = q + cv  # +0 + -0 is +0: an exact zero sum is +0
                z = y - q
                e = (q - (y - z)) + (cv - z)  # TwoSum: y + e == q + cv
                out[i, j] = round_to_format(round_to_odd(y, e), precision, min_exponent,
                                            max_exponent)  # fmt: skip
                continue
            q = xv / p
            y = q + cv
            err = (abs(q) + abs(cv)) * 2.0**-49
            lo = round_to_format(y - err, precision, min_exponent, max_exponent)
            hi = round_to_format(y + err, precision, min_exponent, max_exponent)
            if _same_bits(lo, hi):
                out[i, j] = lo
            else:
                out[i, j] = 0.0
                undecided[i, j] = True
