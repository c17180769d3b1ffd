"""NVFP4 in batquant: the config fields, the presets, block-16 transforms, and what refuses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import batquant
import mxref
from batquant import CalibSpec, QuantConfig, TensorQuant, get_config
from batquant.algorithms.layer import InputQuantizer, QuantizedLinear
from batquant.algorithms.transforms import GPK, BlockAffine, ComposedTransform
from batquant.config import CONFIGS, TensorScale
from tests.batquant.conftest import tiny_qwen3, token_ids

FAST = CalibSpec(epochs=1, batch_size=4)
NV_METHODS = ("rtn", "quarot", "flatquant", "batquant", batquant.RECOMMENDED_METHOD)


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy().view(np.uint32)


# -- the config ------------------------------------------------------------------------------


def test_nvfp4_takes_its_own_block_and_a_tensor_scale() -> None:
    nv = TensorQuant("NVFP4")
    assert (nv.fmt, nv.block_size, nv.scale_rule, nv.tensor_scale) == (
        "nvfp4", 16, None, TensorScale.TENSOR)  # fmt: skip
    assert nv.describe() == "nvfp4/16"
    # an explicit block is kept, for either family: mxref takes any positive block
    assert TensorQuant("nvfp4", block_size=32, tensor_scale="row").describe() == "nvfp4/32/row"
    assert TensorQuant("mxfp4").block_size == 32
    assert TensorQuant("mxfp4", block_size=16).block_size == 16
    assert TensorQuant() == TensorQuant("mxfp4", 32, "floor")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fmt": "nvfp4", "scale_rule": "floor"}, "TensorQuant.scale_rule"),
        ({"fmt": "nvfp4", "scale_rule": "rceil"}, "TensorQuant.scale_rule"),
        ({"fmt": "mxfp4", "tensor_scale": "tensor"}, "TensorQuant.tensor_scale"),
        ({"fmt": "mxfp8_e4m3", "tensor_scale": "row"}, "TensorQuant.tensor_scale"),
        ({"fmt": "nvfp4", "tensor_scale": "column"}, "TensorQuant.tensor_scale"),
        ({"fmt": "nvfp4", "block_size": 0}, "TensorQuant.block_size"),
        ({"fmt": "nvfp4", "rounding": "stochastic"}, "TensorQuant.rounding"),
    ],
)
def test_fields_that_do_not_apply_are_refused_by_name(kwargs, field) -> None:
    with pytest.raises((TypeError, ValueError), match=field.replace(".", r"\.")):
        TensorQuant(**kwargs)


def test_presets_and_round_trip() -> None:
    nv4, nv8 = get_config("NVW4A4KV16"), get_config("nvw4a8kv16")
    assert nv4.weight == nv4.activation == TensorQuant("nvfp4")
    assert (nv8.weight, nv8.activation) == (TensorQuant("nvfp4"), TensorQuant("mxfp8_e4m3"))
    assert nv4.key is None
    assert nv8.value is None
    assert {"NVW4A4KV16", "NVW4A8KV16"} <= set(CONFIGS)
    custom = QuantConfig(TensorQuant("nvfp4", tensor_scale="row", rounding="away"),
                         TensorQuant("nvfp4"), None,
                         TensorQuant("nvfp4", block_size=32))  # fmt: skip
    for config in (nv4, nv8, custom):
        data = config.to_dict()
        assert QuantConfig.from_dict(data) == config
    assert "scale_rule" not in custom.to_dict()["weight"]
    assert custom.to_dict()["weight"]["tensor_scale"] == "row"
    assert "tensor_scale" not in get_config("W4A4KV16").to_dict()["weight"]
    # an MX dict written before NVFP4 existed reloads as it was
    old = {"fmt": "mxfp4", "block_size": 32, "scale_rule": "even", "rounding": "rne",
           "overflow": "saturate"}  # fmt: skip
    assert TensorQuant.from_dict(old).to_dict() == old


def test_transform_block_follows_every_quantized_block() -> None:
    assert get_config("W4A4KV16").transform_block == 32
    assert get_config("NVW4A4KV16").transform_block == 16
    # MXFP8 activations in blocks of 32, NVFP4 weights in 16: a block of 32 would mix
    # two weight blocks
    assert get_config("NVW4A8KV16").transform_block == 16
    assert QuantConfig(TensorQuant("nvfp4"), None).transform_block == 16
    assert QuantConfig(None, None).transform_block == 32


@pytest.mark.parametrize("scope", ["tensor", "row"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fake_quantize_is_mxrefs_bit_for_bit(scope, dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(6, 64, generator=gen) * torch.logspace(-3, 2, 64)).to(dtype)
    x[2, :16] = 0.0  # an all-zero block
    x[4] *= 1e-4  # a row far below the tensor's amax: small E4M3 scales
    quant = TensorQuant("nvfp4", tensor_scale=scope)
    ours = quant.fake_quantize(x)
    ref = mxref.quantize_dequantize(x.numpy(), "nvfp4", per_row=scope == "row")
    assert ours.dtype == dtype
    assert np.array_equal(ours.numpy().view(np.uint8), ref.view(np.uint8))


# -- whole models ----------------------------------------------------------------------------


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("method", NV_METHODS)
def test_every_method_calibrates_saves_and_reloads_under_nvw4a4(tmp_path, method) -> None:
    model, ids = tiny_qwen3(layers=1), token_ids()
    calib = FAST if batquant.METHODS[method].calibrated else None
    q = batquant.quantize_model(model, ids, method=method, config="NVW4A4KV16", calib=calib,
                                progress=False)  # fmt: skip
    assert q.batquant_info["config"] == get_config("NVW4A4KV16").to_dict()
    quantizers = {id(m): m for m in q.modules() if isinstance(m, InputQuantizer)}.values()
    assert quantizers
    x = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(2))
    for iq in quantizers:
        # every block-wise part is cut in blocks of 16, the NVFP4 block
        parts = iq.transform.transforms if isinstance(iq.transform, ComposedTransform) else \
            [iq.transform]  # fmt: skip
        for part in parts:
            if isinstance(part, GPK | BlockAffine):
                assert part.block_size == 16
        if iq.clip is not None and iq.clip.groups.value == "block":
            assert iq.clip.block_size == 16
        # the activation side: one dynamic tensor scale over the whole input, as mxref's
        if iq.transform is None or iq.transform.size == 64:
            with torch.no_grad():
                h = iq.unquantized(x)
                assert np.array_equal(bits(iq(x)),
                                      bits(torch.from_numpy(mxref.quantize_dequantize(
                                          h.numpy(), "nvfp4"))))  # fmt: skip
    if method == "rtn":
        # nothing transformed or clipped: each weight is its own NVFP4 rounding
        for name, module in q.named_modules():
            if isinstance(module, QuantizedLinear):
                original = model.get_submodule(name).weight.detach().float().numpy()
                want = mxref.quantize_dequantize(original, "nvfp4")
                assert np.array_equal(bits(module.weight), want.view(np.uint32)), name
                codes = mxref.quantize(original, "nvfp4")
                assert torch.equal(module.weight_scale, torch.from_numpy(codes.scales))
    if method == batquant.RECOMMENDED_METHOD:
        transforms = [iq.transform for iq in quantizers]
        assert any(isinstance(t, ComposedTransform) for t in transforms)
    batquant.save_quantized(q, tmp_path / "out")
    loaded = batquant.load_quantized(tmp_path / "out", tiny_qwen3(layers=1))
    assert torch.equal(_logits(loaded, ids[:2]), _logits(q, ids[:2]))


def test_nvw4a8_builds_block_16_transforms_under_blocks_of_32(tmp_path) -> None:
    q = batquant.quantize_model(tiny_qwen3(layers=1), token_ids(), method="batquant",
                                config="NVW4A8KV16", calib=FAST, progress=False)  # fmt: skip
    quantizers = [m for m in q.modules() if isinstance(m, InputQuantizer)]
    assert {m.transform.block_size for m in quantizers if isinstance(m.transform, GPK)} == {16}
    # the activations' block clipping follows the activations' own block, 32
    assert {m.clip.block_size for m in quantizers if m.clip is not None} == {32}


def test_gptq_export_and_figures_refuse_nvfp4_by_name(tmp_path) -> None:
    model, ids = tiny_qwen3(layers=1), token_ids()
    with pytest.raises(ValueError, match="weight_quantizer: 'gptq'.*NVW4A4KV16.*nvfp4"):
        batquant.quantize_model(model, ids, method="rtn", config="NVW4A4KV16",
                                weight_quantizer="gptq", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="weight_quantizer: 'gptq'.*nvfp4"):
        batquant.quantize_linear(nn.Linear(32, 8), torch.randn(64, 32), method="rtn",
                                 config=get_config("NVW4A8KV16"),
                                 weight_quantizer="gptq")  # fmt: skip
    q = batquant.quantize_model(model, ids, method="rtn", config="NVW4A8KV16", progress=False)
    with pytest.raises(ValueError, match="NVW4A8KV16.*weight is nvfp4/16.*MX formats only"):
        batquant.deploy.export(q, tmp_path / "export")
    assert not (tmp_path / "export").exists()
    from batquant.eval import figures

    nv4 = batquant.quantize_model(model, ids, method="rtn", config="NVW4A4KV16", progress=False)
    with pytest.raises(ValueError, match="nvfp4/16.*E8M0"):
        figures.block_view(nv4, ids[0], layer=0, module="down_proj")


def test_the_command_line_lists_the_nvfp4_configs() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "batquant", "calibrate", "--help"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "NVW4A4KV16" in out.stdout
    assert "NVW4A8KV16" in out.stdout
