"""Sequential, layer-by-layer calibration of a whole causal LM (:func:`quantize_model`).

1. **Capture** the first decoder layer's inputs and every layer's own keyword
   arguments (:mod:`batquant.pipeline.capture`).
2. **Per decoder layer**, in order:

   a. run the full-precision layer on every sample with its arguments (its
      outputs are the targets); observers gather what the method asks for
      of every input stream (:mod:`batquant.algorithms.observers`), and an
      MoE layer's routing is recorded (:mod:`batquant.pipeline.routing`);
   b. build the quantized twin (:func:`~batquant.pipeline.build.build_layer`)
      and train all of its transforms and clipping parameters jointly on the
      MSE of the decoder layer's output (the paper's eq. 5), or on the sum of
      the per-linear MSEs (Algorithm 2, ``objective="linear"``), in the one
      training loop (:mod:`batquant.algorithms.training`); experts that were
      routed fewer than ``min_expert_tokens`` tokens keep their initial
      transform and are listed in the summary;
   c. freeze it (weight sides applied once) and put it in the model;
   d. pass on to the next layer the full-precision outputs (default, as
      FlatQuant does) or the quantized layer's outputs
      (``propagate="quantized"``).

3. **Memory.** Activations live in an :class:`ActivationCache`, in CPU memory
   or on disk under ``cache_dir``; each layer visits the compute device only
   while it is calibrated.
4. **Resume.** With a ``cache_dir`` (:mod:`batquant.pipeline.checkpoint`), a
   run interrupted anywhere and started again with the same arguments picks
   up where it stopped and ends bit-identical to an uninterrupted run (seeds
   are derived per layer, never drawn from a shared generator).  Different
   arguments for the same ``cache_dir`` are an error, never a silent restart.
5. **Progress**: a bar over the layers and one per epoch; a JSON line per
   step (layer, group, step, loss, seconds) and one per MoE layer with the
   tokens of every expert, in ``cache_dir/calibration.jsonl``; a summary
   table at the end, also in the returned model's ``batquant_info``.
6. **Disk offload** (``offload="disk"``, :mod:`batquant.pipeline.offload`):
   a model loaded with ``batquant.load_model(folder, offload="disk")`` stays
   on the meta device; each decoder layer is read from the checkpoint when
   it is calibrated and read back from its checkpoint in ``cache_dir`` after.
7. **Data parallel.**  Under an initialised torch.distributed process group
   (``torchrun``), the samples are split across the ranks and every
   reduction follows the one rule of :mod:`batquant.pipeline.ranks`; rank 0
   alone shows progress and writes.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
import warnings
from contextlib import ExitStack
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from batquant.algorithms.experts import fused_expert_inputs
from batquant.algorithms.gptq import LayerHessians
from batquant.algorithms.methods import BASELINE, Method, get_method
from batquant.algorithms.observers import (
    InputStatistics,
    Statistic,
    observing,
    reduce_statistics,
    row_stride,
)
from batquant.algorithms.training import StepRecord, Training, train
from batquant.config import (
    CalibSpec,
    GPTQSpec,
    GradientOrder,
    QuantConfig,
    check_weight_quantizer,
    describe_weight_quantizer,
    get_config,
    get_weight_quantizer,
)
from batquant.models import ModelAdapter, get_adapter
from batquant.pipeline import attention
from batquant.pipeline.build import (
    LayerPlan,
    build_layer,
    forget,
    freeze_layer,
    learnable_parameters,
    restore_layer,
)
from batquant.pipeline.cache import ActivationCache
from batquant.pipeline.capture import LayerArguments, capture_layer_inputs
from batquant.pipeline.checkpoint import RUN_FORMAT, RunFolder, fingerprint
from batquant.pipeline.layer_loss import LayerLoss, run_layer
from batquant.pipeline.offload import (
    check_offload,
    is_offloaded,
    materialise,
    offload_to_file,
    release_freed_memory,
    tensor_of,
)
from batquant.pipeline.options import Objective, Propagation
from batquant.pipeline.ranks import Ranks
from batquant.pipeline.routing import recording, routing_fixed
from batquant.pipeline.sites import LayerSites, expert_key
from batquant.pipeline.summary import gptq_summary, print_summary
from batquant.pipeline.validate import check_calib_ids, check_dimensions, resolve_device

#: Fewest routed calibration tokens an expert trains on (``min_expert_tokens``).
MIN_EXPERT_TOKENS = 32


def _batches(count: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


class _RunLog:
    """JSON lines, kept in memory and appended to a file when there is one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    def write(self, **record: Any) -> None:
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def quantize_model(
    model: nn.Module,
    calib_ids: torch.Tensor,
    *,
    method: str | Method = "batquant",
    config: str | QuantConfig = "W4A4KV16",
    calib: CalibSpec | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    objective: str | Objective = Objective.LAYER,
    propagate: str | Propagation = Propagation.FULL_PRECISION,
    min_expert_tokens: int | None = None,
    weight_quantizer: str | GPTQSpec = "rtn",
    inplace: bool = False,
    offload: str | None = None,
) -> nn.Module:
    """Calibrate and quantize every decoder layer of a transformers causal LM.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Any architecture with a registered adapter (:data:`batquant.models.ADAPTERS`:
        Llama, Qwen2/3, Mistral, Gemma 3, Qwen2/3-MoE, ...).  Left unchanged
        unless ``inplace``.
    calib_ids : torch.LongTensor
        ``[samples, seq_len]`` calibration token ids; ``seq_len`` at most the
        model's ``max_position_embeddings``.
    method : str or Method
        A registered method (:data:`batquant.METHODS`).
    config : str or QuantConfig
        ``"W4A4KV16"`` (default), ``"W4A8KV16"``, ``"W4A8KV8"``, ``"W4A8KV4"``
        or any :class:`~batquant.config.QuantConfig`.
    calib : CalibSpec, optional
        The optimiser; the paper's defaults when omitted.  A training-free
        method rejects one; ``calib.samples`` must be the default or equal
        the number of rows of ``calib_ids``.
    seed : int
        Same seed, same bits.
    cache_dir : path, optional
        Keep the activation cache on disk there, checkpoint every finished
        layer, and resume an interrupted run with the same arguments.
    progress : bool
        tqdm bars and the final summary table on stderr (rank 0's only).
    device : str or torch.device, optional
        Where each layer is calibrated (``"cuda"`` when present); the model
        itself stays where it is.  Default: the model's device.
    objective : {"layer", "linear"}
        The MSE of each decoder layer's output (eq. 5), or the sum of the
        per-linear MSEs on full-precision inputs (Algorithm 2; ``P_k`` then
        keeps its initial value, as no linear's output depends on it).
    propagate : {"full_precision", "quantized"}
        What the next layer is calibrated on.
    min_expert_tokens : int, optional
        An MoE expert routed fewer calibration tokens than this keeps its
        initial transform and clipping (listed in the summary); default
        :data:`MIN_EXPERT_TOKENS`.  A model without experts rejects one.
    weight_quantizer : {"rtn", "gptq"} or GPTQSpec
        How each weight is rounded once the layer's transforms and clipping
        are trained and fixed: to nearest, or by MX-GPTQ with static E8M0
        groups and the Hessian of the transformed, clipped calibration
        inputs of each linear (each expert's own routed tokens)
        (:mod:`batquant.algorithms.gptq`).
    inplace : bool
        Quantize ``model`` itself instead of a copy (no second copy in memory).
    offload : {None, "disk"}
        ``"disk"``: ``model`` was loaded with ``batquant.load_model(folder,
        offload="disk")`` and is never materialised: one decoder layer at a
        time is read from the checkpoint, calibrated, and written to
        ``cache_dir`` (required, with ``inplace=True``), from which the
        returned model reads it when it runs.

    Returns
    -------
    nn.Module
        The quantized model: ``model(input_ids).logits`` and ``generate`` run
        the quantized forward.  ``batquant_info`` holds the run's settings and
        per-layer summary (read by :func:`batquant.save_quantized`).  Under a
        process group every rank returns the same model; save it from rank 0.

    Raises
    ------
    ValueError
        Bad arguments (naming them), an architecture without an adapter, a
        layer the adapter does not describe, dimensions the MX blocks do not
        divide, a ``cache_dir`` that holds another run, or a NaN/Inf during
        calibration (naming layer and batch); under a process group, arguments
        or data that differ between the ranks, or fewer samples than ranks.
    RankError
        Under a process group: another rank stopped, or did not answer within
        the group's timeout.
    """
    ranks = Ranks.of_process_group()
    meth = get_method(method)
    cfg = get_config(config)
    gptq = get_weight_quantizer(weight_quantizer)
    check_weight_quantizer(gptq, cfg)
    if gptq is not None and cfg.weight is None:
        raise ValueError(f"weight_quantizer: config {cfg.describe()} keeps the weights in full "
                         "precision, so GPTQ would round nothing; leave it at 'rtn'")  # fmt: skip
    if calib is not None and not isinstance(calib, CalibSpec):
        raise TypeError(f"calib must be a CalibSpec or None; got {type(calib).__name__}")
    if calib is not None and not meth.calibrated:
        raise ValueError(
            f"calib: method {meth.name!r} is training-free, so a CalibSpec would be ignored; "
            "pass calib=None"
        )
    spec = calib or CalibSpec()
    for name, value in (("seed", seed), ("min_expert_tokens", min_expert_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int; got {value!r}")
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0; got {value}")
    obj = Objective.parse(objective, "objective")
    prop = Propagation.parse(propagate, "propagate")
    adapter = get_adapter(model)
    text_config = adapter.config_of(model)
    ids = check_calib_ids(calib_ids, text_config)
    if calib is not None and spec.samples != CalibSpec().samples and spec.samples != len(ids):
        raise ValueError(
            f"CalibSpec.samples is {spec.samples} but calib_ids has {len(ids)} rows; "
            "quantize_model calibrates on the rows of calib_ids (leave samples at its default)"
        )
    geometry = adapter.geometry(text_config)
    sites = check_dimensions(model, adapter, geometry, cfg)
    if min_expert_tokens is not None and not any(s.expert_counts for s in sites):
        raise ValueError(f"min_expert_tokens: {adapter.architecture} has no MoE experts, so it "
                         "would be ignored; leave it out")  # fmt: skip
    threshold = MIN_EXPERT_TOKENS if min_expert_tokens is None else min_expert_tokens
    on_disk = check_offload(offload, [is_offloaded(layer) for layer in
                            adapter.decoder_layers(model)], cache_dir, inplace)
    dev = resolve_device(device if device is not None or not on_disk else "cpu", model)
    if ranks.world > len(ids):
        raise ValueError(f"calib_ids has {len(ids)} rows, fewer than the {ranks.world} ranks; "
                         "give every rank at least one sample")  # fmt: skip
    progress = progress and ranks.main

    work = model if inplace else copy.deepcopy(model)
    work.eval()
    base_attention = attention.base_implementation(work.config)
    attention.install(work)
    plan = LayerPlan(adapter, geometry, meth, cfg, spec, seed)
    settings = {
        "format": RUN_FORMAT,
        "architecture": adapter.architecture,
        "method": meth.name,
        "config": cfg.to_dict(),
        "calib": asdict(spec),
        "seed": seed,
        "objective": obj.value,
        "propagate": prop.value,
        "samples": int(ids.shape[0]),
        "seq_len": int(ids.shape[1]),
        "attention": base_attention,
        "min_expert_tokens": threshold,
        "weight_quantizer": describe_weight_quantizer(gptq),
    }
    if on_disk:
        settings["offload"] = "disk"
    runner = _Runner(work, plan, sites, ids, dev, obj, prop, threshold, gptq, progress, ranks,
                     on_disk)  # fmt: skip
    folder = None
    layers = adapter.decoder_layers(model)
    probe = [tensor_of(layers[i].get_submodule(sites[i].linears()[0]), "weight")
             for i in (0, len(layers) - 1) if sites[i].linears()]  # fmt: skip
    run = {**settings, "dtype": str(probe[0].dtype) if probe else "", "device": dev.type}
    if ranks.parallel or cache_dir is not None:
        run_fingerprint = fingerprint(run, ids, probe)
        ranks.agree(run_fingerprint, "the calibration arguments, data or model (fingerprint)")
        if cache_dir is not None:
            folder = RunFolder(Path(cache_dir), run_fingerprint, len(layers), ranks)
    summaries = runner.run(folder)
    work.batquant_info = {**settings, "layers": summaries}  # type: ignore[assignment]
    worse = [s["layer"] for s in summaries if s.get("worse_than_baseline")]
    if worse and ranks.main:
        warnings.warn(f"{meth.name} {cfg.describe()}: layers {worse} end with a larger output "
                      f"error than {BASELINE}'s on their calibration batch (see each layer's "
                      "relative_mse and baseline_relative_mse in the summary); more "
                      "calibration data or steps may help", WorseThanBaselineWarning,
                      stacklevel=2)  # fmt: skip
    if progress:
        print_summary(summaries, meth.name, cfg.describe(), file=sys.stderr)
    return work


class WorseThanBaselineWarning(UserWarning):
    """Some calibrated layers end with a larger output error than round-to-nearest's."""


class _Runner:
    """One calibration run over the layers of ``model`` (already a copy when asked)."""

    def __init__(self, model: nn.Module, plan: LayerPlan, sites: list[LayerSites],
                 ids: torch.Tensor, device: torch.device, objective: Objective,
                 propagate: Propagation, min_expert_tokens: int, gptq: GPTQSpec | None,
                 progress: bool, ranks: Ranks, on_disk: bool = False) -> None:  # fmt: skip
        self.model, self.plan, self.sites, self.ids = model, plan, sites, ids
        self.ranks, self.on_disk = ranks, on_disk
        self.adapter: ModelAdapter = plan.adapter
        self.device, self.objective, self.propagate = device, objective, propagate
        self.min_expert_tokens, self.gptq, self.progress = min_expert_tokens, gptq, progress
        self.layers = self.adapter.decoder_layers(model)
        self.num_layers = len(self.layers)
        self.batches = _batches(ids.shape[0], plan.spec.batch_size)
        #: this rank's samples of every batch (all of them in a single process)
        self.own = [ranks.own(batch) for batch in self.batches]
        #: ``gradient_order="sample"``: every forward, not only training's, runs one sample,
        #: since a row's bits may depend on its batch (an expert's matmul over the tokens
        #: routed to it), and a rank's batches are not a single process's
        self.by_sample = plan.spec.gradient_order is GradientOrder.SAMPLE
        self.mine = ranks.own(range(ids.shape[0]))

    def forwards(self) -> list[tuple[int, list[int]]]:
        """This rank's forward passes over the calibration set: ``(batch, samples)``."""
        if self.by_sample:
            return [(b, [i]) for b, batch in enumerate(self.own) for i in batch]
        return [(b, batch) for b, batch in enumerate(self.own) if batch]

    # -- the loop -------------------------------------------------------------------------

    def run(self, folder: RunFolder | None) -> list[dict[str, Any]]:
        start = 0 if folder is None else folder.open()
        log = _RunLog(None if folder is None or not self.ranks.main else folder.log_path)
        summaries: list[dict[str, Any]] = []
        for index in range(start):  # finished by an earlier run: rebuild them from disk
            assert folder is not None
            self._restore(index, folder.layer_path(index))
            summaries.append({"layer": index, "resumed": True})
        if start == self.num_layers:
            assert folder is not None
            folder.inputs(start).clear()  # a run stopped just before it cleaned up
            return summaries
        inputs, arguments = self._inputs(folder, start)
        arguments = arguments.to(self.device, torch.float32)
        bar = tqdm(total=self.num_layers, initial=start, desc="layers", unit="layer",
                   disable=not self.progress, file=sys.stderr)  # fmt: skip
        try:
            for index in range(start, self.num_layers):
                nxt = ActivationCache() if folder is None else folder.inputs(index + 1)
                summary = self._layer(index, inputs, nxt, arguments[index], folder, log)
                if folder is not None:
                    folder.finish_layer(index, self.layers[index])
                    if self.on_disk:  # from now on read from its checkpoint when it runs
                        offload_to_file(self.layers[index], folder.layer_path(index))
                        release_freed_memory()
                else:
                    inputs.clear()
                summaries.append(summary)
                inputs = nxt
                bar.update(1)
        finally:
            bar.close()
        inputs.clear()
        return summaries

    def _inputs(self, folder: RunFolder | None, start: int
                ) -> tuple[ActivationCache, LayerArguments]:  # fmt: skip
        """Layer ``start``'s inputs and every layer's arguments: captured, or from ``folder``."""
        if folder is None:
            inputs = ActivationCache()
            return inputs, capture_layer_inputs(self.model, self.adapter, self.ids, inputs,
                                                self.mine, self._capture_device())  # fmt: skip
        inputs = folder.inputs(start)
        arguments = LayerArguments.load(folder.root)
        complete = arguments is not None and inputs.complete(self.mine)
        if all(self.ranks.gather(complete, f"the cached inputs of layer {start}")):
            assert arguments is not None
            return inputs, arguments
        if start > 0:
            raise ValueError(f"{inputs.directory}: the cached inputs of layer {start} or the "
                             "layer arguments are incomplete; remove cache_dir to start "
                             "over")  # fmt: skip
        inputs.clear()  # an interrupted capture: capture again
        inputs = folder.inputs(0)
        arguments = capture_layer_inputs(self.model, self.adapter, self.ids, inputs, self.mine,
                                         self._capture_device())  # fmt: skip
        self.ranks.barrier("the capture of the first layer's inputs")
        if self.ranks.main:
            arguments.save(folder.root)  # its presence marks a complete capture
        return inputs, arguments

    def _capture_device(self) -> torch.device | None:
        """Where the ids go for the capture: the model's device, or CPU for an offloaded one."""
        return torch.device("cpu") if self.on_disk else None

    def _restore(self, index: int, path: Path) -> None:
        try:
            state = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise ValueError(f"{path}: unreadable layer checkpoint ({exc})") from None
        layer = materialise(self.layers[index]) if self.on_disk else self.layers[index]
        self.layers[index] = restore_layer(layer, self.plan, index, state, str(path))
        if self.on_disk:
            offload_to_file(self.layers[index], path)

    def _layer(self, index: int, inputs: ActivationCache, nxt: ActivationCache,
               kwargs: dict[str, Any], folder: RunFolder | None,
               log: _RunLog) -> dict[str, Any]:  # fmt: skip
        started = time.perf_counter()
        layer, sites = self.layers[index], self.sites[index]
        if self.on_disk:  # read from the checkpoint: an ordinary module from here on
            layer = materialise(layer)
        # calibrated in float32 on the compute device; back home in its own dtype after
        first = next(iter(layer.parameters()))
        home_device, home_dtype = first.device, first.dtype
        layer.to(self.device, torch.float32)
        targets = ActivationCache() if folder is None else folder.targets()
        routing = {f.name: _RoutingCache(folder, f.name) for f in sites.experts}
        stats = self._full_precision_pass(index, layer, sites, inputs, targets, routing, kwargs)
        if self.ranks.parallel:
            reduce_statistics(list(stats.values()), self.ranks, f"the statistics of layer {index}")
        tokens = {site: [stats[expert_key(site, e)].tokens for e in range(count)]
                  for site, count in sites.expert_counts.items()}  # fmt: skip
        kept = [(site, e) for site, counts in tokens.items() for e, n in enumerate(counts)
                if n < self.min_expert_tokens]  # fmt: skip
        for site, counts in tokens.items():
            log.write(layer=index, site=site, expert_tokens=counts)
        work = build_layer(layer, self.plan, index, stats, kept, sites)
        train_started = time.perf_counter()
        losses = self._train(index, layer, work, sites, inputs, targets, routing, kwargs, log)
        train_seconds = time.perf_counter() - train_started
        hessians = None
        if self.gptq is not None:
            hessians = self._hessians(work, sites, inputs, routing, kwargs)
        rounding_started = time.perf_counter()
        frozen = freeze_layer(work, self.plan.description, hessians,
                              f"{self.adapter.layers}.{index}.")  # fmt: skip
        rounding_seconds = time.perf_counter() - rounding_started
        with torch.no_grad():
            rel, baseline = self._errors(index, layer, frozen, stats, kept, sites, inputs,
                                         targets, kwargs)  # fmt: skip
            for _, batch in self.forwards():
                x = inputs.batch(batch, self.device)
                out = run_layer(frozen, x, kwargs) if self.propagate is Propagation.QUANTIZED \
                    else targets.batch(batch, self.device)  # fmt: skip
                for i, row in zip(batch, out, strict=True):
                    nxt.put(i, row)
        forget(frozen)
        targets.clear()
        for cache in routing.values():
            cache.clear()
        layer.to(home_device, home_dtype)
        self.layers[index] = frozen.to(home_device, home_dtype)
        summary: dict[str, Any] = {"layer": index, "steps": len(losses),
                   "first_loss": losses[0] if losses else None,
                   "last_loss": losses[-1] if losses else None,
                   "relative_mse": rel, "baseline_relative_mse": baseline,
                   "worse_than_baseline": baseline is not None and rel > baseline,
                   "train_seconds": round(train_seconds, 3),
                   "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
        if hessians is not None:
            assert self.gptq is not None
            summary["gptq"] = gptq_summary(hessians.reports, self.gptq, rounding_seconds)
            for name, report in hessians.reports.items():
                log.write(layer=index, weight=name, **report)
        if tokens:
            summary["expert_tokens"] = tokens
            summary["experts_kept_initial"] = [f"{s}[{e}] ({tokens[s][e]} tokens)"
                                               for s, e in kept]  # fmt: skip
        return summary

    def _errors(self, index: int, layer: nn.Module, frozen: nn.Module,
                stats: dict[str, InputStatistics], kept: list[tuple[str, int]],
                sites: LayerSites, inputs: ActivationCache, targets: ActivationCache,
                kwargs: dict[str, Any]) -> tuple[float, float | None]:  # fmt: skip
        """The frozen layer's relative output MSE on the first batch, and the baseline's."""
        batch = self.own[0]
        if not self.ranks.parallel:
            x0 = inputs.batch(batch, self.device)
            y0 = targets.batch(batch, self.device)
            rel = float(((run_layer(frozen, x0, kwargs) - y0) ** 2).mean() / (y0**2).mean())
            return rel, self._baseline_error(index, layer, stats, kept, sites, x0, y0, kwargs)
        # summed over the ranks' shares of the batch: [frozen error, baseline error, |y|^2]
        sums = torch.zeros(3, dtype=torch.float64)
        baseline_wanted = self._baseline_plan() is not None
        if batch:
            x0 = inputs.batch(batch, self.device)
            y0 = targets.batch(batch, self.device)
            sums[0] = float(((run_layer(frozen, x0, kwargs) - y0) ** 2).double().sum())
            if baseline_wanted:
                sums[1] = self._baseline_error(index, layer, stats, kept, sites, x0, y0, kwargs,
                                               total=True) or 0.0  # fmt: skip
            sums[2] = float((y0.double() ** 2).sum())
        sums = self.ranks.reduce(sums, "sum", f"the output error of layer {index}")
        rel = float(sums[0] / sums[2])
        return rel, (float(sums[1] / sums[2]) if baseline_wanted else None)

    def _full_precision_pass(self, index: int, layer: nn.Module, sites: LayerSites,
                             inputs: ActivationCache, targets: ActivationCache,
                             routing: dict[str, _RoutingCache], kwargs: dict[str, Any],
                             ) -> dict[str, InputStatistics]:  # fmt: skip
        """Store the layer's outputs and routing; return every input stream's statistics."""
        streams = {g.name: [layer.get_submodule(p) for p in g.observe] for g in sites.groups}
        experts = {f.name: layer.get_submodule(f.site.path) for f in sites.experts}
        streams.update({name: [module] for name, module in experts.items()})
        stride = row_stride(self.ids.numel())
        wanted = self.plan.method.statistics
        with ExitStack() as stack:
            routed = [g.name for g in sites.groups if g.routed]
            stats = stack.enter_context(observing(streams, wanted, stride, routed))
            choices = stack.enter_context(recording(experts))
            for fused in sites.experts:
                downs = {e: InputStatistics(wanted, None) for e in range(fused.num_experts)}
                stats.update({expert_key(fused.name, e): s for e, s in downs.items()})
                hook = partial(_observe_expert_inputs, downs=downs, gate_up=fused.site.gate_up)
                stack.enter_context(experts[fused.name].register_forward_pre_hook(hook))
            placed = [stats[g.name] for g in sites.groups if not g.routed] \
                if (self.ranks.parallel or self.by_sample) and Statistic.ROWS in wanted \
                else []  # fmt: skip
            with torch.no_grad():
                for b, batch in self.forwards():
                    x = inputs.batch(batch, self.device)
                    if not bool(torch.isfinite(x).all()):
                        raise ValueError(f"layer {index}: the inputs of batch {b} contain NaN "
                                         "or Inf")  # fmt: skip
                    positions = self._positions(b, batch, x.shape[1])
                    for stream in placed:
                        stream.place(b, positions)
                    y = run_layer(layer, x, kwargs)
                    for i, row in zip(batch, y, strict=True):
                        targets.put(i, row)
                    for name, calls in choices.items():
                        routing[name].put(batch, *calls.pop())
        return stats

    def _positions(self, b: int, samples: list[int], seq_len: int) -> torch.Tensor:
        """Where the rows of ``samples`` sit among batch ``b``'s flattened rows."""
        offsets = [self.batches[b].index(i) for i in samples]
        return torch.cat([torch.arange(j * seq_len, (j + 1) * seq_len) for j in offsets])

    def _baseline_plan(self) -> LayerPlan | None:
        """The plan of :data:`BASELINE` (None: this run is the baseline itself)."""
        if self.plan.method.name == BASELINE and self.gptq is None:
            return None
        return replace(self.plan, method=get_method(BASELINE))

    def _baseline_error(self, index: int, layer: nn.Module,
                        stats: dict[str, InputStatistics], kept: list[tuple[str, int]],
                        sites: LayerSites, x: torch.Tensor, y: torch.Tensor,
                        kwargs: dict[str, Any], total: bool = False) -> float | None:  # fmt: skip
        """The relative output MSE of ``layer`` under :data:`BASELINE` on the same batch.

        A calibrated layer that ends worse than rounding to nearest has lost to
        doing nothing; the summary says so instead of leaving it to a perplexity
        to find (None: this run is the baseline itself).  ``total``: the summed
        squared error instead (a data-parallel rank's share).
        """
        plan = self._baseline_plan()
        if plan is None:
            return None
        work = freeze_layer(build_layer(layer, plan, index, stats, kept, sites), plan.description)
        out = run_layer(work, x, kwargs)
        forget(work)
        if total:
            return float(((out - y) ** 2).double().sum())
        return float(((out - y) ** 2).mean() / (y**2).mean())

    def _hessians(self, work: nn.Module, sites: LayerSites, inputs: ActivationCache,
                  routing: dict[str, _RoutingCache], kwargs: dict[str, Any]
                  ) -> LayerHessians:  # fmt: skip
        """Run the trained layer over the calibration set, gathering every weight's Hessian.

        Experts get the full-precision routing, as in training, so that each
        expert's Hessian comes from the tokens it was calibrated on.
        """
        assert self.gptq is not None
        hessians = LayerHessians(work, self.gptq)
        experts = {f.name: work.get_submodule(f.site.path) for f in sites.experts}
        with torch.no_grad(), hessians.gathering():
            for _, batch in self.forwards():
                x = inputs.batch(batch, self.device)
                fixed = {name: cache.batch(batch, self.device) for name, cache in routing.items()}
                with routing_fixed(experts, fixed):
                    run_layer(work, x, kwargs)
                forget(work)
        if self.ranks.parallel:
            reduce_statistics(hessians.streams(), self.ranks, "the GPTQ Hessians")
        return hessians

    def _train(self, index: int, fp_layer: nn.Module, work: nn.Module, sites: LayerSites,
               inputs: ActivationCache, targets: ActivationCache,
               routing: dict[str, _RoutingCache], kwargs: dict[str, Any],
               log: _RunLog) -> list[float]:  # fmt: skip
        if not self.plan.method.calibrated:
            return []
        transforms, clips = learnable_parameters(work)
        loss = LayerLoss(fp_layer, work, sites, inputs, targets, dict(routing), kwargs,
                         self.objective, self.ranks, self.device)  # fmt: skip

        def on_step(record: StepRecord) -> None:
            for group, part in record.parts.items():
                log.write(layer=index, group=group, epoch=record.epoch, step=record.step,
                          loss=part, seconds=record.seconds)  # fmt: skip

        spec = self.plan.spec
        return train(Training(
            transforms, clips, spec, self.batches, loss.batch, where=f"layer {index}",
            on_step=on_step, after_step=lambda: forget(work),
            progress=f"layer {index}" if self.progress else None,
            reduction=self.ranks if self.ranks.parallel else None,
            sample_terms=loss.samples,
        ))  # fmt: skip


class _RoutingCache:
    """Per sample, the top-k experts and weights the full-precision router chose."""

    def __init__(self, folder: RunFolder | None, site: str) -> None:
        self.index, self.weights = (
            (ActivationCache(), ActivationCache()) if folder is None
            else (folder.cache(f"routing_{site}_index"), folder.cache(f"routing_{site}_weights"))
        )  # fmt: skip

    def put(self, batch: list[int], index: torch.Tensor, weights: torch.Tensor) -> None:
        """Split one call's ``[len(batch) * seq_len, k]`` choices into the samples of ``batch``."""
        for cache, value in ((self.index, index), (self.weights, weights)):
            for i, rows in zip(batch, value.view(len(batch), -1, value.shape[-1]), strict=True):
                cache.put(i, rows)

    def batch(self, batch: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The choices of ``batch`` as one call gets them (``[len(batch) * seq_len, k]``)."""
        return (self.index.batch(batch, device).flatten(0, 1),
                self.weights.batch(batch, device).flatten(0, 1))  # fmt: skip

    def clear(self) -> None:
        self.index.clear()
        self.weights.clear()


def _observe_expert_inputs(module: nn.Module, args: tuple[Any, ...], *,
                           downs: dict[int, InputStatistics], gate_up: str) -> None:  # fmt: skip
    """Forward pre-hook of full-precision fused experts: each expert's down-projection input."""
    weight = getattr(module, gate_up).detach().float()
    act_fn = getattr(module, "act_fn")  # noqa: B009 - the experts' own activation
    for e, h in fused_expert_inputs(weight, act_fn, args[0].float(), args[1]).items():
        downs[e].update(h)
