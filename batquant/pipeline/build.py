"""Turn one full-precision decoder layer into its quantized twin.

:func:`build_layer` copies the layer and, following its sites
(:mod:`batquant.pipeline.sites`), replaces every linear by a
:class:`~batquant.algorithms.layer.CalibratingLinear` whose group shares one
:class:`~batquant.algorithms.layer.InputQuantizer` (the method's transform,
clipping and the activation's fake quantization), every fused experts module
by :class:`~batquant.algorithms.experts.CalibratingExperts`, and gives the
attention module a :class:`~batquant.algorithms.heads.KVQuantizer` when the
config quantizes K or V.  The per-head transforms are placed as the BATQuant
paper's section 3.2 says:

- ``P_k`` (one per KV head, over head_dim) runs online on the keys after
  RoPE, with ``P_k^{-T}`` on the queries;
- ``P_v`` (one per KV head) is fused into v_proj's output rows and, through
  each query head's KV head, into o_proj's input columns
  (:class:`~batquant.algorithms.heads.HeadFusion`).

Everything the layer learns is registered in one ``nn.ModuleDict`` on the
layer, ``batquant``, and also where it is used (each linear registers its
group's quantizer, the attention its KV quantizer), so ``.to()``,
``named_modules()`` and hooks see every part.  A shared module would then
appear in the state dict under each of its paths, so the layer keeps each
tensor once: under its ``batquant.`` path (the shortest, when there are
several), and a loaded state fills the other paths from it
(:func:`share_once`).

:func:`freeze_layer` then applies every weight side once, which is the layer
that inference, saving and loading use.  Nothing here names a method or a
model family: the method comes from the registry, the structure from the
adapter's sites.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import nn

from batquant.algorithms.clipping import LearnableClip, make_clip
from batquant.algorithms.experts import CalibratingExperts
from batquant.algorithms.heads import FusedSide, HeadFusion, HeadTransforms, KVQuantizer
from batquant.algorithms.layer import CalibratingLinear, InputQuantizer
from batquant.algorithms.methods import Method, TransformContext, clip_init_of
from batquant.algorithms.observers import InputStatistics
from batquant.algorithms.rounding import WeightRounding, unrounded
from batquant.config import CalibSpec, QuantConfig, TensorQuant
from batquant.models import HeadGeometry, ModelAdapter
from batquant.pipeline.attention import attach
from batquant.pipeline.sites import FusedExperts, LayerSites, expert_key, layer_sites

#: Name of the ModuleDict on each quantized layer that holds what it learned.
OWNER = "batquant"
#: Keys of that ModuleDict besides the groups' names.
KEY_HEADS, VALUE_HEADS, KV = "key_heads", "value_heads", "kv"
#: Seed offsets of the sites (site_seed's ``site``): KV heads, groups, experts.
_KEY_SITE, _VALUE_SITE, _GROUP_SITE, _EXPERT_SITE = 1 * 256, 2 * 256, 16, 1 << 16


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
        Only ``clip_init`` is read here (None: the method's own).
    seed : int
        The run's seed; each site derives its own from it (:func:`site_seed`).
    """

    adapter: ModelAdapter
    geometry: HeadGeometry
    method: Method
    config: QuantConfig
    spec: CalibSpec
    seed: int

    @property
    def description(self) -> str:
        """``"method, config"``, shown by the quantized modules' ``repr``."""
        return f"{self.method.name}, {self.config.describe()}"


def site_seed(seed: int, layer: int, site: int) -> int:
    """A seed for one transform, fixed by the run's seed, the layer and the site.

    Derived arithmetically, never drawn from a shared generator, so a layer
    built on resume gets the same transforms as in an uninterrupted run.
    """
    return (seed * 1_000_003 + layer * 1_009 + site) % 2**31


def _replace(layer: nn.Module, path: str, module: nn.Module) -> None:
    owner_path, _, attr = path.rpartition(".")
    owner = layer.get_submodule(owner_path) if owner_path else layer
    setattr(owner, attr, module)


def _head_transforms(
    plan: LayerPlan, layer_index: int, site: int, quant: TensorQuant
) -> HeadTransforms | None:
    geo = plan.geometry
    ones = torch.ones(geo.head_dim)
    transforms = []
    for g in range(geo.num_kv_heads):
        seed = site_seed(plan.seed, layer_index, site + g)
        ctx = TransformContext(geo.head_dim, quant.block_size, seed, ones, ones)
        t = plan.method.build_kv_transform(ctx)
        if t is None:
            return None
        transforms.append(t)
    return HeadTransforms(transforms, geo.num_heads)


