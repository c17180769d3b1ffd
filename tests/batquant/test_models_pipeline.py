"""Whole-model quantization: adapters, placement, KV cache, sequential calibration, resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import batquant
import mxref
from batquant import CalibSpec, QuantConfig, TensorQuant
from batquant.algorithms.heads import HeadTransforms
from batquant.algorithms.layer import QuantizedLinear, set_quantization
from batquant.algorithms.transforms import SmoothScale
from batquant.models import ADAPTERS, ModelAdapter, get_adapter, register_adapter
from batquant.pipeline import sequential
from batquant.pipeline.attention import install
from batquant.pipeline.build import KEY_HEADS, VALUE_HEADS, LayerPlan, build_layer, freeze_layer
from tests.batquant.conftest import VOCAB, tiny_llama, tiny_qwen3, token_ids

FAST = CalibSpec(epochs=1, batch_size=4)
ALL = TensorQuant("mxfp4")
#: every role quantized, so every transform (P_qkv, P_o, P_up, P_down, P_k, P_v) exists
EVERYTHING = QuantConfig(ALL, ALL, ALL, ALL, name="everything")


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def transformed_without_quantization(model: nn.Module, method: str, noise: float) -> nn.Module:
    """Every layer with the method's transforms (perturbed off their init), quantizers off."""
    work = install_copy(model)
    adapter = get_adapter(work)
    plan = LayerPlan(adapter, adapter.geometry(work.config), batquant.get_method(method),
                     EVERYTHING, CalibSpec(), seed=3)  # fmt: skip
    layers = adapter.decoder_layers(work)
    gen = torch.Generator().manual_seed(7)
    for i, layer in enumerate(layers):
        q = build_layer(layer, plan, i)
        with torch.no_grad():
            for p in q.batquant.parameters():
                p.add_(noise * torch.randn(p.shape, generator=gen))  # a general affine map
        set_quantization(q, False)
        layers[i] = freeze_layer(q, "test")
        set_quantization(layers[i], False)
    return work


def install_copy(model: nn.Module) -> nn.Module:
    import copy

    work = copy.deepcopy(model)
    install(work)
    return work


# -- placement and invariance ----------------------------------------------------------------


@pytest.mark.parametrize("make", [tiny_qwen3, tiny_llama], ids=["qwen3", "llama"])
@pytest.mark.parametrize("method", ["batquant", "flatquant", "quarot", "brq", "batquant-full"])
def test_transforms_without_quantization_keep_the_logits(make, method):
    model = make()
    ids = token_ids(2, 24)
    work = transformed_without_quantization(model, method, noise=0.05)
    layer = get_adapter(work).decoder_layers(work)[0]
    assert KEY_HEADS in layer.batquant  # P_k and P_v are really there ...
    assert isinstance(layer.batquant[KEY_HEADS], HeadTransforms)
    ref = logits(model, ids)
    assert relative(logits(work, ids), ref) <= 1e-4  # ... and change nothing without quantization


def test_value_transform_is_fused_into_v_and_o_per_kv_head():
    """GQA: o_proj's columns of query heads 2j and 2j+1 share KV head j's P_v^-T."""
    model = tiny_qwen3(layers=1)
    adapter = get_adapter(model)
    plan = LayerPlan(adapter, adapter.geometry(model.config), batquant.get_method("batquant"),
                     EVERYTHING, CalibSpec(), seed=0)  # fmt: skip
    layer = adapter.decoder_layers(model)[0]
    q = build_layer(layer, plan, 0)
    heads = q.batquant[VALUE_HEADS]
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(0.1 * torch.randn_like(p))
        v = layer.self_attn.v_proj.weight
        o = layer.self_attn.o_proj.weight
        fused_v, _ = heads.fuse_rows(v, None)
        fused_o = heads.fuse_columns(o)
        for j in range(4):  # query heads
            g = j // 2
            t = heads.transforms[g]
            p = t.materialize()
            assert torch.allclose(fused_o[:, j * 32:(j + 1) * 32], o[:, j * 32:(j + 1) * 32]
                                  @ torch.linalg.inv(p).T, atol=1e-5)  # fmt: skip
            assert torch.allclose(fused_v[g * 32:(g + 1) * 32], p.T @ v[g * 32:(g + 1) * 32],
                                  atol=1e-5)  # fmt: skip


