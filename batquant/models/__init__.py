"""Model adapters: what the pipeline needs to know about one transformers model family.

An adapter is a frozen :class:`ModelAdapter`, registered in :data:`ADAPTERS`
under the transformers architecture name (``config.architectures[0]``, e.g.
``"Qwen3ForCausalLM"``).  It says

- where the decoder layers are, and which module runs embeddings, layers and
  the final norm (the backbone, without the LM head);
- which linears of a decoder layer share one input (the groups that share a
  transform: q/k/v, o, gate/up, down), and where the routed experts of an
  MoE block are (:class:`ExpertsSite`);
- which linears stay in full precision (routers and gates that are linears);
- where the KV sites are (the attention module, v_proj and o_proj);
- the head geometry (query heads, KV heads, head_dim), from the config.

The dataclass's defaults are the Llama-shaped decoder that most families
share, so a family is its architecture name plus whatever differs
(``ModelAdapter("Qwen3ForCausalLM")`` is the whole Qwen3 adapter).
Adapters never name a quantization method.  Each family is one file in this
package; every module here is imported when the package is, so adding a
family is adding one file that calls :func:`register_adapter` (or calling it
from your own code).  ``docs/models.md`` has the protocol.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mxref.policies import Policy
from mxref.registry import Registry


@dataclass(frozen=True)
class HeadGeometry:
    """The attention's head layout.

    Attributes
    ----------
    num_heads : int
        Query heads.
    num_kv_heads : int
        Key/value heads (GQA when fewer than ``num_heads``).
    head_dim : int
        Per head; ``num_heads * head_dim`` need not be the hidden size (Qwen3).
    """

    num_heads: int
    num_kv_heads: int
    head_dim: int

    def __post_init__(self) -> None:
        for name in ("num_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HeadGeometry.{name} must be a positive int; got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"HeadGeometry: num_heads {self.num_heads} is not a multiple of "
                f"num_kv_heads {self.num_kv_heads}"
            )


def geometry_from_config(config: Any) -> HeadGeometry:
    """Heads from the usual fields ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``.

    ``num_key_value_heads`` defaults to ``num_attention_heads``; ``head_dim``
    to ``hidden_size // num_attention_heads`` when the config has none.
    """
    heads = int(config.num_attention_heads)
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return HeadGeometry(heads, int(kv), int(head_dim))


@dataclass(frozen=True)
class LinearGroup:
    """Linears of a decoder layer that read the same input and so share one transform.

    Attributes
    ----------
    name : str
        Short name used in logs and saved files (``"qkv"``); letters, digits, ``_``.
    linears : tuple of str
        Module paths inside the decoder layer (``"self_attn.q_proj"``).
    optional : bool
        Layers without the group's first linear skip it (an MoE model whose
        dense MLP exists only in some layers); otherwise its absence is an error.
    """

    name: str
    linears: tuple[str, ...]
    optional: bool = False


class ExpertLayout(Policy):
    """How a module keeps its routed experts' weights."""

    #: transformers 5's fused experts: ``gate_up_proj`` ``[E, 2I, H]`` (gate rows
    #: first, then up) and ``down_proj`` ``[E, H, I]``, called as
    #: ``experts(hidden [T, H], top_k_index [T, k], top_k_weights [T, k])``.
    FUSED = "fused"
    #: an ``nn.ModuleList`` of expert MLPs, each with its own gate/up/down ``nn.Linear``,
    #: called one by one by the MoE block.
    LINEARS = "linears"


@dataclass(frozen=True)
class ExpertsSite:
    """The routed experts of an MoE block.

    Every expert reads the same input (the tokens routed to it), so one
    transform ``P_up`` serves every expert's gate and up projections; each
    expert's down projection reads its own intermediate activations, so it has
    its own ``P_down`` and clipping.  The router is not part of the site and
    stays in full precision.

    Attributes
    ----------
    path : str
        The experts module in the decoder layer (``"mlp.experts"``).
    name : str
        Used in logs and saved files; letters, digits, ``_``.
    layout : ExpertLayout
    gate_up, down : str
        ``FUSED``: the names of the 3-D parameters.
    linears : tuple of str
        ``LINEARS``: gate, up and down inside each expert.
    input_group : str or None
        A :class:`LinearGroup` that reads the same input (a shared expert's
        gate/up): it and the experts then share one ``P_up``.
    optional : bool
        Layers without ``path`` skip the site (dense layers of an MoE model).
    """

    path: str
    name: str = "experts"
    layout: ExpertLayout = ExpertLayout.FUSED
    gate_up: str = "gate_up_proj"
    down: str = "down_proj"
    linears: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    input_group: str | None = None
    optional: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", ExpertLayout.parse(self.layout, "ExpertsSite.layout"))


