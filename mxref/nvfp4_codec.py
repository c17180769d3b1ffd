"""The array API on two-level formats (NVFP4): what :mod:`mxref.codec` runs for them.

NVFP4 is quantized in two passes: the tensor's (or each row's) largest
finite magnitude gives the float32 tensor scale ``G``, then every block of
16 gets its E4M3 byte and its E2M1 codes (:mod:`mxref.kernels.nvfp4`,
bit-identical to the oracle :mod:`mxref.ref.nvfp4`).  The kernels block
along the last axis of C-contiguous rows, so another blocked axis is moved
there, in a copy, and back.

The MX-only arguments are refused by name: the E8M0 ``scale_rule``,
stochastic rounding and its ``seed``, the MX ``preset``\\ s and given E8M0
``scales``.  The NVFP4 presets (``torchao``, ``transformer-engine``) run
their implementations' float32 recipes instead (:mod:`mxref.kernels.nvfp4_presets`)
and store the tensor scale as those implementations do.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mxref.array import MXArray, row_scale_shape, scales_shape
from mxref.formats import ElementFormat
from mxref.kernels.nvfp4 import dequantize_rows, fake_quantize_rows, quantize_rows, row_stats
from mxref.kernels.nvfp4 import tensor_scale as kernel_tensor_scale
from mxref.kernels.nvfp4_presets import TORCHAO, TRANSFORMER_ENGINE, torchao_tensor_scale
from mxref.kernels.nvfp4_presets import dequantize_rows as preset_dequantize_rows
from mxref.kernels.nvfp4_presets import quantize_rows as preset_quantize_rows
from mxref.policies import ROUNDING_CODES, Overflow, Rounding
from mxref.presets import NVFP4Preset, NVRecipe, get_nvfp4_preset

#: the kernels' recipe codes
RECIPE_CODES = {NVRecipe.TORCHAO: TORCHAO, NVRecipe.TRANSFORMER_ENGINE: TRANSFORMER_ENGINE}


def check_two_level_arguments(fmt: ElementFormat, scale_rule: object, rounding: object,
                              overflow: object, seed: object, preset: object,
                              scales: object) -> tuple[Rounding, NVFP4Preset | None]:  # fmt: skip
    """The element rounding and the NVFP4 preset, once every argument NVFP4 does not take
    is refused.

    Raises
    ------
    ValueError
        Naming the argument.
    """
    name = fmt.name
    if scale_rule is not None:
        raise ValueError(f"scale_rule: {name}'s E4M3 block scales are rounded to nearest even; "
                         "scale_rule chooses E8M0 scales (the MX formats)")  # fmt: skip
    chosen_preset = None
    if preset is not None:
        chosen_preset = get_nvfp4_preset(preset, fmt)  # type: ignore[arg-type]
        given = [n for n, v in (("rounding", rounding), ("overflow", overflow)) if v is not None]
        if given:
            raise ValueError(f"preset fixes {', '.join(given)}; pass either the preset or them")
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
    return chosen, chosen_preset


def refuse_two_level_arguments(fmt: ElementFormat, per_row: object, tensor_scale: object) -> None:
    """Refuse NVFP4's own arguments for an MX format, naming them."""
    if per_row:
        raise ValueError(f"per_row: {fmt.name} has no tensor scale (only nvfp4 has)")
    if tensor_scale is not None:
        raise ValueError(f"tensor_scale: {fmt.name} has no tensor scale (only nvfp4 has)")


