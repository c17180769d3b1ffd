"""The quantized linear layers that calibration trains and produces.

- :class:`InputQuantizer`: the activation side of a group of linears that
  share one input (the transform, the clipping and the MX fake
  quantization), computed once per input and shared by the group.
- :class:`CalibratingLinear`: a linear under calibration; its weight side
  (``W P^{-T}``, clipping, fake quantization) is recomputed on every call, so
  gradients reach the transform and the clipping.
- :class:`QuantizedLinear`: the result, with the weight side applied once,
  offline (BATQuant paper, Algorithm 2, lines 11-15); the activation side
  runs online.

:func:`set_quantization` switches the clipping and the fake quantization of
every quantizer in a module off (or on again) while the transforms stay: with
it off, a quantized model must compute what the original does, up to
rounding (the invariance the tests check).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from batquant.algorithms.clipping import LearnableClip
from batquant.algorithms.heads import HeadFusion
from batquant.algorithms.observers import InputStatistics
from batquant.algorithms.rounding import MXWeight, WeightRounding, round_to_nearest
from batquant.algorithms.transforms import Transform
from batquant.config import TensorQuant


class InputQuantizer(nn.Module):
    """``x -> Q_a(clip(T(x)))``: the activation side of one group of linears.

    Parameters
    ----------
    transform : Transform or None
    clip : LearnableClip or None
    quant : TensorQuant or None
        None keeps the activation in full precision.

    The linears of a group (q/k/v, gate/up) call it with the same tensor; the
    result of the last call is reused while the input is the same object, at
    the same version, under the same grad mode, so the group pays for one
    activation side, not three.
    """

    def __init__(
        self,
        transform: Transform | None,
        clip: LearnableClip | None,
        quant: TensorQuant | None,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.clip = clip
        self.quant = quant
        #: False: skip clipping and fake quantization (the transform stays).
        self.quantize = True
        #: Receives the transformed, clipped activation (observers.observing_transformed).
        self.observer: InputStatistics | None = None
        self._last: tuple[torch.Tensor, int, bool, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The quantized activation, in the quantizer's dtype, for ``x`` of shape [..., N]."""
        last = self._last
        grad = torch.is_grad_enabled()
        if last is not None and last[0] is x and last[1] == x._version and last[2] == grad:
            return last[3]
        h = self.unquantized(x)
        if self.observer is not None:
            self.observer.update(h)
        if self.quantize and self.quant is not None:
            h = self.quant.fake_quantize(h)
        self._last = (x, x._version, grad, h)
        return h

    def unquantized(self, x: torch.Tensor) -> torch.Tensor:
        """``clip(T(x))`` in the quantizer's dtype: the activation before its fake quantization.

        What the observers see, and what a Hessian for the transformed weights
        is built from.
        """
        h = x.to(self.dtype)
        if self.transform is not None:
            h = self.transform(h)
        if self.quantize and self.clip is not None:
            h = self.clip(h)
        return h

    def forget(self) -> None:
        """Drop the reused result (and the graph it holds)."""
        self._last = None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the activation side computes in (its parameters', float32 without any)."""
        for p in self.parameters():
            return p.dtype
        for b in self.buffers():
            return b.dtype
        return torch.float32

    def extra_repr(self) -> str:
        return f"quant={self.quant.describe() if self.quant else 'fp'}, quantize={self.quantize}"


def weight_side(
    weight: torch.Tensor,
    transform: Transform | None,
    clip: LearnableClip | None,
    quant: TensorQuant | None,
    quantize: bool = True,
) -> torch.Tensor:
    """``Q_w(clip_w(W P^{-T}))`` (BATQuant paper, Algorithm 2, lines 4-6)."""
    w = clipped_weight(weight, transform, clip, quantize)
    return w if quant is None or not quantize else quant.fake_quantize(w)


def clipped_weight(
    weight: torch.Tensor,
    transform: Transform | None,
    clip: LearnableClip | None,
    quantize: bool = True,
) -> torch.Tensor:
    """``clip_w(W P^{-T})``: the weight side before its rounding."""
    w = weight if transform is None else transform.weight_transform(weight)
    return w if clip is None or not quantize else clip(w)


def frozen_weight(
    weight: torch.Tensor,
    transform: Transform | None,
    clip: LearnableClip | None,
    quant: TensorQuant | None,
    inputs: InputQuantizer,
    rounding: WeightRounding | None,
    expert: int | None,
    where: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight side applied once, without grad: the rounded weight and its E8M0 bytes.

    ``rounding`` (to nearest when None) rounds ``clip_w(W P^{-T})``; the bytes
    are None where the weight stays in full precision.
    """
    with torch.no_grad():
        w = clipped_weight(weight, transform, clip, inputs.quantize)
        if quant is None or not inputs.quantize:
            return w.detach().clone(), None
        wq, scales = (rounding or round_to_nearest)(w, quant, inputs, expert, where)
    return wq.detach().clone(), scales.detach().clone()


class CalibratingLinear(nn.Module):
    """A linear under calibration: ``Q_a(clip(T(x))) @ Q_w(clip_w(W' P^{-T}))^T + b'``.

    Parameters
    ----------
    linear : nn.Linear
        The full-precision layer; its weight and bias are copied (float32).
    input_quantizer : InputQuantizer
        Shared by the group (registered here and in the layer's ``batquant``
        dict; the layer's state dict keeps each tensor once).
    weight_clip : LearnableClip or None
        One pair per row (and per K-block) of this linear.
    weight_quant : TensorQuant or None
    heads : HeadFusion or None
        A per-head transform fused into this linear's weight (``P_v`` into
        v_proj's output rows, ``P_v^{-1}`` into o_proj's input columns).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        linear: nn.Linear,
        input_quantizer: InputQuantizer,
        weight_clip: LearnableClip | None,
        weight_quant: TensorQuant | None,
        *,
        heads: HeadFusion | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.float32).clone())
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.input_quantizer = input_quantizer
        self.heads = heads
        self.weight_clip = weight_clip
        self.weight_quant = weight_quant

    def fused_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias with the per-head transform fused in (differentiable)."""
        if self.heads is None:
            return self.weight, self.bias
        return self.heads.fuse(self.weight, self.bias)

    def reference(self, inputs: torch.Tensor, outputs: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """The full-precision linear's ``(inputs, outputs)`` in this linear's fused basis.

        What Algorithm 2's per-linear loss compares this linear against.
        """
        if self.heads is None:
            return inputs, outputs
        return self.heads.reference(inputs, outputs)

    def quantized_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``Q_w(clip_w(W' P^{-T}))`` and the bias."""
        w, b = self.fused_weight()
        iq = self.input_quantizer
        return weight_side(w, iq.transform, self.weight_clip, self.weight_quant, iq.quantize), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.quantized_weight()
        h = self.input_quantizer(x)
        return nn.functional.linear(h, w, b).to(x.dtype)

    def freeze(self, description: str = "", rounding: WeightRounding | None = None,
               where: str = "linear") -> QuantizedLinear:  # fmt: skip
        """The :class:`QuantizedLinear` with this weight side applied once, without grad.

        Parameters
        ----------
        description : str
        rounding : WeightRounding, optional
            How the weight is rounded (:mod:`batquant.algorithms.gptq`); to
            nearest when omitted.
        where : str
            Names the linear in the rounding's reports and errors.
        """
        with torch.no_grad():
            w, b = self.fused_weight()
        iq = self.input_quantizer
        wq, scales = frozen_weight(w, iq.transform, self.weight_clip, self.weight_quant, iq,
                                   rounding, None, where)  # fmt: skip
        return QuantizedLinear(wq, None if b is None else b.detach().clone(), iq,
                               weight_scale=scales, description=description)  # fmt: skip


class QuantizedLinear(nn.Module):
    """``y = Q_a(clip(T(x))) @ W_q^T + b`` with the fused, fake-quantized weight ``W_q``.

    Parameters
    ----------
    weight : torch.Tensor
        ``Q_w(clip_w(W P^{-T}))``, float32 [out_features, in_features].
    bias : torch.Tensor or None
    input_quantizer : InputQuantizer
        The activation side (shared by the linears of a group, each of which
        registers it; a layer built by the pipeline saves it once).
    weight_scale : torch.Tensor, optional
        The block scale bytes ``[out_features, in_features / block]`` (uint8)
        that ``weight`` is valid MX under (what an export packs): E8M0, or
        E4M3 for NVFP4 (without its tensor scale); None when the weight is
        in full precision.
    description : str
        Shown by ``repr``.

    The input may have any float dtype and any leading dimensions; it is
    computed in the layer's dtype (float32 as built) and the output is
    returned in the input's dtype.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_scale: torch.Tensor | None
    input_quantizer: InputQuantizer
    #: what an export packs (compressed-tensors' names)
    mx_weights: ClassVar[tuple[MXWeight, ...]] = (
        MXWeight("weight", "weight_scale", "weight_packed"),
    )

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        input_quantizer: InputQuantizer,
        *,
        weight_scale: torch.Tensor | None = None,
        description: str = "",
    ) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"weight must be 2-D [out, in]; got shape {tuple(weight.shape)}")
        if weight_scale is not None and (weight_scale.dtype != torch.uint8
                                         or weight_scale.shape[0] != weight.shape[0]):  # fmt: skip
            raise ValueError(f"weight_scale must be uint8 [{weight.shape[0]}, blocks]; got "
                             f"{weight_scale.dtype} {tuple(weight_scale.shape)}")  # fmt: skip
        self.register_buffer("weight", weight.to(torch.float32))
        self.register_buffer("bias", None if bias is None else bias.to(torch.float32))
        self.register_buffer("weight_scale", weight_scale)
        self.input_quantizer = input_quantizer
        self.description = description

    @property
    def transform(self) -> Transform | None:
        """The activation-side transform (shared by the group)."""
        return self.input_quantizer.transform

    @property
    def act_clip(self) -> LearnableClip | None:
        """The activation clipping."""
        return self.input_quantizer.clip

    @property
    def act_quant(self) -> TensorQuant | None:
        """The activation's MX fake quantization."""
        return self.input_quantizer.quant

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
        h = self.input_quantizer(x).to(self.weight.dtype)
        return nn.functional.linear(h, self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {self.description}")  # fmt: skip


def set_quantization(module: nn.Module, enabled: bool) -> None:
    """Switch clipping and fake quantization of every quantizer in ``module`` on or off.

    The transforms stay.  Covers activations, weights of :class:`CalibratingLinear`
    and the KV cache (:class:`batquant.algorithms.heads.KVQuantizer`); the fused weights of
    a :class:`QuantizedLinear` are already quantized and stay as they are.
    """
    for sub in module.modules():
        if hasattr(sub, "quantize") and isinstance(sub.quantize, bool):
            sub.quantize = enabled