class _Builder:
    """Builds the activation sides of one layer's sites from their statistics."""

    def __init__(self, plan: LayerPlan, layer_index: int,
                 stats: dict[str, InputStatistics] | None, frozen: set[str],
                 device: torch.device) -> None:  # fmt: skip
        self.plan, self.layer_index, self.stats = plan, layer_index, stats or {}
        self.frozen, self.device = frozen, device
        self.where = f"{plan.adapter.architecture} layer {layer_index}"

    def quantizer(self, stream: str, n: int, weight_absmax: torch.Tensor, seed_site: int
                  ) -> InputQuantizer:  # fmt: skip
        """The transform, clipping and fake quantization of the input stream ``stream``."""
        plan = self.plan
        act_q = plan.config.activation
        stats = self.stats.get(stream)
        absmax = None if stats is None else stats.absmax
        ctx = TransformContext(
            size=n,
            block_size=plan.config.transform_block,
            seed=site_seed(plan.seed, self.layer_index, seed_site),
            act_absmax=(torch.ones(n) if absmax is None else absmax).to(weight_absmax.device),
            weight_absmax=weight_absmax,
            # a stream below the expert threshold keeps the unfitted transform
            inputs=None if stats is None or stream in self.frozen else stats.rows,
        )
        try:
            transform = plan.method.build_transform(ctx)
        except ValueError as exc:
            raise ValueError(
                f"{self.where}, site {stream!r}: method {plan.method.name!r} cannot build its "
                f"transform for in_features {n}: {exc}"
            ) from None
        clip = None
        if plan.method.clip is not None and act_q is not None:
            start = clip_init_of(plan.method, plan.spec)
            clip = make_clip(plan.method.clip, act_q, None, n, start, self.device, "activation")
        return InputQuantizer(transform, clip, act_q).to(self.device)

    def weight_clip(self, rows: int, n: int) -> LearnableClip | None:
        clips = self.weight_clips(1, rows, n)
        return None if clips is None else clips[0]

    def weight_clips(self, count: int, rows: int, n: int) -> list[LearnableClip] | None:
        """``count`` weight clippings of ``rows x n`` (one per expert), or None: no clipping."""
        plan = self.plan
        if plan.method.clip is None or plan.config.weight is None:
            return None
        start = clip_init_of(plan.method, plan.spec)
        return [make_clip(plan.method.clip, plan.config.weight, rows, n, start, self.device,
                          "weight") for _ in range(count)]  # fmt: skip

    def experts(self, module: nn.Module, site: FusedExperts, up: InputQuantizer | None,
                seed_site: int) -> CalibratingExperts:  # fmt: skip
        gate_up = getattr(module, site.site.gate_up).detach().to(self.device, torch.float32)
        down = getattr(module, site.site.down).detach().to(self.device, torch.float32)
        if up is None:
            up = self.quantizer(site.name, site.hidden, gate_up.abs().amax((0, 1)), seed_site)
        downs = [self.quantizer(expert_key(site.name, e), site.intermediate,
                                down[e].abs().amax(0), _EXPERT_SITE + e)
                 for e in range(site.num_experts)]  # fmt: skip
        act_fn = copy.deepcopy(getattr(module, "act_fn"))  # noqa: B009 - the experts' own
        return CalibratingExperts(
            gate_up, down, act_fn, up, downs,
            self.weight_clips(site.num_experts, 2 * site.intermediate, site.hidden),
            self.weight_clips(site.num_experts, site.hidden, site.intermediate),
            self.plan.config.weight,
        )  # fmt: skip


