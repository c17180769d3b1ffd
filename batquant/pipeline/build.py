"""Turn one full-precision decoder layer into its quantized twin.

:func:`build_layer` copies the layer and, following the adapter, replaces
every linear by a :class:`~batquant.layer.CalibratingLinear` whose group
shares one :class:`~batquant.layer.InputQuantizer` (the method's transform,
clipping and the activation's fake quantization), and gives the attention
module a :class:`~batquant.heads.KVQuantizer` when the config quantizes K or
V.  The per-head transforms are placed as the BATQuant paper's section 3.2
says:

- ``P_k`` (one per KV head, over head_dim) runs online on the keys after
  RoPE, with ``P_k^{-T}`` on the queries;
- ``P_v`` (one per KV head) is fused into v_proj's output rows and, through
  each query head's KV head, into o_proj's input columns.

Everything the layer learns sits in one ``nn.ModuleDict`` registered on the
layer as ``batquant`` (each tensor once, so the layer's state dict saves and
loads as it is).  :func:`freeze_layer` then applies every weight side once
(:class:`~batquant.layer.QuantizedLinear`), which is the layer that inference,
saving and loading use.

Nothing here names a method or a model family: the method comes from the
registry, the structure from the adapter.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from batquant.attention import attach
from batquant.calibration import make_clip
from batquant.clipping import LearnableClip
from batquant.config import CalibSpec, QuantConfig, TensorQuant
from batquant.heads import HeadTransforms, KVQuantizer
from batquant.layer import CalibratingLinear, InputQuantizer
from batquant.methods import Method, TransformContext
from batquant.models import HeadGeometry, ModelAdapter

#: Name of the ModuleDict on each quantized layer that holds what it learned.
OWNER = "batquant"
#: Keys of that ModuleDict besides the groups' names.
KEY_HEADS, VALUE_HEADS, KV = "key_heads", "value_heads", "kv"


@dataclass(frozen=True)
class LayerPlan:
    """What :func:`build_layer` needs besides the layer itself.

    Attributes
    ----------
    adapter : ModelAdapter
    geometry : HeadGeometry
    method : Method
    config : QuantConfig
    spec : CalibSpec
        Only ``clip_init`` is read here.
    seed : int
        The run's seed; each site derives its own from it (:func:`site_seed`).
    """

    adapter: ModelAdapter
    geometry: HeadGeometry
    method: Method
    config: QuantConfig
    spec: CalibSpec
    seed: int


def site_seed(seed: int, layer: int, site: int) -> int:
    """A seed for one transform, fixed by the run's seed, the layer and the site.

    Derived arithmetically, never drawn from a shared generator, so a layer
    built on resume gets the same transforms as in an uninterrupted run.
    """
    return (seed * 1_000_003 + layer * 1_009 + site) % 2**31


def _block(*quants: TensorQuant | None) -> int:
    for q in quants:
        if q is not None:
            return q.block_size
    return TensorQuant().block_size


def _replace(layer: nn.Module, path: str, module: nn.Module) -> None:
    owner_path, _, attr = path.rpartition(".")
    owner = layer.get_submodule(owner_path) if owner_path else layer
    setattr(owner, attr, module)


def _linear(layer: nn.Module, path: str, where: str) -> nn.Linear:
    try:
        module = layer.get_submodule(path)
    except AttributeError:
        raise ValueError(f"{where}: the decoder layer has no module {path!r}") from None
    if not isinstance(module, nn.Linear):
        raise ValueError(f"{where}: {path!r} is a {type(module).__name__}, not an nn.Linear")
    return module


def _head_transforms(
    plan: LayerPlan, layer_index: int, site: int, quant: TensorQuant
) -> HeadTransforms | None:
    geo = plan.geometry
    ones = torch.ones(geo.head_dim)
    transforms = []
    for g in range(geo.num_kv_heads):
        seed = site_seed(plan.seed, layer_index, site * 256 + g)
        ctx = TransformContext(geo.head_dim, quant.block_size, seed, ones, ones)
        t = plan.method.build_kv_transform(ctx)
        if t is None:
            return None
        transforms.append(t)
    return HeadTransforms(transforms, geo.num_heads)


def build_layer(
    layer: nn.Module,
    plan: LayerPlan,
    layer_index: int,
    act_absmax: dict[str, torch.Tensor] | None = None,
    fit_inputs: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A copy of ``layer`` with every linear under calibration, on the layer's device.

    Parameters
    ----------
    layer : nn.Module
        The full-precision decoder layer (left unchanged).
    plan : LayerPlan
    layer_index : int
        Its index, for seeds and messages.
    act_absmax : dict, optional
        Per group, the max |x| of each input channel over the calibration data
        (methods that initialise from statistics use it; ones when omitted, as
        when a saved model is rebuilt before its state is loaded).
    fit_inputs : dict, optional
        Per group, calibration inputs ``[rows, N]`` for methods that fit their
        transform to data (``Method.needs_inputs``).

    Returns
    -------
    nn.Module
        The copy; its learnable tensors are in ``copy.batquant``.
    """
    adapter, cfg = plan.adapter, plan.config
    where = f"{adapter.architecture} layer {layer_index}"
    work = copy.deepcopy(layer)
    for p in work.parameters():
        p.requires_grad_(False)
    device = next(iter(work.parameters())).device
    owned = nn.ModuleDict()
    key_heads = None if cfg.key is None else _head_transforms(plan, layer_index, 1, cfg.key)
    value_heads = None if cfg.value is None else _head_transforms(plan, layer_index, 2, cfg.value)
    if key_heads is not None:
        owned[KEY_HEADS] = key_heads
    if value_heads is not None:
        owned[VALUE_HEADS] = value_heads
    if cfg.quantizes_kv:
        kv = KVQuantizer(cfg.key, cfg.value, key_heads)
        owned[KV] = kv
        attach(work.get_submodule(adapter.attention), kv)

    act_q, w_q = cfg.activation, cfg.weight
    block = _block(act_q, w_q)
    for site, group in enumerate(plan.adapter.groups):
        linears = [_linear(work, path, where) for path in group.linears]
        n = linears[0].in_features
        weight_absmax = torch.cat([lin.weight.detach().float() for lin in linears]).abs().amax(0)
        stats = (act_absmax or {}).get(group.name)
        ctx = TransformContext(
            size=n,
            block_size=block,
            seed=site_seed(plan.seed, layer_index, 16 + site),
            act_absmax=(torch.ones(n) if stats is None else stats).to(weight_absmax.device),
            weight_absmax=weight_absmax,
            inputs=(fit_inputs or {}).get(group.name),
        )
        try:
            transform = plan.method.build_transform(ctx)
        except ValueError as exc:
            raise ValueError(
                f"{where}, group {group.name!r}: method {plan.method.name!r} cannot build its "
                f"transform for in_features {n}: {exc}"
            ) from None
        act_clip = None
        if plan.method.clip is not None and act_q is not None:
            act_clip = make_clip(plan.method.clip, act_q, None, n, plan.spec.clip_init, device,
                                 "activation")  # fmt: skip
        shared = InputQuantizer(transform, act_clip, act_q).to(device)
        owned[group.name] = shared
        for path, lin in zip(group.linears, linears, strict=True):
            weight_clip: LearnableClip | None = None
            if plan.method.clip is not None and w_q is not None:
                weight_clip = make_clip(plan.method.clip, w_q, lin.out_features, n,
                                        plan.spec.clip_init, device, "weight")  # fmt: skip
            _replace(work, path, CalibratingLinear(
                lin, shared, weight_clip, w_q,
                out_heads=value_heads if path == adapter.v_proj else None,
                in_heads=value_heads if path == adapter.o_proj else None,
            ))  # fmt: skip
    leftovers = [name for name, m in work.named_modules() if type(m) is nn.Linear]
    if leftovers:
        raise ValueError(
            f"{where}: linear(s) {', '.join(leftovers)} are in no group of the adapter; "
            "every linear of a decoder layer must be quantized"
        )
    setattr(work, OWNER, owned.to(device))
    return work


