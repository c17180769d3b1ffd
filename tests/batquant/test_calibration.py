"""Layer calibration and quantize_linear: exact composition, equivalence, determinism, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import batquant
import mxref
from batquant import CalibSpec, QuantConfig, TensorQuant
from batquant.synthetic import llm_like_activations, llm_like_weight

FAST = CalibSpec(epochs=1, samples=8)
NO_QUANT = QuantConfig(weight=None, activation=None, name="fp")


def make_linear(n: int = 64, m: int = 48, *, bias: bool = True, seed: int = 0) -> nn.Linear:
    lin = nn.Linear(n, m, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(llm_like_weight(m, n, seed=seed))
        if bias:
            lin.bias.copy_(torch.linspace(-1, 1, m))
    return lin


def relative_mse(ref: torch.Tensor, got: torch.Tensor) -> float:
    return float((ref.double() - got.double()).square().sum() / ref.double().square().sum())


def test_rtn_is_mxref_fake_quant_then_linear() -> None:
    lin = make_linear()
    x = llm_like_activations(40, 64, seed=1)
    qlin = batquant.quantize_linear(lin, x, method="rtn", config="W4A8")
    # the reference path goes through mxref's numba kernels, not batquant's torch path
    xq = mxref.quantize_dequantize(x, "mxfp8_e4m3")
    wq = mxref.quantize_dequantize(lin.weight.detach(), "mxfp4")
    assert torch.equal(qlin(x), nn.functional.linear(xq, wq, lin.bias.detach()))


def test_brq_composes_transform_then_quantizers_exactly() -> None:
    lin = make_linear(bias=False)
    x = llm_like_activations(40, 64, seed=2)
    group = batquant.calibrate(lin, x, method="brq")
    t = group.transform
    assert t is not None
    assert t.num_params == 0
    xq = mxref.quantize_dequantize(t(x), "mxfp4")
    wq = mxref.quantize_dequantize(t.weight_transform(lin.weight.detach()), "mxfp4")
    assert torch.equal(group.quantized_linears()[0](x), nn.functional.linear(xq, wq))


def fast(method: str) -> CalibSpec | None:
    """FAST for a calibrated method; None for a training-free one, which rejects a spec."""
    return FAST if batquant.METHODS[method].calibrated else None


@pytest.mark.parametrize("method", sorted(batquant.METHODS))
def test_every_method_is_equivalent_without_quantization(method: str) -> None:
    """With both quantizers off, x P (W P^-T)^T must give the layer's own output."""
    lin = make_linear()
    x = llm_like_activations(64, 64, seed=3)
    qlin = batquant.quantize_linear(lin, x, method=method, config=NO_QUANT, calib=fast(method))
    with torch.no_grad():
        assert relative_mse(lin(x), qlin(x)) < 1e-10  # 1e-5 relative in norm


