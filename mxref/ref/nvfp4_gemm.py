"""Oracle: GEMMs on NVFP4 operands, exactly, with both tensor scales.

The normative definition of :func:`mxref.matmul` on NVFP4; the prose is
``docs/gemm.md`` ("NVFP4 operands: where the tensor scales enter").  Python
integers and :class:`~fractions.Fraction` only, reusing the MX oracle's
extended arithmetic and models (:mod:`mxref.ref.gemm`).

Definitions (normative)
-----------------------
Both operands are NVFP4: E2M1 codes ``P``, E4M3 block-scale bytes ``s``
(decoded exactly; byte 0x7F is NaN, 0x00 a zero scale) and float32 encode
scales ``G``, one per row of A (``G_a[i]``) and per column of B
(``G_b[j]``), equal throughout for a per-tensor scale.  Lane ``k`` of block
``b`` contributes, as a block-scaled MMA forms it::

    q_k = (P_a[i,k] * s_a[i,b]) * (P_b[j,k] * s_b[j,b])

NaN for every lane of a block pair where either scale is NaN.  With
``P = G_a[i] * G_b[j]`` (exact) and C read exactly (absent: +0):

- Exact: ``D = RNE_out(C + (sum_k q_k) / P)``: one exact extended sum, one
  rounding.  It equals the exact dot product of the exactly decoded
  elements ``code * s / G``.
- BlockFP32, FixedPoint: the MX model's float32 accumulator over the q_k
  (:func:`mxref.ref.gemm.fp32_add` per block or per group), started at +0,
  not at C; then ``D = RNE_out(acc / P + C)``, exact and rounded once.

An exact zero is +0; NaN results are the canonical quiet NaN.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from mxref.accum import AccumModel, BlockFP32, Exact, FixedPoint, parse_accum
from mxref.nvfp4_gemm import NVOperands, nv_operands  # the operand layout only
from mxref.ref.element import BINARY32, Value, decode_element, encode_float
from mxref.ref.gemm import (
    ZERO,
    ExtValue,
    _check_c,
    _output_format,
    ext_from_value,
    ext_sum,
    ext_to_value,
    fp32_add,
    group_value,
    scaled_product,
)
from mxref.ref.nvfp4 import E2M1, decode_block_scale

if TYPE_CHECKING:
    from mxref.array import MXArray


def lane_products(ops: NVOperands, i: int, j: int) -> list[ExtValue]:
    """The K products ``q_k = (P_a * s_a) * (P_b * s_b)`` of output ``(i, j)``.

    A NaN scale on either side makes every q_k of its block NaN (elements of
    a NaN block are zero codes, and the block is NaN all the same).
    """
    table = [decode_element(code, E2M1) for code in range(E2M1.code_count)]
    bs = ops.block_size
    out: list[ExtValue] = []
    for k in range(ops.a_codes.shape[1]):
        b = k // bs
        s_a = decode_block_scale(int(ops.a_scales[i, b]))
        s_b = decode_block_scale(int(ops.b_scales[j, b]))
        # scaled_product multiplies s_a * s_b * P_a * P_b: the same exact value
        out.append(scaled_product(s_a, s_b, table[int(ops.a_codes[i, k])],
                                  table[int(ops.b_codes[j, k])]))  # fmt: skip
    return out


def tensor_scale_product(ops: NVOperands, i: int, j: int) -> Fraction:
    """``P = G_a[i] * G_b[j]``, exactly."""
    return Fraction(float(ops.g_a[i])) * Fraction(float(ops.g_b[j]))


def accumulate(qs: list[ExtValue], block_size: int, model: BlockFP32 | FixedPoint) -> Value:
    """The model's float32 accumulator over the lane products, started at +0.

    BlockFP32 adds each block's exact sum (:func:`fp32_add`); FixedPoint each
    group's :func:`~mxref.ref.gemm.group_value` (groups of ``model.group``
    lanes, spanning blocks), exactly as for MX operands.
    """
    acc: Value = (0, ZERO)
    flush = model.flush_subnormals
    if isinstance(model, BlockFP32):
        for start in range(0, len(qs), block_size):
            acc = fp32_add(acc, ext_sum(qs[start : start + block_size]), flush)
        return acc
    for start in range(0, len(qs), model.group):
        value = group_value(qs[start : start + model.group], model.width, model.rounding)
        acc = fp32_add(acc, value, flush)
    return acc


def _divide(v: ExtValue, p: Fraction) -> ExtValue:
    """``v / p`` for ``p > 0``: NaN and the Infs stay, a finite value is divided exactly."""
    return v / p if isinstance(v, Fraction) else v


def nv_dot_element(ops: NVOperands, i: int, j: int, model: AccumModel,
                   c: Value | None = None) -> ExtValue:  # fmt: skip
    """Output ``(i, j)`` before the output rounding: the exact extended value to round.

    Parameters
    ----------
    ops : mxref.nvfp4_gemm.NVOperands
    i, j : int
    model : Exact, BlockFP32 or FixedPoint
    c : (sign, magnitude), optional
        C[i, j] (float32, read exactly); absent means +0.

    Returns
    -------
    ExtValue
        Exact: ``C + S / P``; the others: ``acc / P + C`` (IEEE rules for
        NaN and Inf, Inf + -Inf being NaN).  An exact zero is +0.
    """
    c_ext = ext_from_value(c) if c is not None else ZERO
    p = tensor_scale_product(ops, i, j)
    qs = lane_products(ops, i, j)
    if isinstance(model, Exact):
        return ext_sum([c_ext, _divide(ext_sum(qs), p)])
    if isinstance(model, BlockFP32 | FixedPoint):
        acc = accumulate(qs, ops.block_size, model)
        return ext_sum([_divide(ext_from_value(acc), p), c_ext])
    raise TypeError(f"model must be Exact, BlockFP32 or FixedPoint; got {model!r}")


def matmul_operands(ops: NVOperands, model: AccumModel, out_dtype: Any = np.float32,
                    c: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """``D = A @ B (+ C)`` on K-major NVFP4 operands, exactly under ``model``.

    Returns
    -------
    np.ndarray of out_dtype, shape (M, N)
        Bit patterns from :func:`mxref.ref.element.encode_float`.
    """
    if not isinstance(model, Exact | BlockFP32 | FixedPoint):
        raise TypeError(f"model must be Exact, BlockFP32 or FixedPoint; got {model!r}")
    dt, out_fmt, bits_dtype = _output_format(out_dtype)
    m, n, _ = ops.shape
    c_arr = _check_c(c, m, n)
    c_bits = None if c_arr is None else c_arr.view(np.uint32)
    bits = np.zeros((m, n), dtype=bits_dtype)
    for i in range(m):
        for j in range(n):
            c_value = None if c_bits is None else decode_element(int(c_bits[i, j]), BINARY32)
            value = nv_dot_element(ops, i, j, model, c_value)
            bits[i, j] = encode_float(ext_to_value(value), out_fmt)
    return bits.view(dt)


def matmul(a: MXArray, b: MXArray, accum: str | AccumModel = "exact",
           out_dtype: Any = np.float32, c: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """``D = A @ B (+ C)`` on two NVFP4 arrays, exactly under an accumulation model.

    Layouts as :func:`mxref.ref.gemm.matmul`: ``a`` M x K blocked along K,
    ``b`` K x N blocked along axis 0 or N x K blocked along axis 1.
    """
    return matmul_operands(nv_operands(a, b), parse_accum(accum), out_dtype, c)
