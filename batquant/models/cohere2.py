"""Command R7B and kin (`Cohere2ForCausalLM`): the default declaration.

Attention and MLP run in parallel off one norm; sliding-window layers use RoPE
and the global ones none, each with the arguments the backbone gives it.
"""

from batquant.models import ModelAdapter, register_adapter

COHERE2 = register_adapter(ModelAdapter("Cohere2ForCausalLM"))
