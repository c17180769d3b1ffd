"""Two GEMM operands checked and brought to one K-major layout.

:mod:`mxref.gemm` (MX operands) and :mod:`mxref.nvfp4_gemm` (NVFP4 operands)
both start here, as does the oracle (:mod:`mxref.ref.gemm`), which reads
the same container.

Spec: OCP MX v1.0 section 6.2 (Dot and DotGeneral need equal k and equal
block counts on both sides).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mxref.array import MXArray
from mxref.formats import ElementFormat


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

    The A arrays are C-contiguous.  The B arrays are too when B came N x K;
    when it came K x N they are transposed views of C-contiguous K x N
    arrays, which the BLAS paths read in that layout without a copy.
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
        b_codes = np.ascontiguousarray(b.codes).T
        b_scales = np.ascontiguousarray(b.scales).T
    else:
        b_codes, b_scales = np.ascontiguousarray(b.codes), np.ascontiguousarray(b.scales)
    k_a, k_b = a.shape[1], b_codes.shape[1]
    if k_a != k_b:
        layout = "K x N (axis 0)" if b.axis == 0 else "N x K (axis 1)"
        raise ValueError(f"a has K = {k_a} but b, read as {layout}, has K = {k_b}")
    return Operands(
        a_codes=np.ascontiguousarray(a.codes),
        a_scales=np.ascontiguousarray(a.scales),
        b_codes=b_codes,
        b_scales=b_scales,
        fmt_a=a.fmt,
        fmt_b=b.fmt,
        block_size=a.block_size,
    )
