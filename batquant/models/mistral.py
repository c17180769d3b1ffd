"""Mistral (``MistralForCausalLM``): the default declaration.

Its sliding window is a mask the backbone builds and passes to each layer.
"""

from batquant.models import ModelAdapter, register_adapter

MISTRAL = register_adapter(ModelAdapter("MistralForCausalLM"))