def check_given_tensor_scale(given: Any, shape: tuple[int, ...], axis: int, per_row: bool,
                             allow_zero: bool = False) -> np.ndarray:  # fmt: skip
    """``tensor_scale=`` as float32 of its expected shape, finite and positive (or zero,
    with ``allow_zero``: a Transformer Engine amax).

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
    low = (t32 >= 0) if allow_zero else (t32 > 0)
    if t.size and not bool(np.all(np.isfinite(t32) & low & (t32 == t))):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"tensor_scale must hold finite {kind} float32 values")
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
    checked = check_given_tensor_scale(given, shape, axis, per_row) if given is not None else None
    # one pass gives the tensor's amax and the block maxima the quantizing pass reuses
    amax, tops = row_stats(rows, block_size, checked is None)
    if checked is not None:
        t32 = checked
    elif per_row:
        t32 = np.array([kernel_tensor_scale(a) for a in amax], np.float32)
        t32 = t32.reshape(row_scale_shape(shape, axis))
    else:
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
            fake_quantize_rows(rows, values_rows, bytes_rows, tops, g, block_size, code)
        values = into if into is not None and last else _unrows(values_rows, shape, axis)
    else:
        codes_rows = np.empty(rows.shape, np.uint8)
        if rows.size:
            quantize_rows(rows, codes_rows, bytes_rows, tops, g, block_size, code)
        codes = _unrows(codes_rows, shape, axis)
    scales = _unrows(bytes_rows, scales_shape(shape, axis, block_size), axis) \
        if rows.size else np.zeros(scales_shape(shape, axis, block_size), np.uint8)  # fmt: skip
    return values, codes, scales, t32


def dequantize_two_level(mx: MXArray, work_dtype: type) -> np.ndarray:
    """``RN(code * s_b / G)`` of every element, in ``work_dtype`` (float32 or float64)."""
    shape, axis = mx.shape, mx.axis
    if not math.prod(shape):
        return np.empty(shape, work_dtype)
    codes = _rows(mx.codes, axis)
    bytes_rows = _rows(mx.scales, axis)
    assert mx.tensor_scale is not None
    g = np.broadcast_to(mx.tensor_scale.reshape(-1).astype(np.float64),
                        (codes.shape[0],)).copy()  # fmt: skip
    out_rows: np.ndarray = np.empty(codes.shape, work_dtype)
    dequantize_rows(codes, bytes_rows, g, mx.block_size, out_rows)
    return _unrows(out_rows, shape, axis)


def quantize_preset(work: np.ndarray, fmt: ElementFormat, axis: int, block_size: int,
                    preset: NVFP4Preset, per_row: bool, given: Any, want_values: bool
                    ) -> Quantized:  # fmt: skip
    """:func:`quantize_two_level` under an NVFP4 preset: its float32 recipe, its tensor scale.

    ``work`` must be float32 (the implementations compute in float32) and
    finite (neither models NaN or Inf).  The values, when asked for, are the
    preset's own decoding, in float32.

    Raises
    ------
    ValueError
        A non-finite input, or (torchao) an amax whose decode scale rounds to 0,
        which torchao then divides by; naming ``x``.
    """
    shape = work.shape
    rows = _rows(work, axis)
    nrows = rows.shape[0]
    recipe = RECIPE_CODES[preset.recipe]
    te = preset.recipe is NVRecipe.TRANSFORMER_ENGINE
    if rows.size and not bool(np.isfinite(rows).all()):
        raise ValueError(f"x: preset {preset.name!r} ({fmt.name}) is modelled for finite inputs "
                         "only; the implementation turns NaN and Inf into NaN blocks its own "
                         "way")  # fmt: skip
    if given is not None:
        t32 = check_given_tensor_scale(given, shape, axis, per_row,
                                       allow_zero=preset.zero_tensor_scale)  # fmt: skip
    else:
        amax = np.abs(rows).max(axis=1) if rows.size else np.zeros(nrows, np.float32)
        amax = amax if per_row else np.asarray(amax.max() if amax.size else np.float32(0))
        amax = amax.astype(np.float32)
        t32 = amax if te else np.array([torchao_tensor_scale(a) for a in amax.reshape(-1)],
                                       np.float32).reshape(amax.shape)  # fmt: skip
        if per_row:
            t32 = t32.reshape(row_scale_shape(shape, axis))
    if not te and t32.size:
        # the largest element factor torchao forms: (1 / t) / s_b with s_b at its 2**-6 floor
        with np.errstate(divide="ignore", over="ignore"):
            inverse = (np.float32(1) / t32) / np.float32(2.0**-6)
        if not bool(np.isfinite(inverse).all()):
            raise ValueError(f"x: preset {preset.name!r}: the tensor scale amax / 2688 is below "
                             "about 64 / float32's max (an amax below about 5e-34), so torchao's "
                             "factor (1 / scale) / s_b is Inf in float32 (or it divides by 0) "
                             "and zeros become NaN")  # fmt: skip
    if te and t32.size:
        with np.errstate(over="ignore"):
            top = np.float32(448) * t32
        if not bool(np.isfinite(top).all()):
            raise ValueError(f"x: preset {preset.name!r}: an amax above float32's max / 448 "
                             "makes Transformer Engine's dequantize scale s_b * amax Inf in "
                             "float32; not modelled")  # fmt: skip
    t_rows = np.broadcast_to(t32.reshape(-1), (nrows,)).astype(np.float32) \
        if t32.size else np.zeros(nrows, np.float32)  # fmt: skip
    nblk = -(-shape[axis] // block_size)
    codes_rows = np.empty(rows.shape, np.uint8)
    bytes_rows = np.empty((nrows, nblk), np.uint8)
    if rows.size:
        preset_quantize_rows(rows, codes_rows, bytes_rows, t_rows, block_size, recipe)
    values = None
    if want_values:
        out_rows = np.empty(rows.shape, np.float32)
        if rows.size:
            preset_dequantize_rows(codes_rows, bytes_rows, t_rows, block_size, recipe, out_rows)
        values = _unrows(out_rows, shape, axis)
    codes = _unrows(codes_rows, shape, axis)
    scales = _unrows(bytes_rows, scales_shape(shape, axis, block_size), axis) \
        if rows.size else np.zeros(scales_shape(shape, axis, block_size), np.uint8)  # fmt: skip
    return values, codes, scales, t32


def dequantize_preset(mx: MXArray, preset: NVFP4Preset) -> np.ndarray:
    """The preset's own float32 decoding of ``mx`` (its tensor scale as the preset stores it)."""
    shape, axis = mx.shape, mx.axis
    out: np.ndarray = np.empty(shape, np.float32)
    if not out.size:
        return out
    codes = _rows(mx.codes, axis)
    bytes_rows = _rows(mx.scales, axis)
    assert mx.tensor_scale is not None
    t = np.broadcast_to(mx.tensor_scale.reshape(-1), (codes.shape[0],)).astype(np.float32)
    out_rows: np.ndarray = np.empty(codes.shape, np.float32)
    preset_dequantize_rows(codes, bytes_rows, t, mx.block_size, RECIPE_CODES[preset.recipe],
                           out_rows)  # fmt: skip
    return _unrows(out_rows, shape, axis)