def test_qwen3_o_proj_width_comes_from_the_heads(qwen3, calib_ids):
    assert qwen3.config.num_attention_heads * qwen3.config.head_dim != qwen3.config.hidden_size
    q = batquant.quantize_model(qwen3, calib_ids, method="rtn", progress=False)
    o = q.model.layers[0].self_attn.o_proj
    assert isinstance(o, QuantizedLinear)
    assert o.in_features == 128
    assert o.out_features == 64


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [tiny_qwen3, tiny_llama], ids=["qwen3", "llama"])
def test_smoke_two_layers_end_to_end(make):
    model = make()
    ids = token_ids(8, 32)
    ref = logits(model, ids)
    q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV8", calib=FAST,
                                progress=False)  # fmt: skip
    out = logits(q, ids)
    assert torch.equal(logits(model, ids), ref)  # the original is left as it was
    assert 0 < relative(out, ref) < 0.5
    layers = get_adapter(q).decoder_layers(q)
    assert all(isinstance(m, QuantizedLinear) for layer in layers
               for m in (layer.self_attn.q_proj, layer.mlp.down_proj))  # fmt: skip
    generated = q.generate(ids[:1, :6], max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 10)
    info = q.batquant_info
    assert info["method"] == "batquant"
    assert info["config"]["name"] == "W4A8KV8"
    assert [s["layer"] for s in info["layers"]] == [0, 1]
    assert all(s["steps"] == 2 for s in info["layers"])  # 8 samples / batch 4 x 1 epoch


@pytest.mark.parametrize("method", sorted(batquant.METHODS))
def test_every_method_runs_through_quantize_model(method):
    model = tiny_qwen3(layers=1)
    ids = token_ids(4, 16)
    calib = FAST if batquant.METHODS[method].calibrated else None
    q = batquant.quantize_model(model, ids, method=method, config="W4A8KV4", calib=calib,
                                progress=False)  # fmt: skip
    out = logits(q, ids)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, logits(model, ids))


def test_calibration_lowers_the_layer_loss(qwen3):
    ids = token_ids(8, 32)
    q = batquant.quantize_model(qwen3, ids, method="batquant", config="W4A4KV16",
                                calib=CalibSpec(epochs=4, batch_size=2, lr=5e-3),
                                progress=False)  # fmt: skip
    for s in q.batquant_info["layers"]:
        assert s["last_loss"] < s["first_loss"]


def test_every_layer_is_measured_against_round_to_nearest(qwen3):
    ids = token_ids(8, 32)
    q = batquant.quantize_model(qwen3, ids, method="quarot", config="W4A4KV16", progress=False)
    rtn = batquant.quantize_model(qwen3, ids, method="rtn", config="W4A4KV16", progress=False)
    for mine, base in zip(q.batquant_info["layers"], rtn.batquant_info["layers"], strict=True):
        assert base["baseline_relative_mse"] is None  # rtn is the baseline itself
        # layer 0 sees the same inputs in both runs: the baseline is rtn's own figure
        if mine["layer"] == 0:
            assert mine["baseline_relative_mse"] == base["relative_mse"]
        assert mine["worse_than_baseline"] == (mine["relative_mse"] > mine["baseline_relative_mse"])


def test_a_method_worse_than_round_to_nearest_says_so(qwen3):
    def scrambled(ctx: batquant.algorithms.methods.TransformContext) -> SmoothScale:
        # per-channel scales over 2^-6 .. 2^6: blocks whose elements differ wildly in size
        smooth = SmoothScale(ctx.size, alpha=1.0)
        gen = torch.Generator().manual_seed(ctx.seed)
        smooth.init_from_stats(torch.exp2(torch.randint(-6, 7, (ctx.size,), generator=gen)
                                          .float()), torch.ones(ctx.size))  # fmt: skip
        return smooth

    method = batquant.algorithms.methods.Method("test-scrambled", "worse than rtn", scrambled,
                                                None, calibrated=False)  # fmt: skip
    batquant.algorithms.methods.register(method)
    try:
        with pytest.warns(sequential.WorseThanBaselineWarning,
                          match=r"test-scrambled W4A4KV16: layers \[0, 1\] end with a larger "
                                "output error than rtn's"):  # fmt: skip
            q = batquant.quantize_model(qwen3, token_ids(8, 32), method=method,
                                        config="W4A4KV16", progress=False)  # fmt: skip
    finally:
        batquant.METHODS.unregister("test-scrambled")
    for s in q.batquant_info["layers"]:
        assert s["worse_than_baseline"]
        assert s["relative_mse"] > s["baseline_relative_mse"]