def build_layer(
    layer: nn.Module,
    plan: LayerPlan,
    layer_index: int,
    stats: dict[str, InputStatistics] | None = None,
    initial_experts: Iterable[tuple[str, int]] = (),
    sites: LayerSites | None = None,
) -> nn.Module:
    """A copy of ``layer`` with every linear and expert under calibration, on the layer's device.

    Parameters
    ----------
    layer : nn.Module
        The full-precision decoder layer (left unchanged).
    plan : LayerPlan
    layer_index : int
        Its index, for seeds and messages.
    stats : dict, optional
        Per input stream (a group's name, an experts site's name, and
        :func:`~batquant.pipeline.sites.expert_key` per expert), the statistics
        of the calibration inputs; without them (a saved model rebuilt before
        its state is loaded) transforms start from ones and fit to nothing.
    initial_experts : iterable of (str, int)
        ``(site, expert)`` of experts that saw too few tokens: they keep the
        method's unfitted initial transform and clipping, which do not train.
    sites : LayerSites, optional
        Resolved from the adapter when omitted.

    Returns
    -------
    nn.Module
        The copy; what it learns is in ``copy.batquant``.
    """
    adapter, cfg = plan.adapter, plan.config
    sites = sites or layer_sites(adapter, layer, layer_index)
    work = copy.deepcopy(layer)
    for p in work.parameters():
        p.requires_grad_(False)
    device = next(iter(work.parameters())).device
    owned = nn.ModuleDict()
    key_heads = None if cfg.key is None else _head_transforms(plan, layer_index, _KEY_SITE,
                                                              cfg.key)  # fmt: skip
    value_heads = None if cfg.value is None else _head_transforms(plan, layer_index, _VALUE_SITE,
                                                                  cfg.value)  # fmt: skip
    if key_heads is not None:
        owned[KEY_HEADS] = key_heads
    if value_heads is not None:
        owned[VALUE_HEADS] = value_heads
    if cfg.quantizes_kv:
        kv = KVQuantizer(cfg.key, cfg.value, key_heads)
        owned[KV] = kv
        attach(work.get_submodule(adapter.attention), kv)

    initial = list(initial_experts)
    build = _Builder(plan, layer_index, stats, {expert_key(s, e) for s, e in initial}, device)
    fusions = {} if value_heads is None else {
        adapter.v_proj: HeadFusion(value_heads, FusedSide.ROWS),
        adapter.o_proj: HeadFusion(value_heads, FusedSide.COLUMNS),
    }  # fmt: skip
    # a group whose P_up the fused experts share: their gate/up weights count too
    partners = {f.shares_with: getattr(work.get_submodule(f.site.path), f.site.gate_up)
                for f in sites.experts if f.shares_with}  # fmt: skip
    for site, group in enumerate(sites.groups):
        linears = [_as_linear(work.get_submodule(path)) for path in group.linears]
        n = linears[0].in_features
        weight_absmax = torch.cat([lin.weight.detach().float() for lin in linears]).abs().amax(0)
        if group.name in partners:
            experts_absmax = partners[group.name].detach().float().abs().amax((0, 1))
            weight_absmax = torch.maximum(weight_absmax, experts_absmax.to(weight_absmax.device))
        offset = _EXPERT_SITE + group.expert[1] if group.expert else _GROUP_SITE + site
        shared = build.quantizer(group.name, n, weight_absmax, offset)
        owned[group.name] = shared
        for path, lin in zip(group.linears, linears, strict=True):
            _replace(work, path, CalibratingLinear(
                lin, shared, build.weight_clip(lin.out_features, n), cfg.weight,
                heads=fusions.get(path),
            ))  # fmt: skip
    for number, fused in enumerate(sites.experts):
        up = owned[fused.shares_with] if fused.shares_with else None
        assert up is None or isinstance(up, InputQuantizer)
        experts = build.experts(work.get_submodule(fused.site.path), fused, up,
                                _GROUP_SITE + len(sites.groups) + number)  # fmt: skip
        if fused.shares_with is None:
            owned[fused.name] = experts.up
        _replace(work, fused.site.path, experts)
    setattr(work, OWNER, owned.to(device))
    share_once(work)
    for site_name, expert in initial:
        for module in expert_modules(work, sites, site_name, expert):
            module.requires_grad_(False)
    return work


def _as_linear(module: nn.Module) -> nn.Linear:
    assert isinstance(module, nn.Linear)  # layer_sites checked every path
    return module


# -- each tensor once in the state dict ------------------------------------------------------


