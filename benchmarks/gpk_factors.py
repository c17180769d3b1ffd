"""The factors behind GPK's loss to FlatQuant, one at a time and combined (bench_layers).

Each factor is a variant of the paper's ``batquant`` at ``quantize_linear``'s
defaults (160 steps): a method built here (the initialisation, a diagonal, a
full block), a :class:`~batquant.CalibSpec` (learning rate, steps, clipping
start, weight decay), or a change to what the library fixes, applied only
inside the variant's ``with`` block:

- ``eps``: AdamW's epsilon (the library uses torch's 1e-8);
- ``normalised``: the loss divided by its detached value, as FlatQuant does;
- ``surrogate``: the E8M0 scale's gradient.  The library stops it (the scale
  is a function of the block's max, held constant in the backward pass); the
  surrogate multiplies each quantized block by ``amax / amax.detach()``, which
  is exactly 1 in value and gives the scale the gradient of ``s ~ amax``
  (an LSQ-like smooth surrogate).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch

import batquant.algorithms.calibration as calibration
from batquant import CalibSpec
from batquant.algorithms.clipping import ClipGroups
from batquant.algorithms.methods import (
    BLOCK_CLIP_INIT,
    FLATQUANT_CLIP_INIT,
    Method,
    TransformContext,
    get_method,
)
from batquant.algorithms.transforms import GPK, BlockAffine, ComposedTransform, SmoothScale
from batquant.config import TensorQuant

#: The linears the factors are measured on: q and down carry the outlier channels.
FACTOR_LINEARS = ("L7.q_proj", "L7.down_proj", "L15.q_proj", "L15.down_proj", "L22.o_proj",
                  "L22.up_proj", "L29.q_proj", "L29.down_proj")  # fmt: skip


def _gpk(init: str) -> Callable[[TransformContext], Any]:
    return lambda ctx: GPK(ctx.size, g1=8, g2=4, init=init, seed=ctx.seed)


def _smoothed(inner: Callable[[TransformContext], Any]) -> Callable[[TransformContext], Any]:
    def build(ctx: TransformContext) -> Any:
        smooth = SmoothScale(ctx.size, alpha=0.5, learnable=True)
        smooth.init_from_stats(ctx.act_absmax, ctx.weight_absmax)
        return ComposedTransform(smooth, inner(ctx))

    return build


def _full(ctx: TransformContext) -> Any:
    return BlockAffine(ctx.size, block_size=ctx.block_size, init="hadamard", seed=ctx.seed)


def _method(name: str, build: Callable[[TransformContext], Any], clip_init: float) -> Method:
    return Method(name, "factor study", build, ClipGroups.BLOCK, calibrated=True,
                  clip_init=clip_init)  # fmt: skip


@contextlib.contextmanager
def _adam_eps(eps: float) -> Iterator[None]:
    original = torch.optim.AdamW
    torch.optim.AdamW = partial(original, eps=eps)  # type: ignore[misc]
    try:
        yield
    finally:
        torch.optim.AdamW = original  # type: ignore[misc]


@contextlib.contextmanager
def _normalised_loss() -> Iterator[None]:
    original = calibration.train

    def train(run: Any) -> list[float]:
        def loss_of(batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            loss, parts = run.loss_of(batch)
            return loss / loss.detach(), parts

        return original(dataclasses.replace(run, loss_of=loss_of))

    calibration.train = train  # type: ignore[assignment]
    try:
        yield
    finally:
        calibration.train = original


@contextlib.contextmanager
def _scale_surrogate() -> Iterator[None]:
    original = TensorQuant.fake_quantize

    def fake_quantize(self: TensorQuant, x: torch.Tensor) -> torch.Tensor:
        y = original(self, x)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return y
        blocks = (x.shape[-1] // self.block_size, self.block_size)
        amax = x.abs().unflatten(-1, blocks).amax(-1, keepdim=True)
        amax = torch.where(amax > 0, amax, torch.ones_like(amax))
        return (y.unflatten(-1, blocks) * (amax / amax.detach())).flatten(-2)

    TensorQuant.fake_quantize = fake_quantize  # type: ignore[method-assign]
    try:
        yield
    finally:
        TensorQuant.fake_quantize = original  # type: ignore[method-assign]


@dataclasses.dataclass(frozen=True)
class Factor:
    name: str
    method: Method
    spec: CalibSpec | None = None
    patch: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext


def factors() -> list[Factor]:
    """The paper's batquant (clipping from 0.982, as FlatQuant), then one change each, then ours."""
    paper = _method("batquant, clip 0.982", _gpk("hadamard"), FLATQUANT_CLIP_INIT)
    return [
        Factor("flatquant", get_method("flatquant")),
        Factor("batquant (hadamard init, clip 0.982)", paper),
        Factor("init identity", _method("id", _gpk("identity"), FLATQUANT_CLIP_INIT)),
        Factor("lr 1e-2", paper, CalibSpec(lr=1e-2)),
        Factor("clip lr 1e-2", paper, CalibSpec(clip_lr=1e-2)),
        Factor("3x the steps (15 epochs)", paper, CalibSpec(epochs=15)),
        Factor("clipping from 0.9997", paper, CalibSpec(clip_init=BLOCK_CLIP_INIT)),
        Factor("loss / detached loss", paper, patch=_normalised_loss),
        Factor("AdamW eps 1e-12", paper, patch=partial(_adam_eps, 1e-12)),
        Factor("weight decay 1e-2", paper, CalibSpec(weight_decay=1e-2)),
        Factor("E8M0 scale surrogate gradient", paper, patch=_scale_surrogate),
        Factor("+ diagonal (batquant-smooth)", _method("s", _smoothed(_gpk("hadamard")),
                                                       FLATQUANT_CLIP_INIT)),
        Factor("full 32x32 blocks (batquant-full)", _method("f", _full, FLATQUANT_CLIP_INIT)),
        Factor("+ diagonal, full blocks", _method("sf", _smoothed(_full), FLATQUANT_CLIP_INIT)),
        Factor("+ diagonal, full blocks, clip 0.9997 (batquant-smooth-full)",
               get_method("batquant-smooth-full")),
        Factor("... and lr 5e-3", get_method("batquant-smooth-full"), CalibSpec(lr=5e-3)),
    ]  # fmt: skip
