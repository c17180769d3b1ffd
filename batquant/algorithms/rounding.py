"""How a frozen weight is rounded to MX: the weight-quantizer interface and round-to-nearest.

A linear's weight side is trained with round-to-nearest fake quantization;
when it is frozen, a :class:`WeightRounding` rounds its transformed, clipped
weight once and returns the E8M0 bytes it is valid MX under (what an export
packs).  :func:`round_to_nearest` is the methods' own rounding;
:class:`batquant.algorithms.gptq.LayerHessians` is MX-GPTQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from batquant.config import TensorQuant


@dataclass(frozen=True)
class MXWeight:
    """A frozen module's MX weight, as its buffers hold it and as an export packs it.

    Attributes
    ----------
    values : str
        The buffer with the fake-quantized weight ``[..., in]`` (blocked along its last axis).
    scales : str
        The buffer with its block scale bytes ``[..., in / block]`` (uint8): E8M0
        for an MX format, E4M3 for NVFP4.
    packed : str
        The export's name for the packed codes (compressed-tensors' ``weight_packed``).
    """

    values: str
    scales: str
    packed: str


class WeightRounding(Protocol):
    """How a frozen linear or expert rounds its transformed, clipped weight.

    Called with the weight ``[out, in]``, its :class:`TensorQuant`, the
    :class:`~batquant.algorithms.layer.InputQuantizer` whose output it
    multiplies, the expert whose routed tokens alone reach it when that
    quantizer is shared by every token (fused experts' gate/up; None
    otherwise) and a name for messages; returns the fake-quantized weight
    and its E8M0 bytes.
    """

    def __call__(self, weight: torch.Tensor, quant: TensorQuant, inputs: nn.Module,
                 expert: int | None, where: str) -> tuple[torch.Tensor, torch.Tensor]: ...


def static_scales(weight: torch.Tensor, quant: TensorQuant) -> torch.Tensor:
    """The block scale bytes of ``weight``'s blocks (along its last axis) under ``quant``.

    E8M0 bytes under the scale rule for an MX format; E4M3 bytes for NVFP4,
    whose float32 tensor scale is not kept (an export refuses NVFP4,
    :mod:`batquant.deploy.schema`).
    """
    from mxref.torch import encode

    return encode(weight, quant.fmt, **quant.codec_options())[1]


def round_with_scales(weight: torch.Tensor, scales: torch.Tensor, quant: TensorQuant
                      ) -> torch.Tensor:  # fmt: skip
    """Fake-quantize ``weight`` against the given E8M0 ``scales`` (bit for bit mxref's)."""
    from mxref.torch import quantize_dequantize

    return quantize_dequantize(weight, quant.fmt, axis=-1, block_size=quant.block_size,
                               rounding=quant.rounding, overflow=quant.overflow,
                               scales=scales)  # fmt: skip


def round_to_nearest(weight: torch.Tensor, quant: TensorQuant, inputs: nn.Module,
                     expert: int | None, where: str
                     ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The methods' own rounding: every element to nearest, scales from the weight itself."""
    return quant.fake_quantize(weight), static_scales(weight, quant)


def unrounded(weight: torch.Tensor, quant: TensorQuant, inputs: nn.Module,
              expert: int | None, where: str) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The weight as it is and zero scale bytes of the right shape: a structure to load into.

    For a layer rebuilt only to receive a saved state (which overwrites both),
    so that rebuilding does not pay for rounding every weight.
    """
    blocks = -(-weight.shape[-1] // quant.block_size)
    zeros = torch.zeros((*weight.shape[:-1], blocks), dtype=torch.uint8, device=weight.device)
    return weight, zeros
