"""Capture the first layer's inputs and every layer's own keyword arguments.

The backbone runs with each decoder layer replaced by a stand-in
(:class:`_Recorder`) that records what the backbone passes to that layer
(the hidden states and the keyword arguments: position embeddings, the
attention mask of the layer's type, ...) and hands the hidden states back
unchanged.  The first stand-in's hidden states are the calibration inputs;
every stand-in's keyword arguments are what the pipeline calls that layer
with.  Families whose layers differ (sliding-window and global layers with
their own RoPE and mask: Gemma 2/3, gpt-oss, Qwen3's ``layer_types``) get
each layer's own arguments; no exception is raised to stop the model.

Samples run one at a time.  The arguments must be the same for every sample
(they depend on the sequence length, which every row of ``calib_ids``
shares), since they broadcast over any calibration batch; a backbone whose
arguments depend on the tokens is refused, naming the layer and the argument.
They are stored once per distinct value (:class:`LayerArguments`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from batquant.models import ModelAdapter
from batquant.pipeline.cache import ActivationCache

#: Keyword arguments of a decoder-layer call that are not kept (the cache is
#: never used during calibration, and outputs are always hidden states).
DROPPED_KWARGS = frozenset({"past_key_values", "cache", "use_cache", "output_attentions"})


class _Recorder(nn.Module):
    """Stands in for one decoder layer: records its call, returns its input.

    Attribute look-ups it cannot answer go to the layer it stands for (a
    backbone may read ``layer.attention_type``).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None
        self.kwargs: dict[str, Any] | None = None
        self.stands_for = layer

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["stands_for"], name)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if args:
            raise ValueError(
                "the backbone passes positional arguments besides the hidden states to its "
                "layers; the adapter's backbone must call layer(hidden_states, **kwargs)"
            )
        self.hidden = hidden_states
        self.kwargs = {k: v for k, v in kwargs.items() if k not in DROPPED_KWARGS}
        return hidden_states


@contextmanager
def _layers_replaced(model: nn.Module, path: str, stand_ins: list[nn.Module]) -> Iterator[None]:
    owner_path, _, attr = path.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    original = getattr(owner, attr)
    setattr(owner, attr, nn.ModuleList(stand_ins))
    try:
        yield
    finally:
        setattr(owner, attr, original)


def _same(a: Any, b: Any) -> bool:
    """Equal values, tensors bit for bit (same dtype and shape)."""
    if a is b:  # layers of one type usually get the very same mask and RoPE tensors
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and a.shape == b.shape
                and bool(torch.equal(a, b)))  # fmt: skip
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b) if type(a) is type(b) else False


def _to(value: Any, device: torch.device | str, dtype: torch.dtype | None = None) -> Any:
    if isinstance(value, torch.Tensor):
        if dtype is not None and value.is_floating_point():
            return value.detach().to(device=device, dtype=dtype)
        return value.detach().to(device)
    if isinstance(value, tuple | list):
        return type(value)(_to(v, device, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device, dtype) for k, v in value.items()}
    return value


