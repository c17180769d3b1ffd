"""MoE layers: Qwen3-MoE's fused experts, per-expert linears, Qwen2-MoE's shared expert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import batquant
import mxref
from batquant.algorithms.experts import QuantizedExperts
from batquant.algorithms.layer import QuantizedLinear
from batquant.algorithms.transforms import GPK
from batquant.models import ADAPTERS, ExpertLayout, ExpertsSite, ModelAdapter, register_adapter
from batquant.models.qwen3_moe import MOE_GROUPS
from batquant.pipeline import sequential
from tests.batquant.conftest import VOCAB, tiny_qwen3_moe, token_ids

FAST = batquant.CalibSpec(epochs=1, batch_size=4)
MOE_LAYERS = (0, 2)  # layer 1 is dense (mlp_only_layers)


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def moe() -> nn.Module:
    return tiny_qwen3_moe()


@pytest.mark.parametrize("method", sorted(batquant.METHODS))
def test_every_method_quantizes_every_expert_tensor(moe, method):
    ids = token_ids(8, 32)
    calib = FAST if batquant.METHODS[method].calibrated else None
    q = batquant.quantize_model(moe, ids, method=method, config="W4A8KV4", calib=calib,
                                progress=False, min_expert_tokens=0)  # fmt: skip
    out = logits(q, ids)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, logits(moe, ids))
    for i in MOE_LAYERS:
        experts = q.model.layers[i].mlp.experts
        assert isinstance(experts, QuantizedExperts)
        # every expert weight is MX along its reduction axis (the last): quantizing it is a no-op
        for weight in (experts.gate_up, experts.down_weight):
            for e in range(experts.num_experts):
                w = weight[e].numpy()
                assert mxref.quantize_dequantize(w, "mxfp4").tobytes() == w.tobytes()
    assert isinstance(q.model.layers[1].mlp.down_proj, QuantizedLinear)  # the dense layer


def test_the_quantized_block_routes_every_token_as_the_full_precision_one(moe):
    ids = token_ids(8, 32)
    q = batquant.quantize_model(moe, ids, method="batquant", config="W4A4KV16", calib=FAST,
                                progress=False, min_expert_tokens=0)  # fmt: skip
    hidden = torch.randn(2, 32, 64, generator=torch.Generator().manual_seed(3))
    for i in MOE_LAYERS:
        chosen = []
        for model in (moe, q):
            block = model.model.layers[i].mlp
            with torch.no_grad():
                block(hidden)
                chosen.append(block.gate(hidden.flatten(0, 1))[2])  # the router's top-k experts
        assert torch.equal(chosen[0], chosen[1])
        assert type(q.model.layers[i].mlp.gate) is type(moe.model.layers[i].mlp.gate)


def test_save_load_and_resume_are_bit_identical(tmp_path, monkeypatch, moe):
    ids = token_ids(8, 32)
    kwargs = dict(method="batquant", config="W4A8KV8", calib=FAST, progress=False,
                  min_expert_tokens=0)  # fmt: skip
    q = batquant.quantize_model(moe, ids, **kwargs)
    reference = logits(q, ids)
    batquant.save_quantized(q, tmp_path / "out")
    assert torch.equal(logits(batquant.load_quantized(tmp_path / "out", moe), ids), reference)

    original = sequential._Runner._train

    def interrupted(self, index, *args, **kw):
        if index == 2:
            raise KeyboardInterrupt  # dies while training the second MoE layer
        return original(self, index, *args, **kw)

    monkeypatch.setattr(sequential._Runner, "_train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        batquant.quantize_model(moe, ids, cache_dir=tmp_path / "run", **kwargs)
    monkeypatch.setattr(sequential._Runner, "_train", original)
    resumed = batquant.quantize_model(moe, ids, cache_dir=tmp_path / "run", **kwargs)
    assert torch.equal(logits(resumed, ids), reference)
    log = [json.loads(line) for line in
           (tmp_path / "run" / "calibration.jsonl").read_text().splitlines()]
    tokens = [r for r in log if "expert_tokens" in r]
    assert [r["layer"] for r in tokens] == [0, 2]  # once per MoE layer, none repeated
    assert all(sum(r["expert_tokens"]) == 8 * 32 * 2 for r in tokens)  # every token, top-2


def test_rarely_routed_experts_keep_their_initial_transform(moe, capsys):
    ids = token_ids(8, 32)
    q = batquant.quantize_model(moe, ids, method="batquant", config="W4A4KV16", calib=FAST,
                                min_expert_tokens=10_000)  # fmt: skip
    summary = q.batquant_info["layers"][0]
    assert len(summary["experts_kept_initial"]) == 8
    assert "experts below min_expert_tokens, kept initial: experts[0]" in capsys.readouterr().err
    start = GPK(64, g1=8, g2=4, init="hadamard")
    experts = q.model.layers[0].mlp.experts
    for e in range(8):
        for p, p0 in zip(experts.down[e].transform.parameters(), start.parameters(), strict=True):
            assert torch.equal(p, p0)
    trained = batquant.quantize_model(moe, ids, method="batquant", config="W4A4KV16",
                                      calib=FAST, progress=False, min_expert_tokens=0)
    moved = trained.model.layers[0].mlp.experts.down[0].transform
    assert not all(torch.equal(p, p0) for p, p0 in zip(moved.parameters(), start.parameters(),
                                                        strict=True))  # fmt: skip


def test_an_expert_layout_the_adapter_does_not_describe_is_refused():
    model = tiny_qwen3_moe()
    model.model.layers[2].mlp.experts.is_transposed = True
    with pytest.raises(ValueError, match=r"layer 2: 'mlp.experts' \(Qwen3MoeExperts\) has "
                                         r"is_transposed=True"):  # fmt: skip
        batquant.quantize_model(model, token_ids(4, 16), method="rtn", progress=False)
    dense = ModelAdapter("DenseOnlyMoe", groups=MOE_GROUPS)
    register_adapter(dense)
    try:
        model = tiny_qwen3_moe()
        model.config.architectures = ["DenseOnlyMoe"]
        with pytest.raises(ValueError, match=r"layer 0: 'mlp.experts' \(Qwen3MoeExperts\) holds "
                                             "3-D expert weights that no ExpertsSite"):  # fmt: skip
            batquant.quantize_model(model, token_ids(4, 16), method="rtn", progress=False)
    finally:
        ADAPTERS.unregister("DenseOnlyMoe")


class _LinearExperts(nn.Module):
    """An MoE block whose experts are nn.Linear MLPs, called one by one (the older layout)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeMLP

        fused = block.experts
        self.gate = block.gate
        self.experts = nn.ModuleList()
        for e in range(fused.num_experts):
            mlp = Qwen3MoeMLP(fused.config, intermediate_size=fused.intermediate_dim)
            gate, up = fused.gate_up_proj.data[e].chunk(2)
            mlp.gate_proj.weight.data.copy_(gate)
            mlp.up_proj.weight.data.copy_(up)
            mlp.down_proj.weight.data.copy_(fused.down_proj.data[e])
            self.experts.append(mlp)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1])
        _, weights, index = self.gate(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(index == e)
            if len(token):
                out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.view_as(hidden)


@contextmanager
def linear_experts_moe(experts: int = 8) -> Iterator[nn.Module]:
    """The tiny Qwen3-MoE with per-expert linears, under an adapter registered meanwhile."""
    model = tiny_qwen3_moe(experts=experts)
    for i in MOE_LAYERS:
        model.model.layers[i].mlp = _LinearExperts(model.model.layers[i].mlp)
    register_adapter(ModelAdapter("LinearExpertsMoe", groups=MOE_GROUPS, experts=(
        ExpertsSite("mlp.experts", layout=ExpertLayout.LINEARS),)))  # fmt: skip
    model.config.architectures = ["LinearExpertsMoe"]
    try:
        yield model
    finally:
        ADAPTERS.unregister("LinearExpertsMoe")


def test_per_expert_linears_share_one_up_transform_and_save_bit_identically(tmp_path):
    ids = token_ids(8, 32)
    reference = logits(tiny_qwen3_moe(), ids)
    with linear_experts_moe() as model:
        assert (logits(model, ids) - reference).abs().max() < 1e-4  # the same model
        q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV16",
                                    calib=FAST, progress=False, min_expert_tokens=0)  # fmt: skip
        layer = q.model.layers[0]
        shared = layer.batquant["experts_up"]
        for expert in layer.mlp.experts:
            assert expert.gate_proj.input_quantizer is shared
            assert expert.up_proj.input_quantizer is shared
        downs = {expert.down_proj.input_quantizer for expert in layer.mlp.experts}
        assert len(downs) == 8  # one P_down per expert
        assert len(q.batquant_info["layers"][0]["expert_tokens"]["experts"]) == 8
        batquant.save_quantized(q, tmp_path / "lin")
        loaded = batquant.load_quantized(tmp_path / "lin", model)
        assert torch.equal(logits(loaded, ids), logits(q, ids))


