"""Ministral (`MinistralForCausalLM`): the default declaration.

Mistral's layer with `layer_types` mixing sliding-window and global attention.
"""

from batquant.models import ModelAdapter, register_adapter

MINISTRAL = register_adapter(ModelAdapter("MinistralForCausalLM"))
