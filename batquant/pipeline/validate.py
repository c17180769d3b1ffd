"""Checks of a whole-model run's inputs, each naming what is wrong."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from batquant.config import QuantConfig
from batquant.models import HeadGeometry, ModelAdapter
from batquant.pipeline.sites import LayerSites, layer_sites


def check_calib_ids(calib_ids: object, config: Any) -> torch.Tensor:
    """``calib_ids`` as a CPU int64 ``[samples, seq_len]`` tensor of ids the model can take.

    ``config`` is the text model's config: the ids must lie within its
    ``vocab_size``, and ``seq_len`` must not exceed its
    ``max_position_embeddings`` (positions past it are outside what the model
    was trained on, so calibrating on them would fit the transforms to
    activations the model never produces in use).

    Raises
    ------
    TypeError, ValueError
        Naming ``calib_ids``.
    """
    if not isinstance(calib_ids, torch.Tensor):
        raise TypeError(f"calib_ids must be a torch.LongTensor; got {type(calib_ids).__name__}")
    if calib_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"calib_ids must hold integer token ids; got dtype {calib_ids.dtype}")
    if calib_ids.ndim != 2 or calib_ids.shape[0] < 1 or calib_ids.shape[1] < 2:
        raise ValueError(
            f"calib_ids must be [samples, seq_len] with seq_len >= 2; got shape "
            f"{tuple(calib_ids.shape)}"
        )
    vocab = getattr(config, "vocab_size", None)
    low, high = int(calib_ids.min()), int(calib_ids.max())
    if low < 0 or (vocab is not None and high >= vocab):
        raise ValueError(
            f"calib_ids holds ids in [{low}, {high}], outside the model's vocabulary "
            f"[0, {vocab})"
        )
    check_seq_len(int(calib_ids.shape[1]), config, "calib_ids' seq_len")
    return calib_ids.to("cpu", torch.int64)


def check_seq_len(seq_len: int, config: Any, name: str) -> None:
    """Refuse a window longer than the model's ``max_position_embeddings``, naming ``name``."""
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and seq_len > limit:
        raise ValueError(
            f"{name} {seq_len} is longer than the model's max_position_embeddings {limit}; "
            "positions past it are outside what the model was trained on (refused: use "
            f"windows of at most {limit} tokens)"
        )


def check_dimensions(
    model: nn.Module, adapter: ModelAdapter, geometry: HeadGeometry, config: QuantConfig
) -> list[LayerSites]:
    """Every quantized dimension must be a multiple of its MX block size; return the sites.

    The reduction dimension of every linear and expert (weights and
    activations are blocked along in_features: H for gate/up, I for down) and
    head_dim for K and V, in every layer (layers of one model may differ).

    Raises
    ------
    ValueError
        Naming the layer, the module, its dimension and the block size.
    """
    every = []
    for index, layer in enumerate(adapter.decoder_layers(model)):
        sites = layer_sites(adapter, layer, index)
        every.append(sites)
        widths = [(path, int(layer.get_submodule(path).get_parameter("weight").shape[1]))
                  for path in sites.linears()]  # fmt: skip
        for fused in sites.experts:
            widths += [(f"{fused.site.path}.{fused.site.gate_up}", fused.hidden),
                       (f"{fused.site.path}.{fused.site.down}", fused.intermediate)]  # fmt: skip
        for path, n in widths:
            for role in ("weight", "activation"):
                quant = getattr(config, role)
                if quant is not None and n % quant.block_size:
                    raise ValueError(
                        f"layer {index}: {path} has in_features {n}, not a multiple of "
                        f"QuantConfig.{role}.block_size {quant.block_size}: MX blocks must tile "
                        "the reduction dimension"
                    )
    for role in ("key", "value"):
        quant = getattr(config, role)
        if quant is not None and geometry.head_dim % quant.block_size:
            raise ValueError(
                f"head_dim {geometry.head_dim} is not a multiple of QuantConfig.{role}."
                f"block_size {quant.block_size}: the KV cache is blocked along head_dim"
            )
    return every


def resolve_device(device: object, model: nn.Module) -> torch.device:
    """The compute device: ``device`` if given (and present), else the model's.

    Raises
    ------
    ValueError
        For an unknown device, or CUDA asked for where torch sees none.
    """
    if device is None:
        return next(iter(model.parameters())).device
    try:
        if not isinstance(device, str | torch.device):
            raise TypeError
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return dev
