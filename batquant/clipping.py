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

import torch
from torch import nn

from mxref.policies import Policy


class ClipGroups(Policy):
    """Which values share one clipping bound."""

    #: the min/max of every ``block_size`` consecutive values of the last dimension
    BLOCK = "block"
    #: the min/max of the whole last dimension (one row)
    ROW = "row"


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
        # min(., 0) / max(., 0): equation 4 itself whenever a group holds both
        # signs; in a one-signed group it stops the far bound crossing the near one
        lo = view.amin(dim=-1).clamp(max=0)
        hi = view.amax(dim=-1).clamp(min=0)
        b_min = (torch.sigmoid(self.alpha_min) * lo).unsqueeze(-1)
        b_max = (torch.sigmoid(self.alpha_max) * hi).unsqueeze(-1)
        clipped = torch.maximum(torch.minimum(view, b_max), b_min)
        return clipped.reshape(x.shape)

    def extra_repr(self) -> str:
        shape = tuple(self.alpha_max.shape)
        return f"groups={self.groups.value}, block_size={self.block_size}, params={shape}x2"
