"""Where KV-cache quantization enters a transformers model: its attention interface.

transformers' attention modules compute Q, K, V (with q_norm/k_norm where
the family has them), apply RoPE, update the cache, and then call the
function registered under ``config._attn_implementation`` with
``(module, query, key, value, attention_mask, ...)``.  :func:`install`
registers, for the model's implementation ``base`` (``"sdpa"``, ``"eager"``,
...), a wrapper ``"batquant_<base>"`` that runs the module's
:class:`~batquant.algorithms.heads.KVQuantizer` (found as ``module.batquant_kv``) on Q,
K and V and then calls ``base`` itself; attention modules without a
quantizer pass through unchanged.  The mask function of ``base`` is
registered under the same name, so masks are built exactly as before.

This is the one place that knows how transformers dispatches attention; the
adapters only say which module is the attention.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: Prefix of the registered wrapper names.
PREFIX = "batquant_"
#: Attribute of an attention module that holds its KV quantizer.
KV_ATTRIBUTE = "batquant_kv"


def _base_function(base: str, module: nn.Module) -> Callable[..., Any]:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if base == "eager":
        # every transformers modeling file defines its own eager_attention_forward
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[base]


def _wrapper(base: str) -> Callable[..., Any]:
    def attention(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        **kwargs: Any,
    ) -> Any:
        kv = getattr(module, KV_ATTRIBUTE, None)
        if kv is not None:
            query, key, value = kv(query, key, value)
        return _base_function(base, module)(module, query, key, value, attention_mask, **kwargs)

    attention.__name__ = f"{PREFIX}{base}_attention"
    return attention


def base_implementation(config: Any) -> str:
    """The attention implementation under the wrapper (the model's own when not wrapped)."""
    name = str(getattr(config, "_attn_implementation", None) or "eager")
    return name.removeprefix(PREFIX)


def install(model: nn.Module) -> str:
    """Route ``model``'s attention through the KV-quantizer wrapper; return the wrapper's name.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Its ``config._attn_implementation`` is set to ``"batquant_<base>"``.

    Raises
    ------
    ValueError
        When the model has no attention implementation that can be wrapped.
    """
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("the model has no config, so its attention cannot be wrapped")
    base = base_implementation(config)
    if base != "eager" and base not in ALL_ATTENTION_FUNCTIONS:
        raise ValueError(f"attention implementation {base!r} is not registered in transformers")
    name = PREFIX + base
    if name not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(name, _wrapper(base))
    if name not in ALL_MASK_ATTENTION_FUNCTIONS and base in ALL_MASK_ATTENTION_FUNCTIONS:
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    for sub in model.modules():
        sub_config = getattr(sub, "config", None)
        if sub_config is not None and hasattr(sub_config, "_attn_implementation"):
            sub_config._attn_implementation = name
    return name


def attach(attention: nn.Module, quantizer: nn.Module | None) -> None:
    """Give an attention module its KV quantizer, as a submodule ``batquant_kv``.

    The layer's ``batquant`` dict registers it too; the layer saves it once.
    """
    setattr(attention, KV_ATTRIBUTE, quantizer)
