"""SmoothQuant's per-channel smoothing: ``P = diag(1 / s)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from batquant.algorithms.transforms.base import IllConditioned, Transform, check_dtype, check_size

__all__ = ["DEFAULT_SMOOTH_MAX_CONDITION", "SMOOTH_STAT_FLOOR", "SmoothScale"]

#: Condition guard threshold of :class:`SmoothScale`: ``max |s| / min |s|``.  Looser than
#: the matrices' 1e3 because ``1 / s_j`` is exact to one rounding whatever the spread of
#: ``s``; the guard only stops a scale from collapsing towards zero.
DEFAULT_SMOOTH_MAX_CONDITION = 1e6
#: Floor applied to both statistics before the power law, as SmoothQuant clamps its
#: scales at 1e-5: a channel that is all zeros gets a finite scale, not 0 or inf.
SMOOTH_STAT_FLOOR = 1e-5


class SmoothScale(Transform):
    """SmoothQuant's diagonal smoothing: activations divided, weights multiplied by ``s``.

    ``P = diag(1 / s)``: ``forward(x) = x * (1 / s)`` and
    ``weight_transform(W) = W * s`` (``W P^{-T} = W diag(s)``).  ``1 / s`` is
    computed in float64 and cast to the parameter dtype.  Constructed with
    ``s = 1``; :meth:`init_from_stats` sets SmoothQuant's
    ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``.

    Condition guard: ``cond(diag(s)) = max|s| / min|s|``; past ``max_condition``
    every ``|s_j|`` below ``max|s| / max_condition`` is raised to it (keeping its
    sign), on both sides, with one ``RuntimeWarning`` -- the SVD clamp of
    :mod:`batquant.algorithms.transforms.base` specialised to a diagonal.

    Parameters
    ----------
    size : int
        N.
    alpha : float
        Migration strength in ``[0, 1]`` used by :meth:`init_from_stats`.
    learnable : bool
        Store ``s`` as an ``nn.Parameter`` (N learnable scalars, FlatQuant's
        diagonal) instead of a buffer.
    dtype : torch.dtype
    device : torch.device or str, optional
    max_condition : float
        See :data:`DEFAULT_SMOOTH_MAX_CONDITION`.

    Attributes
    ----------
    scale : Tensor
        ``[N]``, the ``s_j`` (a Parameter when ``learnable``).
    """

    scale: Tensor

    def __init__(
        self,
        size: int,
        alpha: float = 0.5,
        learnable: bool = False,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        max_condition: float = DEFAULT_SMOOTH_MAX_CONDITION,
    ) -> None:
        super().__init__(check_size(size), max_condition=max_condition)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
        self.alpha = float(alpha)
        s = torch.ones(size, dtype=check_dtype(dtype), device=device)
        if learnable:
            self.scale = nn.Parameter(s)
        else:
            self.register_buffer("scale", s)

    @classmethod
    def from_scale(
        cls,
        scale: Tensor,
        *,
        alpha: float = 0.5,
        learnable: bool = False,
        max_condition: float = DEFAULT_SMOOTH_MAX_CONDITION,
    ) -> SmoothScale:
        """A SmoothScale holding a detached copy of ``scale`` ``[N]``."""
        out = cls(
            scale.shape[0],
            alpha,
            learnable,
            dtype=scale.dtype,
            device=scale.device,
            max_condition=max_condition,
        )
        with torch.no_grad():
            out.scale.copy_(scale)
        return out

    @torch.no_grad()
    def init_from_stats(self, act_absmax: Tensor, weight_absmax: Tensor) -> SmoothScale:
        """Set ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (SmoothQuant), in float64.

        Both statistics are first clamped below at :data:`SMOOTH_STAT_FLOOR`
        (a dead channel gets a finite scale), and the scales are then clamped
        below at ``max(s) / max_condition``, so a fresh initialisation never
        trips the condition guard.

        Parameters
        ----------
        act_absmax : Tensor
            ``[N]``, max ``|x_j|`` over the calibration tokens per input channel.
        weight_absmax : Tensor
            ``[N]``, max ``|W_ij|`` over the output rows ``i`` per input channel.

        Returns
        -------
        SmoothScale
            ``self``.

        Raises
        ------
        ValueError
            If a statistic has the wrong shape, or a negative or non-finite entry.
        """
        stats = []
        for name, t in (("act_absmax", act_absmax), ("weight_absmax", weight_absmax)):
            if not isinstance(t, Tensor) or t.shape != (self.size,):
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a tensor of shape ({self.size},); got {shape}")
            t64 = t.detach().to("cpu", torch.float64)
            if not bool(torch.isfinite(t64).all()) or bool((t64 < 0).any()):
                raise ValueError(f"{name} must be finite and non-negative")
            stats.append(t64.clamp(min=SMOOTH_STAT_FLOOR))
        act, wgt = stats
        s = act.pow(self.alpha) / wgt.pow(1.0 - self.alpha)
        s = s.clamp(min=float(s.max()) / self.max_condition)
        self.scale.copy_(s.to(self.scale.device, self.scale.dtype))
        return self

    def effective_scale(self) -> Tensor:
        """``s`` after the condition guard: what every method uses."""
        cls = type(self).__name__
        s = self.scale
        with torch.no_grad():
            mag = s.detach().double().abs()
            if not bool(torch.isfinite(mag).all()):
                raise ValueError(f"{cls}: factor s has a NaN or Inf entry")
            top = float(mag.max())
            if top == 0.0:
                raise ValueError(f"{cls}: factor s is all zeros")
            floor = top / self.max_condition
            low = mag < floor
            if not bool(low.any()):
                return s
            # raise |s_j| to the floor, keeping the sign (zero counts as positive)
            sign = torch.where(s.detach().double() < 0, -1.0, 1.0)
            correction = torch.where(low, sign * floor - s.detach().double(), 0.0)
            ratios = top / mag[low]  # inf where s_j == 0
        self._warn(
            [
                IllConditioned("s", f"channel {j}", float(r))
                for j, r in zip(torch.nonzero(low).flatten().tolist(), ratios.tolist(), strict=True)
            ]
        )
        return s + correction.to(s.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``x @ diag(1 / s) = x * (1 / s)``; see :meth:`Transform.forward`."""
        x = self._check_input(x, "x")
        return x * self._reciprocal(self.effective_scale())

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ diag(s)``: ``W * s``."""
        weight = self._check_input(weight, "weight")
        return weight * self.effective_scale()

    def materialize(self) -> Tensor:
        """The dense ``P = diag(1 / s)``, ``[N, N]``."""
        return torch.diag(self._reciprocal(self.effective_scale()))

    def inverse(self) -> SmoothScale:
        """SmoothScale with ``1 / s`` (float64, detached): ``P^{-1} = diag(s)``."""
        s = self.effective_scale().detach()
        return SmoothScale.from_scale(
            self._reciprocal(s),
            alpha=self.alpha,
            learnable=self.learnable,
            max_condition=self.max_condition,
        )

    @staticmethod
    def _reciprocal(s: Tensor) -> Tensor:
        return (1.0 / s.double()).to(s.dtype)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, learnable={self.learnable}"
