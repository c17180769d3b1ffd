"""Save a quantized model and rebuild it on top of the original weights.

:func:`save_quantized` writes two files into a new folder:

``batquant.json``
    The run's settings (format version, architecture, method, the full
    :class:`~batquant.config.QuantConfig`, seed, calibration settings, the
    attention implementation underneath) and the per-layer summary.
``quantized.safetensors``
    Every quantized decoder layer's state, keyed ``layers.<i>.<name>``: the
    fused, fake-quantized weights of its linears, its norms, and everything
    it learned (transforms, clipping logits, ``P_k``), each tensor once.

A model calibrated with disk offload is written one layer at a time, never
whole in memory: one shard per layer, ``quantized-<i>-of-<n>.safetensors``
(numbered from 1), and ``quantized.safetensors.index.json`` mapping every
key to its shard (the Hugging Face convention for sharded checkpoints).

:func:`load_quantized` takes the original model, rebuilds each layer's
quantized structure from the method and the config (the same code
:func:`batquant.quantize_model` runs), and loads the saved state into it
strictly, so on CPU its logits are bit-identical to the saved model's.
Embeddings, the final norm and ``lm_head`` come from the original model:
they are never quantized.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from batquant.algorithms.methods import get_method
from batquant.config import CalibSpec, QuantConfig
from batquant.models import get_adapter
from batquant.pipeline import attention
from batquant.pipeline.build import OWNER, LayerPlan, restore_layer
from batquant.pipeline.checkpoint import RUN_FORMAT, layer_state
from batquant.pipeline.offload import layer_tensors

CONFIG_FILE = "batquant.json"
TENSORS_FILE = "quantized.safetensors"
INDEX_FILE = TENSORS_FILE + ".index.json"


def save_quantized(qmodel: nn.Module, out_dir: str | os.PathLike[str], *,
                   force: bool = False) -> Path:  # fmt: skip
    """Write ``qmodel``'s quantized state and settings into ``out_dir``.

    Parameters
    ----------
    qmodel : nn.Module
        A model returned by :func:`batquant.quantize_model` or :func:`load_quantized`.
    out_dir : path
        A folder that does not exist yet, or an empty one.
    force : bool
        Replace the two files in an existing folder.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    ValueError
        When ``qmodel`` is not quantized, or ``out_dir`` exists with files in it
        and ``force`` is not set.
    """
    info = getattr(qmodel, "batquant_info", None)
    if not isinstance(info, dict):
        raise ValueError("qmodel was not quantized by batquant (it has no batquant_info)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"{out}: the folder exists and is not empty; pass force=True")
    adapter = get_adapter(qmodel)
    layers = adapter.decoder_layers(qmodel)
    for index, layer in enumerate(layers):
        if not hasattr(layer, OWNER):
            raise ValueError(f"layer {index} of qmodel is not quantized")
    out.mkdir(parents=True, exist_ok=True)
    for old in [out / TENSORS_FILE, out / INDEX_FILE, *out.glob("quantized-*.safetensors")]:
        old.unlink(missing_ok=True)  # only with force: a folder with files was refused above
    if any(layer_tensors(layer) is not None for layer in layers):
        _save_shards(layers, out)
    else:
        tensors: dict[str, Any] = {}
        for index, layer in enumerate(layers):
            tensors.update({f"layers.{index}.{k}": v for k, v in layer_state(layer).items()})
        tmp = out / (TENSORS_FILE + ".partial")
        save_file(tensors, str(tmp), metadata={"format": RUN_FORMAT})
        os.replace(tmp, out / TENSORS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out


def _shard_name(index: int, count: int) -> str:
    return f"quantized-{index + 1:05d}-of-{count:05d}.safetensors"


def _save_shards(layers: Any, out: Path) -> None:
    """One shard per layer, each read from disk (offloaded) or memory, then the index."""
    weight_map: dict[str, str] = {}
    for index, layer in enumerate(layers):
        state = layer_tensors(layer)
        state = layer_state(layer) if state is None else state
        name = _shard_name(index, len(layers))
        tmp = out / (name + ".partial")
        save_file({f"layers.{index}.{k}": v.contiguous() for k, v in state.items()}, str(tmp),
                  metadata={"format": RUN_FORMAT})  # fmt: skip
        os.replace(tmp, out / name)
        weight_map.update({f"layers.{index}.{k}": name for k in state})
        del state
    index_file = {"metadata": {"format": RUN_FORMAT}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index_file, indent=2) + "\n", encoding="utf-8")


def _layer_reader(out_dir: Path) -> Any:
    """``layer index -> its saved tensors`` (keys ``layers.<i>.<name>``), from either layout."""
    index_path = out_dir / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{index_path}: unreadable ({exc})") from None
        shards = {int(k.split(".")[1]): v for k, v in weight_map.items()}

        def read_shard(index: int) -> dict[str, Any]:
            if index not in shards:
                return {}
            return _read(out_dir / shards[index])

        return read_shard, set(shards)
    tensors = _read(out_dir / TENSORS_FILE)
    present = {int(k.split(".")[1]) for k in tensors}
    return (lambda index: {k: v for k, v in tensors.items()
                           if k.startswith(f"layers.{index}.")}), present  # fmt: skip


def _read(path: Path) -> dict[str, Any]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: not found") from None
    except (OSError, SafetensorError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None


def read_settings(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``batquant.json`` of a saved model, checked for its format.

    Raises
    ------
    ValueError
        Missing, unreadable, or of another format version, naming the file.
    """
    path = Path(out_dir) / CONFIG_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: not found; is {out_dir} a batquant output folder?") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise ValueError(f"{path}: format {found!r}, expected {RUN_FORMAT!r}")
    return info