def test_qwen2_moe_shared_expert_shares_the_experts_up_transform(tmp_path):
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen2MoeConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                            moe_intermediate_size=64, shared_expert_intermediate_size=96,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                            num_experts=4, num_experts_per_tok=2, max_position_embeddings=256)
    config.architectures = ["Qwen2MoeForCausalLM"]
    model = Qwen2MoeForCausalLM(config).eval()
    ids = token_ids(8, 32)
    q = batquant.quantize_model(model, ids, method="flatquant", config="W4A8KV8", calib=FAST,
                                progress=False, min_expert_tokens=0)  # fmt: skip
    mlp = q.model.layers[0].mlp
    assert mlp.experts.up is q.model.layers[0].batquant["shared_up"]
    assert mlp.shared_expert.gate_proj.input_quantizer is mlp.experts.up
    assert type(mlp.shared_expert_gate) is nn.Linear  # the sigmoid gate stays in full precision
    batquant.save_quantized(q, tmp_path / "q2")
    assert torch.equal(logits(batquant.load_quantized(tmp_path / "q2", model), ids),
                       logits(q, ids))  # fmt: skip


def test_experts_train_on_the_full_precision_routing(monkeypatch, moe):
    """While the twin trains, its experts get the FP router's choice, batch by batch."""
    from transformers.models.qwen3_moe import modeling_qwen3_moe

    from batquant.algorithms.experts import CalibratingExperts

    seen: dict[str, list[torch.Tensor]] = {"fp": [], "training": []}
    fp_forward, cal_forward = modeling_qwen3_moe.Qwen3MoeExperts.forward, CalibratingExperts.forward

    def fp(self, hidden, index, weights):
        seen["fp"].append(index.clone())
        return fp_forward(self, hidden, index, weights)

    def calibrating(self, hidden, index, weights):
        seen["training"].append(index.clone())
        return cal_forward(self, hidden, index, weights)

    monkeypatch.setattr(modeling_qwen3_moe.Qwen3MoeExperts, "forward", fp)
    monkeypatch.setattr(CalibratingExperts, "forward", calibrating)
    ids = token_ids(8, 32)
    batquant.quantize_model(moe, ids, method="batquant", config="W4A4KV16", calib=FAST,
                            progress=False, min_expert_tokens=0)  # fmt: skip
    # per MoE layer: the FP pass sees batches 0 and 1, then one epoch trains on them in order
    assert len(seen["fp"]) == len(seen["training"]) == 4
    for fp_index, trained in zip(seen["fp"], seen["training"], strict=True):
        assert torch.equal(fp_index, trained)


