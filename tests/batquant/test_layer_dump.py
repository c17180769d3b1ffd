"""One-layer dumps: the MX operands are what the torch forward multiplies, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mxref
from batquant import quantize_model
from batquant.cli import main
from batquant.demo import model_dir
from batquant.deploy import export, load_export
from batquant.deploy.layer_dump import dump_layer
from batquant.deploy.loading import load_export_tokenizer
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from mxref.cli import main as mxref_main

#: The largest |exact reference + bias - torch float32 output|, relative to the output's
#: largest magnitude, measured on the embedded model (float32 accumulation error).
FLOAT32_ACCUMULATION_BOUND = 1e-6


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded tiny Qwen3 under quarot W4A8KV16, exported with its tokenizer."""
    folder = model_dir()
    tokenizer = load_tokenizer(folder)
    ids = calibration_windows(read_token_ids(tokenizer, folder / "calib.txt"), 8, 64, seed=0)
    q = quantize_model(load_model(folder), ids, method="quarot", config="W4A8KV16",
                       progress=False, inplace=True)  # fmt: skip
    out = tmp_path_factory.mktemp("export") / "tiny-quarot"
    export(q, out, tokenizer=tokenizer)
    return out


def test_dumped_operands_are_what_torch_multiplies(tmp_path, exported):
    model = load_export(exported)
    tokenizer = load_export_tokenizer(exported)
    ids = read_token_ids(tokenizer, model_dir() / "heldout.txt")[:48].view(1, -1)
    target = model.model.layers[3].mlp.down_proj
    seen = {}

    def grab(module, args, output):
        seen["multiplied"] = module.input_quantizer(args[0]).detach().reshape(48, -1)
        seen["output"] = output.detach().reshape(48, -1)

    hook = target.register_forward_hook(grab)
    summary = dump_layer(model, ids, tmp_path / "dump", layer=3, module="mlp.down_proj",
                         accum=("exact", "block_fp32"))  # fmt: skip
    hook.remove()
    act = mxref.load(tmp_path / "dump" / "activation.npz")
    weight = mxref.load(tmp_path / "dump" / "weight.npz")
    assert act.fmt.name == "mxfp8_e4m3"
    assert weight.fmt.name == "mxfp4"
    assert np.array_equal(mxref.dequantize(act).view(np.uint32),
                          seen["multiplied"].numpy().view(np.uint32))  # fmt: skip
    assert np.array_equal(mxref.dequantize(weight).view(np.uint32),
                          target.weight.numpy().view(np.uint32))  # fmt: skip
    exact = np.load(tmp_path / "dump" / "reference_exact.npy")
    assert np.array_equal(exact, mxref.matmul(act, weight, accum="exact"))
    gap = np.abs(exact.astype(np.float64) - seen["output"].numpy()).max()
    assert gap <= FLOAT32_ACCUMULATION_BOUND * np.abs(exact).max()
    assert summary["exact_vs_torch"]["max_abs_relative_to_max"] <= FLOAT32_ACCUMULATION_BOUND
    assert (tmp_path / "dump" / "reference_block_fp32.npy").is_file()
    assert json.loads((tmp_path / "dump" / "dump.json").read_text())["tokens"] == 48


def test_the_command_line_dump_is_recomputed_by_mxref_gemm(tmp_path, exported, capsys):
    text = model_dir() / "heldout.txt"
    out = tmp_path / "dump"
    assert main(["dump-layer", "--export", str(exported), "--layer", "1", "--module",
                 "self_attn.o_proj", "--text", str(text), "--tokens", "32", "--out", str(out),
                 "--accum", "exact,block_fp32"]) == 0  # fmt: skip
    assert "mxref gemm" in capsys.readouterr().out
    for accum in ("exact", "block_fp32"):
        mine = tmp_path / f"{accum}.npy"
        assert mxref_main(["gemm", "--a", str(out / "activation.npz"), "--b",
                           str(out / "weight.npz"), "--accum", accum, "--out", str(mine)]) == 0
        assert mxref_main(["compare", str(out / f"reference_{accum}.npy"), str(mine)]) == 0
    # decoded with mxref decode and re-encoded against the same scales: the same bytes
    decoded = tmp_path / "weight.npy"
    assert mxref_main(["decode", str(out / "weight.npz"), str(decoded)]) == 0
    again = tmp_path / "weight_again.npz"
    assert mxref_main(["encode", "--format", "mxfp4", "--scales", str(out / "weight.npz"),
                       str(decoded), str(again)]) == 0  # fmt: skip
    assert mxref_main(["compare", str(out / "weight.npz"), str(again)]) == 0


@pytest.mark.parametrize(("args", "needle"), [
    (["--layer", "9"], "layer must be an int in [0, 5)"),
    (["--module", "mlp.gate"], "has no quantized linear 'mlp.gate'; it has self_attn.q_proj"),
    (["--accum", "nonsense"], "accum"),
    (["--tokens", "100000"], "fewer than --tokens 100000"),
])  # fmt: skip
def test_bad_dump_arguments_are_one_line_errors(tmp_path, exported, capsys, args, needle):
    base = {"--export": str(exported), "--layer": "0", "--module": "mlp.down_proj",
            "--text": str(model_dir() / "heldout.txt"), "--tokens": "16",
            "--out": str(tmp_path / "dump")}  # fmt: skip
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["dump-layer"] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("batquant: error:"), err
    assert needle in err, err
    assert not (tmp_path / "dump").exists()


def test_export_and_dump_refuse_existing_folders(tmp_path, exported, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["dump-layer", "--export", str(exported), "--layer", "0", "--module",
                 "mlp.up_proj", "--text", str(model_dir() / "heldout.txt"), "--out",
                 str(tmp_path / "taken")]) == 2  # fmt: skip
    assert "exists" in capsys.readouterr().err
    q = quantize_model(load_model(model_dir()), torch.zeros(2, 32, dtype=torch.long),
                       method="rtn", config="W4A16KV16", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="activation None"):
        dump_layer(q, torch.zeros(1, 8, dtype=torch.long), tmp_path / "d", layer=0,
                   module="mlp.up_proj")  # fmt: skip
