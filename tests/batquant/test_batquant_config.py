"""Configs, the method registry and learnable clipping: fields, errors and equations 3-4."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import batquant
from batquant import CalibSpec, LearnableClip, QuantConfig, TensorQuant, get_config
from mxref.policies import Rounding, ScaleRule


def test_paper_defaults() -> None:
    spec = CalibSpec()
    assert (spec.epochs, spec.batch_size, spec.lr) == (5, 4, 2e-3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lr = 1.0  # type: ignore[misc]


def test_kv_presets_and_json_round_trip() -> None:
    kv4 = get_config("W4A8KV4")
    assert kv4.key == kv4.value == TensorQuant("mxfp4")
    assert kv4.activation == TensorQuant("mxfp8_e4m3")
    assert get_config("W4A8KV8").key == TensorQuant("mxfp8_e4m3")
    assert get_config("W4A4KV16").key is None
    assert not get_config("W4A4KV16").quantizes_kv
    custom = QuantConfig(TensorQuant("mxfp6_e2m3", scale_rule="rceil"), None,
                         TensorQuant("mxfp8_e5m2", block_size=16), None)  # fmt: skip
    assert QuantConfig.from_dict(custom.to_dict()) == custom
    with pytest.raises(ValueError, match=r"QuantConfig: unknown field\(s\) keys"):
        QuantConfig.from_dict({**custom.to_dict(), "keys": None})
    with pytest.raises(ValueError, match=r"QuantConfig.key: unknown field\(s\) bits"):
        QuantConfig.from_dict({**custom.to_dict(), "key": {"fmt": "mxfp4", "bits": 4}})


def test_presets() -> None:
    w4a4, w4a8 = get_config("W4A4"), get_config("w4a8")
    assert (w4a4.weight.fmt, w4a4.activation.fmt) == ("mxfp4", "mxfp4")
    assert (w4a8.weight.fmt, w4a8.activation.fmt) == ("mxfp4", "mxfp8_e4m3")
    assert w4a4.weight.scale_rule is ScaleRule.FLOOR
    assert w4a4.weight.rounding is Rounding.RNE
    assert get_config(w4a8) is w4a8
    with pytest.raises(ValueError, match="config must be .*'W4A4'.*got 'W3A3'"):
        get_config("W3A3")


def test_policy_strings_are_parsed() -> None:
    tq = TensorQuant("MXFP8_E4M3", scale_rule="rceil", rounding="away")
    assert tq.fmt == "mxfp8_e4m3"
    assert tq.scale_rule is ScaleRule.RCEIL
    assert tq.describe() == "mxfp8_e4m3/32/rceil/away"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: TensorQuant("mxfp5"), "TensorQuant.fmt"),
        (lambda: TensorQuant(block_size=0), "TensorQuant.block_size"),
        (lambda: TensorQuant(scale_rule="round"), "TensorQuant.scale_rule"),
        (lambda: TensorQuant(rounding="stochastic"), "TensorQuant.rounding"),
        (lambda: TensorQuant(overflow="wrap"), "TensorQuant.overflow"),
        (lambda: QuantConfig(weight="mxfp4"), "QuantConfig.weight"),  # type: ignore[arg-type]
        (lambda: CalibSpec(epochs=0), "CalibSpec.epochs"),
        (lambda: CalibSpec(batch_size=1.5), "CalibSpec.batch_size"),  # type: ignore[arg-type]
        (lambda: CalibSpec(lr=-1.0), "CalibSpec.lr"),
        (lambda: CalibSpec(lr=float("nan")), "CalibSpec.lr"),
        (lambda: CalibSpec(clip_lr=0.0), "CalibSpec.clip_lr"),
        (lambda: CalibSpec(min_lr_ratio=2.0), "CalibSpec.min_lr_ratio"),
        (lambda: CalibSpec(samples=0), "CalibSpec.samples"),
        (lambda: CalibSpec(clip_init=float("inf")), "CalibSpec.clip_init"),
    ],
)
def test_bad_fields_are_named(build, field: str) -> None:
    with pytest.raises((ValueError, TypeError), match=field.replace(".", r"\.")):
        build()


def test_registry_names_and_errors() -> None:
    assert set(batquant.METHODS) == {
        "rtn", "smoothquant", "quarot", "brq", "flatquant", "batquant", "batquant-full",
        "batquant-naive", "batquant-globalclip", "batquant-smooth", "batquant-smooth-full", "torq",
        "torq-abstract",
    }  # fmt: skip
    assert batquant.get_method(" BATQuant ").name == "batquant"
    with pytest.raises(ValueError, match="method must be one of 'rtn'.*got 'gptq'"):
        batquant.get_method("gptq")
    with pytest.raises(ValueError, match="already registered"):
        batquant.register(batquant.METHODS["rtn"])
    with pytest.raises(TypeError):
        batquant.METHODS["x"] = batquant.METHODS["rtn"]  # type: ignore[index]


def test_block_clip_follows_equations_3_and_4() -> None:
    x = torch.tensor([[-4.0, 1.0, 2.0, 8.0, -1.0, -0.5, 0.25, 3.0]])
    clip = LearnableClip((2,), groups="block", block_size=4, init=0.0)
    with torch.no_grad():
        clip.alpha_max.copy_(torch.tensor([0.0, 100.0]))  # sigmoid 0.5 and 1.0
        clip.alpha_min.copy_(torch.tensor([100.0, 0.0]))
    out = clip(x)
    # block 0: [min, 0.5 * 8] = [-4, 4]; block 1: [0.5 * -1, 3] = [-0.5, 3]
    expected = torch.tensor([[-4.0, 1.0, 2.0, 4.0, -0.5, -0.5, 0.25, 3.0]])
    assert torch.equal(out, expected)
    out.sum().backward()
    # only the clipped max of block 0 and the clipped min of block 1 feed the logits
    assert clip.alpha_max.grad[0] > 0
    assert clip.alpha_max.grad[1] == 0
    assert clip.alpha_min.grad[1] < 0
    assert clip.alpha_min.grad[0] == 0


def test_weight_block_clip_is_per_row_and_block() -> None:
    w = torch.arange(16.0).reshape(2, 8) - 4
    clip = LearnableClip((2, 2), groups="block", block_size=4, init=100.0)
    with torch.no_grad():
        clip.alpha_max[1, 1] = 0.0  # row 1, block 1: max 11 -> 5.5
    out = clip(w)
    # a positive block: the lower bound is 0, so the upper one decides
    assert torch.equal(out[1, 4:], torch.full((4,), 5.5))
    assert torch.equal(out[0], w[0])
    assert torch.equal(out[1, :4], w[1, :4])
    assert clip.num_params == 8


def test_row_clip_is_global_per_row() -> None:
    x = torch.tensor([[1.0, -2.0, 4.0], [8.0, 0.5, -8.0]])
    clip = LearnableClip((), groups="row", init=0.0)  # one pair for the tensor
    out = clip(x)
    assert torch.equal(out, torch.tensor([[1.0, -1.0, 2.0], [4.0, 0.5, -4.0]]))
    assert clip.num_params == 2


def test_clip_errors() -> None:
    clip = LearnableClip((2,), groups="block", block_size=4)
    with pytest.raises(ValueError, match="not a multiple of block_size 4"):
        clip(torch.zeros(3, 6))
    with pytest.raises(TypeError, match="float64"):
        clip(torch.zeros(3, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="groups must be one of"):
        LearnableClip((1,), groups="tile")


def _autograd_clip(clip: LearnableClip, x: torch.Tensor) -> torch.Tensor:
    """Equations 3-4 in plain differentiable torch ops: the reference for the custom backward."""
    view = x.unflatten(-1, (-1, clip.block_size)) if clip.groups.value == "block" else x
    lo = view.amin(dim=-1).clamp(max=0)
    hi = view.amax(dim=-1).clamp(min=0)
    b_min = (torch.sigmoid(clip.alpha_min) * lo).unsqueeze(-1)
    b_max = (torch.sigmoid(clip.alpha_max) * hi).unsqueeze(-1)
    return torch.maximum(torch.minimum(view, b_max), b_min).reshape(x.shape)


@pytest.mark.parametrize(
    ("shape", "groups", "param_shape"),
    [((8, 64), "block", (2,)), ((8, 64), "block", (8, 2)), ((8, 64), "row", ()),
     ((8, 64), "row", (8,)), ((3, 5, 64), "block", (2,))],
)  # fmt: skip
def test_clip_gradients_equal_autograds(shape, groups, param_shape) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x.view(-1, 64)[0, :32] = torch.rand(32, generator=gen, dtype=torch.float64) + 0.1
    clip = LearnableClip(param_shape, groups=groups, block_size=32, dtype=torch.float64)
    with torch.no_grad():
        clip.alpha_min.copy_(torch.randn(param_shape, generator=gen, dtype=torch.float64))
        clip.alpha_max.copy_(torch.randn(param_shape, generator=gen, dtype=torch.float64))
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    results = []
    for fn in (lambda xx: clip(xx), lambda xx: _autograd_clip(clip, xx)):
        xx = x.clone().requires_grad_()
        clip.zero_grad()
        out = fn(xx)
        (out * upstream).sum().backward()
        results.append((out.detach(), xx.grad, clip.alpha_min.grad, clip.alpha_max.grad))
    for ours, reference in zip(*results, strict=True):
        # float64 sums in different orders: equal to a few ulps, not bit for bit
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    assert results[0][1].abs().sum() > 0
    assert results[0][3].abs().sum() > 0