def _aliases(module: nn.Module) -> dict[str, str]:
    """Every other path of a shared tensor -> its kept path (``batquant.`` first, then shortest)."""
    paths: dict[int, list[str]] = {}
    named = chain(module.named_parameters(remove_duplicate=False),
                  module.named_buffers(remove_duplicate=False))  # fmt: skip
    for name, tensor in named:
        if tensor is not None:
            paths.setdefault(id(tensor), []).append(name)
    out: dict[str, str] = {}
    for names in paths.values():
        if len(names) > 1:
            kept = min(names, key=lambda n: (not n.startswith(OWNER + "."), len(n), n))
            out.update({n: kept for n in names if n != kept})
    return out


def _drop_aliases(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    for alias in _aliases(module):
        state.pop(prefix + alias, None)


def _fill_aliases(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    for alias, kept in _aliases(module).items():
        if prefix + kept in state and prefix + alias not in state:
            state[prefix + alias] = state[prefix + kept]


def share_once(layer: nn.Module) -> None:
    """Keep each shared tensor of ``layer`` once in its state dict, and load it back everywhere."""
    layer.register_state_dict_post_hook(_drop_aliases)
    layer.register_load_state_dict_pre_hook(_fill_aliases)


# -- training and freezing -------------------------------------------------------------------


def owned_part(layer: nn.Module, key: str) -> nn.Module | None:
    """``layer.batquant[key]``, or None when the layer has no such part."""
    return dict(getattr(layer, OWNER).items()).get(key)


def expert_modules(layer: nn.Module, sites: LayerSites, site: str, expert: int
                   ) -> list[nn.Module]:  # fmt: skip
    """What expert ``expert`` of ``site`` alone learns, in a layer from :func:`build_layer`."""
    for fused in sites.experts:
        if fused.name == site:
            experts = layer.get_submodule(fused.site.path)
            assert isinstance(experts, CalibratingExperts)
            return experts.expert_modules(expert)
    mods: list[nn.Module] = []
    for group in sites.groups:
        if group.expert == (site, expert):
            mods.append(getattr(layer, OWNER)[group.name])
            prefix = group.linears[0].rsplit(".", 1)[0] + "."  # the expert's own module
            mods += [m.weight_clip for name, m in layer.named_modules()
                     if name.startswith(prefix) and isinstance(m, CalibratingLinear)
                     and m.weight_clip is not None]  # fmt: skip
    return mods


def learnable_parameters(layer: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(transform parameters, clipping parameters)`` of a layer that still train.

    The layer's own weights were set not to train by :func:`build_layer`; a
    transform's fixed parameters (a non-learnable SmoothScale) and frozen
    experts' parameters keep ``requires_grad`` False.
    """
    clips = [p for m in layer.modules() if isinstance(m, LearnableClip) for p in m.parameters()
             if p.requires_grad]  # fmt: skip
    clip_ids = {id(p) for p in clips}
    transforms = [p for p in layer.parameters() if p.requires_grad and id(p) not in clip_ids]
    return transforms, clips


def forget(layer: nn.Module) -> None:
    """Drop the activation sides the group quantizers keep for reuse."""
    for m in layer.modules():
        if isinstance(m, InputQuantizer):
            m.forget()


def freeze_layer(layer: nn.Module, description: str, rounding: WeightRounding | None = None,
                 prefix: str = "") -> nn.Module:  # fmt: skip
    """Apply every weight side once; return the layer for inference (modified in place).

    Every :class:`CalibratingLinear` becomes a ``QuantizedLinear`` and every
    :class:`CalibratingExperts` a ``QuantizedExperts``, their weights rounded
    by ``rounding`` (to nearest when None; MX-GPTQ:
    :class:`~batquant.algorithms.gptq.LayerHessians`), each named
    ``prefix + path`` in its reports; ``P_v`` is fused into the weights and
    leaves ``layer.batquant``; every remaining parameter stops requiring grad.
    """
    forget(layer)
    for name, module in list(layer.named_modules()):
        if isinstance(module, CalibratingLinear | CalibratingExperts):
            _replace(layer, name, module.freeze(description, rounding, prefix + name))
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
    # every frozen weight and scale is then overwritten by the state: skip the rounding
    frozen = freeze_layer(build_layer(layer, plan, layer_index), plan.description,
                          rounding=unrounded)  # fmt: skip
    frozen.to(next(iter(layer.parameters())).dtype)  # a bf16 model's layers were saved in bf16
    try:
        frozen.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise ValueError(f"{where}: layer {layer_index} does not fit the model: {detail}") from None
    return frozen
