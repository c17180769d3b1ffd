"""MXArray to and from torchao's ``MXTensor`` (torchao 0.18's prototype MX formats).

The bytes are the same on both sides; only the containers differ.  torchao
blocks the last axis, stores FP8 and FP6 elements one code per byte (FP8 as
its float8 dtypes), FP4 two codes per byte with the first in the low nibble
(mxref's own packing), and the scales as ``float8_e8m0fnu``.  It has no
MXINT8.  Conversion checks the layout and says what does not fit.

Needs torch and torchao; ``import mxref`` and ``import mxref.torch`` never
import this module.

Spec: OCP MX v1.0 sections 5.1-5.4.1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from mxref.array import MXArray
from mxref.formats import get_format
from mxref.packing import pack, unpack

__all__ = ["from_mxtensor", "to_mxtensor"]

#: mxref format -> torchao's element dtype (a torch dtype, or torchao's FP6 names).
TORCHAO_ELEMENTS: dict[str, Any] = {
    "mxfp4": torch.float4_e2m1fn_x2,
    "mxfp6_e2m3": "fp6_e2m3",
    "mxfp6_e3m2": "fp6_e3m2",
    "mxfp8_e4m3": torch.float8_e4m3fn,
    "mxfp8_e5m2": torch.float8_e5m2,
}


def to_mxtensor(mx: MXArray, orig_dtype: torch.dtype = torch.float32) -> Any:
    """torchao's ``MXTensor`` holding ``mx``'s codes and scales.

    Parameters
    ----------
    mx : MXArray
        Blocked along its last axis, in a format torchao has (not MXINT8),
        with whole blocks (and an even length for MXFP4).
    orig_dtype : torch.dtype
        What the tensor dequantizes to by default.

    Returns
    -------
    torchao.prototype.mx_formats.mx_tensor.MXTensor

    Raises
    ------
    ValueError
        Naming what torchao cannot hold.
    """
    from torchao.prototype.mx_formats.mx_tensor import MXTensor

    name = mx.fmt.name
    if name not in TORCHAO_ELEMENTS:
        raise ValueError(f"torchao's MXTensor has no {name}; it has {', '.join(TORCHAO_ELEMENTS)}")
    n = mx.shape[-1]
    if mx.axis != len(mx.shape) - 1 or n % mx.block_size:
        raise ValueError(f"MXTensor blocks the last axis in whole blocks; this array blocks axis "
                         f"{mx.axis} of shape {mx.shape} by {mx.block_size}")  # fmt: skip
    if name == "mxfp4":
        if n % 2:
            raise ValueError(f"MXFP4 in MXTensor packs two codes per byte; the last axis is {n}")
        qdata = torch.from_numpy(pack(mx).data.reshape(*mx.shape[:-1], n // 2).copy())
    else:
        qdata = torch.from_numpy(mx.codes.copy())
        if isinstance(TORCHAO_ELEMENTS[name], torch.dtype):
            qdata = qdata.view(TORCHAO_ELEMENTS[name])
    scale = torch.from_numpy(mx.scales.copy()).view(torch.float8_e8m0fnu)
    return MXTensor(qdata, scale, TORCHAO_ELEMENTS[name], mx.block_size, orig_dtype,
                    None, None, False)  # fmt: skip


def from_mxtensor(tensor: Any) -> MXArray:
    """The MXArray of a torchao ``MXTensor``: its element codes and E8M0 bytes.

    Raises
    ------
    ValueError
        For swizzled scales or an element dtype mxref does not know.
    """
    names = {str(v): k for k, v in TORCHAO_ELEMENTS.items()}
    name = names.get(str(tensor.elem_dtype))
    if name is None:
        raise ValueError(f"MXTensor element dtype {tensor.elem_dtype} has no mxref format")
    if getattr(tensor, "is_swizzled_scales", False):
        raise ValueError("MXTensor scales are swizzled (a kernel layout); convert from a "
                         "tensor with is_swizzled_scales=False")  # fmt: skip
    block_size = int(tensor.block_size)
    data = tensor.qdata.detach().cpu().contiguous().view(torch.uint8).numpy()
    scales = tensor.scale.detach().cpu().contiguous().view(torch.uint8).numpy()
    fmt = get_format(name)
    if name == "mxfp4":
        shape = (*data.shape[:-1], data.shape[-1] * 2)
        template = pack(MXArray(np.zeros(shape, np.uint8), scales.copy(), fmt, -1, block_size))
        return unpack(dataclasses.replace(template, data=data.reshape(template.data.shape).copy()))
    return MXArray(data.copy(), scales.reshape(*data.shape[:-1], -1).copy(), fmt, -1, block_size)
