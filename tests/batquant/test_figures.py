"""batquant.eval.figures: the data behind the pictures is right, and the PNGs are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import batquant
import mxref
from batquant.eval import figures
from tests.batquant.conftest import tiny_qwen3

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ids(rows: int = 2, seq: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 160, (rows, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def quantized() -> torch.nn.Module:
    model = tiny_qwen3()
    with torch.no_grad():  # an outlier channel, so that one block stands out
        model.model.layers[1].post_attention_layernorm.weight[5] = 40.0
    return batquant.quantize_model(model, ids(), method="brq", config="W4A4KV16", progress=False)


def test_block_view_is_the_linears_own_input_before_and_after_its_transform(quantized):
    name, linear = figures.find_linear(quantized, 1, "up_proj")
    assert name == "mlp.up_proj"
    text = ids(3, 24, seed=1)
    seen: list[torch.Tensor] = []
    hook = linear.register_forward_pre_hook(lambda _m, a: seen.append(a[0].flatten(0, -2)))
    with torch.no_grad():
        for row in text:
            quantized(input_ids=row[None], use_cache=False)
    hook.remove()
    x = torch.cat(seen)
    view = figures.block_view(quantized, text, layer=1, module="up_proj")
    assert view.block_size == 32
    # max |x| per 32-block, by a reshape of our own
    before = x.abs().reshape(x.shape[0], -1, 32).max(dim=-1).values
    assert torch.equal(view.before, before)
    h = linear.transform(x)  # brq: the block Hadamard, no clipping
    assert torch.equal(view.after, h.abs().reshape(h.shape[0], -1, 32).max(dim=-1).values)
    # the outlier channel 5 lies in block 0, and it is the layer's largest input
    assert view.outlier_block == 0 == int(before.max(dim=0).values.argmax())
    peaks = before.max(dim=0).values
    assert view.plain_block == int((peaks - peaks.median()).abs().argmin())
    # divided by mxref's own E8M0 scales, exactly (the numpy reference codec)
    for source, scaled in ((x, view.scaled_before), (h, view.scaled_after)):
        arr = source.numpy().astype(np.float32)
        scales = mxref.quantize(arr, "mxfp4", axis=-1).scales.astype(np.int64)
        for block in (view.outlier_block, view.plain_block):
            want = arr[:, block * 32:(block + 1) * 32].astype(np.float64) / np.exp2(
                scales[:, block, None] - 127)
            got = scaled[block].numpy()
            assert got.dtype == np.float32
            assert np.array_equal(got.view(np.uint32),
                                  want.astype(np.float32).ravel().view(np.uint32))
    assert view.element_max == 6.0
    assert "layer 1 mlp.up_proj (brq" in view.title


def test_plot_blocks_writes_a_png_and_never_overwrites(quantized, tmp_path: Path):
    view = figures.block_view(quantized, ids(1, 32), layer=0, module="self_attn.q_proj")
    out = figures.plot_blocks(view, tmp_path / "q.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="exists; choose a new file"):
        figures.plot_blocks(view, out)
    with pytest.raises(ValueError, match="name a .png file"):
        figures.check_png_path(tmp_path / "q.pdf")
    with pytest.raises(ValueError, match="does not exist"):
        figures.check_png_path(tmp_path / "none" / "q.png")


def test_find_linear_names_what_exists(quantized):
    with pytest.raises(ValueError, match="layer must be in 0..1"):
        figures.find_linear(quantized, 2, "up_proj")
    with pytest.raises(ValueError, match="its quantized linears: mlp.down_proj"):
        figures.find_linear(quantized, 0, "nope")
    with pytest.raises(ValueError, match="none \\(is the model quantized\\?\\)"):
        figures.find_linear(tiny_qwen3(), 0, "up_proj")


def test_loss_curves_sum_each_steps_groups_from_the_run_log(tmp_path: Path):
    run = tmp_path / "run"
    model = tiny_qwen3()
    batquant.quantize_model(model, ids(4, 32), method="batquant", config="W4A4KV16",
                            calib=batquant.CalibSpec(epochs=2, batch_size=2), cache_dir=run,
                            progress=False)  # fmt: skip
    records = [json.loads(line) for line in (run / "calibration.jsonl").read_text().splitlines()]
    curves = figures.loss_curves(run)
    assert sorted(curves) == [0, 1]
    for layer, losses in curves.items():
        steps = [r for r in records if r.get("layer") == layer and "step" in r]
        assert len(losses) == 2 * 2  # 2 epochs of 2 batches
        for step, value in enumerate(losses):
            assert value == sum(r["loss"] for r in steps if r["step"] == step)
    out = figures.plot_losses(curves, tmp_path / "losses.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_loss_curves_rejects_what_is_not_a_training_log(tmp_path: Path):
    with pytest.raises(ValueError, match="no calibration log"):
        figures.loss_curves(tmp_path)
    log = tmp_path / "calibration.jsonl"
    log.write_text('{"layer": 0, "site": "mlp", "expert_tokens": [3]}\n')
    with pytest.raises(ValueError, match="no training steps"):
        figures.loss_curves(tmp_path)
    log.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        figures.loss_curves(log)
