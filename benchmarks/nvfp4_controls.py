"""Block size or scale format: what makes NVFP4 more accurate than MXFP4 on SmolLM2.

NVFP4 differs from MXFP4 in two ways at once: blocks of 16 instead of 32, and
E4M3 block scales (under a float32 tensor scale) instead of E8M0 powers of
two.  This script separates them for round-to-nearest weights and
activations (``rtn``, no calibration, so one run is the answer: it draws
nothing from a seed), W4A4KV16 on SmolLM2-135M with the held-out windows of
``make bench-nvfp4``:

- MXFP4 in blocks of 32 (the ``W4A4KV16`` preset) and of 16;
- NVFP4 in blocks of 16 (``NVW4A4KV16``) and of 32.

Run ``make bench-nvfp4``, which runs it after the method comparison.
"""

from __future__ import annotations

import argparse
import time

import torch

import batquant
from batquant.config import QuantConfig, TensorQuant
from batquant.demo import model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids

TORCH_THREADS = 2


def configs() -> list[QuantConfig]:
    """W4A4KV16 with each scale format in each block size."""
    out = []
    for fmt, block in (("mxfp4", 32), ("mxfp4", 16), ("nvfp4", 16), ("nvfp4", 32)):
        role = TensorQuant(fmt, block_size=block)
        out.append(QuantConfig(role, role, None, None, name=f"{fmt}/{block}"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-seq-len", type=int, default=512)
    parser.add_argument("--eval-windows", type=int, default=16,
                        help="evaluate the first N held-out windows (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(TORCH_THREADS)
    demo = model_dir()
    tokenizer = load_tokenizer(smollm2_dir())
    model = load_model(smollm2_dir())
    heldout = read_token_ids(tokenizer, demo / "heldout.txt")
    heldout = heldout[: args.eval_windows * args.eval_seq_len]
    # rtn reads no calibration data; the pipeline still walks the layers on a window
    calib = calibration_windows(read_token_ids(tokenizer, demo / "calib.txt"), 1, 256, seed=0)
    fp = batquant.perplexity(model, heldout, seq_len=args.eval_seq_len, batch_size=4)
    print(f"full precision: PPL {fp:.3f}", flush=True)
    results: dict[tuple[str, int], float] = {}
    for config in configs():
        started = time.perf_counter()
        q = batquant.quantize_model(model, calib, method="rtn", config=config, seed=0,
                                    progress=False)  # fmt: skip
        ppl = batquant.perplexity(q, heldout, seq_len=args.eval_seq_len, batch_size=4)
        fmt, block = config.name.split("/")
        results[fmt, int(block)] = ppl
        print(f"{config.name}: PPL {ppl:.3f} ({100 * fp / ppl:.1f}%), "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        del q
    print("\n| W4A4KV16, rtn | block 32 | block 16 |\n|---|---|---|")
    for fmt, label in (("mxfp4", "E8M0 scales (MXFP4)"), ("nvfp4", "E4M3 scales (NVFP4)")):
        print(f"| {label} | {results[fmt, 32]:.3f} | {results[fmt, 16]:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
