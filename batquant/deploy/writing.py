"""Write a quantized model as a deployable export: packed MX weights, online parts, MANIFEST.

:func:`export` writes, into a new folder:

``model.safetensors``
    Every quantized weight as packed MX codes and E8M0 scale bytes
    (``<module>.weight_packed`` uint8 ``[out, in/2]`` for MXFP4, element ``2i``
    in the low nibble; ``<module>.weight_scale`` uint8 ``[out, in/32]``;
    fused experts ``gate_up_packed``/``down_packed``), and every other tensor
    as the model holds it: biases, embeddings, norms, ``lm_head``, routers,
    and the online activation-side parameters under each layer's
    ``batquant.`` path (transforms, activation clipping, KV transforms).
``config.json``
    The model's transformers config with a ``quantization_config``
    (compressed-tensors' schema, :mod:`batquant.deploy.schema`) and a
    ``batquant`` entry: method, weight quantizer, every tensor role's format,
    scale rule, rounding and block size, and whether the export needs online
    transforms (then ``model_type`` is ``"batquant"``, so that plain
    transformers refuses it instead of computing wrong numbers).
``batquant.json``
    The run's settings, from which :func:`~batquant.deploy.loading.load_export`
    rebuilds the quantized structure.
``generation_config.json``, tokenizer files
    When the model (or the caller) has them.
``MANIFEST``
    The sha256 of every file, written last (:mod:`batquant.deploy.manifest`).

The folder is written under a temporary name beside ``out_dir`` and renamed
into place only when complete, so a failed export leaves nothing that looks
like one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from batquant.algorithms.rounding import MXWeight
from batquant.config import QuantConfig
from batquant.deploy.folders import check_new, folder_in_place
from batquant.deploy.manifest import write_manifest
from batquant.deploy.packed import pack_weight
from batquant.deploy.schema import (
    ONLINE_MODEL_TYPE,
    ExportPlan,
    check_exportable,
    plan_export,
    stored_codes,
)
from batquant.models import get_adapter
from batquant.pipeline.checkpoint import RUN_FORMAT

#: File names inside an export.
TENSORS_FILE, CONFIG_FILE, SETTINGS_FILE = "model.safetensors", "config.json", "batquant.json"
#: Version of the export layout (in batquant.json).
EXPORT_FORMAT = "batquant-export-1"


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export` wrote.

    Attributes
    ----------
    folder : Path
    bytes : int
        The export's total size.
    packed_bytes : int
        Packed codes plus scale bytes of every quantized weight.
    packed_elements : int
        Elements of those weights (``8 * packed_bytes / packed_elements``
        bits per element: 4.25 for MXFP4 with 32-element blocks).
    plain : bool
        Whether the export needs no online transform (a plain
        compressed-tensors checkpoint; :attr:`online` lists what it needs otherwise).
    online : tuple of str
    """

    folder: Path
    bytes: int
    packed_bytes: int
    packed_elements: int
    plain: bool
    online: tuple[str, ...]

    @property
    def bits_per_weight(self) -> float:
        """Bits per element of the quantized weights, scales included."""
        return 8 * self.packed_bytes / max(1, self.packed_elements)


def _mx_weights(model: nn.Module) -> list[tuple[str, MXWeight, nn.Module]]:
    return [(name, mw, module) for name, module in model.named_modules()
            for mw in getattr(module, "mx_weights", ())]  # fmt: skip


