"""MX weights to packed bytes and back, through mxref, checked bit for bit both ways.

A frozen weight is valid MX under its E8M0 bytes (:mod:`batquant.algorithms.rounding`):
:func:`pack_weight` re-encodes it with :func:`mxref.quantize` and those very
scales, checks that the codes decode to the weight exactly, and packs them
with :func:`mxref.pack` (MXFP4: element ``2i`` in the low nibble of byte
``i``, compressed-tensors' ``mxfp4-pack-quantized`` layout; 8-bit formats one
byte per code).  :func:`unpack_weight` inverts it.

Spec: OCP MX v1.0 sections 5.1 and 6.3; packing follows :mod:`mxref.packing`.
"""

from __future__ import annotations

import numpy as np
import torch

import mxref
from batquant.config import TensorQuant
from mxref.formats import get_format


def pack_weight(values: torch.Tensor, scales: torch.Tensor, quant: TensorQuant,
                where: str) -> torch.Tensor:  # fmt: skip
    """The packed codes (uint8 ``[..., packed row]``) of ``values`` under ``scales``.

    Raises
    ------
    ValueError
        When ``values`` is not exactly representable under ``scales``
        (naming ``where``): the weight was changed after it was frozen.
    """
    w = values.detach().to("cpu", torch.float32).contiguous().numpy()
    s = scales.detach().to("cpu").contiguous().numpy()
    try:
        mx = mxref.quantize(w, quant.fmt, block_size=quant.block_size, scales=s)
    except ValueError as exc:
        raise ValueError(f"{where}: cannot encode the weight under its scales: {exc}") from None
    decoded = mxref.dequantize(mx, np.float32)
    differ = int(np.count_nonzero(decoded.view(np.uint32) != w.view(np.uint32)))
    if differ:
        raise ValueError(f"{where}: {differ} weight elements are not {quant.fmt} values under "
                         "their E8M0 scales; was the weight changed after freezing?")  # fmt: skip
    return torch.from_numpy(mxref.pack(mx).data)


def unpack_weight(packed: torch.Tensor, scales: torch.Tensor, quant: TensorQuant,
                  shape: tuple[int, ...], where: str) -> torch.Tensor:  # fmt: skip
    """The float32 weight of ``shape`` that ``packed`` and ``scales`` encode, exactly.

    Raises
    ------
    ValueError
        Shapes or dtypes that do not fit, naming ``where``.
    """
    try:
        mx = mxref.unpack(mxref.PackedMX(
            data=packed.detach().to("cpu").contiguous().numpy(),
            scales=scales.detach().to("cpu").contiguous().numpy(),
            fmt=get_format(quant.fmt), shape=tuple(shape), axis=len(shape) - 1,
            block_size=quant.block_size,
        ))  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    return torch.from_numpy(mxref.dequantize(mx, np.float32))
