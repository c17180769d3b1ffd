"""Model adapters: what the pipeline needs to know about one transformers model family.

An adapter is a :class:`ModelAdapter` registered under the transformers
architecture name (``config.architectures[0]``, e.g. ``"Qwen3ForCausalLM"``).
It says

- where the decoder layers are, and which module runs embeddings, layers and
  the final norm (the backbone, without the LM head);
- which linears of a decoder layer share one input (the groups that share a
  transform: q/k/v, o, gate/up, down);
- where the KV sites are (the attention module, v_proj and o_proj);
- the head geometry (query heads, KV heads, head_dim), from the config.

Adapters never name a quantization method.  Each family is one file in this
package; every module here is imported when the package is, so adding a
family is adding one file that calls :func:`register_adapter` (or calling it
from your own code).  ``docs/models.md`` has the protocol and a worked
example.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn


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
        Short name used in logs and saved files (``"qkv"``).
    linears : tuple of str
        Module paths inside the decoder layer (``"self_attn.q_proj"``).
    """

    name: str
    linears: tuple[str, ...]


@dataclass(frozen=True)
class ModelAdapter:
    """How the pipeline finds its way around one model family.

    Attributes
    ----------
    architecture : str
        The transformers architecture name it is registered under.
    backbone : str
        Path of the module that embeds the tokens and runs the decoder layers
        and the final norm, without the LM head (``"model"``).
    layers : str
        Path of the ``nn.ModuleList`` of decoder layers (``"model.layers"``);
        the backbone calls them in order as ``layer(hidden_states, **kwargs)``.
    groups : tuple of LinearGroup
        Every ``nn.Linear`` of a decoder layer, each in exactly one group.
    attention : str
        Path, in the layer, of the module whose attention-interface call
        carries Q, K and V after RoPE (``"self_attn"``).
    v_proj, o_proj : str
        Paths of the value projection (its output rows are KV heads) and the
        output projection (its input columns are query heads).
    geometry : callable
        ``config -> HeadGeometry``.
    """

    architecture: str
    backbone: str
    layers: str
    groups: tuple[LinearGroup, ...]
    attention: str
    v_proj: str
    o_proj: str
    geometry: Callable[[Any], HeadGeometry] = field(default=geometry_from_config)

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The model's decoder layers."""
        layers = model.get_submodule(self.layers)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"{self.architecture}: {self.layers} is not an nn.ModuleList")
        return layers


_ADAPTERS: dict[str, ModelAdapter] = {}
#: Every registered adapter, by architecture name.
ADAPTERS: MappingProxyType[str, ModelAdapter] = MappingProxyType(_ADAPTERS)


def register_adapter(adapter: ModelAdapter, *, replace: bool = False) -> ModelAdapter:
    """Register ``adapter`` under its architecture name; return it.

    Raises
    ------
    TypeError, ValueError
        Not a ModelAdapter, or a name already taken without ``replace=True``.
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"adapter must be a ModelAdapter; got {type(adapter).__name__}")
    if adapter.architecture in _ADAPTERS and not replace:
        raise ValueError(
            f"an adapter for {adapter.architecture!r} is already registered; pass replace=True"
        )
    _ADAPTERS[adapter.architecture] = adapter
    return adapter


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
        if name in _ADAPTERS:
            return _ADAPTERS[name]
    known = ", ".join(sorted(_ADAPTERS)) or "none"
    raise ValueError(
        f"no adapter for architecture {architecture_of(model)!r}; supported: {known} "
        "(docs/models.md shows how to add one)"
    )


def _import_families() -> None:
    """Import every module of this package, so that each family file registers itself."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")


_import_families()

__all__ = [
    "ADAPTERS",
    "HeadGeometry",
    "LinearGroup",
    "ModelAdapter",
    "architecture_of",
    "geometry_from_config",
    "get_adapter",
    "register_adapter",
]
