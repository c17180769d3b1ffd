"""Where a channel-mixing transform loses to RTN: SmolLM2's massive activations, per linear.

Run ``python benchmarks/massive_activations.py [--layers 7,10,11,12,24]``.  For
q_proj, o_proj, up_proj and down_proj of each layer it captures the real
inputs (8 x 256 calibration tokens, 4 x 256 held-out) and prints how far the
largest channel and the largest token stand above the median, and the
relative output MSE of ``quantize_linear`` at W4A4 under RTN and under
QuaRot's rotation, with their ratio.  MX scales each block of 32 alone, so a
massive value costs RTN only its own block; a rotation spreads it over every
block, which is why layer 11's down_proj ends worse than RTN under every
channel-mixing method (docs/quality.md).
"""

from __future__ import annotations

import argparse

import torch
from bench_layers import PATHS, TORCH_THREADS, capture, relative_error
from timing import commit

from batquant.demo import model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.models import get_adapter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="7,10,11,12,24",
                        help="decoder layers, comma-separated (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(TORCH_THREADS)
    text = model_dir()
    tokenizer, model = load_tokenizer(smollm2_dir()), load_model(smollm2_dir())
    decoder = get_adapter(model).decoder_layers(model)
    layers = [int(x) for x in args.layers.split(",")]
    bad = [i for i in layers if not 0 <= i < len(decoder)]
    if bad:
        parser.error(f"--layers {bad}: SmolLM2 has layers 0..{len(decoder) - 1}")
    linears = {f"L{i}.{p.rsplit('.', 1)[-1]}": decoder[i].get_submodule(p)
               for i in layers for p in PATHS}  # fmt: skip
    calib = calibration_windows(read_token_ids(tokenizer, text / "calib.txt"), 8, 256, seed=0)
    heldout = calibration_windows(read_token_ids(tokenizer, text / "heldout.txt"), 4, 256,
                                  seed=1)  # fmt: skip
    x_cal, x_held = capture(model, linears, calib), capture(model, linears, heldout)
    print(f"SmolLM2-135M, W4A4, relative output MSE on held-out tokens (commit {commit()})")
    print("| linear | channel max / median | token max / median | largest value | rtn | quarot "
          "| quarot / rtn |\n|---|---|---|---|---|---|---|")
    for site, linear in linears.items():
        magnitude = x_cal[site].abs()
        channel, token = magnitude.amax(0), magnitude.amax(1)
        rtn = relative_error(linear, x_cal[site], x_held[site], "rtn")[0]
        quarot = relative_error(linear, x_cal[site], x_held[site], "quarot")[0]
        print(f"| {site} | {float(channel.max() / channel.median()):.1f} | "
              f"{float(token.max() / token.median()):.1f} | {float(magnitude.max()):.1f} | "
              f"{rtn:.5f} | {quarot:.5f} | {quarot / rtn:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