def export_tensors(qmodel: nn.Module, config: QuantConfig
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, str]]:  # fmt: skip
    """The export's tensors, the packed weights' index, and the tied aliases left out.

    Returns
    -------
    tensors : dict
        Name -> CPU tensor (packed codes, scale bytes, everything else as held).
    packed : dict
        Packed name -> ``{"values": name, "shape": [...], "dtype": str}``.
    tied : dict
        A name left out -> the name holding the same tensor (tied embeddings).
    """
    state = qmodel.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    owners: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, value in state.items():
        key = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if value.numel() and key in owners:
            tied[name] = owners[key]
            continue
        owners[key] = name
        tensors[name] = value.detach().to("cpu").contiguous()
    packed: dict[str, Any] = {}
    for path, mw, module in _mx_weights(qmodel):
        values_name, scales_name = f"{path}.{mw.values}", f"{path}.{mw.scales}"
        if getattr(module, mw.scales) is None:
            continue  # a full-precision weight stays as it is
        assert config.weight is not None
        values = tensors.pop(values_name)
        where, stored = stored_codes(config.weight.fmt)
        name = values_name if where == "values" else f"{path}.{mw.packed}"
        codes = pack_weight(values, tensors[scales_name], config.weight, values_name)
        tensors[name] = codes.view(stored)
        packed[name] = {"values": values_name, "scales": scales_name, "shape": list(values.shape),
                       "dtype": _dtype_name(values.dtype), "stored": _dtype_name(stored)}
    return tensors, packed, tied


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def export(qmodel: nn.Module, out_dir: str | os.PathLike[str], *, force: bool = False,
           tokenizer: Any = None) -> ExportSummary:  # fmt: skip
    """Write ``qmodel`` as a deployable export (module docstring) into ``out_dir``.

    Parameters
    ----------
    qmodel : nn.Module
        From :func:`batquant.quantize_model`, :func:`batquant.load_quantized` or
        :func:`batquant.load_export`.
    out_dir : path
        Must not exist, unless ``force``.
    force : bool
        Replace an existing ``out_dir`` (only once the new export is complete).
    tokenizer : transformers tokenizer, optional
        Saved beside the model, so the export is self-contained.

    Returns
    -------
    ExportSummary

    Raises
    ------
    ValueError
        A model batquant did not quantize, a config with an NVFP4 role
        (:func:`~batquant.deploy.schema.check_exportable`), an ``out_dir``
        that exists without ``force``, or a weight that is not valid MX under
        its scales (naming it).
    """
    info = getattr(qmodel, "batquant_info", None)
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise ValueError("qmodel was not quantized by this batquant (no batquant_info of format "
                         f"{RUN_FORMAT!r})")  # fmt: skip
    config = QuantConfig.from_dict(info["config"])
    check_exportable(config)
    out = Path(out_dir)
    check_new(out, force)
    get_adapter(qmodel)  # an architecture batquant knows, or a clear error
    tensors, packed, tied = export_tensors(qmodel, config)
    plan: ExportPlan = plan_export(qmodel, config, info)
    model_config: Any = qmodel.config
    hf_config = model_config.to_dict()
    hf_config.pop("_attn_implementation_autoset", None)
    # a model loaded from GGUF or built from a config may not name its class
    hf_config["architectures"] = [info["architecture"]]
    hf_config["quantization_config"] = plan.quantization_config
    hf_config["batquant"] = plan.summary(hf_config.get("model_type"))
    if not plan.plain:
        hf_config["model_type"] = ONLINE_MODEL_TYPE
    first = next(iter(qmodel.parameters()))
    settings = {**info, "export": {"format": EXPORT_FORMAT, "dtype": _dtype_name(first.dtype),
                                   "packed": packed, "tied": tied, "plain": plan.plain,
                                   "online": list(plan.online)}}
    with folder_in_place(out, force) as tmp:
        save_file(tensors, str(tmp / TENSORS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")  # fmt: skip
        (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        generation = getattr(qmodel, "generation_config", None)
        if generation is not None:
            generation.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_manifest(tmp)
    packed_bytes = sum(tensors[p].numel() + tensors[e["scales"]].numel()
                       for p, e in packed.items())  # fmt: skip
    elements = sum(int(torch.Size(e["shape"]).numel()) for e in packed.values())
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return ExportSummary(out, size, packed_bytes, elements, plan.plain, plan.online)
