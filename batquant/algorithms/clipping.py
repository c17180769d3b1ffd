"""Learnable clipping (BATQuant paper, section 3.1.2, equations 3 and 4).

For the i-th group of values x_i the clipped values are
``clip(x_i, sigmoid(a_min_i) * min(x_i), sigmoid(a_max_i) * max(x_i))``:
the bounds follow the live data, and the learnable logits only say what
fraction of the group's own range survives.

:class:`LearnableClip` covers every variant the paper and its ablation use:

============================  ==========  ===================================
variant                       ``groups``  one (a_min, a_max) pair per
============================  ==========  ===================================
block-wise, activations       block       channel block, shared by all tokens
block-wise, weights           block       quantization block (row x K-block)
global, activations           row         tensor (bounds from each token's row)
global, weights               row         output row (FlatQuant's LWC)
============================  ==========  ===================================

The min and max are those of the live tensor and keep their gradient, so the
bounds are differentiable in both the logits and the data.  One deviation,
documented in ``docs/batquant.md``: the bounds use ``min(min(x_i), 0)`` and
``max(max(x_i), 0)``.  This equals equation 4 whenever a group holds both
signs; in a group of one sign, equation 4's bound on the far side (say
``sigmoid(a_min) * min(x_i) > 0`` for a positive group) is no clip at all
until it crosses the near bound, where it would overrule it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batquant.config import TensorQuant
from mxref.policies import Policy


class ClipGroups(Policy):
    """Which values share one clipping bound."""

    #: the min/max of every ``block_size`` consecutive values of the last dimension
    BLOCK = "block"
    #: the min/max of the whole last dimension (one row)
    ROW = "row"


class _GroupClip(torch.autograd.Function):
    """``clip(v, f_min * min(min(v), 0), f_max * max(max(v), 0))`` over the last dim of ``v``.

    The same function autograd would differentiate, with a hand-written
    backward: autograd's own (through amin/amax and a broadcast
    minimum/maximum) makes a dozen full-size passes and took half of a
    calibration step on a 4096 x 4096 weight.  Gradients:

    - to ``v`` where it lies within the bounds (bounds included, as
      ``torch.clamp``), plus, through the bounds, to the group's max and min
      element (the one ``max``/``min`` return; autograd would split a tie);
    - to ``f_max`` (``f_min``) the sum of the gradients of the values cut at
      the upper (lower) bound, times the group's max (min).
    """

    @staticmethod
    def forward(
        ctx: Any, v: torch.Tensor, f_min: torch.Tensor, f_max: torch.Tensor
    ) -> torch.Tensor:
        hi, hi_idx = v.max(dim=-1)
        lo, lo_idx = v.min(dim=-1)
        # min(., 0) / max(., 0): equation 4 itself whenever a group holds both
        # signs; in a one-signed group it stops the far bound crossing the near one
        hi = hi.clamp(min=0)
        lo = lo.clamp(max=0)
        b_max = (f_max * hi).unsqueeze(-1)
        b_min = (f_min * lo).unsqueeze(-1)
        ctx.save_for_backward(v, f_min, f_max, hi, lo, hi_idx, lo_idx, b_min, b_max)
        return torch.maximum(torch.minimum(v, b_max), b_min)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v, f_min, f_max, hi, lo, hi_idx, lo_idx, b_min, b_max = ctx.saved_tensors
        upper = v > b_max
        lower = v < b_min
        g_max = torch.where(upper, grad, 0).sum(dim=-1)
        g_min = torch.where(lower, grad, 0).sum(dim=-1)
        grad_v = torch.where(upper | lower, 0, grad)
        # through the bound to the group's extreme element (zero where clamped at 0)
        grad_v.scatter_add_(-1, hi_idx.unsqueeze(-1), (g_max * f_max * (hi > 0)).unsqueeze(-1))
        grad_v.scatter_add_(-1, lo_idx.unsqueeze(-1), (g_min * f_min * (lo < 0)).unsqueeze(-1))
        grad_f_max = (g_max * hi).sum_to_size(f_max.shape)
        grad_f_min = (g_min * lo).sum_to_size(f_min.shape)
        return grad_v, grad_f_min, grad_f_max


class LearnableClip(nn.Module):
    """Clip each group of the last dimension to learnable fractions of its own min and max.

    Parameters
    ----------
    param_shape : tuple of int
        Shape of each logit tensor.  It broadcasts against the per-group
        min/max, whose shape is ``x.shape[:-1] + (k,)`` for ``groups="block"``
        (k blocks) and ``x.shape[:-1]`` for ``groups="row"``; leading
        dimensions left out are shared (e.g. ``(k,)`` shares across tokens).
    groups : {"block", "row"}
    block_size : int
        Block length along the last dimension (``groups="block"``).
    init : float
        Initial logit of both bounds; sigmoid(init) is the starting fraction.
    """

    def __init__(
        self,
        param_shape: tuple[int, ...],
        *,
        groups: str | ClipGroups = ClipGroups.BLOCK,
        block_size: int = 32,
        init: float = 4.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.groups = ClipGroups.parse(groups, "groups")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int; got {block_size!r}")
        self.block_size = block_size
        self.alpha_min = nn.Parameter(torch.full(param_shape, float(init), dtype=dtype,
                                                 device=device))  # fmt: skip
        self.alpha_max = nn.Parameter(torch.full(param_shape, float(init), dtype=dtype,
                                                 device=device))  # fmt: skip

    @property
    def num_params(self) -> int:
        """Number of learnable scalars (two per group)."""
        return self.alpha_min.numel() + self.alpha_max.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` clipped group by group (equations 3 and 4)."""
        if x.dtype != self.alpha_max.dtype or x.device != self.alpha_max.device:
            raise TypeError(
                f"LearnableClip: input is {x.dtype} on {x.device} but the clip parameters are "
                f"{self.alpha_max.dtype} on {self.alpha_max.device}"
            )
        if self.groups is ClipGroups.BLOCK:
            n = x.shape[-1]
            if n % self.block_size:
                raise ValueError(
                    f"LearnableClip: last dim {n} is not a multiple of block_size "
                    f"{self.block_size}"
                )
            view = x.unflatten(-1, (n // self.block_size, self.block_size))
        else:
            view = x
        clipped = _GroupClip.apply(view, torch.sigmoid(self.alpha_min),
                                   torch.sigmoid(self.alpha_max))  # fmt: skip
        return clipped.reshape(x.shape)

    def extra_repr(self) -> str:
        shape = tuple(self.alpha_max.shape)
        return f"groups={self.groups.value}, block_size={self.block_size}, params={shape}x2"


def make_clip(
    groups: ClipGroups, quant: TensorQuant, rows: int | None, n: int, init: float,
    device: torch.device, role: str,
) -> LearnableClip:  # fmt: skip
    """A :class:`LearnableClip` of ``groups`` kind for one role.

    Activations share their logits across tokens (``rows`` None); weights
    have one pair per row (and per K-block for ``ClipGroups.BLOCK``).
    """
    if groups is ClipGroups.BLOCK:
        if n % quant.block_size:
            raise ValueError(
                f"in_features {n} is not a multiple of QuantConfig.{role}.block_size "
                f"{quant.block_size}, which block-wise clipping needs"
            )
        k = n // quant.block_size
        shape: tuple[int, ...] = (k,) if rows is None else (rows, k)
    else:
        shape = () if rows is None else (rows,)
    return LearnableClip(shape, groups=groups, block_size=quant.block_size, init=init,
                         device=device)  # fmt: skip
