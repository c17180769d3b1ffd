"""Qwen3 (``Qwen3ForCausalLM``): the default declaration.

Its attention normalises q and k per head (``q_norm``/``k_norm``, with a
learned weight) before RoPE, so no transform can be fused into q_proj's or
k_proj's outputs; the key transform runs online after RoPE, which the
attention interface gives the pipeline for free.  ``num_heads * head_dim``
is not the hidden size in several sizes (0.6B: 16 x 128 = 2048 against 1024):
o_proj's input width comes from the heads.  Sliding-window layers
(``layer_types`` with ``max_window_layers``) get their own mask from the
backbone, which the pipeline captures per layer.
"""

from batquant.models import ModelAdapter, register_adapter

QWEN3 = register_adapter(ModelAdapter("Qwen3ForCausalLM"))