def test_same_seed_same_bits_other_seed_other_bits(qwen3, calib_ids):
    def run(seed):
        q = batquant.quantize_model(qwen3, calib_ids, method="flatquant", calib=FAST, seed=seed,
                                    progress=False)  # fmt: skip
        return logits(q, calib_ids)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_objective_and_propagation_options_change_the_result(qwen3, calib_ids):
    def run(**kw):
        q = batquant.quantize_model(qwen3, calib_ids, method="batquant", config="W4A8KV8",
                                    calib=FAST, progress=False, **kw)  # fmt: skip
        return logits(q, calib_ids)

    base = run()
    linear = run(objective="linear")
    quantized = run(propagate="quantized")
    assert not torch.equal(base, linear)
    assert not torch.equal(base, quantized)
    assert torch.isfinite(linear).all()


def test_inplace_quantizes_the_given_model(qwen3, calib_ids):
    q = batquant.quantize_model(qwen3, calib_ids, method="rtn", progress=False, inplace=True)
    assert q is qwen3
    assert isinstance(qwen3.model.layers[0].mlp.up_proj, QuantizedLinear)


# -- KV cache --------------------------------------------------------------------------------


class _Spy:
    """Records the keys and values that reach the base attention function."""

    def __init__(self, monkeypatch):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        original = ALL_ATTENTION_FUNCTIONS["sdpa"]

        def spy(module, q, k, v, mask, **kw):
            self.seen.append((k.detach().clone(), v.detach().clone()))
            return original(module, q, k, v, mask, **kw)

        monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", spy)


def _mx_representable(t: torch.Tensor, fmt: str) -> bool:
    return torch.equal(torch.as_tensor(mxref.quantize_dequantize(t.numpy(), fmt)), t)


def test_kv_quantization_is_applied_and_changes_the_output(monkeypatch, calib_ids):
    model = tiny_qwen3(layers=1)
    kv16 = batquant.quantize_model(model, calib_ids, method="rtn", config="W4A8KV16",
                                   progress=False)  # fmt: skip
    kv4 = batquant.quantize_model(model, calib_ids, method="rtn", config="W4A8KV4",
                                  progress=False)  # fmt: skip
    ids = calib_ids[:1]
    assert not torch.equal(logits(kv16, ids), logits(kv4, ids))
    spy = _Spy(monkeypatch)
    logits(kv4, ids)
    k, v = spy.seen[-1]
    assert _mx_representable(k, "mxfp4")  # blocks along head_dim
    assert _mx_representable(v, "mxfp4")
    spy.seen.clear()
    logits(kv16, ids)
    k16, v16 = spy.seen[-1]
    assert not _mx_representable(k16, "mxfp4")


def test_a_config_without_kv_leaves_keys_and_values_untouched(monkeypatch, calib_ids):
    """Without K/V quantization, attention gets exactly what the quantized projections give."""
    model = tiny_qwen3(layers=1)
    q = batquant.quantize_model(model, calib_ids, method="batquant", config="W4A4KV16",
                                calib=FAST, progress=False)  # fmt: skip
    layer = q.model.layers[0]
    assert getattr(layer.self_attn, "batquant_kv", None) is None
    assert KEY_HEADS not in layer.batquant
    spy = _Spy(monkeypatch)
    seen = {}
    layer.self_attn.v_proj.register_forward_hook(lambda m, a, out: seen.update(v=out))
    logits(q, calib_ids[:1])
    _, v = spy.seen[-1]
    expected = seen["v"].view(1, 32, 2, 32).transpose(1, 2)
    assert torch.equal(v, expected)