def test_the_linear_objective_trains_experts_against_their_full_precision_outputs(moe):
    ids = token_ids(8, 32)
    q = batquant.quantize_model(moe, ids, method="batquant", config="W4A8KV16", calib=FAST,
                                progress=False, min_expert_tokens=0, objective="linear",
                                cache_dir=None)  # fmt: skip
    assert torch.isfinite(logits(q, ids)).all()
    assert all(s["steps"] == 2 for s in q.batquant_info["layers"])


def test_a_shared_up_transform_is_initialised_from_the_routed_experts_weights_too():
    """Qwen2-MoE: SmoothQuant's start for the shared P_up sees every gate/up that uses it."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    from batquant.algorithms.transforms import SmoothScale

    torch.manual_seed(0)
    config = Qwen2MoeConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                            moe_intermediate_size=64, shared_expert_intermediate_size=96,
                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                            num_experts=4, num_experts_per_tok=2, max_position_embeddings=256)
    config.architectures = ["Qwen2MoeForCausalLM"]
    model = Qwen2MoeForCausalLM(config).eval()
    mlp = model.model.layers[0].mlp
    with torch.no_grad():
        mlp.experts.gate_up_proj[:, :, 5] *= 100  # a channel that only the routed experts weigh
    ids = token_ids(4, 32)
    seen = []
    handle = mlp.register_forward_pre_hook(lambda m, a: seen.append(a[0].flatten(0, 1)))
    with torch.no_grad():
        model(ids)
    handle.remove()
    q = batquant.quantize_model(model, ids, method="smoothquant", config="W4A8KV16",
                                progress=False, min_expert_tokens=0)  # fmt: skip
    weights = torch.cat([mlp.shared_expert.gate_proj.weight, mlp.shared_expert.up_proj.weight,
                         mlp.experts.gate_up_proj.flatten(0, 1)])  # fmt: skip
    expected = SmoothScale(64, alpha=0.5).init_from_stats(torch.cat(seen).abs().amax(0),
                                                          weights.detach().abs().amax(0))
    got = q.model.layers[0].batquant["shared_up"].transform
    for a, b in zip(got.state_dict().values(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_linear_objective_skips_experts_a_batch_never_reaches():
    with linear_experts_moe(experts=16) as model:
        ids = token_ids(4, 3)  # 3 tokens x top-2 per batch of one: most experts get none
        q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV16",
                                    calib=batquant.CalibSpec(epochs=1, batch_size=1),
                                    objective="linear", progress=False, min_expert_tokens=0)
        assert torch.isfinite(logits(q, ids)).all()


def test_a_bf16_moe_model_calibrates_in_float32_and_reloads_bit_identically(tmp_path):
    model = tiny_qwen3_moe().to(torch.bfloat16)
    model.config._attn_implementation = "eager"
    ids = token_ids(4, 16)
    q = batquant.quantize_model(model, ids, method="batquant", config="W4A8KV8", calib=FAST,
                                progress=False, min_expert_tokens=0)  # fmt: skip
    experts = q.model.layers[0].mlp.experts
    assert experts.gate_up.dtype == torch.bfloat16  # back in the model's dtype
    out = logits(q, ids)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    batquant.save_quantized(q, tmp_path / "bf16")
    assert torch.equal(logits(batquant.load_quantized(tmp_path / "bf16", model), ids), out)
