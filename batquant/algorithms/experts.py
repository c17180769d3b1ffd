"""Fused MoE experts under calibration and quantized (transformers 5's 3-D expert tensors).

The experts of an MoE block hold ``gate_up [E, 2I, H]`` (gate rows, then up
rows) and ``down [E, H, I]``, and are called as
``experts(hidden [T, H], top_k_index [T, k], top_k_weights [T, k])`` with the
router's choice, which is made outside them (in full precision, untouched).
The BATQuant placement for them:

- **one** ``P_up`` for every expert's gate and up projections, since they all
  read the same tokens: the activation side ``Q_a(clip(x P_up))`` is computed
  once for all tokens (under MX each token is quantized on its own, so this
  equals doing it per expert on the routed tokens; an NVFP4 tensor scale per
  tensor is then one over all the block's tokens), and every expert's weight is
  ``Q_w(clip_w(W_e P_up^{-T}))``;
- **one** ``P_down`` and one activation clipping **per expert**, since each
  expert's intermediate activations are its own;
- every expert weight MX-quantized along its reduction axis (the last), with
  its own weight clipping.

:class:`CalibratingExperts` recomputes the weight sides at every call so that
gradients reach the transforms and clipping; :meth:`CalibratingExperts.freeze`
applies them once and returns :class:`QuantizedExperts`.  Nothing here names
a model family or a method.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from batquant.algorithms.clipping import LearnableClip
from batquant.algorithms.layer import InputQuantizer, frozen_weight, weight_side
from batquant.algorithms.rounding import MXWeight, WeightRounding
from batquant.config import TensorQuant


def route(
    hidden: torch.Tensor,
    top_k_index: torch.Tensor,
    top_k_weights: torch.Tensor,
    up: InputQuantizer,
    down: nn.ModuleList,
    gate_up: torch.Tensor | list[torch.Tensor],
    down_weights: torch.Tensor | list[torch.Tensor],
    act_fn: nn.Module,
) -> torch.Tensor:
    """The experts' output: ``sum_k w_k down_e(act(gate_e(x)) * up_e(x))`` per token.

    Parameters
    ----------
    hidden : torch.Tensor
        ``[T, H]``.
    top_k_index, top_k_weights : torch.Tensor
        ``[T, k]``: the router's experts and weights per token.
    up : InputQuantizer
        The shared activation side of gate/up.
    down : nn.ModuleList of InputQuantizer
        Each expert's activation side of down.
    gate_up, down_weights : tensor or list of tensors
        Per expert ``[2I, H]`` and ``[H, I]`` (already transformed and quantized).
    act_fn : nn.Module

    Returns
    -------
    torch.Tensor
        ``[T, H]`` in ``hidden``'s dtype.
    """
    x = up(hidden)
    out = torch.zeros(hidden.shape, dtype=x.dtype, device=hidden.device)
    for e in torch.unique(top_k_index).tolist():
        if not 0 <= e < len(gate_up):
            continue  # an index past the experts means "no expert" (expert parallelism)
        token, slot = torch.where(top_k_index == e)
        w_gu = gate_up[e]
        gate, upv = nn.functional.linear(x[token].to(w_gu.dtype), w_gu).chunk(2, dim=-1)
        h = down[e](act_fn(gate) * upv)
        w_d = down_weights[e]
        y = nn.functional.linear(h.to(w_d.dtype), w_d)
        y = y * top_k_weights[token, slot, None].to(y.dtype)
        out.index_add_(0, token, y.to(out.dtype))
    return out.to(hidden.dtype)


class CalibratingExperts(nn.Module):
    """Fused experts under calibration (module docstring).

    Parameters
    ----------
    gate_up, down : torch.Tensor
        The full-precision ``[E, 2I, H]`` and ``[E, H, I]`` weights (copied, float32).
    act_fn : nn.Module
        The experts' activation (gate side).
    up : InputQuantizer
        ``P_up``, the activation clipping and quantization of gate/up (shared
        by every expert, and with a shared expert's gate/up if the adapter says so).
    down : list of InputQuantizer
        One per expert.
    gate_up_clips, down_clips : list of LearnableClip or None
        One per expert, or None (no weight clipping).
    weight_quant : TensorQuant or None
    """

    gate_up: torch.Tensor
    down_weight: torch.Tensor

    def __init__(
        self,
        gate_up: torch.Tensor,
        down: torch.Tensor,
        act_fn: nn.Module,
        up: InputQuantizer,
        down_quantizers: list[InputQuantizer],
        gate_up_clips: list[LearnableClip] | None,
        down_clips: list[LearnableClip] | None,
        weight_quant: TensorQuant | None,
    ) -> None:
        super().__init__()
        e = gate_up.shape[0]
        if len(down_quantizers) != e or any(len(c) != e for c in (gate_up_clips, down_clips)
                                            if c is not None):  # fmt: skip
            raise ValueError(f"CalibratingExperts: {e} experts need {e} down quantizers and "
                             "clips")  # fmt: skip
        self.register_buffer("gate_up", gate_up.detach().to(torch.float32).clone())
        self.register_buffer("down_weight", down.detach().to(torch.float32).clone())
        self.act_fn = act_fn
        self.up = up
        self.down = nn.ModuleList(down_quantizers)
        self.gate_up_clips = None if gate_up_clips is None else nn.ModuleList(gate_up_clips)
        self.down_clips = None if down_clips is None else nn.ModuleList(down_clips)
        self.weight_quant = weight_quant

    @property
    def num_experts(self) -> int:
        """E."""
        return int(self.gate_up.shape[0])

    def expert_modules(self, expert: int) -> list[nn.Module]:
        """What expert ``expert`` alone learns: its ``P_down``, its activation and weight clips."""
        mods: list[nn.Module] = [self.down[expert]]
        mods += [c[expert] for c in (self.gate_up_clips, self.down_clips) if c is not None]
        return mods

    def quantized_weights(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per expert ``Q_w(clip_w(W_gu P_up^{-T}))`` and ``Q_w(clip_w(W_d P_down,e^{-T}))``."""
        gate_up, down = [], []
        for e in range(self.num_experts):
            clip_gu = None if self.gate_up_clips is None else self.gate_up_clips[e]
            clip_d = None if self.down_clips is None else self.down_clips[e]
            dq = self.down[e]
            assert isinstance(dq, InputQuantizer)
            assert clip_gu is None or isinstance(clip_gu, LearnableClip)
            assert clip_d is None or isinstance(clip_d, LearnableClip)
            gate_up.append(weight_side(self.gate_up[e], self.up.transform, clip_gu,
                                       self.weight_quant, self.up.quantize))  # fmt: skip
            down.append(weight_side(self.down_weight[e], dq.transform, clip_d,
                                    self.weight_quant, dq.quantize))  # fmt: skip
        return gate_up, down

    def routed_inputs(self, hidden: torch.Tensor, top_k_index: torch.Tensor
                      ) -> dict[int, torch.Tensor]:  # fmt: skip
        """Each hit expert's gate/up input ``clip(x P_up)`` on its routed tokens, unquantized.

        What a Hessian of that expert's gate/up weight is built from.
        """
        x = self.up.unquantized(hidden)
        return {e: x[torch.where(top_k_index == e)[0]] for e in torch.unique(top_k_index).tolist()
                if 0 <= e < self.num_experts}  # fmt: skip

    def forward(self, hidden: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """As the full-precision experts, with every side quantized."""
        gate_up, down = self.quantized_weights()
        return route(hidden, top_k_index, top_k_weights, self.up, self.down, gate_up, down,
                     self.act_fn)  # fmt: skip

    def freeze(self, description: str = "", rounding: WeightRounding | None = None,
               where: str = "experts") -> QuantizedExperts:  # fmt: skip
        """:class:`QuantizedExperts` with every weight side applied once, without grad.

        ``rounding`` rounds each expert's transformed, clipped weights (to
        nearest when omitted; :mod:`batquant.algorithms.gptq`); gate/up is
        weighed by the expert's own routed tokens.
        """
        sides: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = [[], []]
        for e in range(self.num_experts):
            dq = self.down[e]
            assert isinstance(dq, InputQuantizer)
            for side, (weight, clips, inputs, expert, name) in enumerate((
                (self.gate_up[e], self.gate_up_clips, self.up, e, "gate_up"),
                (self.down_weight[e], self.down_clips, dq, None, "down"),
            )):  # fmt: skip
                clip = None if clips is None else clips[e]
                assert clip is None or isinstance(clip, LearnableClip)
                sides[side].append(frozen_weight(weight, inputs.transform, clip, self.weight_quant,
                                                 inputs, rounding, expert,
                                                 f"{where}.{name}[{e}]"))  # fmt: skip
        (gate_up, gu_scales), (down, d_scales) = (zip(*s, strict=True) for s in sides)
        return QuantizedExperts(torch.stack(gate_up), torch.stack(down), self.act_fn, self.up,
                                list(self.down), gate_up_scale=_stacked_scales(gu_scales),
                                down_scale=_stacked_scales(d_scales),
                                description=description)  # fmt: skip


class QuantizedExperts(nn.Module):
    """Fused experts with the fused, fake-quantized weights; activation sides run online.

    Parameters
    ----------
    gate_up, down : torch.Tensor
        ``[E, 2I, H]`` and ``[E, H, I]``, transformed, clipped and fake-quantized.
    act_fn : nn.Module
    up : InputQuantizer
    down_quantizers : list of InputQuantizer
    gate_up_scale, down_scale : torch.Tensor, optional
        The E8M0 bytes ``[E, 2I, H / block]`` and ``[E, H, I / block]`` (uint8)
        the weights are valid MX under; None for full-precision weights.
    description : str
        Shown by ``repr``.
    """

    gate_up: torch.Tensor
    down_weight: torch.Tensor
    gate_up_scale: torch.Tensor | None
    down_scale: torch.Tensor | None
    #: what an export packs
    mx_weights: ClassVar[tuple[MXWeight, ...]] = (
        MXWeight("gate_up", "gate_up_scale", "gate_up_packed"),
        MXWeight("down_weight", "down_scale", "down_packed"),
    )

    def __init__(self, gate_up: torch.Tensor, down: torch.Tensor, act_fn: nn.Module,
                 up: InputQuantizer, down_quantizers: list[nn.Module], *,
                 gate_up_scale: torch.Tensor | None = None,
                 down_scale: torch.Tensor | None = None,
                 description: str = "") -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("gate_up", gate_up.to(torch.float32))
        self.register_buffer("down_weight", down.to(torch.float32))
        self.register_buffer("gate_up_scale", gate_up_scale)
        self.register_buffer("down_scale", down_scale)
        self.act_fn = act_fn
        self.up = up
        self.down = nn.ModuleList(down_quantizers)
        self.description = description

    @property
    def num_experts(self) -> int:
        """E."""
        return int(self.gate_up.shape[0])

    def forward(self, hidden: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The quantized experts' output ``[T, H]`` for the router's choice."""
        return route(hidden, top_k_index, top_k_weights, self.up, self.down, self.gate_up,
                     self.down_weight, self.act_fn)  # fmt: skip

    def extra_repr(self) -> str:
        e, two_i, h = self.gate_up.shape
        return f"experts={e}, hidden={h}, intermediate={two_i // 2}, {self.description}"


def _stacked_scales(scales: tuple[torch.Tensor | None, ...]) -> torch.Tensor | None:
    present = [s for s in scales if s is not None]
    return torch.stack(present) if len(present) == len(scales) and present else None


def fused_expert_inputs(gate_up: torch.Tensor, act_fn: nn.Module, hidden: torch.Tensor,
                        top_k_index: torch.Tensor) -> dict[int, torch.Tensor]:  # fmt: skip
    """Each hit expert's full-precision down-projection input ``act(gate) * up``.

    For the statistics of ``P_down``'s stream, from the full-precision experts'
    own call (``gate_up [E, 2I, H]``, no transform).
    """
    found: dict[int, torch.Tensor] = {}
    for e in torch.unique(top_k_index).tolist():
        if not 0 <= e < gate_up.shape[0]:
            continue  # an index past the experts means "no expert" (expert parallelism)
        token = torch.where(top_k_index == e)[0]
        w = gate_up[e]
        gate, upv = nn.functional.linear(hidden[token].to(w.dtype), w).chunk(2, dim=-1)
        found[e] = act_fn(gate) * upv
    return found
