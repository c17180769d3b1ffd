"""The public array API: quantize, dequantize and the fused quantize_dequantize.

This module validates arguments, picks a kernel layout and never copies a
contiguous float32/float64 input.  All arithmetic happens in
:mod:`mxref.kernels`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

import numpy as np

from mxref.arguments import (
    check_axis,
    check_block_size,
    check_scales,
    check_scales_alone,
    check_seed,
    first_nonfinite,
    nonfinite_input_error,
    resolve_policies,
)
from mxref.array import MXArray, scales_shape
from mxref.dtypes import FLOAT_DTYPES
from mxref.formats import ElementFormat, get_format
from mxref.inputs import as_float_array, is_torch_tensor
from mxref.kernels.array import (
    dequantize_blocked,
    dequantize_strided,
    fake_quantize_blocked,
    fake_quantize_strided,
    quantize_blocked,
    quantize_strided,
)
from mxref.kernels.element import decode_table
from mxref.kernels.params import decode_params, element_params, scale_params
from mxref.nvfp4_codec import (
    check_two_level_arguments,
    dequantize_preset,
    dequantize_two_level,
    quantize_preset,
    quantize_two_level,
    refuse_two_level_arguments,
)
from mxref.policies import ROUNDING_CODES, Overflow, Rounding, ScaleRule
from mxref.presets import Preset, get_nvfp4_preset

#: output dtype -> the dtype the kernels decode into; float16 and bfloat16 are
#: rounded once from the exact float32
OUTPUT_DTYPES = {d: np.float64 if d == np.float64 else np.float32 for d in FLOAT_DTYPES}


@cache
def _table(fmt: ElementFormat, dtype: type) -> np.ndarray:
    return decode_table(*decode_params(fmt)).astype(dtype)


class _Quantized(NamedTuple):
    """What one kernel run produced; codes or values is empty, as asked."""

    source: np.ndarray  # the input as a numpy array (its dtype is the fake-quant dtype)
    values: np.ndarray | None
    codes: np.ndarray
    scales: np.ndarray
    fmt: ElementFormat
    axis: int
    block_size: int
    tensor_scale: np.ndarray | None = None  # two-level formats (NVFP4)
    preset: str | None = None  # an NVFP4 preset's name: its tensor scale and decoding


def _run_quantize(
    x: Any,
    fmt: str | ElementFormat,
    axis: int,
    block_size: int | None,
    scale_rule: str | ScaleRule | None,
    rounding: str | Rounding | None,
    overflow: str | Overflow | None,
    seed: int | None,
    preset: str | Preset | None,
    want_values: bool,
    values: np.ndarray | None = None,
    given: Any = None,
    per_row: bool = False,
    tensor_scale: Any = None,
) -> _Quantized:
    """Validate every argument and run the kernel for the input's layout.

    ``values``, when given, is where the fake-quantized values go (checked by
    the caller to be C-contiguous, of the input's shape and of the host dtype).
    ``given`` is the caller's ``scales=``.
    """
    fmt = get_format(fmt, two_level=True)
    if fmt.two_level:
        return _run_two_level(x, fmt, axis, block_size, scale_rule, rounding, overflow,
                              seed, preset, want_values, values, given, per_row,
                              tensor_scale)  # fmt: skip
    refuse_two_level_arguments(fmt, per_row, tensor_scale)
    block_size = fmt.block_size if block_size is None else block_size
    check_scales_alone(scale_rule, given)
    chosen, rule, rnd, ovf = resolve_policies(preset, scale_rule, rounding, overflow, fmt)
    key = np.uint64(check_seed(seed, rnd))  # kernels take it unsigned: seeds reach 2**64 - 1
    bs = check_block_size(block_size)
    arr = as_float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    if given is not None:
        given = check_scales(given, arr.shape, ax, bs)
    host = np.float64 if arr.dtype == np.float64 else np.float32
    work = np.ascontiguousarray(arr, dtype=host)
    if given is not None:
        # before any kernel runs: out=x must be left untouched by a refusal
        bad = first_nonfinite(work)
        if bad is not None:
            raise nonfinite_input_error(bad, float(work[bad]))
    ip, fp = element_params(fmt, rnd, ovf, work.dtype, chosen.keep_negative_zero)
    sp = scale_params(fmt, rule, work.dtype, chosen.divisor_min_exponent,
                      chosen.scale_overflow_nan, input_emax(arr.dtype))  # fmt: skip
    shape = work.shape
    n = shape[ax]
    inner = int(np.prod(shape[ax + 1 :], dtype=np.int64))
    outer = int(np.prod(shape[:ax], dtype=np.int64))
    codes = np.empty(shape if not want_values else (0,) * len(shape), np.uint8)
    if want_values and values is None:
        values = np.empty(shape, host)
    if given is None:
        scales = np.empty(scales_shape(shape, ax, bs), np.uint8)
    else:
        # the kernels read each block's byte from the array they would write it to
        scales = np.array(given, np.uint8, order="C")
    if work.size == 0:
        return _Quantized(arr, values, codes, scales, fmt, ax, bs)
    args = (ip, fp, sp, ROUNDING_CODES[rnd], key, given is not None)
    if inner == 1 and n % bs == 0:
        rows = work.size // bs
        flat_scales = scales.reshape(-1)
        if values is None:
            quantize_blocked(work.reshape(rows, bs), codes.reshape(rows, bs), flat_scales, *args)
        else:
            x2, v2 = work.reshape(rows, bs), values.reshape(rows, bs)
            fake_quantize_blocked(x2, v2, flat_scales, *args)
    else:
        x3 = work.reshape(outer, n, inner)
        s3 = scales.reshape(outer, -(-n // bs), inner)
        if values is None:
            quantize_strided(x3, codes.reshape(outer, n, inner), s3, bs, *args)
        else:
            fake_quantize_strided(x3, values.reshape(outer, n, inner), s3, bs, *args)
    return _Quantized(arr, values, codes, scales, fmt, ax, bs)


def _run_two_level(x: Any, fmt: ElementFormat, axis: int, block_size: int | None,
                   scale_rule: Any, rounding: Any, overflow: Any, seed: Any, preset: Any,
                   want_values: bool, values: np.ndarray | None, given: Any, per_row: bool,
                   tensor_scale: Any) -> _Quantized:  # fmt: skip
    """:func:`_run_quantize` for NVFP4 (:mod:`mxref.nvfp4_codec`)."""
    rnd, nv_preset = check_two_level_arguments(fmt, scale_rule, rounding, overflow, seed,
                                               preset, given)  # fmt: skip
    if not isinstance(per_row, bool | np.bool_):
        raise TypeError(f"per_row must be a bool; got {type(per_row).__name__}")
    bs = check_block_size(fmt.block_size if block_size is None else block_size)
    arr = as_float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    host = np.float64 if arr.dtype == np.float64 else np.float32
    work = np.ascontiguousarray(arr, dtype=host)
    if nv_preset is not None:
        if host is np.float64:
            raise TypeError(f"x: preset {nv_preset.name!r} computes in float32 and takes "
                            "float32, float16 or bfloat16 inputs; got float64")  # fmt: skip
        p_values, p_codes, p_scales, p_t = quantize_preset(
            work, fmt, ax, bs, nv_preset, bool(per_row), tensor_scale, want_values
        )
        if want_values and values is not None:
            assert p_values is not None
            np.copyto(values, p_values, casting="unsafe")
            p_values = values
        return _Quantized(arr, p_values, p_codes, p_scales, fmt, ax, bs, p_t, nv_preset.name)
    # float16 and bfloat16 results come from float64 ones: rounded once, since no float64
    # quotient code * s_b / G lands on their midpoints unless the exact one does
    decoded = host if arr.dtype in (np.float32, np.float64) and not _is_torch_bfloat16(x) \
        else np.float64  # fmt: skip
    into = values if values is not None and values.dtype == decoded else None
    out_values, codes, scales, t32 = quantize_two_level(
        work, fmt, ax, bs, rnd, bool(per_row), tensor_scale,
        decoded if want_values else None, into)  # fmt: skip
    if want_values and values is not None and out_values is not values:
        assert out_values is not None
        np.copyto(values, out_values)
        out_values = values
    return _Quantized(arr, out_values, codes, scales, fmt, ax, bs, t32)


def quantize(
    x: Any,
    fmt: str | ElementFormat,
    *,
    axis: int = -1,
    block_size: int | None = None,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
    seed: int | None = None,
    preset: str | Preset | None = None,
    scales: np.ndarray | None = None,
    per_row: bool = False,
    tensor_scale: Any = None,
) -> MXArray:
    """Encode ``x`` into element codes and block scales (MX: E8M0; NVFP4: E4M3 and a tensor scale).

    Parameters
    ----------
    x : array_like or torch.Tensor
        float16, bfloat16, float32 or float64 values, at least 1-d.  float64
        is rounded once, exactly, never through float32.
    fmt : str or ElementFormat
        ``"mxfp4"``, ``"mxfp6_e2m3"``, ``"mxfp6_e3m2"``, ``"mxfp8_e4m3"``,
        ``"mxfp8_e5m2"``, ``"mxint8"``, or ``"nvfp4"`` (E2M1 elements,
        E4M3 block scales under a float32 tensor scale, each stored value
        rounded once from the exact one: ``docs/semantics.md`` section 8c).
    axis : int
        The axis cut into blocks.
    block_size : int, optional
        Elements per block; default the format's (32 for MX, 16 for NVFP4).
        A last block that is shorter is quantized as it is, which equals
        zero padding.
    scale_rule : {"floor", "ceil", "even", "rceil", "floor_log2_fp32", "rceil_fp32_div"}
        Default ``"floor"`` (the spec).
    rounding : {"rne", "away", "zero", "stochastic"}
        Default ``"rne"`` (the spec).
    overflow : {"saturate", "ieee"}
        Default ``"saturate"`` (the spec).
    seed : int, optional
        Required with ``rounding="stochastic"`` and rejected otherwise.
    preset : str, optional
        Reproduce that implementation (see :mod:`mxref.presets`); it fixes the
        three policies, so they may not be passed with it.  MX formats:
        "ocp", "microxcaling", "torchao", "cublas", "quark", "triton",
        "compressed-tensors" (mxfp4, mxfp6_e2m3).  nvfp4: "torchao",
        "transformer-engine" (float32 recipes; ``tensor_scale`` then holds
        what that implementation stores, and the MXArray records the preset).
    scales : np.ndarray of uint8, optional
        Given E8M0 block scales ("static scales", e.g. fixed by GPTQ), of
        exactly ``scales_shape(x.shape, axis, block_size)``, to encode against
        instead of computing them.  Each block's elements are divided by
        ``2**(max(byte, divisor_min) - 127)`` (``divisor_min`` is 0 but for a
        preset's quirk) and rounded and overflow-handled as usual: elements
        beyond max normal times the scale saturate under ``"saturate"``.  No
        byte may be 0xFF and ``x`` must be finite.  An explicit
        ``scale_rule`` is refused (it would choose nothing); a preset is
        accepted for its rounding, overflow and quirks.  The result's scales
        are a copy of these.  MX formats only.
    per_row : bool
        NVFP4: one tensor scale per row (per slice along ``axis``), from the
        row's own amax, instead of one for the whole tensor.
    tensor_scale : float or array_like, optional
        NVFP4: the encode scale ``G`` to use instead of ``RN32(448 * 6 /
        amax)`` (a calibrated, "static" global scale): finite, positive,
        float32-representable; 0-d, or one per row with ``per_row``.

    Returns
    -------
    MXArray
        With ``tensor_scale`` (float32) for NVFP4.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument (an MX-only argument with NVFP4, or
        ``per_row``/``tensor_scale`` with an MX format).

    Spec: OCP MX v1.0 section 6.3.
    """
    run = _run_quantize(
        x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset,
        want_values=False, given=scales, per_row=per_row, tensor_scale=tensor_scale,
    )  # fmt: skip
    return MXArray(codes=run.codes, scales=run.scales, fmt=run.fmt, axis=run.axis,
                   block_size=run.block_size, tensor_scale=run.tensor_scale,
                   preset=run.preset)  # fmt: skip


def dequantize(mx: MXArray, dtype: Any = np.float32) -> np.ndarray:
    """Decode an MXArray: ``X * P_i`` for every element.

    Parameters
    ----------
    mx : MXArray
    dtype : float32 (default), float64, float16 or bfloat16
        float64 is always exact.  The others are the exact value rounded once
        (RNE); float32 is exact except where ``X * P_i`` exceeds its range,
        which gives Inf.

    Returns
    -------
    np.ndarray
        A NaN scale (0xFF) gives NaN throughout its block; NaN and Inf element
        codes decode as themselves.

    Spec: OCP MX v1.0 section 5.1.
    """
    if not isinstance(mx, MXArray):
        raise TypeError(f"mx must be an MXArray; got {type(mx).__name__}")
    try:
        out_dtype = np.dtype(dtype)
        work_dtype = OUTPUT_DTYPES[out_dtype]
    except (TypeError, KeyError):
        raise ValueError(
            f"dtype must be float32, float64, float16 or bfloat16; got {dtype!r}"
        ) from None
    if mx.fmt.two_level and mx.preset is not None:
        # the implementation's own float32 decoding; other dtypes from those float32 values
        out = dequantize_preset(mx, get_nvfp4_preset(mx.preset, mx.fmt))
        if out_dtype == np.float32:
            return out
        with np.errstate(over="ignore"):
            return out.astype(out_dtype)
    if mx.fmt.two_level:
        # float16 and bfloat16 from float64, rounded once (see _run_two_level)
        out = dequantize_two_level(mx, work_dtype if out_dtype == work_dtype else np.float64)
        if out_dtype == work_dtype:
            return out
        with np.errstate(over="ignore"):  # beyond the target's range is Inf, as documented
            return out.astype(out_dtype)
    table = _table(mx.fmt, work_dtype)
    shape, ax, bs = mx.shape, mx.axis, mx.block_size
    out = np.empty(shape, work_dtype)
    if out.size:
        n = shape[ax]
        inner = int(np.prod(shape[ax + 1 :], dtype=np.int64))
        codes = np.ascontiguousarray(mx.codes)
        scales = np.ascontiguousarray(mx.scales)
        if inner == 1 and n % bs == 0:
            rows = codes.size // bs
            dequantize_blocked(
                codes.reshape(rows, bs), scales.reshape(-1), table, out.reshape(rows, bs)
            )
        else:
            outer = codes.size // (n * inner)
            dequantize_strided(
                codes.reshape(outer, n, inner),
                scales.reshape(outer, -(-n // bs), inner),
                bs,
                table,
                out.reshape(outer, n, inner),
            )
    if out_dtype == work_dtype:
        return out
    with np.errstate(over="ignore"):  # beyond the target's range is Inf, as documented
        return out.astype(out_dtype)


def quantize_dequantize(
    x: Any,
    fmt: str | ElementFormat,
    *,
    axis: int = -1,
    block_size: int | None = None,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
    seed: int | None = None,
    preset: str | Preset | None = None,
    out: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    per_row: bool = False,
    tensor_scale: Any = None,
) -> Any:
    """Fake-quantize: ``dequantize(quantize(x, ...))`` in one fused pass.

    The result has ``x``'s dtype and kind (numpy in, numpy out; a torch tensor
    in, a torch tensor out on the same device) and equals the two-step result
    bit for bit, decoded to that dtype with one rounding.

    Parameters
    ----------
    x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset, scales
    per_row, tensor_scale
        As for :func:`quantize`.
    out : np.ndarray, optional
        For a numpy ``x``: a C-contiguous, writeable array of ``x``'s shape
        and dtype to write the result into, and return.  It may be ``x``
        itself (each block is read before it is written), not a partial
        overlap.  A fresh result's first write page-faults every page of it;
        reusing ``out`` across calls avoids that, which for large arrays
        costs about as much as the arithmetic.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument.

    Spec: OCP MX v1.0 sections 5.1 and 6.3.
    """
    target = None if out is None else _check_out(out, x)
    # the kernels write float32 and float64 straight into out; narrower
    # dtypes go through float32 and are rounded into it afterwards
    direct = target if target is not None and target.dtype in (np.float32, np.float64) else None
    run = _run_quantize(
        x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset,
        want_values=True, values=direct, given=scales, per_row=per_row, tensor_scale=tensor_scale,
    )  # fmt: skip
    arr, values = run.source, run.values
    assert values is not None
    if out is not None:
        if values is not out:
            with np.errstate(over="ignore"):  # beyond float16's range is Inf, as documented
                np.copyto(out, values, casting="same_kind")
        return out
    with np.errstate(over="ignore"):  # beyond the input dtype's range is Inf, as documented
        result = values if values.dtype == arr.dtype else values.astype(arr.dtype)
    if is_torch_tensor(x):
        import torch

        if _is_torch_bfloat16(x) and run.fmt.two_level:
            # NVFP4 values are float64 here; torch rounds float64 to bfloat16 through
            # float32, twice, so the float32 step rounds to odd, which leaves torch's
            # rounding the only one
            return torch.from_numpy(_float32_to_odd(values)).to(dtype=x.dtype, device=x.device)
        # an MX bfloat16 tensor arrived widened to float32, exactly; torch's cast back
        # rounds the exact float32 value once (RNE)
        return torch.from_numpy(result).to(dtype=x.dtype, device=x.device)
    return result


def input_emax(dtype: np.dtype) -> int:
    """The exponent of the input format's largest binade: 15 for float16, 1023 for float64,
    127 for float32 and bfloat16 (the scale-byte overflow quirk forms its amax there)."""
    return {np.dtype(np.float16): 15, np.dtype(np.float64): 1023}.get(np.dtype(dtype), 127)


def _is_torch_bfloat16(x: Any) -> bool:
    return is_torch_tensor(x) and str(x.dtype) == "torch.bfloat16"


def _float32_to_odd(values: np.ndarray) -> np.ndarray:
    """float64 ``values`` rounded to float32 to odd: an inexact result moves to its odd
    neighbour on the exact value's side, so that one more rounding to a type with at
    least two bits fewer (bfloat16, float16) rounds the float64 value once."""
    with np.errstate(over="ignore"):  # beyond float32: Inf, then its odd neighbour, float32 max
        narrow = values.astype(np.float32)
    back = narrow.astype(np.float64)
    bits = narrow.view(np.uint32)
    even_inexact = (back != values) & (bits % 2 == 0) & ~np.isnan(values)
    up = np.abs(back) < np.abs(values)  # sign-magnitude: bits + 1 is one step away from 0
    moved = np.where(up, bits + np.uint32(1), bits - np.uint32(1))
    return np.where(even_inexact, moved, bits).astype(np.uint32).view(np.float32)


def _check_out(out: object, x: object) -> np.ndarray:
    """Return ``out`` once it is a valid target for the fake-quantized ``x``."""
    if is_torch_tensor(x) or not isinstance(x, np.ndarray):
        raise TypeError("out is only for numpy array inputs; x is not one")
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array; got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(
            f"out must have x's shape {x.shape} and dtype {x.dtype}; got {out.shape} {out.dtype}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    if np.may_share_memory(out, x) and not (
        out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
        and out.strides == x.strides
    ):
        raise ValueError("out may be x itself but must not partly overlap it")
    return out
