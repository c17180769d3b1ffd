"""Rebuild a quantized model from its export alone (:func:`load_export`).

The export is checked against its MANIFEST first, file by file.  The model
is then built from ``config.json`` (no weights read from anywhere else),
each decoder layer's quantized structure is rebuilt from the run's settings
(the same code :func:`batquant.quantize_model` runs), the packed MX weights
are decoded exactly (:func:`~batquant.deploy.packed.unpack_weight`) and every
tensor is loaded strictly: a missing or unexpected tensor is an error naming
it.  On the CPU the logits are bit-identical to those of the model that was
exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from batquant.algorithms.methods import get_method
from batquant.config import CalibSpec, QuantConfig
from batquant.deploy.manifest import verify_manifest
from batquant.deploy.packed import unpack_weight
from batquant.deploy.writing import CONFIG_FILE, EXPORT_FORMAT, SETTINGS_FILE, TENSORS_FILE
from batquant.models import get_adapter
from batquant.pipeline import attention
from batquant.pipeline.build import LayerPlan, restore_layer


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _dtype(name: object, where: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{where}: unknown dtype {name!r}")
    return dtype


def _model_config(hf: dict[str, Any], where: Path) -> Any:
    """The transformers config of the exported model (its own model_type, no quantization)."""
    from transformers import AutoConfig

    entry = hf.get("batquant")
    if not isinstance(entry, dict) or not isinstance(entry.get("model_type"), str):
        raise ValueError(f"{where}: no 'batquant.model_type'; not a batquant export")
    fields = {k: v for k, v in hf.items() if k not in ("quantization_config", "batquant",
                                                        "model_type")}  # fmt: skip
    try:
        return AutoConfig.for_model(entry["model_type"], **fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: cannot build the model's config ({exc})") from None


def load_export_tokenizer(folder: str | os.PathLike[str]) -> Any:
    """The tokenizer saved in an export, read with the exported model's own config.

    Raises
    ------
    ValueError
        When the export holds no tokenizer, naming the folder.
    """
    from transformers import AutoTokenizer

    root = Path(folder)
    config = _model_config(_read_json(root / CONFIG_FILE), root / CONFIG_FILE)
    try:
        return AutoTokenizer.from_pretrained(str(root), config=config, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a missing one
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{root}: holds no tokenizer that loads ({first}); 'batquant export' "
                         "saves the checkpoint's tokenizer") from None


def _skeleton(hf: dict[str, Any], settings: dict[str, Any], where: Path) -> nn.Module:
    """The model ``config.json`` describes, its weights uninitialised, in the export's dtype."""
    import transformers
    from transformers.initialization import no_init_weights

    config = _model_config(hf, where)
    name = settings.get("architecture")
    cls = getattr(transformers, str(name), None) if name else None
    if cls is None:
        raise ValueError(f"{where.parent / SETTINGS_FILE}: architecture {name!r} names no "
                         "transformers model class")  # fmt: skip
    if settings.get("attention"):
        config._attn_implementation = settings["attention"]
    with no_init_weights():
        model = cls(config)
    with torch.no_grad():
        # every parameter is loaded from the export; until then ones, not uninitialised
        # memory, so that the quantized structure's initial transforms build from finite weights
        for p in model.parameters():
            p.fill_(1.0)
    dtype = _dtype(settings["export"].get("dtype"), f"{where.parent / SETTINGS_FILE}: export.dtype")
    return model.to(dtype).eval()


def load_export(folder: str | os.PathLike[str]) -> nn.Module:
    """The quantized model an export holds, rebuilt from the export alone, on the CPU.

    Parameters
    ----------
    folder : path
        Written by :func:`batquant.export` (``batquant export``).

    Returns
    -------
    nn.Module
        Its logits are bit-identical (CPU) to those of the exported model;
        ``batquant_info`` holds the run's settings.

    Raises
    ------
    ValueError
        A file that fails the MANIFEST (each one named), a missing or
        unexpected tensor (named), a method that is not registered, or a
        config transformers cannot build.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: no such export folder")
    verify_manifest(root)
    settings = _read_json(root / SETTINGS_FILE)
    exported = settings.get("export")
    if not isinstance(exported, dict) or exported.get("format") != EXPORT_FORMAT:
        found = exported.get("format") if isinstance(exported, dict) else None
        raise ValueError(f"{root / SETTINGS_FILE}: export format {found!r}, expected "
                         f"{EXPORT_FORMAT!r}")  # fmt: skip
    hf = _read_json(root / CONFIG_FILE)
    try:
        method = get_method(settings["method"])
        config = QuantConfig.from_dict(settings["config"])
        spec = CalibSpec(**settings["calib"])
        seed = int(settings["seed"])
        packed: dict[str, Any] = dict(exported["packed"])
        tied: dict[str, str] = dict(exported["tied"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{root / SETTINGS_FILE}: missing or bad field {exc}") from None
    path = root / TENSORS_FILE
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    for key, entry in packed.items():
        if key not in tensors or entry["scales"] not in tensors:
            missing = key if key not in tensors else entry["scales"]
            raise ValueError(f"{path}: tensor {missing!r} is missing")
        assert config.weight is not None
        values = unpack_weight(tensors.pop(key).view(torch.uint8), tensors[entry["scales"]],
                               config.weight, tuple(entry["shape"]), f"{path}: {key}")  # fmt: skip
        tensors[entry["values"]] = values.to(_dtype(entry["dtype"], f"{path}: {key}"))
    for alias, owner in tied.items():
        if owner not in tensors:
            raise ValueError(f"{path}: tensor {owner!r} (tied to {alias!r}) is missing")
        tensors[alias] = tensors[owner]

    model = _skeleton(hf, settings, root / CONFIG_FILE)
    attention.install(model)
    adapter = get_adapter(model)
    layers = adapter.decoder_layers(model)
    plan = LayerPlan(adapter, adapter.geometry(adapter.config_of(model)), method, config, spec,
                     seed)  # fmt: skip
    under = f"{adapter.layers}."
    for index, layer in enumerate(layers):
        prefix = f"{under}{index}."
        state = {k[len(prefix):]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{path}: no tensors for layer {index} ({prefix}*)")
        layers[index] = restore_layer(layer, plan, index, state, str(path))
    strays = sorted(k for k in tensors if k.startswith(under))
    if strays:
        raise ValueError(f"{path}: tensors for layers the model does not have: {strays[:5]}")
    result = model.load_state_dict(tensors, strict=False)
    missing = sorted(k for k in result.missing_keys if not k.startswith(under))
    if missing:
        raise ValueError(f"{path}: tensor(s) missing: {', '.join(missing)}")
    if result.unexpected_keys:
        raise ValueError(f"{path}: unexpected tensor(s): {', '.join(result.unexpected_keys)}")
    if (root / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(root)  # type: ignore[assignment]
    model.batquant_info = {k: v for k, v in settings.items() if k != "export"}  # type: ignore[assignment]
    return model
