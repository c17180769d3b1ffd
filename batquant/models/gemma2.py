"""Gemma 2 (`Gemma2ForCausalLM`): the default declaration.

Sliding-window and global layers alternate (`layer_types`); the backbone passes
each layer the mask of its type, and attention soft-capping rides along in
the attention call.
"""

from batquant.models import ModelAdapter, register_adapter

GEMMA2 = register_adapter(ModelAdapter("Gemma2ForCausalLM"))
