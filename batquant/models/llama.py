"""Llama (``LlamaForCausalLM``): SmolLM2, Llama 2/3 and their kin.

The default declaration as it is: q/k/v, o, gate/up, down; ``head_dim``
defaults to ``hidden_size // num_attention_heads``.
"""

from batquant.models import ModelAdapter, register_adapter

LLAMA = register_adapter(ModelAdapter("LlamaForCausalLM"))
