"""One linear of a quantized model as mxref files, to check an accelerator layer by layer.

:func:`dump_layer` runs the model on some tokens and, at one
:class:`~batquant.algorithms.layer.QuantizedLinear`, writes:

``activation.npz``
    The MX-quantized activation ``Q_a(clip(T(x)))`` ``[tokens, in]``, as
    :func:`mxref.quantize` encodes the transformed, clipped input with the
    config's activation policies;
``weight.npz``
    The MX weight ``[out, in]`` under its own E8M0 scales (blocked along ``in``);
``reference_<accum>.npy``
    ``mxref.matmul(activation, weight)`` = ``A @ W^T`` (float32) under each
    accumulation model asked for (``exact``, ``block_fp32``, ...);
``bias.npy``
    The bias, when the linear has one (not in the references);
``torch_output.npy``
    What batquant's torch forward computed, bias included;
``dump.json``
    Which layer, tokens, formats and policies, the largest difference of the
    ``exact`` reference (+ bias) from the torch output, and the commands that
    recompute and compare.

Before writing, the dumped activation and weight are checked to dequantize
bit for bit to the tensors the torch forward multiplies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mxref
from batquant.algorithms.layer import QuantizedLinear
from batquant.config import QuantConfig, TensorQuant
from batquant.deploy.folders import check_new, folder_in_place
from batquant.models import get_adapter


def _target(model: nn.Module, layer: int, module: str) -> QuantizedLinear:
    adapter = get_adapter(model)
    layers = adapter.decoder_layers(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise ValueError(f"layer must be an int in [0, {len(layers)}); got {layer!r}")
    linears = [n for n, m in layers[layer].named_modules() if isinstance(m, QuantizedLinear)]
    try:
        found = layers[layer].get_submodule(module)
    except AttributeError:
        found = None
    if not isinstance(found, QuantizedLinear):
        raise ValueError(f"module: layer {layer} has no quantized linear {module!r}; it has "
                         f"{', '.join(linears) or 'none'}")  # fmt: skip
    return found


def _check_equal(mx_values: np.ndarray, torch_values: torch.Tensor, what: str) -> None:
    ours = torch_values.detach().to("cpu", torch.float32).numpy()
    differ = int(np.count_nonzero(mx_values.view(np.uint32) != ours.view(np.uint32)))
    if differ:
        raise ValueError(f"{what}: the mxref encoding differs from batquant's torch values on "
                         f"{differ} elements")  # fmt: skip


def _policies(quant: TensorQuant) -> dict[str, Any]:
    return {"scale_rule": quant.scale_rule, "rounding": quant.rounding,
            "overflow": quant.overflow}  # fmt: skip


def dump_layer(model: nn.Module, input_ids: torch.Tensor, out_dir: str | os.PathLike[str], *,
               layer: int, module: str, accum: tuple[str, ...] = ("exact",),
               force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Dump one quantized linear's MX operands and reference outputs (module docstring).

    Parameters
    ----------
    model : nn.Module
        A quantized model (:func:`batquant.load_export`, :func:`batquant.quantize_model`).
    input_ids : torch.LongTensor
        ``[1, tokens]``: what the model runs on.
    out_dir : path
        A new folder (``force`` replaces an existing one, once the dump is complete).
    layer : int
        The decoder layer.
    module : str
        The linear's path inside the layer (``"mlp.down_proj"``).
    accum : tuple of str
        mxref accumulation models of the reference outputs.
    force : bool

    Returns
    -------
    dict
        What ``dump.json`` holds.

    Raises
    ------
    ValueError
        A layer or module that is not a quantized linear (listing the layer's
        quantized linears), a linear whose activation or weight is not MX,
        an unknown accumulation model, or an ``out_dir`` that exists.
    """
    out = Path(out_dir)
    check_new(out, force)
    target = _target(model, layer, module)
    info: dict[str, Any] = getattr(model, "batquant_info", None) or {}
    if "config" not in info:
        raise ValueError("model was not quantized by batquant (it has no batquant_info)")
    config = QuantConfig.from_dict(info["config"])
    act_q, w_q = config.activation, config.weight
    if act_q is None or w_q is None or target.weight_scale is None or act_q.two_level \
            or w_q.two_level:  # fmt: skip
        raise ValueError(f"module: {module} of layer {layer} has activation {act_q and act_q.fmt} "
                         f"and weight {w_q and w_q.fmt}; a device check needs both in MX")
    models = [mxref.parse_accum(a) for a in accum]  # clear errors before the model runs
    seen: dict[str, torch.Tensor] = {}

    def capture(mod: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        x = args[0]
        iq = target.input_quantizer
        seen["input"] = iq.unquantized(x).detach()
        iq.forget()
        seen["multiplied"] = iq(x).detach()
        seen["output"] = output.detach()

    hook = target.register_forward_hook(capture)
    try:
        with torch.no_grad():
            model(input_ids)
    finally:
        hook.remove()
        target.input_quantizer.forget()
    tokens = int(input_ids.numel())
    h = seen["input"].reshape(-1, target.in_features).to(torch.float32).cpu().numpy()
    activation = mxref.quantize(h, act_q.fmt, block_size=act_q.block_size, **_policies(act_q))
    _check_equal(mxref.dequantize(activation), seen["multiplied"].reshape(h.shape), "activation")
    w = target.weight.detach().to("cpu", torch.float32).numpy()
    weight = mxref.quantize(w, w_q.fmt, block_size=w_q.block_size,
                            scales=target.weight_scale.cpu().numpy())  # fmt: skip
    _check_equal(mxref.dequantize(weight), target.weight, "weight")
    torch_out = seen["output"].reshape(tokens, -1).to(torch.float32).cpu().numpy()
    bias = None if target.bias is None else target.bias.detach().float().cpu().numpy()
    references = {name: mxref.matmul(activation, weight, accum=m)
                  for name, m in zip(accum, models, strict=True)}  # fmt: skip
    # the exact product rounded once to float32, plus the bias in float64
    exact = mxref.matmul(activation, weight, accum="exact").astype(np.float64)
    with_bias = exact if bias is None else exact + bias
    scale = float(np.abs(with_bias).max()) or 1.0
    diff = float(np.abs(with_bias - torch_out.astype(np.float64)).max())
    summary: dict[str, Any] = {
        "layer": layer, "module": module, "tokens": tokens,
        "method": info["method"],
        "activation": {"file": "activation.npz", "shape": list(h.shape), **act_q.to_dict()},
        "weight": {"file": "weight.npz", "shape": list(w.shape), **w_q.to_dict()},
        "references": {name: f"reference_{_slug(name)}.npy" for name in accum},
        "bias": None if bias is None else "bias.npy",
        "torch_output": "torch_output.npy",
        "exact_vs_torch": {"max_abs": diff, "max_abs_relative_to_max": diff / scale},
        "check": [f"mxref gemm --a activation.npz --b weight.npz --accum {accum[0]} "
                  f"--out device_or_mxref.npy",
                  f"mxref compare reference_{_slug(accum[0])}.npy device_or_mxref.npy"],
    }  # fmt: skip
    assert w_q.scale_rule is not None  # an MX role always holds one (NVFP4 is refused above)
    with folder_in_place(out, force) as tmp:
        mxref.save(tmp / "activation.npz", activation, **_policies(act_q))
        mxref.save(tmp / "weight.npz", weight, rounding=w_q.rounding, overflow=w_q.overflow,
                   scale_rule=w_q.scale_rule)  # fmt: skip
        for name, ref in references.items():
            np.save(tmp / summary["references"][name], ref)
        if bias is not None:
            np.save(tmp / "bias.npy", bias)
        np.save(tmp / "torch_output.npy", torch_out)
        (tmp / "dump.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _slug(accum: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in accum)
