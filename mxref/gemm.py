"""Block dot products and GEMMs on MX operands, under explicit accumulation models.

``matmul(a, b)`` computes ``D = A @ B (+ C)``:

- ``a`` is M x K, blocked along K (its last axis);
- ``b`` is K x N blocked along K (axis 0), or N x K blocked along its last
  axis, in which case it is read as the transpose (``D = A @ B.T``), the
  layout MMA hardware consumes.

Both operands must use the same block size; their formats may differ (e.g.
mxfp8_e4m3 x mxfp4, as in ``kind::mxf8f6f4``).  Two NVFP4 operands (E4M3
block scales under float32 tensor scales) go to :mod:`mxref.nvfp4_gemm`;
NVFP4 does not mix with MX.  When K is not a multiple of
the block size the last block is shorter, which equals zero padding, exactly
as in the codec.

Spec: OCP MX v1.0 section 6.2 (Dot and DotGeneral).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from mxref.accum import AccumModel, AlignRounding, BlockFP32, Exact, FixedPoint, parse_accum
from mxref.array import MXArray
from mxref.dtypes import BFLOAT16
from mxref.formats import ElementFormat
from mxref.gemm_operands import Operands, operands
from mxref.kernels.gemm import (
    BLOCK_FP32,
    EXACT,
    FINITE,
    FIXED_POINT,
    element_integers,
    matmul_exact_kernel,
    matmul_exact_pairs,
)
from mxref.kernels.gemm_blas import (
    FLOAT32_EXACT_BOUND,
    MAX_QUANTUM_EXPONENT,
    add_block_fp32,
    finish_exact,
    fold_columns_with_stats,
    fold_with_stats,
    integer_rows,
    never_rounds,
)
from mxref.kernels.params import decode_params
from mxref.nvfp4_gemm import matmul_nv, nv_operands

#: out_dtype -> (precision, smallest quantum exponent, emax) of its binary format
_OUTPUT_FORMATS: dict[np.dtype, tuple[int, int, int]] = {
    np.dtype(np.float32): (24, -149, 127),
    np.dtype(np.float16): (11, -24, 15),
}
if BFLOAT16 is not None:
    _OUTPUT_FORMATS[BFLOAT16] = (8, -133, 127)

#: the largest block size whose integer block Dot is summed without overflow
MAX_BLOCK_SIZE = 4096


@cache
def _integers(fmt: ElementFormat) -> tuple[np.ndarray, np.ndarray]:
    return element_integers(*decode_params(fmt))


def _check_block_size(block_size: int) -> None:
    if block_size > MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be at most {MAX_BLOCK_SIZE}; got {block_size}")


def _check_c(c: Any, m: int, n: int) -> np.ndarray | None:
    if c is None:
        return None
    arr = np.asarray(c)
    if arr.shape != (m, n):
        raise ValueError(f"c must have shape ({m}, {n}) like D; got {arr.shape}")
    if arr.dtype != np.float32:
        raise TypeError(f"c must be float32 (the accumulator type); got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _kernel_pairs(
    rows: np.ndarray, cols: np.ndarray, extra: np.ndarray | None = None
) -> np.ndarray:
    """Every (i, j) whose row or column is marked, and ``extra``, as a (P, 2) int64 array."""
    parts = [] if extra is None else [extra]
    if rows.any() or cols.any():
        parts.append(np.argwhere(rows[:, None] | cols[None, :]).astype(np.int64))
    return np.concatenate(parts) if parts else np.empty((0, 2), np.int64)


@dataclass(eq=False)
class _Folded:
    """One operand folded by :func:`~mxref.kernels.gemm_blas.fold_with_stats`.

    ``values`` (float32) holds the foldable rows' integers, M x K for A and
    N x K for B (as :class:`Operands` holds them; for B possibly the
    transposed view of a K x N array); ``row_max`` and ``row_l1`` bound them
    (largest magnitude, sum of magnitudes) row by row.
    """

    values: np.ndarray
    special: np.ndarray
    low_exp: np.ndarray
    foldable: np.ndarray
    row_max: np.ndarray
    row_l1: np.ndarray
    int_max: np.ndarray

    def widen(self) -> None:
        """Make ``values`` float64 (exactly), letting the float32 array go."""
        self.values = self.values.astype(np.float64)

    def release(self) -> None:
        """Let ``values`` go once no path needs them: they are the biggest array held."""
        self.values = np.empty((0, 0), np.float32)


@cache
def _fold_tables(fmt: ElementFormat) -> tuple[np.ndarray, np.ndarray]:
    """Per code: |n| in float64, +Inf for NaN and Inf codes; and n in float32 (exact)."""
    n_table, cls_table = _integers(fmt)
    magnitudes = np.where(cls_table == FINITE, np.abs(n_table).astype(np.float64), np.inf)
    return magnitudes, n_table.astype(np.float32)


def _fold(codes: np.ndarray, scales: np.ndarray, fmt: ElementFormat, bs: int) -> _Folded:
    """Fold one operand of :class:`Operands`, in the layout its codes have."""
    magnitudes, values = _fold_tables(fmt)
    if codes.flags.c_contiguous:
        out = np.empty(codes.shape, np.float32)
        facts = fold_with_stats(codes, scales, magnitudes, values, bs, out)
        return _Folded(out, *facts)
    # B came K x N: fold it in that layout, and return the transposed view
    codes_kn = np.ascontiguousarray(codes.T)  # the view's base: no copy
    out = np.empty(codes_kn.shape, np.float32)
    facts = fold_columns_with_stats(
        codes_kn, np.ascontiguousarray(scales.T), magnitudes, values, bs, out
    )
    return _Folded(out.T, *facts)


def _top(values: np.ndarray, keep: np.ndarray) -> float:
    return float(values[keep].max(initial=0.0))


def _exact_blas(
    fa: _Folded,
    fb: _Folded,
    q_ab: int,
    c_arr: np.ndarray | None,
    out: np.ndarray,
    rows: np.ndarray | None = None,
    proven: bool = False,
) -> np.ndarray:
    """``out = RN(C + A @ B.T)`` through one BLAS product; return the rows left over.

    Only the rows of A in ``rows`` (all when None) are computed, and the
    returned mask covers those.  Columns that are not foldable are not
    computed: the caller leaves them to the exact kernel.  ``proven`` says the
    caller has shown every partial sum of the outputs it keeps to be below
    2**24, so the product is float32 and no row is left over.
    """
    a_c, a_low = c_arr, fa.low_exp
    a_l1, a_max, a_slow = fa.row_l1, fa.row_max, ~fa.foldable
    if rows is not None:
        a_low = a_low[rows]
        a_c = None if c_arr is None else c_arr[rows]
        a_l1, a_max, a_slow = a_l1[rows], a_max[rows], a_slow[rows]
    if not proven:
        b_keep = fb.foldable
        b_top, b_l1_top = _top(fb.row_max, b_keep), _top(fb.row_l1, b_keep)
        # every partial sum of output (i, j) is an integer of at most
        # sum_k |a_ik b_jk| <= min(l1(a_i) * max|b_j|, max|a_i| * l1(b_j))
        a_slow = a_slow | (np.minimum(a_l1 * b_top, a_max * b_l1_top) >= _F64_EXACT)
        a_keep = ~a_slow
        if min(_top(a_l1, a_keep) * b_top, _top(a_max, a_keep) * b_l1_top) >= _F32_EXACT:
            fa.widen()
            fb.widen()
    a_f = fa.values if rows is None else fa.values[rows]
    c_in = a_c if a_c is not None else np.zeros((1, 1), np.float32)
    target = out if rows is None else np.empty((len(rows), out.shape[1]), out.dtype)
    with np.errstate(all="ignore"):  # outputs left to others may overflow
        s = a_f @ fb.values.T  # BLAS reads either layout of B.T without a copy
    finish_exact(s, a_low, fb.low_exp, q_ab, c_in, a_c is not None, target)
    if rows is not None:
        out[rows] = target
    return a_slow


def _integers_of(codes: np.ndarray, fmt: ElementFormat, dtype: type) -> np.ndarray:
    """The element integers of ``codes`` in its own layout (C or the transpose of C)."""
    if not codes.flags.c_contiguous:
        return _integers_of(np.ascontiguousarray(codes.T), fmt, dtype).T
    values: np.ndarray = np.empty(codes.shape, dtype)
    integer_rows(codes, _integers(fmt)[0], values)
    return values


def _per_block_rows(
    ops: Operands,
    rows: np.ndarray,
    fa: _Folded,
    fb: _Folded,
    q_ab: int,
    c_arr: np.ndarray | None,
    flush: bool,
    out: np.ndarray,
) -> bool:
    """``block_fp32`` for the rows of A in ``rows``, one BLAS product per K block.

    Returns False, computing nothing, where the block sums may not be exact
    in float64; the caller then leaves those rows to the exact kernel.
    """
    m_rows, (_, n, k), bs = len(rows), ops.shape, ops.block_size
    a_skip = fa.special[rows]
    bound = bs * _top(fa.int_max[rows], ~a_skip) * _top(fb.int_max, ~fb.special)
    if bound >= _F64_EXACT:
        return False
    dtype = np.float32 if bound < _F32_EXACT else np.float64
    a_i = _integers_of(ops.a_codes[rows], ops.fmt_a, dtype)
    b_i = _integers_of(ops.b_codes.T, ops.fmt_b, dtype)  # K x N
    a_e = ops.a_scales[rows].astype(np.int64) - 127 + q_ab
    b_e = ops.b_scales.astype(np.int64) - 127
    a_pow = np.ldexp(1.0, a_e).T.copy()  # (nblocks, rows): exact powers of two
    b_pow = np.ldexp(1.0, b_e).T.copy()
    # a block's scaled values are float32 when its integer sums are (bound) and
    # every exponent keeps S * 2**e inside float32 (no overflow, quantum >= 2**-149)
    lowest = a_e.min(axis=0, initial=0) + b_e.min(axis=0, initial=0)
    highest = a_e.max(axis=0, initial=0) + b_e.max(axis=0, initial=0)
    f32_exact = (bound < _F32_EXACT) & (lowest >= -149) & (highest <= 127 - 24)
    acc = c_arr[rows] if c_arr is not None else np.zeros((m_rows, n), np.float32)
    # row tiles keep the accumulator tile and each block's product in cache
    tile = max(1, min(m_rows, (1 << 19) // max(n, 1)))
    for r0 in range(0, m_rows, tile):
        r1 = min(m_rows, r0 + tile)
        for b in range(a_pow.shape[0]):
            lo, hi = b * bs, min(k, (b + 1) * bs)
            s = a_i[r0:r1, lo:hi] @ b_i[lo:hi]
            add_block_fp32(acc[r0:r1], s, a_pow[b, r0:r1], b_pow[b], flush, bool(f32_exact[b]))
    acc[np.isnan(acc)] = np.nan  # one canonical quiet NaN, whatever C carried
    out[rows] = acc
    return True


def _block_fp32_blas(
    ops: Operands,
    model: BlockFP32,
    fa: _Folded,
    fb: _Folded,
    q_ab: int,
    c_arr: np.ndarray | None,
    out: np.ndarray,
) -> np.ndarray:
    """``block_fp32`` through BLAS; return the pairs left to the exact kernel.

    Where the accumulator provably never rounds (every partial sum a float32,
    :func:`~mxref.kernels.gemm_blas.never_rounds`), each of the model's adds is
    exact and its result is the exact sum, which :func:`_exact_blas` computes
    in one product.  Rows with other outputs take the per-block path, or,
    when they are few, leave just those outputs to the exact kernel.
    """
    m, n, _ = ops.shape
    flush = model.flush_subnormals
    lowest_quantum = -126 if flush else -149  # with flushing, no partial sum may be subnormal
    a_ok, b_ok = fa.foldable, fb.foldable
    a_q, b_q = fa.low_exp[a_ok] + q_ab, fb.low_exp[b_ok]
    a_kernel = fa.special.copy()
    extra = None
    if (
        c_arr is None
        and a_ok.all()
        and b_ok.all()
        and lowest_quantum <= a_q.min(initial=0) + b_q.min(initial=0)
        and a_q.max(initial=0) + b_q.max(initial=0) <= MAX_QUANTUM_EXPONENT
        and min(
            _top(fa.row_l1, a_ok) * _top(fb.row_max, b_ok),
            _top(fa.row_max, a_ok) * _top(fb.row_l1, b_ok),
        )
        < _F32_EXACT
    ):
        # the common case, decided without looking at each output
        _exact_blas(fa, fb, q_ab, c_arr, out, proven=True)
        return _kernel_pairs(a_kernel, fb.special)
    passed = np.empty((m, n), np.bool_)
    c_in = c_arr if c_arr is not None else np.zeros((1, 1), np.float32)
    misses = never_rounds(
        fa.row_l1, fa.row_max, fa.low_exp, a_ok, fa.special,
        fb.row_l1, fb.row_max, fb.low_exp, b_ok, fb.special,
        q_ab, lowest_quantum, c_in, c_arr is not None, passed,
    )  # fmt: skip
    dirty = misses > 0
    if misses.sum() <= _KERNEL_SHARE * n * np.count_nonzero(dirty):
        # few outputs per row: the exact kernel takes them, the product the rest
        special = fa.special[:, None] | fb.special[None, :]
        extra = np.argwhere(~passed & ~special).astype(np.int64)
        dirty[:] = False
    del passed
    shortcut = np.flatnonzero(~dirty & ~fa.special)
    if shortcut.size:
        rows_or_all = None if shortcut.size == m else shortcut
        _exact_blas(fa, fb, q_ab, c_arr, out, rows_or_all, proven=True)
    fa.release()
    fb.release()
    rows = np.flatnonzero(dirty)
    if rows.size and not _per_block_rows(ops, rows, fa, fb, q_ab, c_arr, flush, out):
        a_kernel[rows] = True
    return _kernel_pairs(a_kernel, fb.special, extra)


def _blas_paths(
    ops: Operands,
    model: Exact | BlockFP32,
    q_ab: int,
    c_arr: np.ndarray | None,
    out: np.ndarray,
) -> np.ndarray:
    """Fill ``out`` through BLAS where that is exact; return the pairs left over.

    See :mod:`mxref.kernels.gemm_blas` for why each path is exact.
    """
    bs = ops.block_size
    fa = _fold(ops.a_codes, ops.a_scales, ops.fmt_a, bs)
    fb = _fold(ops.b_codes, ops.b_scales, ops.fmt_b, bs)
    if isinstance(model, Exact):
        a_slow = _exact_blas(fa, fb, q_ab, c_arr, out)
        return _kernel_pairs(a_slow, ~fb.foldable)
    return _block_fp32_blas(ops, model, fa, fb, q_ab, c_arr, out)


_BLAS_MIN_WORK = 1 << 18  # multiply-adds below which the exact kernel is faster
_F32_EXACT = FLOAT32_EXACT_BOUND  # margins cover the float rounding of the bounds
_F64_EXACT = float(2**53) * (1 - 2.0**-20)
# the share of a row's outputs below which the exact kernel beats the per-block path
_KERNEL_SHARE = 1 / 32


def matmul(
    a: MXArray,
    b: MXArray,
    *,
    accum: str | AccumModel = "exact",
    out_dtype: Any = np.float32,
    c: np.ndarray | None = None,
) -> np.ndarray:
    """Multiply two MX (or two NVFP4) operands: ``D = A @ B (+ C)`` under an accumulation model.

    Parameters
    ----------
    a : MXArray
        M x K, blocked along K (axis 1).  MX, or NVFP4 with ``b`` NVFP4 too;
        an NVFP4 operand's tensor scales enter as ``docs/gemm.md`` ("NVFP4
        operands") says: exactly, once, after the block-scaled sum.
    b : MXArray
        K x N blocked along axis 0, or N x K blocked along axis 1 (then
        ``D = A @ B.T``, the layout MMA hardware reads).
    accum : str or model
        ``"exact"``, ``"block_fp32"``, ``"fixed_point:W:G"``,
        ``"fixed_point:W:G:rne"``, a profile name, or a model from
        :mod:`mxref.accum`; see ``docs/gemm.md``.
    out_dtype : float32 (default), float16 or bfloat16
        ``exact`` rounds once to it; the accumulating models keep a float32
        accumulator and round it once to ``out_dtype`` at the end.
    c : (M, N) float32, optional
        Added exactly (``exact``) or as the accumulator's start value; on
        NVFP4 operands, in the exact epilogue after the accumulator.

    Returns
    -------
    np.ndarray
        (M, N) of ``out_dtype``.  A NaN scale, a NaN element or Inf * 0 makes
        NaN exactly in the outputs it reaches; NaN outputs are the canonical
        quiet NaN (sign clear).

    Spec: OCP MX v1.0 section 6.2.
    """
    model = parse_accum(accum)
    try:
        out_fmt = np.dtype(out_dtype)
        precision, min_exponent, max_exponent = _OUTPUT_FORMATS[out_fmt]
    except (TypeError, KeyError):
        raise ValueError(
            f"out_dtype must be float32, float16 or bfloat16; got {out_dtype!r}"
        ) from None
    if any(isinstance(op, MXArray) and op.fmt.two_level for op in (a, b)):
        nv = nv_operands(a, b)
        _check_block_size(nv.block_size)
        c_arr = _check_c(c, *nv.shape[:2])
        return matmul_nv(nv, model, out_fmt, (precision, min_exponent, max_exponent), c_arr)
    ops = operands(a, b)
    _check_block_size(ops.block_size)
    m, n, _ = ops.shape
    c_arr = _check_c(c, m, n)
    q_ab = (ops.fmt_a.emin - ops.fmt_a.mbits) + (ops.fmt_b.emin - ops.fmt_b.mbits)
    if isinstance(model, FixedPoint):
        code, width, group = FIXED_POINT, model.width, model.group
        rne = model.rounding is AlignRounding.RNE
    else:
        code = EXACT if isinstance(model, Exact) else BLOCK_FP32
        width, group, rne = 0, 1, False
    # every value stored is one of the output format's, exact in float32, except
    # the exact BLAS path's rounded-to-odd values, which a float16 or bfloat16
    # output must receive in float64 to be rounded only once
    store = np.float64 if code == EXACT and out_fmt != np.float32 else np.float32
    out = np.empty((m, n), store)
    # BLAS pays off on real shapes; tiny products go straight to the exact kernel
    big = m * n * ops.shape[2] >= _BLAS_MIN_WORK
    if out.size and big and isinstance(model, Exact | BlockFP32) and precision > 8:
        # BLAS paths: exact wherever their bound holds; the rest below
        slow = _blas_paths(ops, model, q_ab, c_arr, out)
    else:
        slow = None
    if (slow is None and out.size) or (slow is not None and slow.size):
        na, sa = _integers(ops.fmt_a)
        nb, sb = _integers(ops.fmt_b)
        flush = bool(getattr(model, "flush_subnormals", False))
        b_codes, b_scales = np.ascontiguousarray(ops.b_codes), np.ascontiguousarray(ops.b_scales)
        args = (
            na[ops.a_codes], sa[ops.a_codes], ops.a_scales,
            nb[b_codes], sb[b_codes], b_scales,
            q_ab, ops.block_size, code, width, group, rne, flush,
            c_arr if c_arr is not None else np.zeros((1, 1), np.float32), c_arr is not None,
            precision, min_exponent, max_exponent, out,
        )  # fmt: skip
        if slow is None:
            matmul_exact_kernel(*args)
        else:
            matmul_exact_pairs(slow, *args)
    # every path stored NaN as the one canonical quiet NaN, whatever the inputs
    # carried.  This cast is the single rounding still due, if any: a float32
    # accumulator to a narrower out_dtype, or the exact BLAS path's
    # rounded-to-odd float64 values; beyond out_dtype's range it gives Inf
    with np.errstate(over="ignore"):
        return out.astype(out_fmt, copy=False)


def dot(
    a_block: MXArray,
    b_block: MXArray,
    *,
    accum: str | AccumModel = "exact",
    out_dtype: Any = np.float32,
) -> Any:
    """The Dot of two 1-D MX vectors (one or more blocks), as a scalar.

    ``dot(a, b)`` is ``matmul`` of the 1 x K row ``a`` and the K x 1 column
    ``b`` (two MX vectors, or two NVFP4 ones with their tensor scales); with
    one block each it is the spec's ``Dot(A, B) = X_A X_B sum P^A P^B``
    rounded as the model says.

    Spec: OCP MX v1.0 section 6.2.
    """
    for name, v in (("a_block", a_block), ("b_block", b_block)):
        if not isinstance(v, MXArray) or v.ndim != 1:
            raise ValueError(f"{name} must be a 1-D MXArray")
    row = MXArray(
        codes=a_block.codes[None, :], scales=a_block.scales[None, :], fmt=a_block.fmt,
        axis=1, block_size=a_block.block_size, tensor_scale=a_block.tensor_scale,
    )  # fmt: skip
    col = MXArray(
        codes=b_block.codes[None, :], scales=b_block.scales[None, :], fmt=b_block.fmt,
        axis=1, block_size=b_block.block_size, tensor_scale=b_block.tensor_scale,
    )  # fmt: skip
    return matmul(row, col, accum=accum, out_dtype=out_dtype)[0, 0]
