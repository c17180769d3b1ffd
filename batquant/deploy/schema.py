"""What an export declares: compressed-tensors' ``quantization_config`` and batquant's own entry.

compressed-tensors 0.20 (which vLLM and transformers load) describes MX
checkpoints as one config group of ``Linear`` targets with, per tensor role,
``{num_bits, type: float, strategy: group, group_size: 32, symmetric: true,
dynamic, scale_dtype: torch.uint8}``; ``format`` is
``mxfp4-pack-quantized`` (``weight_packed`` uint8 ``[out, in/2]``, element
``2i`` in the low nibble, and ``weight_scale`` uint8 ``[out, in/32]``) or
``mxfp8-quantized`` (``weight`` as float8_e4m3fn ``[out, in]``); activations
are quantized dynamically at each linear's input.  ``quantization_status:
compressed`` and an ``ignore`` list of every ``Linear`` left in full
precision (``lm_head``, routers) are what its loader needs.

An export is **plain** when a runtime needs nothing else: every quantized
weight in one of those two formats with 32-element blocks, no online
activation transform or clipping, no KV-cache quantization, no fused 3-D
experts.  Otherwise :attr:`ExportPlan.online` says what a runtime must add,
and ``config.json`` gets ``model_type: "batquant"``, which plain transformers
refuses to load (it would otherwise drop the online parts and compute wrong
numbers).

A runtime computes activation scales with its own rule (compressed-tensors:
the amax's power of two is rounded up from mantissa 1.75, which is mxref's
``"even"``); ``batquant.activation.scale_rule`` states the rule calibration
assumed (docs/export.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from batquant.algorithms.experts import QuantizedExperts
from batquant.algorithms.layer import InputQuantizer, QuantizedLinear
from batquant.config import ROLES, QuantConfig, TensorQuant

#: ``model_type`` of an export that needs online transforms (unknown to transformers).
ONLINE_MODEL_TYPE = "batquant"
#: The compressed-tensors version whose schema the exports follow.
COMPRESSED_TENSORS_VERSION = "0.20.1"
#: MX element format -> (compressed-tensors format, num_bits, torch dtype of stored codes).
COMPRESSED_TENSORS_FORMATS: dict[str, tuple[str, int, torch.dtype]] = {
    "mxfp4": ("mxfp4-pack-quantized", 4, torch.uint8),
    "mxfp8_e4m3": ("mxfp8-quantized", 8, torch.float8_e4m3fn),
}
#: The block size compressed-tensors' MX formats have.
COMPRESSED_TENSORS_BLOCK = 32


def _quant_args(quant: TensorQuant, dynamic: bool) -> dict[str, Any]:
    _, bits, _ = COMPRESSED_TENSORS_FORMATS[quant.fmt]
    return {"num_bits": bits, "type": "float", "strategy": "group", "group_size": quant.block_size,
            "symmetric": True, "dynamic": dynamic, "scale_dtype": "torch.uint8"}  # fmt: skip


def _expressible(quant: TensorQuant | None) -> bool:
    return quant is not None and quant.fmt in COMPRESSED_TENSORS_FORMATS and \
        quant.block_size == COMPRESSED_TENSORS_BLOCK  # fmt: skip


def stored_codes(fmt: str) -> tuple[str | None, torch.dtype]:
    """How the codes of a weight in ``fmt`` are stored: (tensor name or None, dtype).

    None keeps the module's packed name (``weight_packed``); MXFP8 E4M3 codes
    are the float8_e4m3fn bit patterns and go under the weight's own name.
    """
    if fmt in COMPRESSED_TENSORS_FORMATS and COMPRESSED_TENSORS_FORMATS[fmt][1] == 8:
        return "values", COMPRESSED_TENSORS_FORMATS[fmt][2]
    return None, torch.uint8


@dataclass(frozen=True)
class ExportPlan:
    """What an export of one model declares.

    Attributes
    ----------
    plain : bool
    online : tuple of str
        What a runtime must run besides the packed linears (empty when plain).
    quantization_config : dict
        compressed-tensors' schema.
    config : QuantConfig
    info : dict
        The run's settings.
    """

    plain: bool
    online: tuple[str, ...]
    quantization_config: dict[str, Any]
    config: QuantConfig
    info: dict[str, Any]

    def summary(self, model_type: str | None) -> dict[str, Any]:
        """The ``batquant`` entry of config.json."""
        roles = {role: None if q is None else q.to_dict() for role, q in (
            ("weight", self.config.weight), ("activation", self.config.activation),
            ("key", self.config.key), ("value", self.config.value))}  # fmt: skip
        return {
            "method": self.info["method"],
            "config": self.config.describe(),
            "weight_quantizer": self.info.get("weight_quantizer", {"name": "rtn"}),
            **roles,
            "plain": self.plain,
            "online": list(self.online),
            "model_type": model_type,
            "load_with": "batquant.load_export(folder)",
        }


def check_exportable(config: QuantConfig) -> None:
    """Refuse a config with an NVFP4 role: an export packs MX only.

    compressed-tensors 0.20.1's ``nvfp4-pack-quantized`` stores a weight as
    ``weight_packed``, float8_e4m3fn ``weight_scale`` ``[out, in/16]`` and a
    float32 ``weight_global_scale`` (``448 * 6 / amax``, the encode scale
    mxref's tensor scale is), and activations under a static, calibrated
    ``input_global_scale``.  batquant's frozen modules keep neither tensor
    scale (the weight's is computed at freezing, the activations' at each
    forward), so an NVFP4 export would be wrong, not merely incomplete.

    Raises
    ------
    ValueError
        Naming the config and the role.
    """
    for role in ROLES:
        quant = getattr(config, role)
        if quant is not None and quant.two_level:
            raise ValueError(
                f"config {config.describe()!r}: its {role} is {quant.describe()}, and the export "
                "packs MX formats only (an NVFP4 export needs the weight and input tensor scales, "
                "which batquant does not keep; docs/export.md)"
            )


def plan_export(qmodel: nn.Module, config: QuantConfig, info: dict[str, Any]) -> ExportPlan:
    """Decide whether ``qmodel``'s export is plain, and write its ``quantization_config``."""
    online: list[str] = []
    quantizers = [m for m in qmodel.modules() if isinstance(m, InputQuantizer)]
    transforms = sorted({type(q.transform).__name__ for q in quantizers
                         if q.transform is not None})  # fmt: skip
    if transforms:
        online.append(f"activation transforms ({', '.join(transforms)})")
    if any(q.clip is not None for q in quantizers):
        online.append("activation clipping")
    if config.quantizes_kv:
        online.append("KV-cache quantization (and its key transforms, if any)")
    if any(isinstance(m, QuantizedExperts) for m in qmodel.modules()):
        online.append("fused 3-D MoE experts (compressed-tensors has no layout for them)")
    if not _expressible(config.weight):
        weights = config.weight.describe() if config.weight else "full precision"
        online.append(f"weights in {weights} (compressed-tensors has no such MX format)")
    if config.activation is not None and not _expressible(config.activation):
        online.append(f"activations in {config.activation.describe()} (compressed-tensors has "
                      "no such MX format)")  # fmt: skip
    ignore = sorted(name for name, m in qmodel.named_modules() if isinstance(m, nn.Linear))
    qconfig: dict[str, Any] = {
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "version": COMPRESSED_TENSORS_VERSION,
        "ignore": ignore,
        "kv_cache_scheme": None,
        "global_compression_ratio": None,
        "sparsity_config": {},
        "transform_config": {},
    }
    if _expressible(config.weight):
        assert config.weight is not None
        fmt = COMPRESSED_TENSORS_FORMATS[config.weight.fmt][0]
        acts = config.activation
        qconfig["format"] = fmt
        qconfig["config_groups"] = {"group_0": {
            "targets": ["Linear"], "format": fmt,
            "weights": _quant_args(config.weight, dynamic=False),
            "input_activations": None if acts is None or not _expressible(acts)
            else _quant_args(acts, dynamic=True),
            "output_activations": None,
        }}  # fmt: skip
    has_linears = any(isinstance(m, QuantizedLinear) for m in qmodel.modules())
    plain = not online and has_linears
    return ExportPlan(plain, tuple(online), qconfig, config, info)