def owned_part(layer: nn.Module, key: str) -> nn.Module | None:
    """``layer.batquant[key]``, or None when the layer has no such part."""
    return dict(getattr(layer, OWNER).items()).get(key)


def learnable_parameters(layer: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(transform parameters, clipping parameters)`` of a layer from :func:`build_layer`."""
    clips = [p for m in layer.modules() if isinstance(m, LearnableClip) for p in m.parameters()]
    clip_ids = {id(p) for p in clips}
    owned = getattr(layer, OWNER)
    # a transform's fixed parameters (a non-learnable SmoothScale) keep requires_grad False
    transforms = [p for p in owned.parameters() if id(p) not in clip_ids and p.requires_grad]
    return transforms, clips


def forget(layer: nn.Module) -> None:
    """Drop the activation sides the group quantizers keep for reuse."""
    for m in layer.modules():
        if isinstance(m, InputQuantizer):
            m.forget()


def freeze_layer(layer: nn.Module, description: str) -> nn.Module:
    """Apply every weight side once; return the layer for inference (modified in place).

    Every :class:`CalibratingLinear` becomes a :class:`QuantizedLinear`; ``P_v``
    is fused into the weights and leaves ``layer.batquant``; every remaining
    parameter stops requiring grad.
    """
    forget(layer)
    for name, module in list(layer.named_modules()):
        if isinstance(module, CalibratingLinear):
            _replace(layer, name, module.freeze(description))
    owned = getattr(layer, OWNER)
    if VALUE_HEADS in owned:
        del owned[VALUE_HEADS]
    for p in layer.parameters():
        p.requires_grad_(False)
    return layer.eval()


def restore_layer(layer: nn.Module, plan: LayerPlan, layer_index: int,
                  state: dict[str, torch.Tensor], where: str) -> nn.Module:  # fmt: skip
    """The frozen quantized twin of ``layer`` with a saved ``state`` loaded into it, strictly.

    Raises
    ------
    ValueError
        When ``state`` does not fit the structure the plan builds, naming ``where``.
    """
    description = f"{plan.method.name}, {plan.config.describe()}"
    frozen = freeze_layer(build_layer(layer, plan, layer_index), description)
    frozen.to(next(iter(layer.parameters())).dtype)  # a bf16 model's layers were saved in bf16
    try:
        frozen.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise ValueError(f"{where}: layer {layer_index} does not fit the model: {detail}") from None
    return frozen