def test_kv_settings_change_the_output_for_every_kv_config(calib_ids):
    model = tiny_qwen3(layers=1)
    outs = {}
    for name in ("W4A8KV16", "W4A8KV8", "W4A8KV4"):
        q = batquant.quantize_model(model, calib_ids, method="quarot", config=name,
                                    progress=False)  # fmt: skip
        outs[name] = logits(q, calib_ids[:2])
    assert not torch.equal(outs["W4A8KV16"], outs["W4A8KV8"])
    assert not torch.equal(outs["W4A8KV8"], outs["W4A8KV4"])


# -- save / load -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "config"), [("batquant", "W4A8KV4"), ("flatquant", "W4A4KV16"),
                                                ("quarot", "W4A8KV8")])  # fmt: skip
def test_save_and_load_are_bit_identical(tmp_path, qwen3, calib_ids, method, config):
    calib = FAST if batquant.METHODS[method].calibrated else None
    q = batquant.quantize_model(qwen3, calib_ids, method=method, config=config, calib=calib,
                                progress=False)  # fmt: skip
    batquant.save_quantized(q, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "batquant.json", "quantized.safetensors"]  # fmt: skip
    loaded = batquant.load_quantized(tmp_path / "out", qwen3)
    assert torch.equal(logits(loaded, calib_ids), logits(q, calib_ids))
    assert torch.equal(logits(qwen3, calib_ids), logits(tiny_qwen3(), calib_ids))


