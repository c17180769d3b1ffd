"""Data-parallel calibration under torchrun with gloo, against a single process.

Each test starts real processes (``python -m torch.distributed.run``), so
these run in ``make test-distributed``, not in ``make test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("worker.py")
ROOT = Path(__file__).resolve().parents[1]

#: float32 summation order moves a learned parameter by this much at most (relative)
PARAMETER_BOUND = 1e-4
#: the perplexity bound the issue sets (relative)
PPL_BOUND = 1e-3


def launch(tmp_path: Path, name: str, ranks: int, timeout: float = 240, **spec: object
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the worker on ``ranks`` processes (torchrun) or alone (``ranks=1``)."""
    out = tmp_path / name
    spec = {"out": str(out), **spec}
    spec_file = tmp_path / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if ranks == 1:
        cmd = [sys.executable, str(WORKER), str(spec_file)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
               "--standalone", str(WORKER), str(spec_file)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


def tensors(folder: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    return load_file(str(folder / f"rank{rank}.safetensors"))


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and bool((a[k].view(torch.uint8) == b[k].view(torch.uint8)).all())
        for k in a)  # fmt: skip


def learned(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trained parameters: transforms and clipping (not the rounded weights)."""
    return {k: v for k, v in state.items()
            if v.is_floating_point() and ("transform" in k or "clip" in k)}  # fmt: skip


CASES = [
    pytest.param("qwen3", "batquant", "rtn", id="qwen3-rtn"),
    pytest.param("qwen3", "batquant", "gptq", id="qwen3-gptq"),
    pytest.param("moe", "batquant", "rtn", id="moe-rtn"),
    pytest.param("moe", "batquant", "gptq", id="moe-gptq"),
]


@pytest.mark.parametrize(("model", "method", "weights"), CASES)
def test_two_ranks_agree_with_one_process(tmp_path, model, method, weights):
    spec = {"model": model, "method": method, "config": "W4A8KV8", "weights": weights,
            "epochs": 1}  # fmt: skip
    ok(launch(tmp_path, "one", 1, **spec))
    ok(launch(tmp_path, "two", 2, **spec))
    one, two = tmp_path / "one", tmp_path / "two"
    # every rank ends with the same parameters, bit for bit
    assert identical(tensors(two, 0), tensors(two, 1))
    # against one process: the trained parameters to float32 summation order ...
    a, b = learned(tensors(one)), learned(tensors(two))
    assert a
    assert a.keys() == b.keys()
    for k in a:
        scale = float(a[k].abs().max()) or 1.0
        assert float((a[k] - b[k]).abs().max()) <= PARAMETER_BOUND * scale, k
    # ... and the perplexity within 0.1%
    ppl_one = json.loads((one / "result.json").read_text())["ppl"]
    ppl_two = json.loads((two / "result.json").read_text())["ppl"]
    assert abs(ppl_two - ppl_one) <= PPL_BOUND * ppl_one, (ppl_one, ppl_two)
    # the tokens each expert was routed: summed over the ranks, as one process counts them
    layers_one = json.loads((one / "result.json").read_text())["layers"]
    layers_two = json.loads((two / "result.json").read_text())["layers"]
    assert [s.get("expert_tokens") for s in layers_one] == \
        [s.get("expert_tokens") for s in layers_two]  # fmt: skip


SAMPLE_CASES = [
    pytest.param("qwen3", "layer", "gptq", 2, id="qwen3-layer-gptq-2ranks"),
    pytest.param("moe", "layer", "rtn", 2, id="moe-layer-rtn-2ranks"),
    pytest.param("moe", "linear", "gptq", 3, id="moe-linear-gptq-3ranks"),
]


@pytest.mark.parametrize(("model", "objective", "weights", "world"), SAMPLE_CASES)
def test_by_sample_the_ranks_equal_one_process_bit_for_bit(tmp_path, model, objective, weights,
                                                           world):  # fmt: skip
    # 6 samples in batches of 4: every rank owns a different number of some batch's samples
    spec = {"model": model, "method": "batquant", "config": "W4A8KV8", "weights": weights,
            "epochs": 2, "gradient_order": "sample", "objective": objective,
            "samples": 6}  # fmt: skip
    ok(launch(tmp_path, "one", 1, **spec))
    ok(launch(tmp_path, "many", world, **spec))
    one = tensors(tmp_path / "one")
    for rank in range(world):
        assert identical(tensors(tmp_path / "many", rank), one), rank
    results = [json.loads((tmp_path / name / "result.json").read_text())
               for name in ("one", "many")]  # fmt: skip
    assert results[0]["ppl"] == results[1]["ppl"]
    steps = [[s["last_loss"] for s in r["layers"]] for r in results]
    assert steps[0] == steps[1]


def test_two_runs_on_two_ranks_are_bit_identical(tmp_path):
    spec = {"model": "moe", "method": "batquant", "config": "W4A8KV8", "weights": "gptq",
            "epochs": 1}  # fmt: skip
    ok(launch(tmp_path, "a", 2, **spec))
    ok(launch(tmp_path, "b", 2, **spec))
    assert identical(tensors(tmp_path / "a"), tensors(tmp_path / "b"))


def test_a_data_fitted_method_samples_the_single_process_rows(tmp_path):
    # TORQ fits its rotations to sampled rows; the ranks merge them in one process's order
    spec = {"model": "qwen3", "method": "torq", "config": "W4A4KV16"}
    ok(launch(tmp_path, "one", 1, **spec))
    ok(launch(tmp_path, "two", 2, **spec))
    a, b = tensors(tmp_path / "one"), tensors(tmp_path / "two")
    assert identical(a, b)


def test_a_failing_rank_stops_every_rank_with_its_message(tmp_path):
    started = time.monotonic()
    result = launch(tmp_path, "nan", 2, model="qwen3", method="batquant", config="W4A8KV8",
                    epochs=1, nan_sample=1, group_timeout=120)  # fmt: skip
    assert result.returncode != 0
    # sample 1 is rank 1's: it fails with its message, and rank 0 stops too
    assert "layer 0: the inputs of batch 0 contain NaN or Inf" in result.stderr
    assert "rank 0: another rank stopped" in result.stderr or "SIGTERM" in result.stderr
    assert time.monotonic() - started < 100  # well before the 120 s timeout


def test_a_late_rank_is_a_timeout_that_names_the_waiting_rank(tmp_path):
    result = launch(tmp_path, "late", 2, model="qwen3", method="rtn", config="W4A8KV8",
                    late_rank=1, late_seconds=30, group_timeout=5)  # fmt: skip
    assert result.returncode != 0
    assert "rank 0: no answer from the other ranks within the process group's timeout" \
        in result.stderr, result.stderr[-3000:]  # fmt: skip


# -- the command line ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-layer tiny Qwen3 with a tokenizer, and a calibration text."""
    from tests.batquant.conftest import tiny_qwen3
    from tests.batquant.test_batquant_cli import CLI_VOCAB, TEXT, tokenizer

    folder = tmp_path_factory.mktemp("ckpt")
    tiny_qwen3(layers=4, vocab=CLI_VOCAB).save_pretrained(folder / "model")
    tokenizer().save_pretrained(folder / "model")
    (folder / "calib.txt").write_text(TEXT)
    return folder / "model", folder / "calib.txt"


def calibrate(ranks: int, *args: object, wait: bool = True
              ) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:  # fmt: skip
    """``batquant calibrate`` alone or under torchrun."""
    launcher = [] if ranks == 1 else ["-m", "torch.distributed.run", "--nproc-per-node",
                                      str(ranks), "--standalone"]  # fmt: skip
    cmd = [sys.executable, *launcher, "-m", "batquant", "calibrate", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=ROOT, env=env, start_new_session=True)  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_cli_under_torchrun_resumes_with_the_same_ranks_only(tmp_path, checkpoint):
    model, calib = checkpoint
    args = ["--model", model, "--calib", calib, "--samples", 8, "--seq-len", 32,
            "--method", "batquant", "--config", "W4A8KV8", "--epochs", 40, "--quiet"]  # fmt: skip
    whole = calibrate(2, *args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "on 2 ranks" in whole.stdout
    # interrupted after its first layer
    out = tmp_path / "cut"
    proc = calibrate(2, *args, "--out", out, wait=False)
    assert isinstance(proc, subprocess.Popen)
    state = out / ".calibration" / "run.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text() or "{}").get("done", 0) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, 15)
    proc.communicate(timeout=60)
    assert json.loads(state.read_text())["ranks"] == 2
    # one process may not resume a run of two ranks
    alone = calibrate(1, *args, "--out", out, "--resume")
    assert alone.returncode == 2
    assert alone.stderr.count("\n") == 1, alone.stderr
    assert "holds a run on 2 rank(s); this one has 1" in alone.stderr
    # two do, and end bit-identical to the uninterrupted run
    resumed = calibrate(2, *args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(str(tmp_path / "whole" / "quantized.safetensors"))
    b = load_file(str(out / "quantized.safetensors"))
    assert identical(a, b)
    def steps(folder: Path) -> list[dict[str, object]]:  # every step once, timings aside
        lines = (folder / "calibration.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(ln).items() if k != "seconds"} for ln in lines]

    assert steps(tmp_path / "whole") == steps(out)
    assert not any(p.name.startswith("rank_") for p in out.iterdir())


def test_cli_error_on_one_rank_is_one_line_naming_it(tmp_path, checkpoint):
    model, calib = checkpoint
    result = calibrate(2, "--model", model, "--calib", calib, "--samples", 1, "--seq-len", 32,
                       "--method", "rtn", "--out", tmp_path / "q")  # fmt: skip
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("batquant: error:")]
    assert lines, result.stderr[-3000:]
    assert "fewer than the 2 ranks" in lines[0]
    # no rank prints a traceback (torchrun's own failure summary may)
    assert not [ln for ln in result.stderr.splitlines()
                if ln.startswith("[rank") and "Traceback" in ln]  # fmt: skip
