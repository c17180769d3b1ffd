"""Capture the inputs of the first decoder layer.

The backbone runs with its layer list cut down to one stand-in
(:class:`_FirstLayerInputs`) that records what the backbone passes to its
first layer (the hidden states and the keyword arguments: position
embeddings, attention mask, ...) and hands the hidden states back unchanged.
No exception is raised to stop the model: with one stand-in in the list
there is nothing else to run but the final norm, and the LM head is never
called because the backbone excludes it.

Samples are run one at a time, so the captured keyword tensors have batch
dimension 1 and broadcast over any calibration batch (the mask and the
rotary embeddings depend only on the sequence length, which is the same
for every row of ``calib_ids``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from batquant.models import ModelAdapter
from batquant.pipeline.cache import ActivationCache

#: Keyword arguments of a decoder-layer call that are not kept (the cache is
#: never used during calibration, and outputs are always hidden states).
DROPPED_KWARGS = frozenset({"past_key_values", "cache", "use_cache", "output_attentions"})


class _FirstLayerInputs(nn.Module):
    """Stands in for the decoder layers: records the first call, returns its input."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None
        self.kwargs: dict[str, Any] = {}

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
def _layers_replaced(model: nn.Module, path: str, stand_in: nn.Module) -> Iterator[None]:
    owner_path, _, attr = path.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    original = getattr(owner, attr)
    setattr(owner, attr, nn.ModuleList([stand_in]))
    try:
        yield
    finally:
        setattr(owner, attr, original)


def capture_layer_inputs(
    model: nn.Module,
    adapter: ModelAdapter,
    calib_ids: torch.Tensor,
    cache: ActivationCache,
) -> dict[str, Any]:
    """Store the first layer's input of every sample in ``cache``; return the layer kwargs.

    Parameters
    ----------
    model : nn.Module
        The full-precision causal LM (left as it was).
    adapter : ModelAdapter
    calib_ids : torch.Tensor
        ``[samples, seq_len]`` token ids.
    cache : ActivationCache
        Receives one ``[seq_len, hidden]`` tensor per sample (float32).

    The backbone runs where the model is.

    Returns
    -------
    dict
        The keyword arguments the backbone passes to every layer, on CPU.
    """
    backbone = model.get_submodule(adapter.backbone)
    device = next(iter(model.parameters())).device
    stand_in = _FirstLayerInputs()
    kwargs: dict[str, Any] = {}
    with _layers_replaced(model, adapter.layers, stand_in), torch.no_grad():
        for i in range(calib_ids.shape[0]):
            backbone(input_ids=calib_ids[i : i + 1].to(device), use_cache=False)
            if stand_in.hidden is None:
                raise ValueError(
                    f"{adapter.architecture}: the backbone {adapter.backbone!r} never called "
                    f"its layers ({adapter.layers!r})"
                )
            cache.put(i, stand_in.hidden[0])
            if i == 0:
                kwargs = {k: _to_cpu(v) for k, v in stand_in.kwargs.items()}
    return kwargs


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, tuple | list):
        return type(value)(_to_cpu(v) for v in value)
    return value


def kwargs_to(kwargs: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The captured layer kwargs on ``device``, floating tensors in float32 (as calibration)."""

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                return value.to(device=device, dtype=torch.float32)
            return value.to(device)
        if isinstance(value, tuple | list):
            return type(value)(move(v) for v in value)
        return value

    return {k: move(v) for k, v in kwargs.items()}