def test_save_refuses_to_overwrite_and_load_names_bad_files(tmp_path, qwen3, calib_ids):
    q = batquant.quantize_model(qwen3, calib_ids, method="rtn", progress=False)
    out = tmp_path / "out"
    batquant.save_quantized(q, out)
    with pytest.raises(ValueError, match="not empty; pass force=True"):
        batquant.save_quantized(q, out)
    with pytest.raises(ValueError, match="not quantized by batquant"):
        batquant.save_quantized(qwen3, tmp_path / "other")
    with pytest.raises(ValueError, match=r"saved for 'Qwen3ForCausalLM', but the model is"):
        batquant.load_quantized(out, tiny_llama())
    info = json.loads((out / "batquant.json").read_text())
    (out / "batquant.json").write_text(json.dumps({**info, "format": "other"}))
    with pytest.raises(ValueError, match="format 'other'"):
        batquant.load_quantized(out, qwen3)
    (out / "batquant.json").write_text(json.dumps(info))
    (out / "quantized.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="quantized.safetensors: unreadable"):
        batquant.load_quantized(out, qwen3)
    with pytest.raises(ValueError, match="not found"):
        batquant.load_quantized(tmp_path / "missing", qwen3)


def test_gpk_parameters_are_contiguous_so_safetensors_can_save_them():
    from batquant.algorithms.transforms import GPK

    t = GPK(64, init="hadamard")
    assert all(p.is_contiguous() for p in t.parameters())


# -- resume ----------------------------------------------------------------------------------


def test_resume_after_an_interruption_is_bit_identical(tmp_path, monkeypatch, qwen3):
    ids = token_ids(8, 32)
    kwargs = dict(method="batquant", config="W4A8KV4", calib=FAST, progress=False)
    reference = logits(batquant.quantize_model(qwen3, ids, **kwargs), ids)

    original = sequential._Runner._layer
    calls = []

    def interrupted(self, index, *args, **kw):
        calls.append(index)
        if index == 1:
            raise KeyboardInterrupt  # the run dies in the middle of layer 1
        return original(self, index, *args, **kw)

    monkeypatch.setattr(sequential._Runner, "_layer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        batquant.quantize_model(qwen3, ids, cache_dir=tmp_path / "run", **kwargs)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["done"] == 1
    monkeypatch.setattr(sequential._Runner, "_layer", original)
    calls.clear()
    resumed = batquant.quantize_model(qwen3, ids, cache_dir=tmp_path / "run", **kwargs)
    assert resumed.batquant_info["layers"][0] == {"layer": 0, "resumed": True}
    assert torch.equal(logits(resumed, ids), reference)
    log = (tmp_path / "run" / "calibration.jsonl").read_text().splitlines()
    record = json.loads(log[-1])
    assert set(record) == {"layer", "group", "epoch", "step", "loss", "seconds"}
    assert record["layer"] == 1


def _stop(function, at):
    """``function``, raising KeyboardInterrupt at its ``at``-th call (counting from 1)."""
    calls = []

    def stopping(*args, **kw):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return function(*args, **kw)

    return stopping


@pytest.mark.parametrize("point", ["capture", "first layer's targets", "first layer's training"])
def test_resume_works_from_any_interruption(tmp_path, monkeypatch, qwen3, point):
    from batquant.pipeline import capture

    ids = token_ids(8, 32)
    kwargs = dict(method="batquant", config="W4A8KV4", calib=FAST, progress=False)
    reference = logits(batquant.quantize_model(qwen3, ids, **kwargs), ids)
    owner, name, at = {
        "capture": (capture._Recorder, "forward", 5),  # sample 2 of 8, after 0 and 1 were stored
        "first layer's targets": (sequential, "run_layer", 2),  # after batch 0's targets
        "first layer's training": (sequential, "forget", 1),  # after the first optimiser step
    }[point]
    monkeypatch.setattr(owner, name, _stop(getattr(owner, name), at))
    with pytest.raises(KeyboardInterrupt):
        batquant.quantize_model(qwen3, ids, cache_dir=tmp_path / "run", **kwargs)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["done"] == 0
    with (tmp_path / "run" / "calibration.jsonl").open("a") as log:
        log.write('{"layer": 0, "gro')  # a record torn by the interruption
    monkeypatch.undo()
    resumed = batquant.quantize_model(qwen3, ids, cache_dir=tmp_path / "run", **kwargs)
    assert torch.equal(logits(resumed, ids), reference)
    steps = [json.loads(line) for line in
             (tmp_path / "run" / "calibration.jsonl").read_text().splitlines()]
    keys = [(r["layer"], r["step"]) for r in steps]
    assert len(keys) == len(set(keys)) == 4  # 2 layers x 2 steps, each logged once


def test_a_cache_dir_of_another_run_is_an_error(tmp_path, qwen3, calib_ids):
    batquant.quantize_model(qwen3, calib_ids, method="rtn", cache_dir=tmp_path / "run",
                            progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="holds another calibration run"):
        batquant.quantize_model(qwen3, calib_ids, method="brq", cache_dir=tmp_path / "run",
                                progress=False)  # fmt: skip


def test_disk_cache_gives_the_same_bits_as_memory(tmp_path, qwen3, calib_ids):
    kwargs = dict(method="batquant", calib=FAST, progress=False)
    a = batquant.quantize_model(qwen3, calib_ids, **kwargs)
    b = batquant.quantize_model(qwen3, calib_ids, cache_dir=tmp_path / "c", **kwargs)
    assert torch.equal(logits(a, calib_ids), logits(b, calib_ids))
    assert not any((tmp_path / "c").glob("inputs_*/*.safetensors"))  # caches are cleaned up


# -- errors ----------------------------------------------------------------------------------


def test_bad_arguments_name_what_is_wrong(qwen3, calib_ids):
    qm = batquant.quantize_model
    with pytest.raises(ValueError, match="method must be one of"):
        qm(qwen3, calib_ids, method="nope", progress=False)
    with pytest.raises(ValueError, match="config must be"):
        qm(qwen3, calib_ids, config="W2A2", progress=False)
    with pytest.raises(ValueError, match="calib: method 'rtn' is training-free"):
        qm(qwen3, calib_ids, method="rtn", calib=FAST, progress=False)
    with pytest.raises(ValueError, match="CalibSpec.samples is 3 but calib_ids has 8 rows"):
        qm(qwen3, calib_ids, calib=CalibSpec(samples=3), progress=False)
    with pytest.raises(TypeError, match="calib_ids must hold integer token ids"):
        qm(qwen3, calib_ids.float(), progress=False)
    with pytest.raises(ValueError, match=r"calib_ids must be \[samples, seq_len\]"):
        qm(qwen3, calib_ids[0], progress=False)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        qm(qwen3, calib_ids + VOCAB, progress=False)
    with pytest.raises(ValueError, match="objective must be one of"):
        qm(qwen3, calib_ids, objective="tokens", progress=False)
    with pytest.raises(ValueError, match="propagate must be one of"):
        qm(qwen3, calib_ids, propagate="both", progress=False)
    with pytest.raises(ValueError, match="min_expert_tokens: Qwen3ForCausalLM has no MoE experts"):
        qm(qwen3, calib_ids, min_expert_tokens=8, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            qm(qwen3, calib_ids, device="cuda", progress=False)


def test_dimensions_that_blocks_do_not_divide_are_an_error(calib_ids):
    model = tiny_qwen3(hidden=48)
    with pytest.raises(ValueError, match="in_features 48, not a multiple of QuantConfig.weight"):
        batquant.quantize_model(model, calib_ids, method="rtn", progress=False)


def test_architecture_without_adapter_lists_the_supported_ones(calib_ids):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=1, n_head=2, vocab_size=VOCAB))
    with pytest.raises(ValueError, match=r"no adapter for architecture 'GPT2LMHeadModel'; "
                                         r"supported: .*'LlamaForCausalLM'.*'Qwen3ForCausalLM'"):
        batquant.quantize_model(model, calib_ids, method="rtn", progress=False)


def test_nan_during_calibration_names_the_layer_and_batch(qwen3, calib_ids):
    with torch.no_grad():
        qwen3.model.layers[0].mlp.down_proj.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"layer 0: the loss of batch 0 \(epoch 0\) is nan"):
        batquant.quantize_model(qwen3, calib_ids, method="batquant", calib=FAST, progress=False)
    with pytest.raises(ValueError, match=r"layer 1: the inputs of batch 0 contain NaN"):
        batquant.quantize_model(qwen3, calib_ids, method="rtn", progress=False)


