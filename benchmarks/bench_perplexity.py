"""Perplexity's windows per second at several batch sizes, against batch 1 in the same run.

Run ``python benchmarks/bench_perplexity.py`` (in ``make bench``).  The
embedded tiny Qwen3, full precision and quantized (``quarot`` W4A8KV4: MX
activations and KV cache on every forward), on the shipped held-out text in
windows of ``--seq-len``; each batch size is timed ``--reps`` times (the
median), interleaved with batch 1 so that a change in the machine's load
reaches both.  The PPL of every batch size is printed beside batch 1's: equal
up to float32 rounding.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from timing import cpu_model  # beside this script

import batquant
from batquant.demo import model_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids

TORCH_THREADS = 2


def timed(model: torch.nn.Module, ids: torch.Tensor, seq_len: int, batch: int
          ) -> tuple[float, float]:  # fmt: skip
    started = time.perf_counter()
    ppl = batquant.perplexity(model, ids, seq_len=seq_len, batch_size=batch)
    return time.perf_counter() - started, ppl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--windows", type=int, default=96)
    parser.add_argument("--batches", default="4,8,16")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(TORCH_THREADS)
    folder = model_dir()
    tokenizer, model = load_tokenizer(folder), load_model(folder)
    ids = read_token_ids(tokenizer, folder / "heldout.txt")[: args.windows * args.seq_len]
    calib = calibration_windows(read_token_ids(tokenizer, folder / "calib.txt"), 8, 64, seed=0)
    quantized = batquant.quantize_model(model, calib, method="quarot", config="W4A8KV4",
                                        progress=False)  # fmt: skip
    windows = ids.numel() // args.seq_len
    print(f"perplexity, embedded tiny Qwen3, {windows} windows of {args.seq_len}; "
          f"{cpu_model()}, {TORCH_THREADS} threads; median of {args.reps}")
    print("| model | batch | windows/s | batch 1 windows/s | ratio | PPL | batch 1 PPL |")
    print("|---|---|---|---|---|---|---|")
    for name, m in (("full precision", model), ("quarot W4A8KV4", quantized)):
        timed(m, ids, args.seq_len, 1)  # warm-up
        for batch in map(int, args.batches.split(",")):
            ones, many = [], []
            for _ in range(args.reps):
                ones.append(timed(m, ids, args.seq_len, 1))
                many.append(timed(m, ids, args.seq_len, batch))
            one_s = statistics.median(t for t, _ in ones)
            many_s = statistics.median(t for t, _ in many)
            print(f"| {name} | {batch} | {windows / many_s:.1f} | {windows / one_s:.1f} | "
                  f"{one_s / many_s:.2f}x | {many[0][1]:.4f} | {ones[0][1]:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
