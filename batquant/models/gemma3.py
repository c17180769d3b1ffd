"""Gemma 3 text (``Gemma3ForCausalLM``) and the text model of ``Gemma3ForConditionalGeneration``.

The decoder layer is Llama-shaped (q/k/v with q_norm/k_norm, o, gate/up,
down) with four norms; its ``layer_types`` mix sliding-window layers (local
RoPE, a windowed mask) with global ones (their own RoPE and a causal mask),
and the backbone passes each layer the arguments of its type.  The
multimodal model keeps the text backbone in ``model.language_model`` and its
config in ``text_config``; the vision tower and projector are not quantized.
"""

from batquant.models import ModelAdapter, register_adapter

GEMMA3 = register_adapter(ModelAdapter("Gemma3ForCausalLM"))
GEMMA3_MULTIMODAL = register_adapter(ModelAdapter(
    "Gemma3ForConditionalGeneration",
    backbone="model.language_model",
    layers="model.language_model.layers",
    text_config="text_config",
))  # fmt: skip
