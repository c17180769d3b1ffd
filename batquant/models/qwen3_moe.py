"""Qwen3-MoE (``Qwen3MoeForCausalLM``): Qwen3-30B-A3B, Qwen3-235B-A22B.

Attention as Qwen3.  An MoE layer's ``mlp`` is a router ``mlp.gate`` (not a
linear; it stays in full precision) and fused experts ``mlp.experts``
(``gate_up_proj [E, 2I, H]``, ``down_proj [E, H, I]``); the layers listed in
``mlp_only_layers`` (or off ``decoder_sparse_step``) keep a dense MLP, so
both MLP forms are optional per layer.
"""

from batquant.models import (
    LLAMA_GROUPS,
    ExpertsSite,
    LinearGroup,
    ModelAdapter,
    register_adapter,
)

#: q/k/v and o in every layer; the dense MLP only where a layer has one.
MOE_GROUPS = (
    *LLAMA_GROUPS[:2],
    *(LinearGroup(g.name, g.linears, optional=True) for g in LLAMA_GROUPS[2:]),
)

QWEN3_MOE = register_adapter(ModelAdapter(
    "Qwen3MoeForCausalLM", groups=MOE_GROUPS, experts=(ExpertsSite("mlp.experts"),),
))  # fmt: skip
