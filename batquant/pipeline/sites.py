"""The quantization sites of one decoder layer, resolved from the adapter and checked.

Layers of one model need not be alike (the dense layers of an MoE model, a
shared expert only in some), so the adapter's declaration is resolved
against each layer: :func:`layer_sites` returns the groups of linears and the
fused experts that this layer has, and refuses, naming the layer and the
module, anything the declaration does not describe:

- a missing non-optional group, a path that is not an ``nn.Linear``;
- an ``nn.Linear`` in no group, no experts site and not kept in full precision;
- a module holding 3-D expert weights that no experts site describes, or
  experts whose layout (transposed, interleaved, with biases, without a
  gate) is not the one the site declares.

Per-expert linears (``ExpertLayout.LINEARS``) become ordinary groups: one
``<site>_up`` with every expert's gate and up (one shared ``P_up``), and one
``<site>_down_<e>`` per expert.  Every site's name is a key of the layer's
``batquant`` module dict, so it holds letters, digits and ``_`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from batquant.models import ExpertLayout, ExpertsSite, ModelAdapter


@dataclass(frozen=True)
class GroupSite:
    """Linears that share one input, hence one activation-side transform.

    Attributes
    ----------
    name : str
    linears : tuple of str
        Paths in the decoder layer.
    observe : tuple of str
        The linears whose inputs, together, are the group's input stream
        (the first linear; for experts, the first linear of every expert).
    expert : tuple of (str, int) or None
        ``(site name, expert index)`` when the group is one expert's down projection.
    routed : bool
        Whether its stream is made of routed tokens (an expert's down
        projection; every expert's gate/up), whose count is known only after
        the pass.
    """

    name: str
    linears: tuple[str, ...]
    observe: tuple[str, ...]
    expert: tuple[str, int] | None = None
    routed: bool = False


@dataclass(frozen=True)
class FusedExperts:
    """Fused 3-D experts (``ExpertLayout.FUSED``) found in one layer.

    Attributes
    ----------
    site : ExpertsSite
    num_experts, hidden, intermediate : int
        From ``gate_up [E, 2I, H]`` and ``down [E, H, I]``.
    shares_with : str or None
        The group in this layer whose ``P_up`` the experts share.
    """

    site: ExpertsSite
    num_experts: int
    hidden: int
    intermediate: int
    shares_with: str | None = None

    @property
    def name(self) -> str:
        """The site's name."""
        return self.site.name


@dataclass(frozen=True)
class LayerSites:
    """Every quantization site of one decoder layer.

    Attributes
    ----------
    groups : tuple of GroupSite
    experts : tuple of FusedExperts
    expert_counts : dict
        Experts per site name (both layouts), for the per-expert bookkeeping.
    """

    groups: tuple[GroupSite, ...]
    experts: tuple[FusedExperts, ...] = ()
    expert_counts: dict[str, int] = field(default_factory=dict)

    def linears(self) -> list[str]:
        """Every quantized linear's path, group by group."""
        return [path for g in self.groups for path in g.linears]


def expert_key(site: str, expert: int) -> str:
    """The name of expert ``expert``'s down-projection input stream (and, per linear, group)."""
    return f"{site}_down_{expert}"


def _module(layer: nn.Module, path: str) -> nn.Module | None:
    try:
        return layer.get_submodule(path)
    except AttributeError:
        return None


def _linear(layer: nn.Module, path: str, where: str) -> nn.Linear:
    module = _module(layer, path)
    if module is None:
        raise ValueError(f"{where}: the decoder layer has no module {path!r}")
    if not isinstance(module, nn.Linear):
        raise ValueError(f"{where}: {path!r} is a {type(module).__name__}, not an nn.Linear")
    return module


def fused_expert_shapes(module: nn.Module, site: ExpertsSite, where: str) -> tuple[int, int, int]:
    """``(experts, hidden, intermediate)`` of a fused experts module, or a ValueError naming it.

    The layout flags that transformers' experts integration sets
    (``is_transposed``, ``is_concatenated``, ``has_bias``, ``has_gate``) must be
    those of ``gate_up [E, 2I, H]`` with gate rows before up rows and no bias.
    """
    gate_up = getattr(module, site.gate_up, None)
    down = getattr(module, site.down, None)
    if not isinstance(gate_up, torch.Tensor) or not isinstance(down, torch.Tensor):
        raise ValueError(
            f"{where}: {site.path!r} ({type(module).__name__}) has no 3-D parameters "
            f"{site.gate_up!r} and {site.down!r}; the adapter's ExpertsSite does not describe "
            "its layout"
        )
    expected = {"is_transposed": False, "is_concatenated": True, "has_bias": False,
                "has_gate": True}  # fmt: skip
    for flag, value in expected.items():
        if getattr(module, flag, value) != value:
            raise ValueError(
                f"{where}: {site.path!r} ({type(module).__name__}) has {flag}="
                f"{getattr(module, flag)!r}, a layout batquant's fused experts do not describe "
                f"(they need {flag}={value})"
            )
    if gate_up.ndim != 3 or down.ndim != 3:
        raise ValueError(f"{where}: {site.path}.{site.gate_up} and .{site.down} must be 3-D "
                         f"[experts, out, in]; got {tuple(gate_up.shape)} and "
                         f"{tuple(down.shape)}")  # fmt: skip
    e, two_i, h = gate_up.shape
    if down.shape != (e, h, two_i // 2) or two_i % 2:
        raise ValueError(f"{where}: {site.path}.{site.down} is {tuple(down.shape)}, but "
                         f"{site.gate_up} {tuple(gate_up.shape)} asks for "
                         f"{(e, h, two_i // 2)}")  # fmt: skip
    return int(e), int(h), int(two_i // 2)


def _expert_linears(layer: nn.Module, site: ExpertsSite, where: str
                    ) -> tuple[list[GroupSite], GroupSite]:  # fmt: skip
    experts = _module(layer, site.path)
    if not isinstance(experts, nn.ModuleList) or len(experts) == 0:
        raise ValueError(f"{where}: {site.path!r} is not a non-empty nn.ModuleList of experts, "
                         "which ExpertLayout.LINEARS needs")  # fmt: skip
    gate, up, down = site.linears
    ups: list[str] = []
    downs = []
    for e in range(len(experts)):
        prefix = f"{site.path}.{e}."
        for name in (gate, up, down):
            _linear(layer, prefix + name, where)
        ups += [prefix + gate, prefix + up]
        downs.append(GroupSite(expert_key(site.name, e), (prefix + down,), (prefix + down,),
                               expert=(site.name, e), routed=True))  # fmt: skip
    shared = GroupSite(f"{site.name}_up", tuple(ups), tuple(ups[::2]), routed=True)
    return downs, shared


def layer_sites(adapter: ModelAdapter, layer: nn.Module, index: int) -> LayerSites:
    """The sites of decoder layer ``index``, checked against the adapter (module docstring).

    Raises
    ------
    ValueError
        Naming the architecture, the layer and the module.
    """
    where = f"{adapter.architecture} layer {index}"
    groups: dict[str, GroupSite] = {}
    for group in adapter.groups:
        if group.optional and _module(layer, group.linears[0]) is None:
            continue
        for path in group.linears:
            _linear(layer, path, where)
        groups[group.name] = GroupSite(group.name, group.linears, group.linears[:1])
    fused: list[FusedExperts] = []
    counts: dict[str, int] = {}
    for site in adapter.experts:
        module = _module(layer, site.path)
        if module is None:
            if site.optional:
                continue
            raise ValueError(f"{where}: the decoder layer has no experts module {site.path!r}")
        partner = groups.get(site.input_group) if site.input_group else None
        if site.layout is ExpertLayout.FUSED:
            e, h, i = fused_expert_shapes(module, site, where)
            fused.append(FusedExperts(site, e, h, i, partner.name if partner else None))
            counts[site.name] = e
            continue
        downs, shared = _expert_linears(layer, site, where)
        if partner is not None:  # one P_up for the shared expert's and the routed experts' gate/up
            shared = GroupSite(partner.name, partner.linears + shared.linears,
                               partner.observe + shared.observe, routed=True)  # fmt: skip
        groups[shared.name] = shared
        groups.update({d.name: d for d in downs})
        counts[site.name] = len(downs)
    sites = LayerSites(tuple(groups.values()), tuple(fused), counts)
    _check_coverage(adapter, layer, sites, where)
    return sites


def _check_coverage(adapter: ModelAdapter, layer: nn.Module, sites: LayerSites,
                    where: str) -> None:  # fmt: skip
    covered = set(sites.linears())
    kept = set(adapter.full_precision)
    fused_paths = {f.site.path for f in sites.experts}
    leftovers = [name for name, m in layer.named_modules() if isinstance(m, nn.Linear)
                 and name not in covered and name not in kept]  # fmt: skip
    if leftovers:
        raise ValueError(
            f"{where}: linear(s) {', '.join(leftovers)} are in no group of the adapter and not "
            "in its full_precision list; every linear of a decoder layer must be quantized or "
            "deliberately kept"
        )
    for name, module in layer.named_modules():
        if name in fused_paths:
            continue
        if any(p.ndim == 3 for p in module.parameters(recurse=False)):
            raise ValueError(
                f"{where}: {name!r} ({type(module).__name__}) holds 3-D expert weights that no "
                "ExpertsSite of the adapter describes"
            )
