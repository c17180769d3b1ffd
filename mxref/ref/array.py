"""Oracle: quantize and dequantize whole arrays, block by block, in Python.

This is the reference the kernels are compared with on small arrays.  It reads
every input exactly from its bit pattern and writes every output by one exact
rounding, so it shares no arithmetic with the kernels.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mxref.dtypes import BFLOAT16 as BFLOAT16_DTYPE
from mxref.formats import ElementFormat
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.block import dequantize_block, quantize_block
from mxref.ref.element import (
    BFLOAT16,
    BINARY16,
    BINARY32,
    BINARY64,
    Value,
    decode_element,
    encode_float,
)
from mxref.ref.stochastic import random_u32

#: numpy dtype -> (IEEE format, unsigned view dtype)
HOST_FORMATS: dict[np.dtype, tuple[ElementFormat, type]] = {
    np.dtype(np.float16): (BINARY16, np.uint16),
    np.dtype(np.float32): (BINARY32, np.uint32),
    np.dtype(np.float64): (BINARY64, np.uint64),
}
if BFLOAT16_DTYPE is not None:
    HOST_FORMATS[BFLOAT16_DTYPE] = (BFLOAT16, np.uint16)


def exact_values(x: np.ndarray) -> list[Value]:
    """Return every element of ``x`` (C order) as an exact ``(sign, magnitude)``."""
    host, uint = HOST_FORMATS[x.dtype]
    patterns: list[int] = np.ascontiguousarray(x).view(uint).ravel().tolist()
    return [decode_element(b, host) for b in patterns]


def _blocks(
    shape: tuple[int, ...], axis: int, block_size: int
) -> Iterator[tuple[tuple[int, ...], list[tuple[int, ...]]]]:
    """Yield (scale index, element indices) for every block, in scale C order."""
    n = shape[axis]
    nblk = -(-n // block_size)
    sshape = shape[:axis] + (nblk,) + shape[axis + 1 :]
    for sidx in np.ndindex(*sshape):
        b: int = sidx[axis]
        lanes = range(b * block_size, min(n, (b + 1) * block_size))
        yield sidx, [sidx[:axis] + (k,) + sidx[axis + 1 :] for k in lanes]


def quantize_array(
    x: np.ndarray,
    fmt: ElementFormat,
    axis: int = -1,
    block_size: int = 32,
    scale_rule: ScaleRule = ScaleRule.FLOOR,
    rounding: Rounding = Rounding.RNE,
    overflow: Overflow = Overflow.SATURATE,
    seed: int | None = None,
    divisor_min_exponent: int = -127,
    keep_negative_zero: bool = True,
    scales: np.ndarray | None = None,
    overflow_input_emax: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``x`` along ``axis``; return ``(codes, scales)`` as uint8 arrays.

    A last block shorter than ``block_size`` is quantized as it is, which is the
    same as padding it with zeros.  Stochastic draws use the counter described
    in :mod:`mxref.ref.stochastic`.  ``scales``, when given, holds every
    block's E8M0 byte in the shape of the result's scales; the elements are
    encoded against those (``quantize_block``'s ``scale_byte``) and the
    returned scales are a copy of them.  ``overflow_input_emax``: the
    scale-byte overflow quirk (``quantize_block``).
    """
    axis = axis % x.ndim
    n = x.shape[axis]
    nblk = -(-n // block_size)
    sshape = x.shape[:axis] + (nblk,) + x.shape[axis + 1 :]
    if scales is not None and scales.shape != sshape:
        raise ValueError(f"scales must have shape {sshape}; got {scales.shape}")
    values = np.empty(x.shape, dtype=object)
    values.ravel()[:] = [None] * x.size
    flat = exact_values(x)
    for i, idx in enumerate(np.ndindex(*x.shape)):
        values[idx] = flat[i]
    codes = np.zeros(x.shape, np.uint8)
    given = scales
    scales = np.zeros(sshape, np.uint8)
    for flat_block, (sidx, elems) in enumerate(_blocks(x.shape, axis, block_size)):
        draws = None
        if rounding is Rounding.STOCHASTIC:
            assert seed is not None
            draws = [random_u32(seed, flat_block * block_size + k) for k in range(len(elems))]
        byte, block_codes = quantize_block(
            [values[e] for e in elems], fmt, scale_rule, rounding, overflow, draws,
            divisor_min_exponent, keep_negative_zero,
            None if given is None else int(given[sidx]), overflow_input_emax,
        )  # fmt: skip
        scales[sidx] = byte
        for e, c in zip(elems, block_codes, strict=True):
            codes[e] = c
    return codes, scales


def dequantize_array(
    codes: np.ndarray,
    scales: np.ndarray,
    fmt: ElementFormat,
    axis: int = -1,
    block_size: int = 32,
    dtype: type = np.float32,
) -> np.ndarray:
    """Decode to ``dtype``, rounding each exact value once (RNE)."""
    axis = axis % codes.ndim
    host, uint = HOST_FORMATS[np.dtype(dtype)]
    out: np.ndarray = np.zeros(codes.shape, uint)
    for sidx, elems in _blocks(codes.shape, axis, block_size):
        decoded = dequantize_block(int(scales[sidx]), [int(codes[e]) for e in elems], fmt)
        for e, v in zip(elems, decoded, strict=True):
            out[e] = encode_float(v, host)
    return out.view(dtype)
