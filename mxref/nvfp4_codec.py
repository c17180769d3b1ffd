"""The array API on two-level formats (NVFP4): what :mod:`mxref.codec` runs for them.

NVFP4 is quantized in two passes: the tensor's (or each row's) largest
finite magnitude gives the float32 tensor scale ``G``, then every block of
16 gets its E4M3 byte and its E2M1 codes (:mod:`mxref.kernels.nvfp4`,
bit-identical to the oracle :mod:`mxref.ref.nvfp4`).  The kernels block
along the last axis of C-contiguous rows, so another blocked axis is moved
there, in a copy, and back.

The MX-only arguments are refused by name: the E8M0 ``scale_rule``,
stochastic rounding and its ``seed``, the MX ``preset``\\ s and given E8M0
``scales``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mxref.array import MXArray, row_scale_shape, scales_shape
from mxref.formats import ElementFormat
from mxref.kernels.nvfp4 import dequantize_rows, fake_quantize_rows, quantize_rows, row_amax
from mxref.kernels.nvfp4 import tensor_scale as kernel_tensor_scale
from mxref.policies import ROUNDING_CODES, Overflow, Rounding


def check_two_level_arguments(fmt: ElementFormat, scale_rule: object, rounding: object,
                              overflow: object, seed: object, preset: object,
                              scales: object) -> Rounding:  # fmt: skip
    """The element rounding, once every argument that NVFP4 does not take is refused.

    Raises
    ------
    ValueError
        Naming the argument.
    """
    name = fmt.name
    if scale_rule is not None:
        raise ValueError(f"scale_rule: {name}'s E4M3 block scales are rounded to nearest even; "
                         "scale_rule chooses E8M0 scales (the MX formats)")  # fmt: skip
    if preset is not None:
        raise ValueError(f"preset: the presets are MX implementations; {name} has none yet "
                         "(docs/semantics.md section 8c)")  # fmt: skip
    if scales is not None:
        raise ValueError(f"scales: given E4M3 block scales are not supported for {name}; "
                         "a given tensor_scale is")  # fmt: skip
    chosen = Rounding.parse(Rounding.RNE if rounding is None else rounding, "rounding")
    if chosen is Rounding.STOCHASTIC:
        raise ValueError(f"rounding: {name} takes 'rne', 'away' or 'zero'; no stochastic "
                         "rounding is defined for it")  # fmt: skip
    if seed is not None:
        raise ValueError(f"seed: only stochastic rounding takes a seed, which {name} has not")
    # E2M1 has no Inf or NaN code: both overflow policies saturate, as for MXFP4
    Overflow.parse(Overflow.SATURATE if overflow is None else overflow, "overflow")
    return chosen


def refuse_two_level_arguments(fmt: ElementFormat, per_row: object, tensor_scale: object) -> None:
    """Refuse NVFP4's own arguments for an MX format, naming them."""
    if per_row:
        raise ValueError(f"per_row: {fmt.name} has no tensor scale (only nvfp4 has)")
    if tensor_scale is not None:
        raise ValueError(f"tensor_scale: {fmt.name} has no tensor scale (only nvfp4 has)")


def check_given_tensor_scale(given: Any, shape: tuple[int, ...], axis: int, per_row: bool
                             ) -> np.ndarray:  # fmt: skip
    """``tensor_scale=`` as float32 of its expected shape, finite and positive.

    Raises
    ------
    TypeError, ValueError
        Naming ``tensor_scale``.
    """
    want = row_scale_shape(shape, axis) if per_row else ()
    try:
        t = np.asarray(given, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"tensor_scale must be a number or an array of numbers; got "
                        f"{type(given).__name__}") from None  # fmt: skip
    if t.shape != want:
        raise ValueError(f"tensor_scale has shape {t.shape}; expected {want} "
                         f"({'one per row' if per_row else 'one for the tensor'})")  # fmt: skip
    t32 = t.astype(np.float32)
    if t.size and not bool(np.all(np.isfinite(t32) & (t32 > 0) & (t32 == t))):
        raise ValueError("tensor_scale must hold finite positive float32 values")
    return t32