def test_an_adapter_linear_left_out_of_every_group_is_an_error(calib_ids):
    qwen = ADAPTERS["Qwen3ForCausalLM"]
    partial = ModelAdapter(
        "PartialQwen3", qwen.backbone, qwen.layers, qwen.groups[:3], qwen.attention,
        qwen.v_proj, qwen.o_proj,
    )  # fmt: skip
    register_adapter(partial)
    try:
        model = tiny_qwen3()
        model.config.architectures = ["PartialQwen3"]
        with pytest.raises(ValueError, match=r"mlp.down_proj are in no group"):
            batquant.quantize_model(model, calib_ids, method="rtn", progress=False)
    finally:
        ADAPTERS.unregister("PartialQwen3")


# -- a family added as one adapter -----------------------------------------------------------


def test_a_new_family_needs_only_its_adapter(calib_ids):
    """OLMo 2, registered the way a new file in batquant/models/ would do it: one line."""
    from transformers import Olmo2Config, Olmo2ForCausalLM

    assert "Olmo2ForCausalLM" not in ADAPTERS
    register_adapter(ModelAdapter("Olmo2ForCausalLM"))
    try:
        torch.manual_seed(0)
        config = Olmo2Config(vocab_size=VOCAB, hidden_size=128, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=256)  # fmt: skip
        model = Olmo2ForCausalLM(config).eval()
        q = batquant.quantize_model(model, calib_ids, method="batquant", config="W4A8KV4",
                                    calib=FAST, progress=False)  # fmt: skip
        assert torch.isfinite(logits(q, calib_ids)).all()
    finally:
        ADAPTERS.unregister("Olmo2ForCausalLM")


def test_bf16_and_eager_models_calibrate_in_float32_and_reload_bit_identically(tmp_path):
    model = tiny_qwen3(layers=1).to(torch.bfloat16)
    model.config._attn_implementation = "eager"
    ids = token_ids(4, 16)
    q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV8", calib=FAST,
                                progress=False)  # fmt: skip
    layer = q.model.layers[0]
    assert layer.self_attn.q_proj.weight.dtype == torch.bfloat16  # back in the model's dtype
    assert q.config._attn_implementation == "batquant_eager"
    out = logits(q, ids)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    batquant.save_quantized(q, tmp_path / "bf16")
    assert torch.equal(logits(batquant.load_quantized(tmp_path / "bf16", model), ids), out)
