"""The one training loop of calibration: AdamW, a cosine schedule, steps, the log.

:func:`train` is used by :func:`batquant.calibrate` (one group of linears)
and by the whole-model pipeline (one decoder layer); the callers differ only
in what a batch is and how its loss is computed, which they pass in as
``loss_of``.  The loop owns everything else:

- two parameter groups, the transforms at ``CalibSpec.lr`` and the clipping
  logits at ``CalibSpec.clip_lr`` (``lr`` when unset), under one AdamW with
  ``CalibSpec.weight_decay``;
- a cosine decay from the learning rate to ``lr * min_lr_ratio`` over
  ``epochs x len(batches)`` steps, the batches taken in order (no randomness,
  so a run is deterministic);
- a NaN/Inf loss is an error naming the caller's ``where``, the batch and the
  epoch, raised before the optimiser can spread it into the parameters;
- one record per step handed to ``on_step`` and a tqdm bar per epoch;
- under ``CalibSpec.gradient_order="sample"``, a step runs one backward per
  sample (the caller's ``sample_terms``) and sums the gradients in sample
  order, so that its bits do not depend on how the samples are spread over
  data-parallel ranks.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from batquant.config import CalibSpec, GradientOrder

B = TypeVar("B")

#: One sample's term of a batch's loss: ``(sample, term)``, ``term()`` returning the
#: differentiable term (already divided by the whole batch's element count) and its parts.
SampleTerm = tuple[int, Callable[[], tuple[torch.Tensor, dict[str, float]]]]


@dataclass(frozen=True)
class StepRecord:
    """What one optimiser step reports.

    Attributes
    ----------
    epoch, step : int
        The epoch (from 0) and the step counted over the whole run (from 0).
    loss : float
        The total loss the step minimised.
    parts : dict
        Named parts of the loss (``{"layer": ...}`` or one per group).
    seconds : float
        Since the loop started.
    """

    epoch: int
    step: int
    loss: float
    parts: dict[str, float]
    seconds: float


class StepReduction(Protocol):
    """Sums a step over the ranks of a data-parallel run (:mod:`batquant.pipeline.ranks`)."""

    def loss(self, value: float, parts: dict[str, float], where: str
             ) -> tuple[float, dict[str, float], list[int]]:  # fmt: skip
        """The step's loss and its parts, summed over the ranks' shares; the ranks whose
        share is not finite."""

    def gradients(self, params: Sequence[torch.Tensor], where: str) -> None:
        """Replace every parameter's gradient by its sum over the ranks."""

    def gather(self, value: Any, where: str) -> list[Any]:
        """Every rank's ``value``, in rank order."""

    def rows(self, rows: torch.Tensor, where: str) -> list[torch.Tensor]:
        """Every rank's ``[n, ...]`` rows (``n`` may differ), in rank order, bit for bit."""


@dataclass(frozen=True)
class Training(Generic[B]):
    """One run of the loop: what it trains, on what, and how it reports.

    Attributes
    ----------
    transforms, clips : sequence of torch.Tensor
        The learnable transform parameters and the clipping logits.
    spec : CalibSpec
    batches : sequence
        One epoch's batches, in order; each is handed to ``loss_of``.
    loss_of : callable
        ``batch -> (loss, parts)``: the differentiable loss and its named parts.
    where : str
        Names the caller in errors (``"layer 3"``, ``"calibrate('qkv')"``).
    on_step : callable, optional
        Called with a :class:`StepRecord` after every step.
    after_step : callable, optional
        Called after every backward (to drop activations kept for reuse).
    progress : str, optional
        Label of the per-epoch tqdm bar; None shows none.
    reduction : StepReduction, optional
        Data parallel: ``loss_of`` returns this rank's share of the batch's
        loss, and the loss and the gradients are summed over the ranks
        before they are checked and applied.
    sample_terms : callable, optional
        ``batch -> [(sample, term), ...]``: this rank's samples of the batch,
        in order, each with its :data:`SampleTerm`; what
        ``CalibSpec.gradient_order="sample"`` runs instead of ``loss_of``.
    """

    transforms: Sequence[torch.Tensor]
    clips: Sequence[torch.Tensor]
    spec: CalibSpec
    batches: Sequence[B]
    loss_of: Callable[[B], tuple[torch.Tensor, dict[str, float]]]
    where: str
    on_step: Callable[[StepRecord], None] | None = None
    after_step: Callable[[], None] | None = None
    progress: str | None = None
    reduction: StepReduction | None = None
    sample_terms: Callable[[B], Sequence[SampleTerm]] | None = None