class LayerArguments:
    """The keyword arguments of every decoder layer, each distinct value stored once.

    Parameters
    ----------
    distinct : list of dict
        The distinct argument sets.
    of_layer : list of int
        For each layer, the index of its set in ``distinct``.
    """

    FILE = "layer_arguments.pt"

    def __init__(self, distinct: list[dict[str, Any]], of_layer: list[int]) -> None:
        if any(not 0 <= i < len(distinct) for i in of_layer):
            raise ValueError("LayerArguments: a layer points past the distinct argument sets")
        self.distinct = distinct
        self.of_layer = of_layer

    @classmethod
    def collect(cls, per_layer: list[dict[str, Any]]) -> LayerArguments:
        """Deduplicate one argument set per layer."""
        distinct: list[dict[str, Any]] = []
        of_layer = []
        for kwargs in per_layer:
            for i, known in enumerate(distinct):
                if _same(known, kwargs):
                    of_layer.append(i)
                    break
            else:
                distinct.append(kwargs)
                of_layer.append(len(distinct) - 1)
        return cls(distinct, of_layer)

    def __len__(self) -> int:
        return len(self.of_layer)

    def __getitem__(self, layer: int) -> dict[str, Any]:
        """The arguments of layer ``layer``."""
        return self.distinct[self.of_layer[layer]]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> LayerArguments:
        """On ``device``; floating tensors in ``dtype`` when given (float32 for calibration)."""
        return LayerArguments([_to(d, device, dtype) for d in self.distinct], list(self.of_layer))

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write them into ``folder`` (a temporary name, then renamed)."""
        path = Path(folder) / self.FILE
        partial = path.with_suffix(".partial")
        torch.save({"distinct": _to(self.distinct, "cpu"), "of_layer": self.of_layer}, partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> LayerArguments | None:
        """Those saved in ``folder``, or None when there are none."""
        path = Path(folder) / cls.FILE
        if not path.is_file():
            return None
        try:
            data = torch.load(path, weights_only=True)
            return cls(list(data["distinct"]), [int(i) for i in data["of_layer"]])
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file, whatever torch raises
            raise ValueError(f"{path}: unreadable layer arguments ({exc})") from None


def capture_layer_inputs(
    model: nn.Module,
    adapter: ModelAdapter,
    calib_ids: torch.Tensor,
    cache: ActivationCache,
    samples: Sequence[int] | None = None,
    device: torch.device | None = None,
) -> LayerArguments:
    """Store the first layer's input of every sample in ``cache``; return every layer's kwargs.

    Parameters
    ----------
    model : nn.Module
        The full-precision causal LM (left as it was).
    adapter : ModelAdapter
    calib_ids : torch.Tensor
        ``[samples, seq_len]`` token ids.
    cache : ActivationCache
        Receives one ``[seq_len, hidden]`` tensor per sample (float32).
    samples : sequence of int, optional
        The rows of ``calib_ids`` to run (a data-parallel rank's own); all by default.
    device : torch.device, optional
        Where the ids go; the model's device by default (CPU for a model
        offloaded to disk, whose hooks run it there).

    The backbone runs where the model is.

    Returns
    -------
    LayerArguments
        On CPU.

    Raises
    ------
    ValueError
        A backbone that never calls its layers, or passes a layer arguments
        that differ between samples.
    """
    backbone = model.get_submodule(adapter.backbone)
    layers = adapter.decoder_layers(model)
    device = device or next(iter(model.parameters())).device
    stand_ins = [_Recorder(layer) for layer in layers]
    first: list[dict[str, Any]] = []
    with _layers_replaced(model, adapter.layers, list(stand_ins)), torch.no_grad():
        rows = range(calib_ids.shape[0]) if samples is None else samples
        first_row = None
        for i in rows:
            for s in stand_ins:
                s.hidden, s.kwargs = None, None
            backbone(input_ids=calib_ids[i : i + 1].to(device), use_cache=False)
            head = stand_ins[0].hidden
            if head is None or any(s.kwargs is None for s in stand_ins):
                missing = [n for n, s in enumerate(stand_ins) if s.kwargs is None]
                raise ValueError(
                    f"{adapter.architecture}: the backbone {adapter.backbone!r} never called "
                    f"layer(s) {missing[:8]} of {adapter.layers!r}"
                )
            cache.put(i, head[0])
            # compared where the model runs; only the first sample's arguments are kept
            seen = [dict(s.kwargs or {}) for s in stand_ins]
            if first_row is None:
                first, first_row = seen, i
                continue
            for n, (a, b) in enumerate(zip(first, seen, strict=True)):
                if not _same(a, b):
                    names = sorted(k for k in {*a, *b} if k not in a or k not in b
                                   or not _same(a[k], b[k]))  # fmt: skip
                    raise ValueError(
                        f"{adapter.architecture}: the backbone passes layer {n} argument(s) "
                        f"{names} that differ between calibration samples {first_row} and {i}; "
                        "batquant calibrates layers whose arguments depend only on the "
                        "sequence length"
                    )
    return LayerArguments.collect([_to(kwargs, "cpu") for kwargs in first])
