"""Block dot products and GEMMs on MX operands, under explicit accumulation models.

``matmul(a, b)`` computes ``D = A @ B (+ C)``:

- ``a`` is M x K, blocked along K (its last axis);
- ``b`` is K x N blocked along K (axis 0), or N x K blocked along its last
  axis, in which case it is read as the transpose (``D = A @ B.T``), the
  layout MMA hardware consumes.

Both operands must use the same block size; their formats may differ (e.g.
mxfp8_e4m3 x mxfp4, as in ``kind::mxf8f6f4``).  When K is not a multiple of
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
from mxref.kernels.gemm import (
    BLOCK_FP32,
    EXACT,
    FIXED_POINT,
    element_integers,
    matmul_exact_kernel,
    matmul_exact_pairs,
)
from mxref.kernels.gemm_blas import add_block_fp32, finish_exact, fold_rows
from mxref.kernels.params import decode_params


@dataclass(frozen=True, eq=False)
class Operands:
    """Both operands in one K-major layout: rows of A and columns of B as rows.

    Attributes
    ----------
    a_codes : (M, K) uint8
    a_scales : (M, nblocks) uint8
    b_codes : (N, K) uint8   (column j of B as row j)
    b_scales : (N, nblocks) uint8
    fmt_a, fmt_b : ElementFormat
    block_size : int
    """

    a_codes: np.ndarray
    a_scales: np.ndarray
    b_codes: np.ndarray
    b_scales: np.ndarray
    fmt_a: ElementFormat
    fmt_b: ElementFormat
    block_size: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """(M, N, K)."""
        return self.a_codes.shape[0], self.b_codes.shape[0], self.a_codes.shape[1]


def operands(a: MXArray, b: MXArray) -> Operands:
    """Check two MX operands and bring them to the K-major layout.

    Raises
    ------
    TypeError, ValueError
        Naming the operand and what does not match.

    Spec: OCP MX v1.0 section 6.2 (equal k and equal block counts on both sides).
    """
    for name, op in (("a", a), ("b", b)):
        if not isinstance(op, MXArray):
            raise TypeError(f"{name} must be an MXArray; got {type(op).__name__}")
        if op.ndim != 2:
            raise ValueError(f"{name} must be 2-D; got shape {op.shape}")
    if a.axis != 1:
        raise ValueError("a must be M x K blocked along K (its last axis); got axis 0")
    if a.block_size != b.block_size:
        raise ValueError(f"a and b must share a block size; got {a.block_size} and {b.block_size}")
    if b.axis == 0:
        b_codes, b_scales = b.codes.T, b.scales.T
    else:
        b_codes, b_scales = b.codes, b.scales
    k_a, k_b = a.shape[1], b_codes.shape[1]
    if k_a != k_b:
        layout = "K x N (axis 0)" if b.axis == 0 else "N x K (axis 1)"
        raise ValueError(f"a has K = {k_a} but b, read as {layout}, has K = {k_b}")
    return Operands(
        a_codes=np.ascontiguousarray(a.codes),
        a_scales=np.ascontiguousarray(a.scales),
        b_codes=np.ascontiguousarray(b_codes),
        b_scales=np.ascontiguousarray(b_scales),
        fmt_a=a.fmt,
        fmt_b=b.fmt,
        block_size=a.block_size,
    )


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


def _check_c(c: Any, m: int, n: int) -> np.ndarray | None:
    if c is None:
        return None
    arr = np.asarray(c)
    if arr.shape != (m, n):
        raise ValueError(f"c must have shape ({m}, {n}) like D; got {arr.shape}")
    if arr.dtype != np.float32:
        raise TypeError(f"c must be float32 (the accumulator type); got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _slow_pairs(rows: np.ndarray, cols: np.ndarray, m: int, n: int) -> np.ndarray:
    """Every (i, j) whose row or column is marked, as an (P, 2) int64 array."""
    mask = rows[:, None] | cols[None, :]
    return np.argwhere(mask).astype(np.int64)


def _blas_paths(
    ops: Operands,
    model: Exact | BlockFP32,
    na: np.ndarray,
    sa: np.ndarray,
    nb: np.ndarray,
    sb: np.ndarray,
    q_ab: int,
    c_arr: np.ndarray | None,
    out: np.ndarray,
) -> np.ndarray:
    """Fill ``out`` through BLAS where that is exact; return the pairs left over.

    See :mod:`mxref.kernels.gemm_blas` for why each path is exact.
    """
    m, n, k = ops.shape
    bs = ops.block_size
    has_c = c_arr is not None
    c_in = c_arr if has_c else np.zeros((1, 1), np.float32)
    if isinstance(model, Exact):
        a_f = np.empty((m, k), np.float64)
        b_f = np.empty((n, k), np.float64)
        a_max, a_exp, a_slow = fold_rows(ops.a_codes, ops.a_scales, na, sa, bs, True, a_f)
        b_max, b_exp, b_slow = fold_rows(ops.b_codes, ops.b_scales, nb, sb, bs, True, b_f)
        b_top = float(b_max[~b_slow].max(initial=0.0))
        # every partial sum is an integer of at most K * max|a| * max|b|
        a_slow |= k * a_max * b_top >= _F64_EXACT
        a_top = float(a_max[~a_slow].max(initial=0.0))
        if k * a_top * b_top < _F32_EXACT:
            a_f, b_f = a_f.astype(np.float32), b_f.astype(np.float32)
        finish_exact(a_f @ b_f.T, a_exp, b_exp, q_ab, c_in, has_c, out)
        return _slow_pairs(a_slow, b_slow, m, n)
    a_i = np.empty((m, k), np.float64)
    b_i = np.empty((n, k), np.float64)
    a_max, _, a_slow = fold_rows(ops.a_codes, ops.a_scales, na, sa, bs, False, a_i)
    b_max, _, b_slow = fold_rows(ops.b_codes, ops.b_scales, nb, sb, bs, False, b_i)
    bound = bs * float(a_max.max(initial=0.0)) * float(b_max.max(initial=0.0))
    if bound >= _F64_EXACT:
        return _slow_pairs(np.ones(m, bool), np.ones(n, bool), m, n)
    if bound < _F32_EXACT:
        a_i, b_i = a_i.astype(np.float32), b_i.astype(np.float32)
    a_e = ops.a_scales.astype(np.int64) - 127 + q_ab
    b_e = ops.b_scales.astype(np.int64) - 127
    a_pow = np.ldexp(1.0, a_e).T.copy()  # (nblocks, M): exact powers of two
    b_pow = np.ldexp(1.0, b_e).T.copy()
    # a block's scaled values are float32 when its integer sums are (bound) and
    # every exponent keeps S * 2**e inside float32 (no overflow, quantum >= 2**-149)
    lowest = a_e.min(axis=0, initial=0) + b_e.min(axis=0, initial=0)
    highest = a_e.max(axis=0, initial=0) + b_e.max(axis=0, initial=0)
    f32_exact = (bound < _F32_EXACT) & (lowest >= -149) & (highest <= 127 - 24)
    acc = c_arr.copy() if c_arr is not None else np.zeros((m, n), np.float32)
    flush = model.flush_subnormals
    # row tiles keep the accumulator tile and each block's product in cache
    tile = max(1, min(m, (1 << 19) // max(n, 1)))
    for r0 in range(0, m, tile):
        r1 = min(m, r0 + tile)
        for b in range(ops.a_scales.shape[1]):
            lo, hi = b * bs, min(k, (b + 1) * bs)
            s = a_i[r0:r1, lo:hi] @ b_i[:, lo:hi].T
            add_block_fp32(acc[r0:r1], s, a_pow[b, r0:r1], b_pow[b], flush, bool(f32_exact[b]))
    out[...] = acc
    return _slow_pairs(a_slow, b_slow, m, n)


_BLAS_MIN_WORK = 1 << 18  # multiply-adds below which the exact kernel is faster
_F32_EXACT = float(2**24) * (1 - 2.0**-20)  # margins cover the float rounding of the bound
_F64_EXACT = float(2**53) * (1 - 2.0**-20)


def matmul(
    a: MXArray,
    b: MXArray,
    *,
    accum: str | AccumModel = "exact",
    out_dtype: Any = np.float32,
    c: np.ndarray | None = None,
) -> np.ndarray:
    """Multiply two MX operands: ``D = A @ B (+ C)`` under an accumulation model.

    Parameters
    ----------
    a : MXArray
        M x K, blocked along K (axis 1).
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
        Added exactly (``exact``) or as the accumulator's start value.

    Returns
    -------
    np.ndarray
        (M, N) of ``out_dtype``.  A NaN scale, a NaN element or Inf * 0 makes
        NaN exactly in the outputs it reaches; NaN outputs are the canonical
        quiet NaN (sign clear).

    Spec: OCP MX v1.0 section 6.2.
    """
    model = parse_accum(accum)
    ops = operands(a, b)
    try:
        out_fmt = np.dtype(out_dtype)
        precision, min_exponent, max_exponent = _OUTPUT_FORMATS[out_fmt]
    except (TypeError, KeyError):
        raise ValueError(
            f"out_dtype must be float32, float16 or bfloat16; got {out_dtype!r}"
        ) from None
    if ops.block_size > MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be at most {MAX_BLOCK_SIZE}; got {ops.block_size}")
    m, n, _ = ops.shape
    c_arr = _check_c(c, m, n)
    na, sa = _integers(ops.fmt_a)
    nb, sb = _integers(ops.fmt_b)
    q_ab = (ops.fmt_a.emin - ops.fmt_a.mbits) + (ops.fmt_b.emin - ops.fmt_b.mbits)
    out = np.empty((m, n), np.float64)
    # BLAS pays off on real shapes; tiny products go straight to the exact kernel
    big = m * n * ops.shape[2] >= _BLAS_MIN_WORK
    if out.size and big and isinstance(model, Exact | BlockFP32) and precision > 8:
        # BLAS paths: exact wherever their bound holds; the rest below
        slow = _blas_paths(ops, model, na, sa, nb, sb, q_ab, c_arr, out)
    else:
        slow = None
    if isinstance(model, FixedPoint):
        code, width, group = FIXED_POINT, model.width, model.group
        rne = model.rounding is AlignRounding.RNE
    else:
        code = EXACT if isinstance(model, Exact) else BLOCK_FP32
        width, group, rne = 0, 1, False
    flush = bool(getattr(model, "flush_subnormals", False))
    args = (
        na[ops.a_codes], sa[ops.a_codes], ops.a_scales,
        nb[ops.b_codes], sb[ops.b_codes], ops.b_scales,
        q_ab, ops.block_size, code, width, group, rne, flush,
        c_arr if c_arr is not None else np.zeros((1, 1), np.float32), c_arr is not None,
        precision, min_exponent, max_exponent, out,
    )  # fmt: skip
    if slow is None and out.size:
        matmul_exact_kernel(*args)
    elif slow is not None and slow.size:
        matmul_exact_pairs(slow, *args)
    out[np.isnan(out)] = np.nan  # one canonical quiet NaN, whatever the inputs carried
    with np.errstate(over="ignore"):  # values are already representable: no rounding here
        return out.astype(np.float32).astype(out_fmt) if code != EXACT else out.astype(out_fmt)


def dot(
    a_block: MXArray,
    b_block: MXArray,
    *,
    accum: str | AccumModel = "exact",
    out_dtype: Any = np.float32,
) -> Any:
    """The Dot of two 1-D MX vectors (one or more blocks), as a scalar.

    ``dot(a, b)`` is ``matmul`` of the 1 x K row ``a`` and the K x 1 column
    ``b``; with one block each it is the spec's ``Dot(A, B) = X_A X_B sum P^A P^B``
    rounded as the model says.

    Spec: OCP MX v1.0 section 6.2.
    """
    for name, v in (("a_block", a_block), ("b_block", b_block)):
        if not isinstance(v, MXArray) or v.ndim != 1:
            raise ValueError(f"{name} must be a 1-D MXArray")
    row = MXArray(
        codes=a_block.codes[None, :], scales=a_block.scales[None, :], fmt=a_block.fmt,
        axis=1, block_size=a_block.block_size,
    )  # fmt: skip
    col = MXArray(
        codes=b_block.codes[None, :], scales=b_block.scales[None, :], fmt=b_block.fmt,
        axis=1, block_size=b_block.block_size,
    )  # fmt: skip
    return matmul(row, col, accum=accum, out_dtype=out_dtype)[0, 0]
