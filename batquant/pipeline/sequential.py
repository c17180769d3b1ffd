"""Sequential, layer-by-layer calibration of a whole causal LM (:func:`quantize_model`).

1. **Capture** the first decoder layer's inputs (:mod:`batquant.pipeline.capture`).
2. **Per decoder layer**, in order:

   a. run the full-precision layer on every sample (its outputs are the
      targets; the inputs of each group give the methods' statistics);
   b. build the quantized twin (:func:`~batquant.pipeline.build.build_layer`)
      and train all of its transforms and clipping parameters jointly on the
      MSE of the decoder layer's output (the paper's eq. 5), or on the sum of
      the per-linear MSEs (Algorithm 2, ``objective="linear"``);
   c. freeze it (weight sides applied once) and put it in the model;
   d. pass on to the next layer the full-precision outputs (default, as
      FlatQuant does) or the quantized layer's outputs
      (``propagate="quantized"``).

3. **Memory.** Activations live in an :class:`ActivationCache`, in CPU memory
   or on disk under ``cache_dir``; each layer visits the compute device only
   while it is calibrated.
4. **Resume.** With a ``cache_dir``, every finished layer is written there
   with the inputs of the next one; a run started again with the same
   arguments picks up at the next layer and ends bit-identical to an
   uninterrupted run (seeds are derived per layer, never drawn from a
   shared generator).  Different arguments for the same ``cache_dir`` are
   an error, never a silent restart.
5. **Progress**: a bar over the layers and one per epoch; a JSON line per
   step (layer, group, step, loss, seconds) in ``cache_dir/calibration.jsonl``
   and in the returned model's ``batquant_info``; a summary table at the end.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from batquant import attention
from batquant.config import CalibSpec, QuantConfig, get_config
from batquant.heads import HeadTransforms
from batquant.layer import CalibratingLinear
from batquant.methods import FIT_ROWS, Method, get_method
from batquant.models import ModelAdapter, get_adapter
from batquant.pipeline.build import (
    VALUE_HEADS,
    LayerPlan,
    build_layer,
    forget,
    freeze_layer,
    learnable_parameters,
    owned_part,
    restore_layer,
)
from batquant.pipeline.cache import ActivationCache
from batquant.pipeline.capture import capture_layer_inputs, kwargs_to
from batquant.pipeline.options import Objective, Propagation
from batquant.pipeline.validate import check_calib_ids, check_dimensions, resolve_device

#: Version of the files a run writes into cache_dir (and of saved models).
RUN_FORMAT = "batquant-run-1"


def run_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """``layer(hidden, **kwargs)``'s hidden states (layers that return a tuple give its first)."""
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def layer_state(layer: nn.Module) -> dict[str, torch.Tensor]:
    """The layer's state dict as contiguous CPU tensors (what safetensors stores)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in layer.state_dict().items()}


def _batches(count: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, count))) for i in range(0, count, size)]


class _RunLog:
    """JSON lines per step, kept in memory and appended to a file when there is one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    def write(self, **record: Any) -> None:
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def _fingerprint(parts: dict[str, Any], model: nn.Module, adapter: ModelAdapter,
                 calib_ids: torch.Tensor) -> str:  # fmt: skip
    """What a resumed run must share with the first: arguments, data and model."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    h.update(calib_ids.to(torch.int64).contiguous().numpy().tobytes())
    layers = adapter.decoder_layers(model)
    for index in (0, len(layers) - 1):
        for path in adapter.groups[0].linears:
            weight = layers[index].get_submodule(path).weight
            assert isinstance(weight, torch.Tensor)
            h.update(weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class _RunFolder:
    """The files of a resumable run in ``cache_dir`` (module docstring, item 4)."""

    def __init__(self, root: Path, fingerprint: str, num_layers: int) -> None:
        self.root = root
        self.fingerprint = fingerprint
        self.num_layers = num_layers
        root.mkdir(parents=True, exist_ok=True)
        (root / "layers").mkdir(exist_ok=True)

    @property
    def state_path(self) -> Path:
        return self.root / "run.json"

    def finished_layers(self) -> int:
        """Layers already done by an earlier run with the same fingerprint (0 if none)."""
        if not self.state_path.is_file():
            return 0
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.state_path}: unreadable run state ({exc})") from None
        if state.get("format") != RUN_FORMAT or state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"cache_dir {self.root} holds another calibration run (different model, data "
                "or arguments); use a new cache_dir, or remove that one to start over"
            )
        return int(state["done"])

    def inputs(self, layer: int) -> ActivationCache:
        return ActivationCache(self.root / f"inputs_{layer:04d}")

    def targets(self) -> ActivationCache:
        return ActivationCache(self.root / "targets")

    def layer_path(self, layer: int) -> Path:
        return self.root / "layers" / f"layer_{layer:04d}.safetensors"

    def save_kwargs(self, kwargs: dict[str, Any]) -> None:
        torch.save(kwargs, self.root / "layer_kwargs.pt")

    def load_kwargs(self) -> dict[str, Any]:
        return torch.load(self.root / "layer_kwargs.pt", weights_only=True)

    def finish_layer(self, layer: int, frozen: nn.Module) -> None:
        """Checkpoint ``layer``; once the state says so, drop the inputs it no longer needs."""
        path = self.layer_path(layer)
        partial = path.with_suffix(".partial")
        save_file(layer_state(frozen), str(partial))
        os.replace(partial, path)
        state = {"format": RUN_FORMAT, "fingerprint": self.fingerprint, "done": layer + 1,
                 "layers": self.num_layers}  # fmt: skip
        tmp = self.state_path.with_suffix(".partial")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)
        self.inputs(layer).clear()


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
    inplace: bool = False,
) -> nn.Module:
    """Calibrate and quantize every decoder layer of a transformers causal LM.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        ``Qwen3ForCausalLM``, ``LlamaForCausalLM`` or any architecture with a
        registered adapter (:mod:`batquant.models`).  Left unchanged unless
        ``inplace``.
    calib_ids : torch.LongTensor
        ``[samples, seq_len]`` calibration token ids.
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
        tqdm bars and the final summary table on stderr.
    device : str or torch.device, optional
        Where each layer is calibrated (``"cuda"`` when present); the model
        itself stays where it is.  Default: the model's device.
    objective : {"layer", "linear"}
        The MSE of each decoder layer's output (eq. 5), or the sum of the
        per-linear MSEs on full-precision inputs (Algorithm 2; ``P_k`` then
        keeps its initial value, as no linear's output depends on it).
    propagate : {"full_precision", "quantized"}
        What the next layer is calibrated on.
    inplace : bool
        Quantize ``model`` itself instead of a copy (no second copy in memory).

    Returns
    -------
    nn.Module
        The quantized model: ``model(input_ids).logits`` and ``generate`` run
        the quantized forward.  ``batquant_info`` holds the run's settings and
        per-layer summary (read by :func:`batquant.save_quantized`).

    Raises
    ------
    ValueError
        Bad arguments (naming them), an architecture without an adapter,
        dimensions the MX blocks do not divide, a ``cache_dir`` that holds
        another run, or a NaN/Inf during calibration (naming layer and batch).
    """
    meth = get_method(method)
    cfg = get_config(config)
    if calib is not None and not isinstance(calib, CalibSpec):
        raise TypeError(f"calib must be a CalibSpec or None; got {type(calib).__name__}")
    if calib is not None and not meth.calibrated:
        raise ValueError(
            f"calib: method {meth.name!r} is training-free, so a CalibSpec would be ignored; "
            "pass calib=None"
        )
    spec = calib or CalibSpec()
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {seed!r}")
    obj = Objective.parse(objective, "objective")
    prop = Propagation.parse(propagate, "propagate")
    ids = check_calib_ids(calib_ids, model)
    if calib is not None and spec.samples != CalibSpec().samples and spec.samples != len(ids):
        raise ValueError(
            f"CalibSpec.samples is {spec.samples} but calib_ids has {len(ids)} rows; "
            "quantize_model calibrates on the rows of calib_ids (leave samples at its default)"
        )
    adapter = get_adapter(model)
    geometry = adapter.geometry(model.config)
    check_dimensions(model, adapter, geometry, cfg)
    dev = resolve_device(device, model)

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
    }
    runner = _Runner(work, adapter, plan, ids, dev, obj, prop, progress)
    folder = None
    if cache_dir is not None:
        fingerprint = _fingerprint(settings, model, adapter, ids)
        folder = _RunFolder(Path(cache_dir), fingerprint, runner.num_layers)
    summaries = runner.run(folder)
    work.batquant_info = {**settings, "layers": summaries}  # type: ignore[assignment]
    if progress:
        print_summary(summaries, meth.name, cfg.describe(), file=sys.stderr)
    return work


class _Runner:
    """One calibration run over the layers of ``model`` (already a copy when asked)."""

    def __init__(self, model: nn.Module, adapter: ModelAdapter, plan: LayerPlan,
                 ids: torch.Tensor, device: torch.device, objective: Objective,
                 propagate: Propagation, progress: bool) -> None:  # fmt: skip
        self.model, self.adapter, self.plan, self.ids = model, adapter, plan, ids
        self.device, self.objective, self.propagate = device, objective, propagate
        self.progress = progress
        self.layers = adapter.decoder_layers(model)
        self.num_layers = len(self.layers)
        self.batches = _batches(ids.shape[0], plan.spec.batch_size)
        self.description = f"{plan.method.name}, {plan.config.describe()}"

    # -- the loop -------------------------------------------------------------------------

    def run(self, folder: _RunFolder | None) -> list[dict[str, Any]]:
        log = _RunLog(None if folder is None else folder.root / "calibration.jsonl")
        start = 0 if folder is None else folder.finished_layers()
        summaries: list[dict[str, Any]] = []
        for index in range(start):  # finished by an earlier run: rebuild them from disk
            assert folder is not None
            self._restore(index, folder.layer_path(index))
            summaries.append({"layer": index, "resumed": True})
        if start == self.num_layers:
            return summaries
        if folder is None:
            inputs = ActivationCache()
            kwargs = capture_layer_inputs(self.model, self.adapter, self.ids, inputs)
        elif start == 0:
            inputs = folder.inputs(0)
            kwargs = capture_layer_inputs(self.model, self.adapter, self.ids, inputs)
            folder.save_kwargs(kwargs)
        else:
            inputs = folder.inputs(start)
            if not inputs.complete(len(self.ids)):
                raise ValueError(f"{inputs.directory}: the cached inputs of layer {start} are "
                                 "incomplete; remove cache_dir to start over")  # fmt: skip
            kwargs = folder.load_kwargs()
        kwargs = kwargs_to(kwargs, self.device)
        bar = tqdm(total=self.num_layers, initial=start, desc="layers", unit="layer",
                   disable=not self.progress, file=sys.stderr)  # fmt: skip
        try:
            for index in range(start, self.num_layers):
                targets = ActivationCache() if folder is None else folder.targets()
                nxt = ActivationCache() if folder is None else folder.inputs(index + 1)
                summary = self._layer(index, inputs, targets, nxt, kwargs, log)
                if folder is not None:
                    folder.finish_layer(index, self.layers[index])
                    targets.clear()
                else:
                    inputs.clear()
                summaries.append(summary)
                inputs = nxt
                bar.update(1)
        finally:
            bar.close()
        inputs.clear()
        return summaries

    def _restore(self, index: int, path: Path) -> None:
        try:
            state = load_file(str(path))
        except (OSError, SafetensorError) as exc:
            raise ValueError(f"{path}: unreadable layer checkpoint ({exc})") from None
        self.layers[index] = restore_layer(self.layers[index], self.plan, index, state, str(path))

    def _layer(self, index: int, inputs: ActivationCache, targets: ActivationCache,
               nxt: ActivationCache, kwargs: dict[str, Any],
               log: _RunLog) -> dict[str, Any]:  # fmt: skip
        started = time.perf_counter()
        layer = self.layers[index]
        # calibrated in float32 on the compute device; back home in its own dtype after
        first = next(iter(layer.parameters()))
        home_device, home_dtype = first.device, first.dtype
        layer.to(self.device, torch.float32)
        stats, fit = self._full_precision_pass(index, layer, inputs, targets, kwargs)
        work = build_layer(layer, self.plan, index, stats, fit)
        train_started = time.perf_counter()
        losses = self._train(index, layer, work, inputs, targets, kwargs, log)
        train_seconds = time.perf_counter() - train_started
        frozen = freeze_layer(work, self.description)
        with torch.no_grad():
            x0 = inputs.batch(self.batches[0], self.device)
            y0 = targets.batch(self.batches[0], self.device)
            rel = float(((run_layer(frozen, x0, kwargs) - y0) ** 2).mean() / (y0**2).mean())
            for batch in self.batches:
                x = inputs.batch(batch, self.device)
                out = run_layer(frozen, x, kwargs) if self.propagate is Propagation.QUANTIZED \
                    else targets.batch(batch, self.device)  # fmt: skip
                for i, row in zip(batch, out, strict=True):
                    nxt.put(i, row)
        forget(frozen)
        layer.to(home_device, home_dtype)
        self.layers[index] = frozen.to(home_device, home_dtype)
        seconds = time.perf_counter() - started
        return {"layer": index, "steps": len(losses),
                "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None,
                "relative_mse": rel, "train_seconds": round(train_seconds, 3),
                "seconds": round(seconds, 3)}  # fmt: skip

    def _full_precision_pass(self, index: int, layer: nn.Module, inputs: ActivationCache,
                             targets: ActivationCache, kwargs: dict[str, Any],
                             ) -> tuple[dict[str, torch.Tensor],
                                        dict[str, torch.Tensor]]:  # fmt: skip
        """Store the layer's outputs; return each group's per-channel max |input|, and
        (for methods that fit to data) each group's strided sample of input rows."""
        stats: dict[str, torch.Tensor] = {}
        rows: dict[str, list[torch.Tensor]] = {}
        stride = max(1, -(-self.ids.numel() // FIT_ROWS))
        hooks = []
        for group in self.adapter.groups:
            def record(module: nn.Module, args: tuple[Any, ...], name: str = group.name) -> None:
                flat = args[0].detach().flatten(0, -2).float()
                amax = flat.abs().amax(0)
                stats[name] = amax if name not in stats else torch.maximum(stats[name], amax)
                if self.plan.method.needs_inputs:
                    rows.setdefault(name, []).append(flat[::stride].cpu())

            first = layer.get_submodule(group.linears[0])
            hooks.append(first.register_forward_pre_hook(record))
        try:
            with torch.no_grad():
                for b, batch in enumerate(self.batches):
                    x = inputs.batch(batch, self.device)
                    if not bool(torch.isfinite(x).all()):
                        raise ValueError(f"layer {index}: the inputs of batch {b} contain NaN "
                                         "or Inf")  # fmt: skip
                    y = run_layer(layer, x, kwargs)
                    for i, row in zip(batch, y, strict=True):
                        targets.put(i, row)
        finally:
            for h in hooks:
                h.remove()
        return stats, {name: torch.cat(r)[:FIT_ROWS] for name, r in rows.items()}

    def _train(self, index: int, fp_layer: nn.Module, work: nn.Module, inputs: ActivationCache,
               targets: ActivationCache, kwargs: dict[str, Any],
               log: _RunLog) -> list[float]:  # fmt: skip
        spec = self.plan.spec
        params, clips = learnable_parameters(work)
        if not self.plan.method.calibrated or not (params or clips):
            return []
        clip_lr = spec.lr if spec.clip_lr is None else spec.clip_lr
        groups = [g for g in ({"params": params, "lr": spec.lr},
                              {"params": clips, "lr": clip_lr}) if g["params"]]  # fmt: skip
        optimizer = torch.optim.AdamW(groups, weight_decay=spec.weight_decay)
        total = spec.epochs * len(self.batches)
        floor = spec.min_lr_ratio

        def cosine(step: int) -> float:
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
        loss_fn = self._layer_loss if self.objective is Objective.LAYER else self._linear_loss
        losses: list[float] = []
        started = time.perf_counter()
        step = 0
        for epoch in range(spec.epochs):
            bar = tqdm(self.batches, desc=f"layer {index} epoch {epoch + 1}/{spec.epochs}",
                       leave=False, disable=not self.progress, file=sys.stderr)  # fmt: skip
            for b, batch in enumerate(bar):
                x = inputs.batch(batch, self.device)
                y = targets.batch(batch, self.device)
                loss, parts = loss_fn(fp_layer, work, x, y, kwargs)
                value = loss.item()
                if not math.isfinite(value):
                    raise ValueError(
                        f"layer {index}: the loss of batch {b} (epoch {epoch}) is {value}; "
                        "the parameters diverged or the data overflow float32"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                forget(work)
                losses.append(value)
                for group, part in parts.items():
                    log.write(layer=index, group=group, epoch=epoch, step=step, loss=part,
                              seconds=round(time.perf_counter() - started, 4))  # fmt: skip
                bar.set_postfix(loss=f"{value:.3g}")
                step += 1
        return losses

    def _layer_loss(self, fp_layer: nn.Module, work: nn.Module, x: torch.Tensor,
                    y: torch.Tensor, kwargs: dict[str, Any],
                    ) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
        loss = nn.functional.mse_loss(run_layer(work, x, kwargs), y)
        return loss, {"layer": loss.item()}

    def _linear_loss(self, fp_layer: nn.Module, work: nn.Module, x: torch.Tensor,
                     y: torch.Tensor, kwargs: dict[str, Any],
                     ) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
        """Algorithm 2: each quantized linear against the full-precision one, on FP inputs."""
        seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad(), _Recording(fp_layer, self.adapter, seen):
            run_layer(fp_layer, x, kwargs)
        value_heads = owned_part(work, VALUE_HEADS)
        assert value_heads is None or isinstance(value_heads, HeadTransforms)
        total = torch.zeros((), device=x.device)
        parts: dict[str, float] = {}
        for group in self.adapter.groups:
            group_loss = torch.zeros((), device=x.device)
            for path in group.linears:
                inp, target = seen[path]
                if value_heads is not None and path == self.adapter.v_proj:
                    target = value_heads.rows_of(target)
                if value_heads is not None and path == self.adapter.o_proj:
                    inp = value_heads.columns_of(inp)
                module = work.get_submodule(path)
                assert isinstance(module, CalibratingLinear)
                group_loss = group_loss + nn.functional.mse_loss(module(inp), target)
            total = total + group_loss
            parts[group.name] = group_loss.item()
        return total, parts


class _Recording:
    """Record each adapter linear's (input, output) during a forward of ``layer``."""

    def __init__(self, layer: nn.Module, adapter: ModelAdapter,
                 seen: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:  # fmt: skip
        self.layer, self.adapter, self.seen = layer, adapter, seen
        self.hooks: list[Any] = []

    def __enter__(self) -> _Recording:
        for group in self.adapter.groups:
            for path in group.linears:
                def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor,
                         path: str = path) -> None:  # fmt: skip
                    self.seen[path] = (args[0], out)

                self.hooks.append(self.layer.get_submodule(path).register_forward_hook(hook))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()


def print_summary(summaries: list[dict[str, Any]], method: str, config: str,
                  file: Any = None) -> None:  # fmt: skip
    """The per-layer summary table (layer, steps, first and last loss, output MSE, seconds)."""
    lines = [f"{method} {config}: calibration summary",
             f"{'layer':>5}  {'steps':>5}  {'first loss':>11}  {'last loss':>11}  "
             f"{'rel. MSE':>9}  {'seconds':>8}"]  # fmt: skip

    def num(v: Any, width: int, spec: str) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"

    for s in summaries:
        if s.get("resumed"):
            lines.append(f"{s['layer']:>5}  (from the checkpoint of an earlier run)")
            continue
        lines.append(f"{s['layer']:>5}  {s['steps']:>5}  {num(s['first_loss'], 11, '.4g')}  "
                     f"{num(s['last_loss'], 11, '.4g')}  {num(s['relative_mse'], 9, '.3g')}  "
                     f"{s['seconds']:>8.1f}")  # fmt: skip
    print("\n".join(lines), file=file or sys.stderr)
