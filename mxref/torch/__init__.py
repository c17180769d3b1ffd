"""mxref's third codec twin, in torch: the same bits as the numba kernels and the oracle.

:func:`encode` and :func:`quantize_dequantize` take torch tensors on any
device and give :func:`mxref.quantize`'s and :func:`mxref.quantize_dequantize`'s
bits (:mod:`mxref.torch.codec` says how).  :func:`quantize` is the same codec
behind :func:`mxref.quantize`'s signature, returning an :class:`~mxref.MXArray`,
so that the conformance battery can run on it::

    pytest spec_tests --mx-backend mxref.torch:quantize

:mod:`mxref.torch.torchao` converts MXArrays to and from torchao's
``MXTensor`` (when torchao is installed).

Needs torch (the ``torch`` extra); ``import mxref`` never imports this package.

Spec: OCP MX v1.0 sections 5.1, 5.4.1 and 6.3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mxref.arguments import check_axis, check_scales_type
from mxref.array import MXArray
from mxref.formats import ElementFormat, get_format
from mxref.nvfp4_codec import refuse_two_level_arguments
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import Preset
from mxref.torch import codec, nvfp4

__all__ = ["encode", "quantize", "quantize_dequantize"]


def _codec_for(fmt: str | ElementFormat, options: dict[str, Any]) -> Any:
    """The codec module of ``fmt`` (:mod:`~mxref.torch.codec` for MX, :mod:`~mxref.torch.nvfp4`
    for NVFP4); for an MX format, NVFP4's own options are refused by name when set, and
    dropped when left at their defaults."""
    found = get_format(fmt, two_level=True)
    if found.two_level:
        return nvfp4
    refuse_two_level_arguments(found, options.pop("per_row", False),
                               options.pop("tensor_scale", None))  # fmt: skip
    return codec


def quantize_dequantize(x: torch.Tensor, fmt: str | ElementFormat, **options: Any
                        ) -> torch.Tensor:  # fmt: skip
    """Fake-quantize ``x`` bit for bit as :func:`mxref.quantize_dequantize`, differentiably.

    MX formats: :func:`mxref.torch.codec.quantize_dequantize`; ``"nvfp4"``:
    :func:`mxref.torch.nvfp4.quantize_dequantize` (``per_row``,
    ``tensor_scale``), whose docstrings list ``options``.
    """
    return _codec_for(fmt, options).quantize_dequantize(x, fmt, **options)


def encode(x: torch.Tensor, fmt: str | ElementFormat, **options: Any
           ) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Encode ``x`` as :func:`mxref.quantize` does, on ``x``'s device.

    MX formats: ``(codes, E8M0 scales)`` from :func:`mxref.torch.codec.encode`;
    ``"nvfp4"``: ``(codes, E4M3 scales, float32 tensor scale)`` from
    :func:`mxref.torch.nvfp4.encode`.
    """
    return _codec_for(fmt, options).encode(x, fmt, **options)


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
    """:func:`mxref.quantize` computed by the torch codec (:func:`encode`) on the CPU.

    Parameters
    ----------
    x : array_like or torch.Tensor
        float16, bfloat16 (a torch tensor, or an ml_dtypes array), float32 or
        float64 values, at least 1-d.
    fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset, scales
    per_row, tensor_scale
        As for :func:`mxref.quantize` (``scales`` a uint8 numpy array).
        ``"nvfp4"`` is computed by :func:`mxref.torch.nvfp4.encode`.

    Returns
    -------
    MXArray
        Its codes and scales (and NVFP4's tensor scale) equal
        ``mxref.quantize(x, ...)``'s byte for byte.

    Spec: OCP MX v1.0 sections 5.4.1 and 6.3.
    """
    found = get_format(fmt, two_level=True)
    t = _as_tensor(x)
    if found.two_level:
        codes, bytes_, g32 = nvfp4.encode(
            t, found, axis=axis, block_size=block_size, scale_rule=scale_rule, rounding=rounding,
            overflow=overflow, seed=seed, preset=preset, scales=scales, per_row=per_row,
            tensor_scale=tensor_scale)  # fmt: skip
        tensor_scale = g32.cpu().numpy()
    else:
        given = None
        if scales is not None:
            given = torch.from_numpy(np.array(check_scales_type(scales))).to(t.device)
        refuse_two_level_arguments(found, per_row, tensor_scale)
        codes, bytes_ = codec.encode(
            t, found, axis=axis, block_size=block_size, scale_rule=scale_rule, rounding=rounding,
            overflow=overflow, seed=seed, preset=preset, scales=given,
        )  # fmt: skip
    # encode checked both: the MXArray takes them as they are
    return MXArray(codes.cpu().numpy(), bytes_.cpu().numpy(), found, check_axis(axis, t.dim()),
                   found.block_size if block_size is None else block_size,
                   tensor_scale=tensor_scale)  # fmt: skip


def _as_tensor(x: Any) -> torch.Tensor:
    """``x`` as a CPU tensor of its own float dtype (bfloat16 arrays through their bits)."""
    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.name == "bfloat16":  # ml_dtypes: torch cannot wrap it, its bits can
        bits = np.ascontiguousarray(arr).view(np.uint16).astype(np.int16, copy=False)
        return torch.from_numpy(bits.copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(arr, copy=True))
