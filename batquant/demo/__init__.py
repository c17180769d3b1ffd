"""The embedded demo: a tiny Qwen3 trained on Python's documentation, calibrated by six methods.

``python -m batquant.demo`` (``make demo``) loads the shipped checkpoint
(``tiny_qwen3/``: 5 layers, hidden 256, 8 heads x 64 = 512, 4 KV heads,
byte-level BPE of 4096 tokens), calibrates it under W4A4KV16 with rtn,
quarot, brq, flatquant, batquant and torq on the shipped calibration text, and
prints the perplexity of each on the held-out pydoc topics it never saw.
``scripts/train_tiny_qwen3.py`` is how the checkpoint was made.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from batquant.algorithms.methods import get_method
from batquant.eval import perplexity
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.pipeline import quantize_model

#: The methods the demo compares, in the order of the table.
DEMO_METHODS = ("rtn", "quarot", "brq", "flatquant", "batquant", "torq")


def model_dir() -> Path:
    """The shipped tiny Qwen3 checkpoint (with its tokenizer and texts)."""
    return Path(str(resources.files("batquant.demo") / "tiny_qwen3"))


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table."""

    method: str
    config: str
    ppl: float
    seconds: float


def run_demo(
    methods: tuple[str, ...] = DEMO_METHODS,
    config: str = "W4A4KV16",
    samples: int = 64,
    seq_len: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> list[DemoRow]:
    """Calibrate the shipped model with each method and measure held-out perplexity.

    Returns
    -------
    list of DemoRow
        Full precision first, then one row per method.
    """
    folder = model_dir()
    tokenizer = load_tokenizer(folder)
    model = load_model(folder)
    calib = calibration_windows(read_token_ids(tokenizer, folder / "calib.txt"), samples,
                                seq_len, seed)  # fmt: skip
    heldout = read_token_ids(tokenizer, folder / "heldout.txt")
    rows = [DemoRow("full precision", "-", perplexity(model, heldout, seq_len=seq_len), 0.0)]
    for name in methods:
        method = get_method(name)
        if progress:
            print(f"\n== {method.name}: {method.summary}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        qmodel = quantize_model(model, calib, method=method, config=config, seed=seed,
                                progress=progress)  # fmt: skip
        seconds = time.perf_counter() - started
        rows.append(DemoRow(method.name, config, perplexity(qmodel, heldout, seq_len=seq_len),
                            seconds))  # fmt: skip
        del qmodel
    return rows


def format_rows(rows: list[DemoRow], tokens: int | None = None) -> str:
    """The PPL and recovery table (recovery = 100 x PPL_fp / PPL)."""
    fp = rows[0].ppl
    head = f"{'method':<16} {'config':<9} {'PPL':>9} {'recovery':>9} {'calibration':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        secs = "-" if r.seconds == 0 else f"{r.seconds:.0f} s"
        lines.append(f"{r.method:<16} {r.config:<9} {r.ppl:>9.3f} {100 * fp / r.ppl:>8.1f}% "
                     f"{secs:>12}")  # fmt: skip
    return "\n".join(lines)


__all__ = ["DEMO_METHODS", "DemoRow", "format_rows", "model_dir", "run_demo"]
