"""The paper's GPK from the block Hadamard against the identity, at W4A8, on SmolLM2 linears.

Run ``python benchmarks/gpk_start.py [--config W4A8]``.  It captures the real
inputs of q_proj and down_proj in layers 15 and 29 (8 x 512 calibration
tokens, 8 x 256 held-out), fits ``rtn``, ``batquant`` (Hadamard start),
``batquant`` from the identity (same clipping start) and the recommended
method through ``quantize_linear`` at its defaults (160 steps), and prints
the relative output MSE on the held-out tokens and its geometric mean.  It
asks whether the Hadamard start is what puts ``batquant`` behind RTN at W4A8
in the whole-model table (docs/quality.md).
"""

from __future__ import annotations

import argparse
import math

import torch
from bench_layers import PATHS, TORCH_THREADS, capture, relative_error
from gpk_factors import _gpk, _method
from timing import commit

import batquant
from batquant.algorithms.methods import BLOCK_CLIP_INIT
from batquant.demo import model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.models import get_adapter

LINEARS = ("L15.q_proj", "L15.down_proj", "L29.q_proj", "L29.down_proj")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="W4A8", help="a registered config (default: W4A8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(TORCH_THREADS)
    text = model_dir()
    tokenizer, model = load_tokenizer(smollm2_dir()), load_model(smollm2_dir())
    decoder = get_adapter(model).decoder_layers(model)
    linears = {f"L{i}.{p.rsplit('.', 1)[-1]}": decoder[i].get_submodule(p)
               for i in (15, 29) for p in PATHS}  # fmt: skip
    linears = {k: v for k, v in linears.items() if k in LINEARS}
    calib = calibration_windows(read_token_ids(tokenizer, text / "calib.txt"), 8, 512, seed=0)
    heldout = calibration_windows(read_token_ids(tokenizer, text / "heldout.txt"), 8, 256,
                                  seed=1)  # fmt: skip
    x_cal, x_held = capture(model, linears, calib), capture(model, linears, heldout)
    methods = {"rtn": "rtn", "batquant (Hadamard start)": "batquant",
               "batquant, identity start": _method("gpk identity", _gpk("identity"),
                                                   BLOCK_CLIP_INIT),
               batquant.RECOMMENDED_METHOD: batquant.RECOMMENDED_METHOD}  # fmt: skip
    print(f"SmolLM2-135M, {args.config}, relative output MSE on held-out tokens "
          f"(commit {commit()})\n| method | " + " | ".join(linears) + " | geo-mean |\n"
          + "|---" * (len(linears) + 2) + "|")  # fmt: skip
    for name, method in methods.items():
        errors = [relative_error(linear, x_cal[s], x_held[s], method, config=args.config)[0]
                  for s, linear in linears.items()]  # fmt: skip
        geo = math.exp(sum(map(math.log, errors)) / len(errors))
        print(f"| {name} | " + " | ".join(f"{e:.4f}" for e in errors) + f" | {geo:.5f} |",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
