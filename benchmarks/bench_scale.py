"""SmolLM2-135M calibrated beyond one process: disk offload and two data-parallel ranks.

Run by ``make bench-model`` after the method table (not part of ``make test``).
Every run is the real command line in its own process, timed, with its
peak resident memory read from the kernel:

1. ``batquant calibrate`` in memory: the same-run baseline;
2. the same with ``--offload disk``: its output must be bit-identical;
3. ``torchrun --nproc-per-node 2 -m batquant calibrate`` (gloo, one thread
   per rank on this machine's two cores): the largest difference of a learned
   parameter, the share of weight codes that differ, and the perplexity
   against run 1;
4. run 1 with ``--gradient-order sample`` (one backward per sample): its
   cost against run 1;
5. run 3 with ``--gradient-order sample``: its output must be bit-identical
   to run 4's.

Disk offload needs a safetensors checkpoint, so SmolLM2's GGUF file is
converted once (dequantized to float32) into a cache folder outside the
repository (``--cache``, default ``~/.cache/batquant``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from timing import commit, cpu_model

from batquant.demo import SMOLLM2_GGUF, model_dir, smollm2_dir

#: Peak RSS of the child process, printed by a small wrapper around it.
_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")  # fmt: skip


def safetensors_copy(cache: Path) -> Path:
    """SmolLM2 as a float32 safetensors checkpoint in ``cache`` (converted once)."""
    from batquant.loading import load_model, load_tokenizer

    folder = cache / "smollm2-135m-instruct-f32"
    stamp = folder / "converted-from.txt"
    if stamp.is_file() and stamp.read_text().strip() == SMOLLM2_GGUF:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model = load_model(smollm2_dir())
    # transformers marks a model read from GGUF as quantized with "gguf" and refuses to
    # save it; its weights are already dequantized float32, so it is saved as such
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    load_tokenizer(smollm2_dir()).save_pretrained(folder)
    stamp.write_text(SMOLLM2_GGUF + "\n")
    return folder


def run(cmd: list[str], threads: int) -> tuple[float, float]:
    """Run ``cmd``; its wall seconds and the largest child's peak RSS in MiB."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True,
                            text=True, env=env)  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"bench_scale: {' '.join(cmd[:6])} ... failed:\n{result.stderr[-3000:]}")
    return seconds, int(result.stderr.strip().splitlines()[-1]) / 1024


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """A ``batquant calibrate`` output's tensors, single file or shards."""
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("quantized*.safetensors")):
        out.update(load_file(str(path)))
    return out


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Bit identity; the largest relative difference of a learned parameter; codes that differ."""
    if a.keys() != b.keys():
        raise SystemExit("bench_scale: the two outputs hold different tensors")
    identical = all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)
    learned = [k for k in a if "transform" in k or "clip" in k]
    worst = max((float((a[k] - b[k]).abs().max()) / (float(a[k].abs().max()) or 1.0)
                 for k in learned), default=0.0)  # fmt: skip
    weights = [k for k in a if k.endswith("weight") and a[k].dim() == 2 and k not in learned]
    differ = sum(int((a[k] != b[k]).sum()) for k in weights)
    total = sum(a[k].numel() for k in weights)
    return {"bit_identical": identical, "learned_max_rel_diff": worst,
            "weight_values_differing": differ / total if total else 0.0}  # fmt: skip


def perplexities(model: Path, outs: list[Path], text: Path, work: Path) -> list[float]:
    """``batquant eval`` of every output, in one process (windows of 512)."""
    report = work / "eval.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "batquant", "eval", "--model", str(model), "--ppl", str(text),
           "--seq-len", "512", "--quiet", "--json", str(report)]  # fmt: skip
    for out in outs:
        cmd += ["--quantized", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ,
                   "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"})  # fmt: skip
    rows = json.loads(report.read_text())
    return [float(r["ppl"]) for r in rows if "folder" in r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="batquant")
    parser.add_argument("--config", default="W4A4KV16")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "batquant",
                        help="where the safetensors copy of SmolLM2 and the runs go")
    parser.add_argument("--json", type=Path, help="also write the results here (a new file)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; choose a new file")
    model = safetensors_copy(args.cache)
    work = args.cache / "bench-scale"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    calib = model_dir() / "calib.txt"
    common = ["calibrate", "--model", str(model), "--calib", str(calib), "--method", args.method,
              "--config", args.config, "--samples", str(args.samples), "--seq-len",
              str(args.seq_len), "--epochs", str(args.epochs), "--quiet"]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--standalone", "-m", "batquant"]  # fmt: skip
    runs = {
        "in memory": ([sys.executable, "-m", "batquant", *common, "--out", str(work / "memory")],
                      2),
        "--offload disk": ([sys.executable, "-m", "batquant", *common, "--out",
                            str(work / "offload"), "--offload", "disk"], 2),
        "2 ranks (torchrun, gloo)": ([*torchrun, *common, "--out", str(work / "ranks")], 1),
        "--gradient-order sample": ([sys.executable, "-m", "batquant", *common, "--out",
                                     str(work / "sample"), "--gradient-order", "sample"], 2),
        "2 ranks, --gradient-order sample": ([*torchrun, *common, "--out",
                                              str(work / "sample-ranks"), "--gradient-order",
                                              "sample"], 1),
    }  # fmt: skip
    print(f"SmolLM2-135M, {args.method} {args.config}, {args.samples} x {args.seq_len} tokens, "
          f"{args.epochs} epoch(s); commit {commit()}; {cpu_model()}, 2 cores")  # fmt: skip
    results = {}
    for name, (cmd, threads) in runs.items():
        seconds, peak = run(cmd, threads)
        results[name] = {"seconds": round(seconds, 1), "peak_rss_mib": round(peak)}
        print(f"  {name}: {seconds:.0f} s, peak RSS {peak:.0f} MiB", flush=True)
    base = results["in memory"]
    memory = tensors(work / "memory")
    offload = compare(memory, tensors(work / "offload"))
    ranks = compare(memory, tensors(work / "ranks"))
    by_sample = compare(tensors(work / "sample"), tensors(work / "sample-ranks"))
    outs = [work / name for name in ("memory", "ranks", "sample", "sample-ranks")]
    ppl = perplexities(model, outs, model_dir() / "heldout.txt", work)
    results["--offload disk"].update(offload)
    results["2 ranks (torchrun, gloo)"].update(ranks, ppl=ppl[1], ppl_in_memory=ppl[0],
                                               ppl_rel_diff=abs(ppl[1] - ppl[0]) / ppl[0])
    results["--gradient-order sample"].update(ppl=ppl[2])
    results["2 ranks, --gradient-order sample"].update(by_sample, ppl=ppl[3])
    print("\n| run | wall | vs in memory | peak RSS | vs in memory |\n|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.0f} s | {r['seconds'] / base['seconds']:.2f}x | "
              f"{r['peak_rss_mib']} MiB | {r['peak_rss_mib'] / base['peak_rss_mib']:.2f}x |")
    print(f"\n--offload disk: output bit-identical to in memory: {offload['bit_identical']}")
    print(f"2 ranks: largest relative difference of a learned parameter "
          f"{ranks['learned_max_rel_diff']:.2e}; weight values that differ "
          f"{100 * ranks['weight_values_differing']:.4f}%; PPL {ppl[1]:.4f} against "
          f"{ppl[0]:.4f} ({100 * abs(ppl[1] - ppl[0]) / ppl[0]:.3f}%)")  # fmt: skip
    print(f"--gradient-order sample: 2 ranks bit-identical to one process: "
          f"{by_sample['bit_identical']}; PPL {ppl[2]:.4f} (one process), {ppl[3]:.4f} "
          f"(2 ranks), against {ppl[0]:.4f} by batch")  # fmt: skip
    if args.json is not None:
        settings = {"commit": commit(), "method": args.method, "config": args.config,
                    "samples": args.samples, "seq_len": args.seq_len, "epochs": args.epochs,
                    "cpu": cpu_model()}  # fmt: skip
        args.json.write_text(json.dumps({"settings": settings, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
