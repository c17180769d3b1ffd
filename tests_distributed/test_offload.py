"""Disk offload: a checkpoint larger than the memory a run may use, calibrated layer by layer.

The synthetic checkpoint is written one layer at a time (never whole in
memory), then ``batquant calibrate --offload disk`` runs in a subprocess
whose peak resident memory is read from the kernel.  It is slow (a 3 GB
checkpoint), so it lives in ``make test-distributed``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]

#: The synthetic checkpoint: 3.1 GB of float32 in 224 narrow layers.
LAYERS, HIDDEN, INTERMEDIATE, VOCAB = 224, 512, 1536, 4096


def write_checkpoint(folder: Path, layers: int) -> int:
    """A random Qwen3 checkpoint of ``layers`` layers, one shard per layer; its bytes."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from tests.batquant.test_batquant_cli import tokenizer

    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8, head_dim=64,
        max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
    )  # fmt: skip
    config.architectures = ["Qwen3ForCausalLM"]
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    # one layer's names and shapes, from a one-layer model of the same widths
    single = {**config.to_dict(), "num_hidden_layers": 1, "layer_types": None}
    one = Qwen3ForCausalLM(Qwen3Config(**single))
    shapes = {k: v.shape for k, v in one.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    outside = [k for k in shapes if not k.startswith("model.layers.")]
    inside = [k for k in shapes if k.startswith("model.layers.0.")]
    groups = [[(k, k) for k in outside]] + [
        [(k.replace("layers.0.", f"layers.{i}.", 1), k) for k in inside] for i in range(layers)]
    for n, keys in enumerate(groups):
        shard = {key: torch.ones(shapes[like]) if key.endswith("norm.weight")
                 else torch.randn(shapes[like], generator=gen) * 0.05
                 for key, like in keys}  # fmt: skip
        name = f"model-{n + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in shard.values())
        weight_map.update(dict.fromkeys(shard, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}))  # fmt: skip
    return total


def calibrate(model: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """``batquant calibrate`` (RTN, 2 x 32 tokens) in a subprocess; its peak RSS in bytes."""
    from tests.batquant.test_batquant_cli import TEXT

    calib = out.parent / "calib.txt"
    calib.write_text(TEXT)
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "batquant", "calibrate",
           "--model", str(model), "--calib", str(calib), "--out", str(out), "--method", "rtn",
           "--config", "W4A8KV8", "--samples", "2", "--seq-len", "32", "--quiet",
           *extra]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env)
    peak_kib = int(result.stdout.strip().splitlines()[-1])
    return result, peak_kib * 1024


def test_a_checkpoint_four_times_the_memory_limit_calibrates_with_disk_offload(tmp_path):
    try:
        check_offload_against_memory(tmp_path)
    finally:  # 12 GB of files: pytest keeps the folders of its last runs otherwise
        for name in ("model", "offloaded", "in-memory"):
            shutil.rmtree(tmp_path / name, ignore_errors=True)


def check_offload_against_memory(tmp_path: Path) -> None:
    model = tmp_path / "model"
    size = write_checkpoint(model, LAYERS)
    assert size >= 2 * 1024**3
    offloaded, peak = calibrate(model, tmp_path / "offloaded", "--offload", "disk")
    assert offloaded.returncode == 0, offloaded.stderr[-3000:]
    # one decoder layer, the cache's batch and the interpreter, not the model
    assert peak < size / 4, f"peak RSS {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB model"
    in_memory, peak_in_memory = calibrate(model, tmp_path / "in-memory")
    assert in_memory.returncode == 0, in_memory.stderr[-3000:]
    assert peak_in_memory > size  # the same run without offload holds the whole model
    a = load_file(str(tmp_path / "in-memory" / "quantized.safetensors"))
    b: dict[str, torch.Tensor] = {}
    for shard in sorted((tmp_path / "offloaded").glob("quantized-*.safetensors")):
        b.update(load_file(str(shard)))
    assert a.keys() == b.keys()
    for key in a:  # bit for bit
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key].view(torch.uint8), b[key].view(torch.uint8)), key
