"""Families beyond Llama/Qwen3: each layer with its own attention arguments, Gemma 3, adapters."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

import batquant
from batquant.algorithms.layer import QuantizedLinear
from batquant.models import ADAPTERS, LLAMA_GROUPS, ExpertsSite, ModelAdapter, get_adapter
from batquant.pipeline import sequential
from batquant.pipeline.cache import ActivationCache
from batquant.pipeline.capture import capture_layer_inputs
from batquant.pipeline.sequential import run_layer
from tests.batquant.conftest import VOCAB, tiny_gemma3, token_ids

FAST = batquant.CalibSpec(epochs=1, batch_size=4)
ALTERNATING = {"layer_types": ["sliding_attention", "full_attention"] * 2, "sliding_window": 8}
QWEN_WINDOWS = {"use_sliding_window": True, "max_window_layers": 2, "sliding_window": 8}

#: transformers 5 families whose layers mix sliding-window and global attention, with a
#: window (8) shorter than the calibration windows (32 tokens)
MIXED = {
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", ALTERNATING),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", ALTERNATING),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", QWEN_WINDOWS),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", QWEN_WINDOWS),
    "cohere2": ("Cohere2Config", "Cohere2ForCausalLM", ALTERNATING),
    "ministral": ("MinistralConfig", "MinistralForCausalLM", ALTERNATING),
    "olmo3": ("Olmo3Config", "Olmo3ForCausalLM", ALTERNATING),
    "exaone4": ("Exaone4Config", "Exaone4ForCausalLM", ALTERNATING),
    "gpt_oss": ("GptOssConfig", "GptOssForCausalLM",
                {**ALTERNATING, "num_local_experts": 4, "num_experts_per_tok": 2}),
}  # fmt: skip


def mixed_model(family: str) -> nn.Module:
    config_name, model_name, extra = MIXED[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, **extra,
    )  # fmt: skip
    return getattr(transformers, model_name)(config).eval()


def own_layer_outputs(model: nn.Module, adapter: ModelAdapter, ids: torch.Tensor
                      ) -> list[torch.Tensor]:  # fmt: skip
    """Each decoder layer's output in the model's own forward."""
    outs: list[torch.Tensor] = []
    layers = adapter.decoder_layers(model)
    hooks = [layer.register_forward_hook(
        lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o)) for layer in layers]
    try:
        with torch.no_grad():
            model.get_submodule(adapter.backbone)(input_ids=ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return outs


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("family", sorted(MIXED))
def test_every_layer_runs_with_the_arguments_the_model_gives_it(family):
    model = mixed_model(family)
    adapter = ModelAdapter(type(model).__name__)  # the default declaration's paths
    ids = token_ids(2, 32)
    cache = ActivationCache()
    arguments = capture_layer_inputs(model, adapter, ids, cache)
    assert len(arguments) == 4
    assert len(arguments.distinct) == 2  # one set per attention type, stored once
    own = own_layer_outputs(model, adapter, ids)
    other = next(i for i in range(4) if arguments.of_layer[i] != arguments.of_layer[0])
    x = cache.batch([0, 1], torch.device("cpu"))
    with torch.no_grad():
        for i, layer in enumerate(adapter.decoder_layers(model)):
            y = run_layer(layer, x, arguments[i])
            assert torch.equal(y, own[i]), f"layer {i}"
            if i == other:  # the first layer of the other type: layer 0's arguments are wrong
                assert relative(run_layer(layer, x, arguments[0]), own[i]) > 1e-2
            x = y


@pytest.mark.parametrize("family", sorted(f for f in MIXED if MIXED[f][1] in ADAPTERS))
def test_registered_mixed_families_calibrate_and_reload_bit_identically(tmp_path, family):
    model = mixed_model(family)
    model.config.architectures = [MIXED[family][1]]
    ids = token_ids(4, 32)
    q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV4", calib=FAST,
                                progress=False)  # fmt: skip
    layers = get_adapter(q).decoder_layers(q)
    assert all(isinstance(layer.mlp.down_proj, QuantizedLinear) for layer in layers)
    with torch.no_grad():
        out = q(ids).logits
    assert torch.isfinite(out).all()
    batquant.save_quantized(q, tmp_path / family)
    with torch.no_grad():
        assert torch.equal(batquant.load_quantized(tmp_path / family, model)(ids).logits, out)


def test_an_unregistered_family_with_other_experts_is_refused_by_name():
    model = mixed_model("gpt_oss")  # transposed, interleaved experts with biases: no adapter
    with pytest.raises(ValueError, match="no adapter for architecture 'GptOssForCausalLM'"):
        batquant.quantize_model(model, token_ids(2, 16), method="rtn", progress=False)
    register = ModelAdapter("GptOssForCausalLM", groups=LLAMA_GROUPS[:2], experts=(
        ExpertsSite("mlp.experts"),), full_precision=("mlp.router",))  # fmt: skip
    ADAPTERS.register(register)
    try:
        with pytest.raises(ValueError, match=r"layer 0: 'mlp.experts' \(GptOssExperts\) has "
                                             r"(is_transposed=True|has_bias=True)"):  # fmt: skip
            batquant.quantize_model(model, token_ids(2, 16), method="rtn", progress=False)
    finally:
        ADAPTERS.unregister("GptOssForCausalLM")


def test_the_pipeline_calibrates_each_layer_against_the_models_own_outputs(monkeypatch):
    """The runner's full-precision pass reproduces the model's hidden states at every layer."""
    model = tiny_gemma3()
    ids = token_ids(4, 32)
    own = own_layer_outputs(model, get_adapter(model), ids)
    seen = {}
    original = sequential._Runner._full_precision_pass

    def spy(self, index, layer, sites, inputs, targets, *args, **kw):
        stats = original(self, index, layer, sites, inputs, targets, *args, **kw)
        seen[index] = targets.batch(list(range(len(ids))), torch.device("cpu"))
        return stats

    monkeypatch.setattr(sequential._Runner, "_full_precision_pass", spy)
    batquant.quantize_model(model, ids, method="rtn", progress=False)
    assert sorted(seen) == [0, 1, 2, 3]
    for i in range(4):
        assert torch.equal(seen[i], own[i]), f"layer {i}"


def test_gemma3_end_to_end_and_reload_bit_identical(tmp_path):
    model = tiny_gemma3()
    ids = token_ids(8, 32)
    q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV4", calib=FAST,
                                progress=False)  # fmt: skip
    layer = q.model.layers[1]
    assert isinstance(layer.self_attn.q_proj, QuantizedLinear)
    with torch.no_grad():
        out = q(ids).logits
        assert 0 < relative(out, model(ids).logits) < 1
    batquant.save_quantized(q, tmp_path / "g3")
    with torch.no_grad():
        assert torch.equal(batquant.load_quantized(tmp_path / "g3", model)(ids).logits, out)


def test_a_multimodal_model_quantizes_its_text_backbone(tmp_path):
    """Gemma3ForConditionalGeneration: the text backbone and config are named by the adapter."""
    torch.manual_seed(0)
    text = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=8,
                layer_types=["sliding_attention", "full_attention"], max_position_embeddings=64)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=28, patch_size=14)
    config = transformers.Gemma3Config(text_config=text, vision_config=vision,
                                       mm_tokens_per_image=4, image_token_index=299,
                                       boi_token_index=297, eoi_token_index=298)  # fmt: skip
    config.architectures = ["Gemma3ForConditionalGeneration"]
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    ids = torch.randint(0, 290, (4, 32), generator=torch.Generator().manual_seed(1))
    q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV4", calib=FAST,
                                progress=False)  # fmt: skip
    batquant.save_quantized(q, tmp_path / "mm")
    with torch.no_grad():
        reloaded = batquant.load_quantized(tmp_path / "mm", model)(ids).logits
        assert torch.equal(reloaded, q(ids).logits)
    layers = q.model.language_model.layers
    assert all(isinstance(layer.mlp.down_proj, QuantizedLinear) for layer in layers)
    vision = list(q.model.vision_tower.modules())  # the vision tower is left as it is
    assert any(isinstance(m, nn.Linear) for m in vision)
    assert not any(isinstance(m, QuantizedLinear) for m in vision)
    with pytest.raises(ValueError, match="calib_ids' seq_len 65 is longer than the model's "
                                         "max_position_embeddings 64"):  # fmt: skip
        batquant.quantize_model(model, torch.zeros(2, 65, dtype=torch.long), method="rtn",
                                progress=False)  # fmt: skip


def test_the_llama_shaped_families_are_one_declaration_each():
    for name in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                 "MistralForCausalLM", "Gemma3ForCausalLM"):  # fmt: skip
        assert ADAPTERS[name] == ModelAdapter(name)
        assert ADAPTERS[name].groups is LLAMA_GROUPS


def test_adapter_declarations_are_checked():
    from batquant.models import LinearGroup

    with pytest.raises(ValueError, match="site name 'q.k' must be letters"):
        ModelAdapter("X", groups=(LinearGroup("q.k", ("a",)),))
    with pytest.raises(ValueError, match="site names repeat"):
        ModelAdapter("X", groups=(*LLAMA_GROUPS, LinearGroup("qkv", ("a",))))
    with pytest.raises(ValueError, match="shares its input with no group 'nope'"):
        ModelAdapter("X", experts=(ExpertsSite("mlp.experts", input_group="nope"),))
    with pytest.raises(ValueError, match="ExpertsSite.layout must be one of"):
        ExpertsSite("mlp.experts", layout="stacked")
