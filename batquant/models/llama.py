"""Llama (``LlamaForCausalLM``): SmolLM2, Llama 2/3 and their kin.

The same layout as Qwen3 without q_norm/k_norm; ``head_dim`` defaults to
``hidden_size // num_attention_heads``.
"""

from batquant.models import LinearGroup, ModelAdapter, register_adapter

LLAMA = register_adapter(
    ModelAdapter(
        architecture="LlamaForCausalLM",
        backbone="model",
        layers="model.layers",
        groups=(
            LinearGroup("qkv", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
            LinearGroup("o", ("self_attn.o_proj",)),
            LinearGroup("up", ("mlp.gate_proj", "mlp.up_proj")),
            LinearGroup("down", ("mlp.down_proj",)),
        ),
        attention="self_attn",
        v_proj="self_attn.v_proj",
        o_proj="self_attn.o_proj",
    )
)
