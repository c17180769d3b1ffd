"""Qwen3 (``Qwen3ForCausalLM``).

Its attention normalises q and k per head (``q_norm``/``k_norm``, with a
learned weight) before RoPE, so no transform can be fused into q_proj's or
k_proj's outputs; the key transform runs online after RoPE, which the
attention interface gives the pipeline for free.  ``num_heads * head_dim``
is not the hidden size in several sizes (0.6B: 16 x 128 = 2048 against 1024):
o_proj's input width comes from the heads.
"""

from batquant.models import LinearGroup, ModelAdapter, register_adapter

QWEN3 = register_adapter(
    ModelAdapter(
        architecture="Qwen3ForCausalLM",
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