def train(run: Training[B]) -> list[float]:
    """Optimise ``run``'s parameters; return the loss of every step (empty: nothing to train).

    Raises
    ------
    ValueError
        A loss that is NaN or Inf, naming ``run.where``, the batch and the epoch;
        ``gradient_order="sample"`` for a caller without ``sample_terms``.
    """
    spec = run.spec
    by_sample = spec.gradient_order is GradientOrder.SAMPLE
    if by_sample and run.sample_terms is None:
        raise ValueError(f"{run.where}: CalibSpec.gradient_order='sample' needs the loss "
                         "sample by sample, which this caller does not give")  # fmt: skip
    clip_lr = spec.lr if spec.clip_lr is None else spec.clip_lr
    groups = [g for g in ({"params": list(run.transforms), "lr": spec.lr},
                          {"params": list(run.clips), "lr": clip_lr}) if g["params"]]  # fmt: skip
    if not groups or not run.batches:
        return []
    optimizer = torch.optim.AdamW(groups, weight_decay=spec.weight_decay)
    params = [*run.transforms, *run.clips]
    total = spec.epochs * len(run.batches)
    floor = spec.min_lr_ratio

    def cosine(step: int) -> float:
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    losses: list[float] = []
    started = time.perf_counter()
    for epoch in range(spec.epochs):
        bar = tqdm(run.batches, desc=f"{run.progress} epoch {epoch + 1}/{spec.epochs}",
                   leave=False, disable=run.progress is None, file=sys.stderr)  # fmt: skip
        for b, batch in enumerate(bar):
            where = f"{run.where}, batch {b} (epoch {epoch})"
            optimizer.zero_grad(set_to_none=True)
            if by_sample:
                value, parts, ranks = _by_sample(run, params, batch, where)
            else:
                loss, parts = run.loss_of(batch)
                value, ranks = loss.item(), list[int]()
                if run.reduction is not None:
                    value, parts, ranks = run.reduction.loss(value, parts, f"the loss of {where}")
            if not math.isfinite(value):
                on = f" on rank(s) {ranks}" if run.reduction is not None else ""
                raise ValueError(
                    f"{run.where}: the loss of batch {b} (epoch {epoch}) is {value}{on}; "
                    "the parameters diverged or the data overflow float32"
                )
            if not by_sample:
                if loss.requires_grad:  # a rank with no sample in this batch has nothing to add
                    loss.backward()
                if run.reduction is not None:
                    run.reduction.gradients(params, f"the gradients of {where}")
                if run.after_step is not None:
                    run.after_step()
            optimizer.step()
            schedule.step()
            if run.on_step is not None:
                run.on_step(StepRecord(epoch, len(losses), value, parts,
                                       round(time.perf_counter() - started, 4)))  # fmt: skip
            losses.append(value)
            bar.set_postfix(loss=f"{value:.3g}")
    return losses


def _by_sample(run: Training[B], params: list[torch.Tensor], batch: B, where: str
               ) -> tuple[float, dict[str, float], list[int]]:  # fmt: skip
    """One step's gradient, one backward per sample, summed in sample order into ``.grad``.

    Returns the batch's loss, its parts (each summed in sample order) and the
    ranks whose terms are not finite.  A parameter that no sample's term
    reaches keeps no gradient, as after one backward over the batch, so that
    AdamW leaves it alone.  Under a data-parallel ``run.reduction`` every
    rank gathers every sample's gradient, bit for bit, and sums them in the
    same order as a single process.
    """
    assert run.sample_terms is not None
    samples: list[tuple[int, float, dict[str, float], list[bool]]] = []
    rows: list[torch.Tensor] = []
    for sample, term in run.sample_terms(batch):
        loss, parts = term()
        grads: Sequence[torch.Tensor | None] = [None] * len(params)
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params, strict=True)]))  # fmt: skip
        samples.append((sample, loss.item(), parts, [g is not None for g in grads]))
        if run.after_step is not None:
            run.after_step()
    width = sum(p.numel() for p in params)
    mine = torch.stack(rows) if rows else torch.zeros(0, width, device=params[0].device)
    if run.reduction is None:
        every, gradients = [samples], [mine]
    else:
        every = run.reduction.gather(samples, f"the losses of {where}")
        gradients = run.reduction.rows(mine, f"the gradients of {where}")
    ordered = sorted((s[0], rank, k) for rank, shares in enumerate(every)
                     for k, s in enumerate(shares))  # fmt: skip
    value, parts, bad = 0.0, dict[str, float](), list[int]()
    total: torch.Tensor | None = None
    used = [False] * len(params)
    for _, rank, k in ordered:
        _, loss_value, loss_parts, reached = every[rank][k]
        value += loss_value
        for name, part in loss_parts.items():
            parts[name] = parts.get(name, 0.0) + part
        if not math.isfinite(loss_value) and rank not in bad:
            bad.append(rank)
        row = gradients[rank][k].to(params[0].device)
        total = row.clone() if total is None else total + row
        used = [u or r for u, r in zip(used, reached, strict=True)]
    offset = 0
    for p, any_reached in zip(params, used, strict=True):
        n = p.numel()
        if any_reached and total is not None:
            p.grad = total[offset: offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    return (value if not bad else math.nan), parts, sorted(bad)