def _rows(work: np.ndarray, axis: int) -> np.ndarray:
    """``work`` as C-contiguous rows blocked along their last axis."""
    moved = np.moveaxis(work, axis, -1)
    # the row count spelled out: -1 is ambiguous for an empty blocked axis
    return np.ascontiguousarray(moved.reshape(math.prod(moved.shape[:-1]), work.shape[axis]))


def _unrows(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Undo :func:`_rows` for an array whose last axis has ``rows.shape[1]`` entries."""
    moved = shape[:axis] + shape[axis + 1 :] + (rows.shape[1],)
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved), -1, axis))


Quantized = tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]


def quantize_two_level(work: np.ndarray, fmt: ElementFormat, axis: int, block_size: int,
                       rounding: Rounding, per_row: bool, given: Any,
                       values_dtype: type | None, into: np.ndarray | None = None
                       ) -> Quantized:  # fmt: skip
    """Quantize the contiguous float32/float64 ``work``.

    Returns
    -------
    (values, codes, scales, tensor_scale)
        ``values``, the decoded values in ``values_dtype`` (float32 or
        float64), when that is given, else None, and then ``codes`` is
        filled instead.  ``into``, a C-contiguous array of ``work``'s shape
        and of ``values_dtype``, receives the values directly when the
        blocked axis is the last (no copy), and is returned as ``values``.
    """
    shape = work.shape
    n = shape[axis]
    rows = _rows(work, axis)
    nrows = rows.shape[0]
    if given is not None:
        t32 = check_given_tensor_scale(given, shape, axis, per_row)
    elif per_row:
        amax = row_amax(rows) if rows.size else np.zeros(nrows)
        t32 = np.array([kernel_tensor_scale(a) for a in amax], np.float32)
        t32 = t32.reshape(row_scale_shape(shape, axis))
    else:
        amax = row_amax(rows) if rows.size else np.zeros(1)
        t32 = np.asarray(kernel_tensor_scale(float(amax.max()) if amax.size else 0.0),
                         np.float32)  # fmt: skip
    g = np.broadcast_to(t32.reshape(-1).astype(np.float64), (nrows,)).copy() \
        if t32.size else np.zeros(nrows)  # fmt: skip
    nblk = -(-n // block_size)
    bytes_rows = np.empty((nrows, nblk), np.uint8)
    code = ROUNDING_CODES[rounding]
    values = None
    codes = np.empty((0,) * len(shape), np.uint8)
    if values_dtype is not None:
        last = axis == len(shape) - 1
        values_rows: np.ndarray = into.reshape(rows.shape) if into is not None and last \
            else np.empty(rows.shape, values_dtype)  # fmt: skip
        if rows.size:
            fake_quantize_rows(rows, values_rows, bytes_rows, g, block_size, code)
        values = into if into is not None and last else _unrows(values_rows, shape, axis)
    else:
        codes_rows = np.empty(rows.shape, np.uint8)
        if rows.size:
            quantize_rows(rows, codes_rows, bytes_rows, g, block_size, code)
        codes = _unrows(codes_rows, shape, axis)
    scales = _unrows(bytes_rows, scales_shape(shape, axis, block_size), axis) \
        if rows.size else np.zeros(scales_shape(shape, axis, block_size), np.uint8)  # fmt: skip
    return values, codes, scales, t32


def dequantize_two_level(mx: MXArray, work_dtype: type) -> np.ndarray:
    """``RN(code * s_b / G)`` of every element, in ``work_dtype`` (float32 or float64)."""
    shape, axis = mx.shape, mx.axis
    out: np.ndarray = np.empty(shape, work_dtype)
    if not out.size:
        return out
    codes = _rows(mx.codes, axis)
    bytes_rows = _rows(mx.scales, axis)
    assert mx.tensor_scale is not None
    g = np.broadcast_to(mx.tensor_scale.reshape(-1).astype(np.float64),
                        (codes.shape[0],)).copy()  # fmt: skip
    out_rows: np.ndarray = np.empty(codes.shape, work_dtype)
    dequantize_rows(codes, bytes_rows, g, mx.block_size, out_rows)
    return _unrows(out_rows, shape, axis)
