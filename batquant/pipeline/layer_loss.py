"""The loss one decoder layer's calibration minimises, by batch or sample by sample.

:class:`LayerLoss` gives the one training loop (:mod:`batquant.algorithms.training`)
both forms it may ask for:

- :meth:`LayerLoss.batch`: a batch's loss in one forward (``gradient_order="batch"``).
  In one process it is the MSE; on a data-parallel rank it is the rank's
  share of the whole batch's MSE (its squared errors over the whole batch's
  element count), so that the ranks' shares sum to the batch's loss.
- :meth:`LayerLoss.samples`: one term per sample of this rank, each its
  squared errors over the whole batch's element count
  (``gradient_order="sample"``).  The terms are the same bits whatever the
  number of ranks, which is what makes a data-parallel run equal to a single
  process.

The objective is the decoder layer's output MSE (the paper's eq. 5) or the
sum of every linear's and experts module's MSE against the full-precision
one, on full-precision inputs (Algorithm 2, ``objective="linear"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import torch
from torch import nn

from batquant.algorithms.layer import CalibratingLinear
from batquant.algorithms.training import SampleTerm
from batquant.pipeline.cache import ActivationCache
from batquant.pipeline.options import Objective
from batquant.pipeline.ranks import Ranks
from batquant.pipeline.routing import Routing, routing_fixed
from batquant.pipeline.sites import LayerSites

#: per group, each seen linear's (path, term); and per path, its element count
_Terms = tuple[dict[str, list[tuple[str, torch.Tensor]]], dict[str, int]]


class RoutedChoices(Protocol):
    """The full-precision router's choices of every sample (the pipeline's routing cache)."""

    def batch(self, batch: list[int], device: torch.device) -> Routing:
        """The choices of ``batch`` as one call of the experts gets them."""


def run_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """``layer(hidden, **kwargs)``'s hidden states (layers that return a tuple give its first)."""
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@dataclass(frozen=True)
class LayerLoss:
    """The loss of calibrating ``work`` against ``fp_layer`` on cached activations.

    Attributes
    ----------
    fp_layer, work : nn.Module
        The full-precision decoder layer and its quantized twin under training.
    sites : LayerSites
    inputs, targets : ActivationCache
        Every sample's layer inputs and full-precision outputs.
    routing : dict
        Per fused experts module, the full-precision routing of every sample.
    kwargs : dict
        The layer's keyword arguments (masks, positions).
    objective : Objective
    ranks : Ranks
    device : torch.device
    """

    fp_layer: nn.Module
    work: nn.Module
    sites: LayerSites
    inputs: ActivationCache
    targets: ActivationCache
    routing: dict[str, RoutedChoices]
    kwargs: dict[str, Any]
    objective: Objective
    ranks: Ranks
    device: torch.device

    def batch(self, batch: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of ``batch`` (this rank's share of it under data parallel), and its parts."""
        mine = self.ranks.own(batch)
        share = self.ranks.parallel
        if self.objective is Objective.LINEAR:
            terms, counts = self._linear_terms(mine, sums=share)
            if share:
                return self._linear_total(terms, self._batch_counts(counts))
            return self._linear_total(terms, None)
        if not mine:  # data parallel: none of this batch's samples is this rank's
            return torch.zeros((), device=self.device), {"layer": 0.0}
        return self._layer_term(mine, len(batch) if share else None)

    def samples(self, batch: list[int]) -> list[SampleTerm]:
        """This rank's samples of ``batch``, in order, each with its term of the batch's loss."""
        mine = self.ranks.own(batch)
        if self.objective is Objective.LAYER:
            return [(i, partial(self._layer_term, [i], len(batch))) for i in mine]
        # every sample's squared errors first: their element counts, summed over the
        # whole batch, divide them all
        each = [(i, self._linear_terms([i], sums=True)) for i in mine]
        counts: dict[str, int] = {}
        for _, (_, sample_counts) in each:
            for path, n in sample_counts.items():
                counts[path] = counts.get(path, 0) + n
        counts = self._batch_counts(counts)
        return [(i, partial(self._linear_total, terms, counts)) for i, (terms, _) in each]

    # -- the layer's output MSE -----------------------------------------------------------

    def _layer_term(self, samples: list[int], batch_size: int | None
                    ) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
        """The MSE of ``samples``' outputs, or (``batch_size`` given) their squared errors
        over the element count of a batch of ``batch_size`` samples."""
        x = self.inputs.batch(samples, self.device)
        y = self.targets.batch(samples, self.device)
        experts = {f.name: self.work.get_submodule(f.site.path) for f in self.sites.experts}
        fixed = {name: cache.batch(samples, self.device) for name, cache in self.routing.items()}
        with routing_fixed(experts, fixed):
            out = run_layer(self.work, x, self.kwargs)
        if batch_size is None:
            loss = nn.functional.mse_loss(out, y)
        else:
            loss = ((out - y) ** 2).sum() / (y[0].numel() * batch_size)
        return loss, {"layer": loss.item()}

    # -- Algorithm 2: every linear against the full-precision one -------------------------

    def _linear_terms(self, samples: list[int], *, sums: bool) -> _Terms:
        """Each seen linear's and experts module's MSE (``sums``: squared error) on
        ``samples``, grouped, with its element count."""
        seen: dict[str, tuple[tuple[Any, ...], torch.Tensor]] = {}
        paths = self.sites.linears() + [f.site.path for f in self.sites.experts]
        if samples:
            x = self.inputs.batch(samples, self.device)
            with torch.no_grad(), _Recording(self.fp_layer, paths, seen):
                run_layer(self.fp_layer, x, self.kwargs)

        def term(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return ((out - target) ** 2).sum() if sums else nn.functional.mse_loss(out, target)

        terms: dict[str, list[tuple[str, torch.Tensor]]] = {}
        counts: dict[str, int] = {}
        for group in self.sites.groups:
            terms[group.name] = []
            for path in group.linears:
                if path not in seen:  # an expert no token of these samples was routed to
                    continue
                args, output = seen[path]
                module = self.work.get_submodule(path)
                assert isinstance(module, CalibratingLinear)
                inp, target = module.reference(args[0], output)
                terms[group.name].append((path, term(module(inp), target)))
                counts[path] = target.numel()
        for fused in self.sites.experts:
            terms[fused.name] = []
            if fused.site.path in seen:
                args, output = seen[fused.site.path]
                out = self.work.get_submodule(fused.site.path)(*args)
                terms[fused.name].append((fused.site.path, term(out, output)))
                counts[fused.site.path] = output.numel()
        return terms, counts

    def _batch_counts(self, counts: dict[str, int]) -> dict[str, int]:
        """Every path's element count over the whole batch: ``counts`` summed over the ranks
        (an expert's routed rows differ between ranks)."""
        if not self.ranks.parallel:
            return counts
        paths = self.sites.linears() + [f.site.path for f in self.sites.experts]
        local = torch.tensor([counts.get(p, 0) for p in paths], dtype=torch.int64)
        total = self.ranks.reduce(local, "sum", "the element counts of the linear loss")
        return dict(zip(paths, (int(n) for n in total.tolist()), strict=True))

    def _linear_total(self, terms: dict[str, list[tuple[str, torch.Tensor]]],
                      counts: dict[str, int] | None
                      ) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
        """The sum of ``terms`` (each over its path's count, when ``counts`` is given), and
        each group's part."""
        total = torch.zeros((), device=self.device)
        parts: dict[str, float] = {}
        for name, group_terms in terms.items():
            group_loss = torch.zeros((), device=self.device)
            for path, value in group_terms:
                group_loss = group_loss + (value if counts is None else value / counts[path])
            total = total + group_loss
            parts[name] = group_loss.item()
        return total, parts


class _Recording:
    """Record each module's (positional inputs, output) during a forward of ``layer``."""

    def __init__(self, layer: nn.Module, paths: Sequence[str],
                 seen: dict[str, tuple[tuple[Any, ...], torch.Tensor]]) -> None:  # fmt: skip
        self.layer, self.paths, self.seen = layer, paths, seen
        self.hooks: list[Any] = []

    def __enter__(self) -> _Recording:
        for path in self.paths:
            def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor,
                     path: str = path) -> None:  # fmt: skip
                self.seen[path] = (args, out)

            self.hooks.append(self.layer.get_submodule(path).register_forward_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()
