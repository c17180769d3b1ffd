"""MX-GPTQ: valid MX under static scales, never worse than RTN, on random layers and tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mxref
from batquant import quantize_linear, quantize_model
from batquant.algorithms.gptq import gptq_quantize
from batquant.algorithms.layer import QuantizedLinear
from batquant.algorithms.rounding import static_scales
from batquant.config import CalibSpec, GPTQSpec, QuantConfig, TensorQuant, get_weight_quantizer
from batquant.pipeline.saving import load_quantized, save_quantized
from tests.batquant.conftest import tiny_qwen3, tiny_qwen3_moe, token_ids


def correlated_inputs(tokens: int, n: int, seed: int) -> torch.Tensor:
    """Inputs with correlated channels and a few large ones, as a real layer's are."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, n, generator=gen) / n**0.5 + torch.eye(n)
    x = torch.randn(tokens, n, generator=gen) @ mix
    x[:, :: n // 4] *= 8.0
    return x


def output_error(weight: torch.Tensor, rounded: torch.Tensor, x: torch.Tensor) -> float:
    return float(((x.double() @ (weight - rounded).double().T) ** 2).sum())


def assert_valid_mx(weight: torch.Tensor, scales: torch.Tensor, quant: TensorQuant) -> None:
    """Re-encoding with mxref and the same scales gives codes that decode to ``weight`` exactly,
    and re-encoding those decoded values gives the same codes again."""
    w = weight.numpy()
    s = scales.numpy()
    mx = mxref.quantize(w, quant.fmt, block_size=quant.block_size, scales=s)
    decoded = mxref.dequantize(mx)
    assert np.array_equal(decoded.view(np.uint32), w.view(np.uint32))
    again = mxref.quantize(decoded, quant.fmt, block_size=quant.block_size, scales=s)
    assert np.array_equal(again.codes, mx.codes)
    assert np.array_equal(again.scales, s)


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp8_e4m3"])
@pytest.mark.parametrize("scale_rule", ["floor", "even"])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_is_valid_mx_and_beats_rtn_on_random_layers(fmt, scale_rule, act_order):
    torch.manual_seed(3)
    x = correlated_inputs(512, 128, seed=4)
    weight = torch.randn(48, 128)
    quant = TensorQuant(fmt, scale_rule=scale_rule)
    result = gptq_quantize(weight, x.double().T @ x.double(), quant,
                           GPTQSpec(act_order=act_order, block=32))  # fmt: skip
    # static groups: the scales are the weight's own, before the sweep
    assert torch.equal(result.scales, static_scales(weight, quant))
    assert_valid_mx(result.weight, result.scales, quant)
    rtn = quant.fake_quantize(weight)
    assert output_error(weight, result.weight, x) < output_error(weight, rtn, x)
    assert result.error < result.rtn_error
    assert result.damping == 0.01


def test_a_dead_input_channel_gets_zero_weight_and_the_rest_still_beats_rtn():
    x = correlated_inputs(256, 64, seed=5)
    x[:, 7] = 0.0
    weight = torch.randn(16, 64)
    quant = TensorQuant("mxfp4")
    result = gptq_quantize(weight, x.double().T @ x.double(), quant, GPTQSpec())
    assert torch.all(result.weight[:, 7] == 0)
    assert result.error < result.rtn_error


def test_a_failed_cholesky_raises_the_damping_and_says_so():
    x = correlated_inputs(16, 64, seed=6)  # 16 tokens: H has rank 16 of 64
    gram = x.double().T @ x.double()
    gram -= 1e-3 * torch.diagonal(gram).mean() * torch.eye(64, dtype=torch.float64)
    result = gptq_quantize(torch.randn(8, 64), gram, TensorQuant("mxfp4"), GPTQSpec(damping=1e-4))
    assert result.damping > 1e-4
    with pytest.raises(ValueError, match="not positive definite.*weight_quantizer='rtn'"):
        gptq_quantize(torch.randn(8, 64), -torch.eye(64, dtype=torch.float64),
                      TensorQuant("mxfp4"), GPTQSpec(), where="layers.0.q")  # fmt: skip


def test_bad_weight_quantizer_arguments_are_named():
    with pytest.raises(ValueError, match="weight_quantizer must be 'rtn', 'gptq'"):
        get_weight_quantizer("awq")
    with pytest.raises(ValueError, match="GPTQSpec.damping"):
        GPTQSpec(damping=0)
    with pytest.raises(TypeError, match="GPTQSpec.act_order"):
        GPTQSpec(act_order=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight_quantizer.*full precision"):
        quantize_model(tiny_qwen3(layers=1), token_ids(), method="rtn",
                       config=QuantConfig(weight=None), weight_quantizer="gptq",
                       progress=False)  # fmt: skip
    lin = nn.Linear(64, 32)
    with pytest.raises(ValueError, match="weight_quantizer must be"):
        quantize_linear(lin, torch.randn(64, 64), method="rtn", weight_quantizer="gtpq")


@pytest.mark.parametrize("method", ["rtn", "quarot", "smoothquant", "batquant"])
def test_quantize_linear_with_gptq_beats_rtn_on_its_calibration_inputs(method):
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    x = correlated_inputs(512, 128, seed=8)
    calib = CalibSpec(epochs=1, samples=8) if method == "batquant" else None
    common = dict(method=method, config="W4A8", calib=calib, seed=0)
    rtn = quantize_linear(lin, x, **common)
    gptq = quantize_linear(lin, x, weight_quantizer="gptq", **common)
    assert isinstance(gptq, QuantizedLinear)
    assert gptq.weight_scale is not None
    # the same transform and clipping: only the rounding differs
    with torch.no_grad():
        target = lin(x)
        err_rtn = float(((rtn(x) - target) ** 2).sum())
        err_gptq = float(((gptq(x) - target) ** 2).sum())
    assert err_gptq < err_rtn
    assert torch.equal(gptq.weight_scale, rtn.weight_scale)
    assert_valid_mx(gptq.weight, gptq.weight_scale, TensorQuant("mxfp4"))


@pytest.mark.parametrize("method", ["rtn", "quarot", "batquant"])
def test_every_linear_of_a_tiny_model_has_gptq_error_at_most_rtn(tmp_path, method):
    model = tiny_qwen3()
    ids = token_ids()
    calib = CalibSpec(epochs=1, batch_size=4) if method == "batquant" else None
    q = quantize_model(model, ids, method=method, config="W4A8KV16", calib=calib,
                       weight_quantizer=GPTQSpec(act_order=True), cache_dir=tmp_path / "run",
                       progress=False)  # fmt: skip
    info = q.batquant_info
    assert info["weight_quantizer"] == {"name": "gptq", "damping": 0.01, "block": 128,
                                        "act_order": True}  # fmt: skip
    reports = [r for r in _log(tmp_path / "run") if "weight" in r]
    assert len(reports) == 2 * 7  # seven linears per layer
    for r in reports:
        assert r["rounding"] == "gptq", r
        assert r["error"] <= r["rtn_error"], r
    for layer in info["layers"]:
        assert layer["gptq"]["error_vs_rtn"] < 1
    for name, module in q.named_modules():
        if isinstance(module, QuantizedLinear):
            assert module.weight_scale is not None, name
            assert_valid_mx(module.weight, module.weight_scale, TensorQuant("mxfp4"))
    out = tmp_path / "saved"
    save_quantized(q, out)
    again = load_quantized(out, model)
    with torch.no_grad():
        assert torch.equal(q(ids[:2]).logits, again(ids[:2]).logits)


def test_moe_experts_get_their_own_routed_tokens_hessians():
    model = tiny_qwen3_moe(experts=32)
    ids = token_ids(samples=2, seq_len=16)
    q = quantize_model(model, ids, method="rtn", config="W4A4KV16", weight_quantizer="gptq",
                       progress=False)  # fmt: skip
    layer0 = q.batquant_info["layers"][0]
    tokens = layer0["expert_tokens"]["experts"]
    assert 0 in tokens
    assert layer0["gptq"]["error_vs_rtn"] < 1
    # an expert no calibration token reached is rounded to nearest, and the summary says so;
    # every other one went through GPTQ with its own gate/up Hessian
    fallback = " ".join(layer0["gptq"]["rtn_fallback"])
    for e, n in enumerate(tokens):
        assert (f"gate_up[{e}]" in fallback) == (n == 0), (e, n)
        assert (f"down[{e}]" in fallback) == (n == 0), (e, n)
    experts = q.model.layers[0].mlp.experts
    quant = TensorQuant("mxfp4")
    for e in range(experts.num_experts):
        assert_valid_mx(experts.gate_up[e], experts.gate_up_scale[e], quant)
        assert_valid_mx(experts.down_weight[e], experts.down_scale[e], quant)


def _log(run: object) -> list[dict[str, object]]:
    import json
    from pathlib import Path

    path = Path(str(run)) / "calibration.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
