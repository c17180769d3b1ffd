"""The files of a resumable run (``cache_dir``) and the one format of saved layer states.

A run folder holds

``run.json``
    Written when the run starts (``done: 0``) and after every finished layer:
    the format, the run's fingerprint (arguments, data, model) and the number
    of finished layers.  A run can be resumed from any interruption: before
    or during capture (the capture is redone), during a layer (the layer is
    redone from its cached inputs), or between layers.
``layer_arguments.pt``
    Every layer's keyword arguments, each distinct value once; written when
    the capture is complete, so its presence marks a complete capture.
``inputs_<layer>/``, ``targets/``
    The activation cache (:class:`~batquant.pipeline.cache.ActivationCache`);
    ``routing_<site>/`` the full-precision router's choices of an MoE layer.
``layers/layer_<i>.safetensors``
    Each finished layer's quantized state.
``calibration.jsonl``
    The log; on resume the records of the unfinished layer are dropped, so
    every step is logged once.

A data-parallel run (:mod:`batquant.pipeline.ranks`) keeps each rank's
activation cache under ``rank_<r>/`` and records its number of ranks in
``run.json``; rank 0 alone writes ``run.json``, the layers and the log, so
the folder must be one that every rank sees (a shared file system when the
ranks are on several machines).  It resumes with the same number of ranks
only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from batquant.pipeline.cache import ActivationCache
from batquant.pipeline.ranks import SINGLE, Ranks

#: Version of the files a run writes into cache_dir (and of saved models).
RUN_FORMAT = "batquant-run-2"


def layer_state(layer: nn.Module) -> dict[str, torch.Tensor]:
    """The layer's state dict as contiguous CPU tensors (what safetensors stores)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in layer.state_dict().items()}


def fingerprint(settings: dict[str, Any], calib_ids: torch.Tensor,
                weights: Sequence[torch.Tensor]) -> str:  # fmt: skip
    """What a resumed run must share with the first: arguments, data and (some) weights."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(calib_ids.to(torch.int64).contiguous().numpy().tobytes())
    for weight in weights:
        h.update(weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _layer_of(line: str) -> int:
    """The layer of a log record; a line torn by the interruption counts as unfinished."""
    try:
        record = json.loads(line)
    except ValueError:
        return 1 << 30
    return int(record.get("layer", 1 << 30)) if isinstance(record, dict) else 1 << 30


class RunFolder:
    """The files of one resumable run (module docstring)."""

    def __init__(self, root: Path, fingerprint: str, num_layers: int,
                 ranks: Ranks = SINGLE) -> None:  # fmt: skip
        self.root = root
        self.fingerprint = fingerprint
        self.num_layers = num_layers
        self.ranks = ranks
        # each rank's own activations; a single process keeps the flat layout
        self.caches = root / f"rank_{ranks.rank}" if ranks.parallel else root

    @property
    def state_path(self) -> Path:
        return self.root / "run.json"

    @property
    def log_path(self) -> Path:
        return self.root / "calibration.jsonl"

    def open(self) -> int:
        """Start or continue the run; return the number of layers already finished.

        Every rank calls it; rank 0 reads and writes the state, and the others
        take its answer, so they all start from the same layer.

        Raises
        ------
        ValueError
            When the folder holds another run, a run on another number of
            ranks, or an unreadable state; or when a rank does not see the
            folder rank 0 wrote.
        """
        answer: tuple[int, str | None] = (0, None)
        if self.ranks.main:
            try:
                answer = (self._open(), None)
            except ValueError as exc:
                answer = (0, str(exc))
        done, error = self.ranks.broadcast(answer, f"opening {self.root}")
        if error is not None:
            raise ValueError(error)
        if self.ranks.parallel and not self.state_path.is_file():
            raise ValueError(f"rank {self.ranks.rank}: cannot see {self.state_path}, which rank 0 "
                             "wrote; cache_dir must be on a file system every rank "
                             "shares")  # fmt: skip
        self.caches.mkdir(parents=True, exist_ok=True)
        return int(done)

    def _open(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "layers").mkdir(exist_ok=True)
        if not self.state_path.is_file():
            self._write_state(0)
            return 0
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.state_path}: unreadable run state ({exc})") from None
        world = int(state.get("ranks", 1)) if isinstance(state, dict) else 1
        if state.get("format") == RUN_FORMAT and world != self.ranks.world:
            raise ValueError(
                f"cache_dir {self.root} holds a run on {world} rank(s); this one has "
                f"{self.ranks.world}. Resume it with {world} rank(s) (torchrun "
                f"--nproc-per-node {world}), or remove the folder to start over"
            )
        if state.get("format") != RUN_FORMAT or state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"cache_dir {self.root} holds another calibration run (different model, data "
                "or arguments); use a new cache_dir, or remove that one to start over"
            )
        done = int(state["done"])
        self._keep_log_before(done)
        return done

    def _keep_log_before(self, layer: int) -> None:
        """Drop the log records of layers from ``layer`` on (an unfinished layer is redone)."""
        if not self.log_path.is_file():
            return
        kept = [line for line in self.log_path.read_text(encoding="utf-8").splitlines()
                if _layer_of(line) < layer]  # fmt: skip
        tmp = self.log_path.with_suffix(".partial")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.log_path)

    def _write_state(self, done: int) -> None:
        state = {"format": RUN_FORMAT, "fingerprint": self.fingerprint, "done": done,
                 "layers": self.num_layers, "ranks": self.ranks.world}  # fmt: skip
        tmp = self.state_path.with_suffix(".partial")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)

    def inputs(self, layer: int) -> ActivationCache:
        """This rank's cached inputs of decoder layer ``layer``."""
        return ActivationCache(self.caches / f"inputs_{layer:04d}")

    def targets(self) -> ActivationCache:
        return ActivationCache(self.caches / "targets")

    def cache(self, name: str) -> ActivationCache:
        """A named per-sample cache of the layer in progress (``routing_<site>``)."""
        return ActivationCache(self.caches / name)

    def layer_path(self, layer: int) -> Path:
        return self.root / "layers" / f"layer_{layer:04d}.safetensors"

    def finish_layer(self, layer: int, frozen: nn.Module) -> None:
        """Checkpoint ``layer`` (rank 0 writes it); then drop the inputs it no longer needs.

        The ranks meet before the state moves on (every rank has stored its
        inputs of the next layer) and again before any rank drops its inputs
        of this one, so a run interrupted anywhere finds every input it needs.
        """
        self.ranks.barrier(f"the end of layer {layer}")
        if self.ranks.main:
            path = self.layer_path(layer)
            partial = path.with_suffix(".partial")
            save_file(layer_state(frozen), str(partial))
            os.replace(partial, path)
            self._write_state(layer + 1)
        self.ranks.barrier(f"the checkpoint of layer {layer}")
        self.inputs(layer).clear()