def load_quantized(out_dir: str | os.PathLike[str], model: nn.Module, *,
                   inplace: bool = False) -> nn.Module:  # fmt: skip
    """Rebuild the quantized model saved in ``out_dir`` on top of ``model``.

    Parameters
    ----------
    out_dir : path
        Written by :func:`save_quantized`.
    model : transformers.PreTrainedModel
        The original full-precision model (same architecture and shapes).
        Left unchanged unless ``inplace``.
    inplace : bool

    Returns
    -------
    nn.Module
        The quantized model.

    Raises
    ------
    ValueError
        A missing or corrupt file, another architecture, a method that is not
        registered, or tensors that do not fit the model, naming what.
    """
    info = read_settings(out_dir)
    adapter = get_adapter(model)
    if info.get("architecture") != adapter.architecture:
        raise ValueError(
            f"{Path(out_dir) / CONFIG_FILE}: saved for {info.get('architecture')!r}, but the "
            f"model is {adapter.architecture!r}"
        )
    try:
        method = get_method(info["method"])
        config = QuantConfig.from_dict(info["config"])
        spec = CalibSpec(**info["calib"])
        seed = int(info["seed"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{Path(out_dir) / CONFIG_FILE}: missing or bad field {exc}") from None
    read_layer, present = _layer_reader(Path(out_dir))
    path = Path(out_dir) / (INDEX_FILE if (Path(out_dir) / INDEX_FILE).is_file() else TENSORS_FILE)
    work = model if inplace else copy.deepcopy(model)
    work.eval()
    if info.get("attention"):
        model_config: Any = work.config
        model_config._attn_implementation = info["attention"]
    attention.install(work)
    layers = adapter.decoder_layers(work)
    plan = LayerPlan(adapter, adapter.geometry(adapter.config_of(work)), method, config, spec,
                     seed)  # fmt: skip
    for index, layer in enumerate(layers):
        prefix = f"layers.{index}."
        state = {k[len(prefix):]: v for k, v in read_layer(index).items()}
        if not state:
            raise ValueError(f"{path}: no tensors for layer {index}")
        layers[index] = restore_layer(layer, plan, index, state, str(path))
    extra = sorted(str(i) for i in present - set(range(len(layers))))
    if extra:
        raise ValueError(f"{path}: tensors for layers the model does not have: {extra}")
    work.batquant_info = info  # type: ignore[assignment]
    return work
