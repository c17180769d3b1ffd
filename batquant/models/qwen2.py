"""Qwen2 and Qwen2.5 (``Qwen2ForCausalLM``): the default declaration.

q/k/v carry biases, which the transforms handle (a transform acts on the
input side; ``b`` is unchanged, and ``P_v`` fuses into v_proj's bias).
"""

from batquant.models import ModelAdapter, register_adapter

QWEN2 = register_adapter(ModelAdapter("Qwen2ForCausalLM"))
