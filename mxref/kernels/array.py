"""Kernel twin of :mod:`mxref.ref.array`: whole arrays, in parallel over blocks.

Two layouts reach the kernels:

- *blocked*: a C-contiguous ``(nblocks, block_size)`` view, when the blocked
  axis is last and its length a multiple of the block size (the common case,
  and the fast one: each block is a contiguous row);
- *strided*: ``(outer, n, inner)`` with the blocked axis in the middle, for
  any other axis and for a short last block.  No input is copied or padded.

In both, the block with scale index ``b`` (flat, C order) uses stochastic
counters ``b * block_size + lane``, as the oracle does.

The quantize drivers take ``given``: False writes every block's E8M0 byte
into ``scales``; True reads the block's byte from there instead (static
scales, checked finite by the caller) and encodes against it.  It is one
branch per block, outside the element loop.

numba's on-disk cache keys these drivers on this file alone, yet they
compile in :mod:`~mxref.kernels.block`, :mod:`~mxref.kernels.element`,
:mod:`~mxref.kernels.scale` and :mod:`~mxref.kernels.bits`: after editing
those, delete ``mxref/kernels/__pycache__`` so the drivers recompile.
Touching this file is not enough: numba 0.68 (the locked version) keys the
cache on the file's contents, not its modification time.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mxref.kernels.block import dequantize_block, quantize_block


@njit(cache=True, inline="always")
def blocked_pass(x2, codes2, values2, scales, ip, fp, sp, rounding, seed, given,
                 write_codes, write_values):  # fmt: skip
    """One block per row of the C-contiguous ``x2``; rows in parallel."""
    nblk, bs = x2.shape
    for b in prange(nblk):
        given_byte = np.int64(scales[b]) if given else np.int64(-1)
        scales[b] = quantize_block(
            x2[b], codes2[b], values2[b], ip, fp, sp, rounding, seed, b * bs, given_byte,
            write_codes, write_values,
        )  # fmt: skip


@njit(cache=True, inline="always")
def strided_pass(x3, codes3, values3, scales3, block_size, ip, fp, sp, rounding,
                 seed, given, write_codes, write_values):  # fmt: skip
    """Blocks along axis 1 of ``x3`` (outer, n, inner); (outer, block) pairs in parallel."""
    outer, n, inner = x3.shape
    nblk = scales3.shape[1]
    for ob in prange(outer * nblk):
        o = ob // nblk
        b = ob - o * nblk
        lo = b * block_size
        hi = min(n, lo + block_size)
        for i in range(inner):
            flat = (o * nblk + b) * inner + i
            given_byte = np.int64(scales3[o, b, i]) if given else np.int64(-1)
            scales3[o, b, i] = quantize_block(
                x3[o, lo:hi, i], codes3[o, lo:hi, i], values3[o, lo:hi, i], ip, fp,
                sp, rounding, seed, flat * block_size, given_byte, write_codes, write_values,
            )  # fmt: skip


# The four drivers differ only in which outputs they write; passing those
# choices as literals compiles the unused stores out of the element loop.


@njit(cache=True, parallel=True)
def quantize_blocked(x2, codes2, scales, ip, fp, sp, rounding, seed, given):
    """Codes and scales of the C-contiguous (nblocks, block_size) ``x2``."""
    values2 = np.empty((x2.shape[0], 0), x2.dtype)
    blocked_pass(x2, codes2, values2, scales, ip, fp, sp, rounding, seed, given, True, False)


@njit(cache=True, parallel=True)
def fake_quantize_blocked(x2, values2, scales, ip, fp, sp, rounding, seed, given):
    """Fake-quantized values of the C-contiguous (nblocks, block_size) ``x2``."""
    codes2 = np.empty((x2.shape[0], 0), np.uint8)
    blocked_pass(x2, codes2, values2, scales, ip, fp, sp, rounding, seed, given, False, True)


@njit(cache=True, parallel=True)
def quantize_strided(x3, codes3, scales3, block_size, ip, fp, sp, rounding, seed, given):
    """Codes and scales of ``x3`` (outer, n, inner), blocked along axis 1."""
    values3 = np.empty((x3.shape[0], 0, x3.shape[2]), x3.dtype)
    strided_pass(x3, codes3, values3, scales3, block_size, ip, fp, sp, rounding,
                 seed, given, True, False)  # fmt: skip


@njit(cache=True, parallel=True)
def fake_quantize_strided(x3, values3, scales3, block_size, ip, fp, sp, rounding,
                          seed, given):  # fmt: skip
    """Fake-quantized values of ``x3`` (outer, n, inner), blocked along axis 1."""
    codes3 = np.empty((x3.shape[0], 0, x3.shape[2]), np.uint8)
    strided_pass(x3, codes3, values3, scales3, block_size, ip, fp, sp, rounding,
                 seed, given, False, True)  # fmt: skip


@njit(cache=True, parallel=True)
def dequantize_blocked(codes2, scales, table, out2):
    """Decode every row of ``codes2`` (one block per row) in parallel."""
    for b in prange(codes2.shape[0]):
        dequantize_block(codes2[b], scales[b], table, out2[b])


@njit(cache=True, parallel=True)
def dequantize_strided(codes3, scales3, block_size, table, out3):
    """Decode ``codes3`` of shape (outer, n, inner) in blocks along axis 1."""
    outer, n, inner = codes3.shape
    nblk = scales3.shape[1]
    for ob in prange(outer * nblk):
        o = ob // nblk
        b = ob - o * nblk
        lo = b * block_size
        hi = min(n, lo + block_size)
        for i in range(inner):
            dequantize_block(codes3[o, lo:hi, i], scales3[o, b, i], table, out3[o, lo:hi, i])
