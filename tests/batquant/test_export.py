"""The packed export: bit-identical reload from the folder alone, compressed-tensors, MANIFEST."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import mxref
from batquant import CalibSpec, QuantConfig, TensorQuant, quantize_model
from batquant.algorithms.methods import METHODS
from batquant.deploy import export, load_export
from batquant.deploy.manifest import write_manifest
from batquant.pipeline.saving import save_quantized
from tests.batquant.conftest import tiny_qwen3, tiny_qwen3_moe, token_ids


def quantized(method: str, config: str = "W4A4KV16", model=None, **kwargs):
    calib = CalibSpec(epochs=1, batch_size=4) if METHODS[method].calibrated else None
    return quantize_model(model if model is not None else tiny_qwen3(), token_ids(),
                          method=method, config=config, calib=calib, progress=False,
                          **kwargs)  # fmt: skip


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_reloads_bit_identically_from_its_export_alone(tmp_path, method):
    config = "W4A8KV8" if method in ("batquant", "quarot") else "W4A4KV16"
    q = quantized(method, config)
    summary = export(q, tmp_path / "export")
    again = load_export(tmp_path / "export")
    ids = token_ids(samples=2, seed=9)
    assert torch.equal(logits(q, ids), logits(again, ids))
    assert summary.bits_per_weight == 4.25
    assert summary.plain == (method == "rtn" and config == "W4A4KV16")
    # an export of the reloaded model is the same export, byte for byte
    export(again, tmp_path / "again")
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "export" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_gptq_moe_and_bf16_exports_reload_bit_identically(tmp_path):
    moe = quantized("rtn", "W4A16KV16", model=tiny_qwen3_moe(), weight_quantizer="gptq")
    export(moe, tmp_path / "moe")
    ids = token_ids(samples=2, seed=9)
    assert torch.equal(logits(moe, ids), logits(load_export(tmp_path / "moe"), ids))
    config = json.loads((tmp_path / "moe" / "config.json").read_text())
    assert config["model_type"] == "batquant"  # fused experts: not plain
    bf16 = quantized("quarot", model=tiny_qwen3().to(torch.bfloat16))
    bf16.config.architectures = None  # as a model loaded from GGUF has it
    export(bf16, tmp_path / "bf16")
    again = load_export(tmp_path / "bf16")
    assert next(again.parameters()).dtype == torch.bfloat16
    assert torch.equal(logits(bf16, ids), logits(again, ids))


def test_the_export_is_smaller_than_save_quantized_and_packs_low_nibble_first(tmp_path):
    q = quantized("rtn")
    export(q, tmp_path / "export")
    save_quantized(q, tmp_path / "saved")
    packed = (tmp_path / "export" / "model.safetensors").stat().st_size
    saved = (tmp_path / "saved" / "quantized.safetensors").stat().st_size
    assert packed < saved / 2
    tensors = load_file(str(tmp_path / "export" / "model.safetensors"))
    proj = q.model.layers[0].self_attn.q_proj
    data = tensors["model.layers.0.self_attn.q_proj.weight_packed"]
    scales = tensors["model.layers.0.self_attn.q_proj.weight_scale"]
    assert data.dtype == torch.uint8
    assert data.shape == (proj.out_features, proj.in_features // 2)
    assert scales.shape == (proj.out_features, proj.in_features // 32)
    codes = mxref.quantize(proj.weight.numpy(), "mxfp4", scales=proj.weight_scale.numpy()).codes
    assert np.array_equal(data.numpy() & 0xF, codes[:, 0::2])
    assert np.array_equal(data.numpy() >> 4, codes[:, 1::2])


def test_packed_weights_decode_and_reencode_to_the_same_bytes(tmp_path):
    q = quantized("flatquant", weight_quantizer="gptq")
    export(q, tmp_path / "export")
    tensors = load_file(str(tmp_path / "export" / "model.safetensors"))
    names = [k for k in tensors if k.endswith(".weight_packed")]
    assert len(names) == 2 * 7
    for name in names:
        data, scales = tensors[name].numpy(), tensors[name.replace("packed", "scale")].numpy()
        shape = (data.shape[0], 2 * data.shape[1])
        mx = mxref.unpack(mxref.PackedMX(data, scales, "mxfp4", shape, axis=1, block_size=32))
        decoded = mxref.dequantize(mx, np.float64)
        again = mxref.pack(mxref.quantize(decoded, "mxfp4", scales=scales))
        assert np.array_equal(again.data, data), name
        assert np.array_equal(again.scales, scales), name


def test_a_plain_export_is_a_compressed_tensors_checkpoint(tmp_path):
    from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer
    from transformers import AutoModelForCausalLM

    q = quantized("rtn", "W4A16KV16", weight_quantizer="gptq")
    assert export(q, tmp_path / "export").plain
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    qc = config["quantization_config"]
    assert (qc["quant_method"], qc["format"]) == ("compressed-tensors", "mxfp4-pack-quantized")
    assert qc["ignore"] == ["lm_head"]
    assert qc["config_groups"]["group_0"]["input_activations"] is None
    dense = CompressedTensorsDequantizer(str(tmp_path / "export"), dtype=torch.bfloat16).process(
        load_file(str(tmp_path / "export" / "model.safetensors")))  # fmt: skip
    for name, module in q.named_modules():
        if hasattr(module, "weight_scale"):
            theirs = dense[f"{name}.weight"]
            # MXFP4 values times powers of two are exact in bf16: equal bit for bit
            assert torch.equal(theirs, module.weight.to(torch.bfloat16)), name
    # compressed-tensors decompresses MXFP4 to bf16, so the model must run in bf16
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "export"), dtype=torch.bfloat16)
    proj = loaded.model.layers[1].mlp.down_proj
    ids = token_ids(samples=1, seed=3)
    logits(loaded, ids)  # compressed-tensors decompresses on the first forward
    assert torch.equal(proj.weight.to(torch.bfloat16),
                       q.model.layers[1].mlp.down_proj.weight.to(torch.bfloat16))  # fmt: skip


def test_mxfp8_weights_are_one_float8_byte_per_code(tmp_path):
    from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer

    fp8 = QuantConfig(TensorQuant("mxfp8_e4m3"), TensorQuant("mxfp8_e4m3"), name="W8A8")
    q = quantized("rtn", fp8)
    assert export(q, tmp_path / "export").plain
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["quantization_config"]["format"] == "mxfp8-quantized"
    tensors = load_file(str(tmp_path / "export" / "model.safetensors"))
    proj = q.model.layers[0].mlp.down_proj
    stored = tensors["model.layers.0.mlp.down_proj.weight"]
    assert stored.dtype == torch.float8_e4m3fn
    assert stored.shape == proj.weight.shape
    codes = mxref.quantize(proj.weight.numpy(), "mxfp8_e4m3",
                           scales=proj.weight_scale.numpy()).codes  # fmt: skip
    assert np.array_equal(stored.view(torch.uint8).numpy(), codes)
    # offline, compressed-tensors cannot tell a Linear's float8 weight from an embedding's:
    # hand it the linear's tensors alone
    name = "model.layers.0.mlp.down_proj"
    dense = CompressedTensorsDequantizer(str(tmp_path / "export"), dtype=torch.bfloat16).process(
        {k: v for k, v in tensors.items() if k.startswith(name + ".")})  # fmt: skip
    assert torch.equal(dense[f"{name}.weight"],
                       proj.weight.to(torch.bfloat16))  # fmt: skip
    ids = token_ids(samples=2, seed=9)
    assert torch.equal(logits(q, ids), logits(load_export(tmp_path / "export"), ids))


def test_plain_transformers_refuses_an_export_with_online_transforms(tmp_path):
    from transformers import AutoModelForCausalLM

    summary = export(quantized("quarot"), tmp_path / "export")
    assert not summary.plain
    assert "activation transforms (GlobalHadamard)" in summary.online
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["batquant"]["online"] == list(summary.online)
    with pytest.raises(ValueError, match="batquant"):
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "export"))


def test_a_flipped_byte_a_missing_file_and_a_missing_tensor_are_named(tmp_path):
    q = quantized("rtn")
    out = tmp_path / "export"
    export(q, out)
    weights = out / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-100] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"model.safetensors does not match its sha256"):
        load_export(out)
    export(q, out, force=True)
    (out / "generation_config.json").unlink()
    (out / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"generation_config.json is missing.*notes.txt is not"):
        load_export(out)
    export(q, out, force=True)
    tensors = load_file(str(weights))
    del tensors["model.norm.weight"]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    write_manifest(out)  # a consistent edit: the MANIFEST passes, the loader names the tensor
    with pytest.raises(ValueError, match=r"missing: model.norm.weight"):
        load_export(out)
    del tensors["model.layers.1.mlp.up_proj.weight_scale"]
    save_file(tensors, str(weights), metadata={"format": "pt"})
    write_manifest(out)
    with pytest.raises(ValueError, match=r"'model.layers.1.mlp.up_proj.weight_scale' is missing"):
        load_export(out)


def test_nothing_is_overwritten_or_half_written(tmp_path, monkeypatch):
    q = quantized("rtn")
    out = tmp_path / "export"
    export(q, out)
    before = (out / "MANIFEST").read_bytes()
    with pytest.raises(ValueError, match="exists; pass force=True"):
        export(q, out)

    def fail(folder: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr("batquant.deploy.writing.write_manifest", fail)
    with pytest.raises(OSError, match="disk full"):
        export(q, out, force=True)
    with pytest.raises(OSError, match="disk full"):
        export(q, tmp_path / "fresh")
    assert (out / "MANIFEST").read_bytes() == before  # the old export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no partial folder
    with pytest.raises(ValueError, match="no MANIFEST"):
        load_export(tmp_path)
    with pytest.raises(ValueError, match="not quantized by this batquant"):
        export(tiny_qwen3(), tmp_path / "plain")
