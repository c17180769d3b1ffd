"""OLMo 3 (`Olmo3ForCausalLM`): the default declaration.

OLMo 2's layer (q/k norms over the whole projection, norms after attention and
MLP) with sliding-window and global layers, each with its own RoPE.
"""

from batquant.models import ModelAdapter, register_adapter

OLMO3 = register_adapter(ModelAdapter("Olmo3ForCausalLM"))