@pytest.mark.parametrize("method", sorted(batquant.METHODS))
def test_every_method_runs_through_quantize_linear(method: str) -> None:
    lin = make_linear()
    x = llm_like_activations(64, 64, seed=4)
    qlin = batquant.quantize_linear(lin, x, method=method, config="W4A4", calib=fast(method),
                                    seed=1)  # fmt: skip
    y = qlin(x[:5].to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert y.shape == (5, 48)
    with torch.no_grad():
        assert 0 < relative_mse(lin(x), qlin(x)) < 0.5


@pytest.mark.parametrize("seed", [5, 6])
def test_calibration_lowers_the_loss_and_beats_the_baselines(seed: int) -> None:
    """With the paper's defaults, calibrated BATQuant beats RTN, BRQ and QuaRot held out."""
    n = 128
    lin = make_linear(n, 64, bias=False, seed=seed)
    x = llm_like_activations(2048, n, seed=seed)
    x_cal, x_eval = x[:1024], x[1024:]
    group = batquant.calibrate(lin, x_cal, method="batquant")
    assert len(group.losses) == 5 * 32  # 128 samples in batches of 4, 5 epochs
    # batch by batch, the last epoch's loss against the first's (geometric mean:
    # the few spiked batches would swamp a plain sum)
    ratios = torch.tensor(group.losses[-32:]) / torch.tensor(group.losses[:32])
    assert float(ratios.log().mean().exp()) < 0.99  # exactly 1 if nothing were learnt
    with torch.no_grad():
        ref = lin(x_eval)
        ours = relative_mse(ref, group.quantized_linears()[0](x_eval))
        for rival in ("rtn", "brq", "quarot"):
            theirs = batquant.quantize_linear(lin, x_cal, method=rival)(x_eval)
            assert ours < relative_mse(ref, theirs), rival


def test_runs_are_deterministic_under_a_seed() -> None:
    lin = make_linear()
    x = llm_like_activations(64, 64, seed=6)
    runs = [batquant.calibrate(lin, x, FAST, method="flatquant", seed=s) for s in (3, 3, 4)]
    assert runs[0].losses == runs[1].losses
    w = [r.quantized_linears()[0].weight for r in runs]
    assert torch.equal(w[0], w[1])
    assert runs[0].losses != runs[2].losses


def test_a_group_shares_one_transform() -> None:
    q, k, v = make_linear(seed=1), make_linear(64, 16, seed=2), make_linear(64, 16, seed=3)
    x = llm_like_activations(64, 64, seed=7)
    group = batquant.calibrate([q, k, v], x, FAST, method="batquant", name="layers.0.qkv")
    qlins = group.quantized_linears()
    assert [ql.out_features for ql in qlins] == [48, 16, 16]
    assert qlins[0].transform is qlins[1].transform is qlins[2].transform
    assert group.weight_clip is not None
    assert group.weight_clip.alpha_max.shape == (80, 2)
    assert group.act_clip is not None
    assert group.act_clip.alpha_max.shape == (2,)
    # every parameter is frozen after calibration
    assert not any(p.requires_grad for p in group.transform.parameters())


def test_each_linear_of_a_group_keeps_its_own_rows_and_bias() -> None:
    q, k, v = make_linear(seed=1), make_linear(64, 16, seed=2), make_linear(64, 16, seed=3)
    x = llm_like_activations(64, 64, seed=11)
    group = batquant.calibrate([q, k, v], x, FAST, method="batquant", config=NO_QUANT)
    with torch.no_grad():
        for lin, qlin in zip((q, k, v), group.quantized_linears(), strict=True):
            assert relative_mse(lin(x), qlin(x)) < 1e-10


def test_short_inputs_lose_no_token() -> None:
    """130 tokens make 128 samples of one or two tokens; the step count follows."""
    group = batquant.calibrate(make_linear(), torch.randn(130, 64), CalibSpec(epochs=2),
                               method="batquant")  # fmt: skip
    assert len(group.losses) == 2 * 32
    group = batquant.calibrate(make_linear(), torch.randn(10, 64), CalibSpec(epochs=1),
                               method="batquant")  # fmt: skip
    assert len(group.losses) == 3  # 10 one-token samples in batches of 4


def test_nan_in_inputs_names_group_and_batch() -> None:
    x = llm_like_activations(64, 64, seed=8)
    x[37, 5] = float("nan")  # 8 samples of 8 tokens: sample 4, batch 1
    with pytest.raises(ValueError, match=r"calibrate\('layers.3.mlp'\): batch 1 .*sample 4"):
        batquant.calibrate(make_linear(), x, FAST, name="layers.3.mlp")


def test_overflowing_loss_names_group_and_batch() -> None:
    x = llm_like_activations(64, 64, seed=9)
    x[40:48] = 3e38  # finite, but the outputs overflow float32: sample 5, batch 1
    with pytest.raises(ValueError, match=r"calibrate\('big'\): the loss of batch 1 \(epoch 0\)"):
        batquant.calibrate(make_linear(), x, FAST, name="big")


def test_bad_inputs_and_arguments() -> None:
    lin = make_linear()
    x = llm_like_activations(64, 64, seed=10)
    with pytest.raises(ValueError, match=r"inputs must be \[tokens, 64\]"):
        batquant.calibrate(lin, x[:, :32], FAST)
    with pytest.raises(TypeError, match="floating point"):
        batquant.calibrate(lin, x.to(torch.int32), FAST)
    with pytest.raises(ValueError, match=r"module_group\[1\] has in_features 32"):
        batquant.calibrate([lin, make_linear(32, 8)], x, FAST)
    with pytest.raises(TypeError, match=r"module_group\[0\] must be an nn.Linear"):
        batquant.calibrate([nn.ReLU()], x, FAST)
    with pytest.raises(TypeError, match="spec must be a CalibSpec"):
        batquant.calibrate(lin, x, {"epochs": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be one of"):
        batquant.quantize_linear(lin, x, method="gptq")
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        batquant.quantize_linear(lin.weight, x, method="rtn")  # type: ignore[arg-type]


def test_block_size_mismatch_names_the_field() -> None:
    lin = make_linear(48, 8)
    x = torch.randn(16, 48)
    cfg = QuantConfig(TensorQuant("mxfp4", block_size=32), TensorQuant("mxfp4"))
    with pytest.raises(ValueError, match=r"'batquant' cannot build its transform for in_features"):
        batquant.calibrate(lin, x, FAST, method="batquant", config=cfg)
    clip_only = batquant.Method("clip-only", "block clipping alone", lambda ctx: None,
                                batquant.ClipGroups.BLOCK, calibrated=True)  # fmt: skip
    cfg = QuantConfig(TensorQuant("mxfp4", block_size=32), None)
    with pytest.raises(ValueError, match=r"QuantConfig\.weight\.block_size 32"):
        batquant.calibrate(lin, x, FAST, method=clip_only, config=cfg)


def test_quantized_linear_checks_its_input() -> None:
    lin = make_linear()
    qlin = batquant.quantize_linear(lin, torch.randn(16, 64), method="rtn")
    with pytest.raises(ValueError, match="expected in_features 64"):
        qlin(torch.randn(2, 32))
    with pytest.raises(TypeError, match="floating-point"):
        qlin(torch.ones(2, 64, dtype=torch.int64))


def test_quantized_linear_follows_a_dtype_change() -> None:
    lin = make_linear()
    x = llm_like_activations(64, 64, seed=12)
    qlin = batquant.quantize_linear(lin, x, method="batquant", calib=FAST).to(torch.float64)
    y = qlin(x)
    assert y.dtype == torch.float32
    with torch.no_grad():
        assert 0 < relative_mse(lin(x), y) < 0.5


def test_fields_a_call_cannot_honour_are_errors() -> None:
    lin = make_linear()
    x = torch.randn(16, 64)
    with pytest.raises(ValueError, match="spec: method 'rtn' is training-free"):
        batquant.quantize_linear(lin, x, method="rtn", calib=FAST)
    kv = batquant.get_config("W4A8KV8")
    with pytest.raises(ValueError, match=r"QuantConfig.key is set .*quantize_model"):
        batquant.quantize_linear(lin, x, method="batquant", config=kv, calib=FAST)
