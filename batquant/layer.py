"""The quantized linear layer that calibration produces.

:class:`QuantizedLinear` computes the quantized forward of one linear: the
activation-side transform, the activation clipping, the activation's MX fake
quantization, and a matmul with the weight whose transform, clipping and
fake quantization were applied offline (BATQuant paper, Algorithm 2, lines
11-15).
"""

from __future__ import annotations

import torch
from torch import nn

from batquant.clipping import LearnableClip
from batquant.config import TensorQuant
from batquant.transforms import Transform


class QuantizedLinear(nn.Module):
    """``y = Q_a(clip(T(x))) @ W_q^T + b`` with the fused, fake-quantized weight ``W_q``.

    Parameters
    ----------
    weight : torch.Tensor
        ``Q_w(clip_w(W P^{-T}))``, float32 [out_features, in_features].
    bias : torch.Tensor or None
    transform : Transform or None
        Applied to the input online (shared by the linears of a group).
    act_clip : LearnableClip or None
    act_quant : TensorQuant or None
        The activation's MX fake quantization; None keeps activations in float32.
    description : str
        Shown by ``repr``.

    The input may have any float dtype and any leading dimensions; it is
    computed in the layer's dtype (float32 as built; ``.to(dtype)`` moves
    the weight, the transform and the clipping together) and the output is
    returned in the input's dtype.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        transform: Transform | None,
        act_clip: LearnableClip | None,
        act_quant: TensorQuant | None,
        description: str = "",
    ) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D [out, in]; got shape {tuple(weight.shape)}")
        self.register_buffer("weight", weight.to(torch.float32))
        self.register_buffer("bias", None if bias is None else bias.to(torch.float32))
        self.transform = transform
        self.act_clip = act_clip
        self.act_quant = act_quant
        self.description = description

    @property
    def in_features(self) -> int:
        """Size of the input's last dimension."""
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        """Size of the output's last dimension."""
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized output for input ``x`` of shape [..., in_features]."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("QuantizedLinear: input must be a floating-point torch.Tensor")
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"QuantizedLinear: input's last dim is {x.shape[-1]}, expected in_features "
                f"{self.in_features}"
            )
        if x.device != self.weight.device:
            raise ValueError(
                f"QuantizedLinear: input is on {x.device} but the layer is on {self.weight.device}"
            )
        h = x.to(self.weight.dtype)
        if self.transform is not None:
            h = self.transform(h)
        if self.act_clip is not None:
            h = self.act_clip(h)
        if self.act_quant is not None:
            h = self.act_quant.fake_quantize(h)
        return nn.functional.linear(h, self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {self.description}")  # fmt: skip
