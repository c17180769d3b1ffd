"""Checks of a whole-model run's inputs, each naming what is wrong."""

from __future__ import annotations

import torch
from torch import nn

from batquant.config import QuantConfig
from batquant.models import HeadGeometry, ModelAdapter


def check_calib_ids(calib_ids: object, model: nn.Module) -> torch.Tensor:
    """``calib_ids`` as a CPU int64 ``[samples, seq_len]`` tensor of ids within the vocabulary.

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
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    low, high = int(calib_ids.min()), int(calib_ids.max())
    if low < 0 or (vocab is not None and high >= vocab):
        raise ValueError(
            f"calib_ids holds ids in [{low}, {high}], outside the model's vocabulary "
            f"[0, {vocab})"
        )
    return calib_ids.to("cpu", torch.int64)


def check_dimensions(
    model: nn.Module, adapter: ModelAdapter, geometry: HeadGeometry, config: QuantConfig
) -> None:
    """Every quantized dimension must be a multiple of its MX block size.

    The reduction dimension of every linear (weights and activations are
    blocked along in_features) and head_dim for K and V.

    Raises
    ------
    ValueError
        Naming the module, its dimension and the block size.
    """
    layer = adapter.decoder_layers(model)[0]
    for group in adapter.groups:
        for path in group.linears:
            try:
                linear = layer.get_submodule(path)
            except AttributeError:
                raise ValueError(
                    f"{adapter.architecture}: the decoder layer has no module {path!r}"
                ) from None
            n = getattr(linear, "in_features", None)
            if not isinstance(n, int):
                raise ValueError(f"{adapter.architecture}: {path!r} is not a linear layer")
            for role in ("weight", "activation"):
                quant = getattr(config, role)
                if quant is not None and n % quant.block_size:
                    raise ValueError(
                        f"{path} has in_features {n}, not a multiple of QuantConfig.{role}."
                        f"block_size {quant.block_size}: MX blocks must tile the reduction "
                        "dimension"
                    )
    for role in ("key", "value"):
        quant = getattr(config, role)
        if quant is not None and geometry.head_dim % quant.block_size:
            raise ValueError(
                f"head_dim {geometry.head_dim} is not a multiple of QuantConfig.{role}."
                f"block_size {quant.block_size}: the KV cache is blocked along head_dim"
            )


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