#: The Llama-shaped decoder layer that most families share.
LLAMA_GROUPS = (
    LinearGroup("qkv", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    LinearGroup("o", ("self_attn.o_proj",)),
    LinearGroup("up", ("mlp.gate_proj", "mlp.up_proj")),
    LinearGroup("down", ("mlp.down_proj",)),
)


@dataclass(frozen=True)
class ModelAdapter:
    """How the pipeline finds its way around one model family.

    Every field but ``architecture`` defaults to the Llama-shaped decoder.

    Attributes
    ----------
    architecture : str
        The transformers architecture name it is registered under.
    backbone : str
        Path of the module that embeds the tokens and runs the decoder layers
        and the final norm, without the LM head (``"model"``).
    layers : str
        Path of the ``nn.ModuleList`` of decoder layers (``"model.layers"``);
        the backbone calls layer ``i`` as ``layer(hidden_states, **kwargs_i)``,
        in order (docs/models.md, "What a backbone must do").
    groups : tuple of LinearGroup
        Every ``nn.Linear`` of a decoder layer is in exactly one group, in an
        experts site, or in ``full_precision``.
    attention : str
        Path, in the layer, of the module whose attention-interface call
        carries Q, K and V after RoPE (``"self_attn"``).
    v_proj, o_proj : str
        Paths of the value projection (its output rows are KV heads) and the
        output projection (its input columns are query heads).
    experts : tuple of ExpertsSite
        The routed experts of MoE layers (none for a dense family).
    full_precision : tuple of str
        Linears that are deliberately left unquantized (a shared expert's
        sigmoid gate, a router that is an ``nn.Linear``).
    text_config : str or None
        Where a multimodal model (``...ForConditionalGeneration``) keeps the
        text model's config (``"text_config"``); None: the model's own config.
    geometry : callable
        ``config -> HeadGeometry``, given the text config.
    """

    architecture: str
    backbone: str = "model"
    layers: str = "model.layers"
    groups: tuple[LinearGroup, ...] = LLAMA_GROUPS
    attention: str = "self_attn"
    v_proj: str = "self_attn.v_proj"
    o_proj: str = "self_attn.o_proj"
    experts: tuple[ExpertsSite, ...] = ()
    full_precision: tuple[str, ...] = ()
    text_config: str | None = None
    geometry: Callable[[Any], HeadGeometry] = field(default=geometry_from_config)

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ValueError("ModelAdapter.architecture must be a non-empty str")
        names = [g.name for g in self.groups] + [e.name for e in self.experts]
        for name in names:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"ModelAdapter {self.architecture}: site name {name!r} must be "
                                 "letters, digits and _")  # fmt: skip
        if len(set(names)) != len(names):
            raise ValueError(f"ModelAdapter {self.architecture}: site names repeat: {names}")
        for site in self.experts:
            if site.input_group is not None and site.input_group not in names:
                raise ValueError(
                    f"ModelAdapter {self.architecture}: ExpertsSite {site.name!r} shares its "
                    f"input with no group {site.input_group!r}"
                )

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The model's decoder layers."""
        layers = model.get_submodule(self.layers)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"{self.architecture}: {self.layers} is not an nn.ModuleList")
        return layers

    def config_of(self, model: nn.Module) -> Any:
        """The config of the text model (the model's own, or its ``text_config``)."""
        config = getattr(model, "config", None)
        if self.text_config is None:
            return config
        text = getattr(config, self.text_config, None)
        if text is None:
            raise ValueError(f"{self.architecture}: the model's config has no {self.text_config!r}")
        return text


#: Every registered adapter, by architecture name.
ADAPTERS: Registry[ModelAdapter] = Registry(
    "adapter", ModelAdapter, name_of=lambda a: a.architecture,
    unknown="no adapter for architecture {name}; supported: {known} "
            "(docs/models.md shows how to add one)",
)  # fmt: skip


def register_adapter(adapter: ModelAdapter, *, replace: bool = False) -> ModelAdapter:
    """Register ``adapter`` under its architecture name; return it.

    Raises
    ------
    TypeError, ValueError
        Not a ModelAdapter, or a name already taken without ``replace=True``.
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"adapter must be a ModelAdapter; got {type(adapter).__name__}")
    return ADAPTERS.register(adapter, replace=replace)


def architecture_of(model: nn.Module) -> str:
    """The architecture name of a transformers model (its config's, else its class name)."""
    config = getattr(model, "config", None)
    names = getattr(config, "architectures", None) or []
    return str(names[0]) if names else type(model).__name__


def get_adapter(model: nn.Module) -> ModelAdapter:
    """The adapter registered for ``model``'s architecture.

    Raises
    ------
    ValueError
        Naming the architecture and listing the supported ones.
    """
    for name in (architecture_of(model), type(model).__name__):
        if name in ADAPTERS:
            return ADAPTERS[name]
    return ADAPTERS.resolve(architecture_of(model))  # raises, listing every supported one


def _import_families() -> None:
    """Import every module of this package, so that each family file registers itself."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


_import_families()

__all__ = [
    "ADAPTERS",
    "LLAMA_GROUPS",
    "ExpertLayout",
    "ExpertsSite",
    "HeadGeometry",
    "LinearGroup",
    "ModelAdapter",
    "architecture_of",
    "geometry_from_config",
    "get_adapter",
    "register_adapter",
]
