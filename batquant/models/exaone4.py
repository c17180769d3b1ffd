"""EXAONE 4 (`Exaone4ForCausalLM`): the default declaration.

Sliding-window and global layers (the global ones without RoPE), norms after
attention and MLP, per-head q/k norms.
"""

from batquant.models import ModelAdapter, register_adapter

EXAONE4 = register_adapter(ModelAdapter("Exaone4ForCausalLM"))
