"""The ``batquant`` command line: calibrate a local checkpoint, evaluate perplexity.

::

    batquant calibrate --model DIR --method batquant --config W4A4KV16 --calib FILE.txt
                       --out DIR [--samples 128] [--seq-len 2048] [--epochs 5]
                       [--weight-quantizer rtn|gptq [--act-order]]
                       [--device cpu|cuda] [--min-expert-tokens 32] [--resume] [--force]
                       [--offload disk]
    torchrun --nproc-per-node N -m batquant calibrate ... [--timeout 1800]
                       [--gradient-order sample]
    batquant eval --model DIR [--quantized DIR ...] --ppl FILE.txt [--seq-len 2048]
    batquant export --quantized DIR --out DIR [--model DIR] [--force]
    batquant dump-layer --export DIR --layer 3 --module mlp.down_proj --text FILE.txt
                        --tokens 64 --out DIR [--accum exact,block_fp32] [--force]
    batquant plot --model DIR --quantized DIR --layer 3 --module down_proj --out FIG.png
                  [--text FILE.txt] [--tokens 512]
    batquant plot --losses RUN_DIR --out FIG.png

Every problem the user can fix (a missing or corrupt checkpoint, an
architecture without an adapter, a layer the adapter does not describe,
dimensions the MX blocks do not divide, a ``--seq-len`` past the model's
positions, an output folder that exists, too little calibration text, NaN or
Inf during calibration) prints one line, ``batquant: error: ...``, on stderr and exits
with status 2.  Nothing the user gave is overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

EXIT_USAGE = 2

#: Seconds a rank of a data-parallel run waits for the others (``--timeout``).
DEFAULT_TIMEOUT = 1800.0

CALIBRATE_EXAMPLE = """\
example:
  batquant calibrate --model ./Qwen3-0.6B --method batquant --config W4A4KV16 \\
      --calib calib.txt --out ./qwen3-w4a4 --samples 128 --seq-len 2048
  batquant calibrate ... --out ./qwen3-w4a4 --resume    # continue an interrupted run
  torchrun --nproc-per-node 2 -m batquant calibrate ...  # data parallel (gloo; NCCL on cuda)
"""
EVAL_EXAMPLE = """\
example:
  batquant eval --model ./Qwen3-0.6B --quantized ./qwen3-w4a4 --ppl wiki.test.txt
"""
PLOT_EXAMPLE = """\
example:
  batquant plot --model ./Qwen3-0.6B --quantized ./qwen3-w4a4 --layer 3 --module down_proj \
      --out down3.png
  batquant plot --losses ./qwen3-w4a4 --out losses.png
"""
EXPORT_EXAMPLE = """\
example:
  batquant export --quantized ./qwen3-w4a4 --out ./qwen3-w4a4-mx
  batquant dump-layer --export ./qwen3-w4a4-mx --layer 3 --module mlp.down_proj \\
      --text calib.txt --tokens 64 --out ./layer3-down --accum exact,block_fp32
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error convention of this CLI."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``batquant``."""
    from batquant.algorithms.methods import METHODS
    from batquant.config import CONFIGS
    from batquant.pipeline.sequential import MIN_EXPERT_TOKENS

    parser = _Parser(
        prog="batquant",
        description="Calibrate transformers causal LMs for MX hardware (BATQuant and the "
        "baselines) and measure their perplexity.",
        epilog=CALIBRATE_EXAMPLE + EVAL_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)  # fmt: skip
    cal = sub.add_parser(
        "calibrate",
        help="calibrate and quantize a local checkpoint, write the quantized model",
        description="Calibrate every decoder layer of a local checkpoint with a method and "
        "write the quantized model (batquant.json + quantized.safetensors) to --out.",
        epilog=CALIBRATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cal.add_argument("--model", required=True, metavar="DIR",
                     help="local checkpoint folder (config.json + safetensors, or one .gguf)")
    cal.add_argument("--method", default="batquant", metavar="NAME",
                     help=f"one of {', '.join(METHODS)} (default: %(default)s)")
    cal.add_argument("--config", default="W4A4KV16", metavar="NAME",
                     help=f"one of {', '.join(CONFIGS)} (default: %(default)s)")
    cal.add_argument("--calib", required=True, metavar="FILE.txt", help="calibration text")
    cal.add_argument("--out", required=True, metavar="DIR", help="new output folder")
    cal.add_argument("--samples", type=int, default=128, help="windows (default: %(default)s)")
    cal.add_argument("--seq-len", type=int, default=2048, help="tokens per window "
                     "(default: %(default)s)")  # fmt: skip
    cal.add_argument("--epochs", type=int, default=None,
                     help="epochs per layer (default: the paper's 5; calibrated methods only)")
    cal.add_argument("--gradient-order", choices=("batch", "sample"), default=None,
                     help="'sample': one backward per sample, summed in sample order, so that "
                     "a torchrun run equals one process bit for bit; slower (default: batch; "
                     "calibrated methods only)")  # fmt: skip
    cal.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    cal.add_argument("--objective", default="layer", choices=("layer", "linear"),
                     help="decoder-layer output MSE (the paper's eq. 5) or per-linear MSE "
                     "(Algorithm 2) (default: %(default)s)")
    cal.add_argument("--propagate", default="full_precision",
                     choices=("full_precision", "quantized"),
                     help="what the next layer calibrates on (default: %(default)s)")
    cal.add_argument("--min-expert-tokens", type=int, default=None, metavar="N",
                     help="MoE models: an expert routed fewer calibration tokens keeps its "
                     f"initial transform (default: {MIN_EXPERT_TOKENS})")
    cal.add_argument("--weight-quantizer", default="rtn", choices=("rtn", "gptq"),
                     help="round the weights to nearest, or by MX-GPTQ once the transforms are "
                     "fixed (default: %(default)s)")
    cal.add_argument("--act-order", action="store_true",
                     help="GPTQ: quantize columns by decreasing Hessian diagonal")
    cal.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    cal.add_argument("--offload", choices=("disk",), default=None,
                     help="never hold the whole model in memory: read each decoder layer from "
                     "the checkpoint when it is calibrated, keep the calibrated ones on disk "
                     "(safetensors checkpoints)")
    cal.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="under torchrun: how long a rank waits for the others before it "
                     f"stops with an error (default: {DEFAULT_TIMEOUT:g})")
    cal.add_argument("--resume", action="store_true",
                     help="continue the unfinished run in --out")
    cal.add_argument("--force", action="store_true", help="replace an existing --out")
    cal.add_argument("--quiet", action="store_true", help="no progress bars")
    cal.set_defaults(func=cmd_calibrate)

    ev = sub.add_parser(
        "eval",
        help="perplexity of the full-precision model and of quantized ones",
        description="Perplexity (non-overlapping windows of --seq-len, as FlatQuant and "
        "QuaRot compute it) of --model and of every --quantized folder, as a table with "
        "the recovery against full precision (100 x PPL_fp / PPL).",
        epilog=EVAL_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--model", required=True, metavar="DIR", help="local checkpoint folder")
    ev.add_argument("--quantized", action="append", default=[], metavar="DIR",
                    help="an output folder of 'batquant calibrate' (repeatable)")
    ev.add_argument("--ppl", required=True, metavar="FILE.txt", help="evaluation text")
    ev.add_argument("--seq-len", type=int, default=2048, help="default: %(default)s")
    ev.add_argument("--batch-size", type=int, default=8, metavar="N",
                    help="windows per forward pass; the logits of a batch take N x seq-len x "
                    "vocab floats (default: %(default)s)")
    ev.add_argument("--json", metavar="FILE", help="also write the table as JSON (new file)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser(
        "export",
        help="write a calibrated model as packed MX weights that runtimes and devices read",
        description="Pack the weights of a 'batquant calibrate' output as MX codes and E8M0 "
        "scales (compressed-tensors' layout), with the online transforms, config.json and a "
        "MANIFEST, into a new folder that batquant.load_export reads without the original "
        "checkpoint (docs/export.md).",
        epilog=EXPORT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("--quantized", required=True, metavar="DIR",
                    help="an output folder of 'batquant calibrate'")
    ex.add_argument("--model", metavar="DIR",
                    help="the original checkpoint (default: the one the calibration read)")
    ex.add_argument("--out", required=True, metavar="DIR", help="new export folder")
    ex.add_argument("--force", action="store_true", help="replace an existing --out")
    ex.set_defaults(func=cmd_export)

    dump = sub.add_parser(
        "dump-layer",
        help="one quantized linear's MX activation, MX weight and reference outputs",
        description="Run an export on the first --tokens tokens of --text and write one "
        "linear's MX-quantized activation and MX weight as mxref files, with mxref.matmul's "
        "reference output under each --accum model, for checking a device layer by layer "
        "(mxref gemm, mxref compare).",
        epilog=EXPORT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dump.add_argument("--export", required=True, metavar="DIR", help="a 'batquant export' folder")
    dump.add_argument("--layer", required=True, type=int, help="decoder layer index")
    dump.add_argument("--module", required=True, help="the linear inside it, e.g. mlp.down_proj")
    dump.add_argument("--text", required=True, metavar="FILE.txt", help="input text")
    dump.add_argument("--tokens", type=int, default=64, help="tokens (default: %(default)s)")
    dump.add_argument("--accum", default="exact",
                      help="comma-separated mxref accumulation models (default: %(default)s)")
    dump.add_argument("--out", required=True, metavar="DIR", help="new dump folder")
    dump.add_argument("--force", action="store_true", help="replace an existing --out")
    dump.set_defaults(func=cmd_dump_layer)

    plot = sub.add_parser(
        "plot",
        help="draw a linear's block magnitudes before and after its transform, or the loss curves",
        description="With --model and --quantized: run --text through the quantized model and "
        "draw one linear's per-block activation magnitudes before and after its method's "
        "transform (heat maps), and the histograms of an outlier block and a median block "
        "divided by their E8M0 scales (the paper's Fig. 2 and 5).  With --losses: draw every "
        "layer's calibration loss against its step, from the run's calibration.jsonl.",
        epilog=PLOT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("--model", metavar="DIR", help="the original checkpoint")
    plot.add_argument("--quantized", metavar="DIR", help="an output folder of 'batquant calibrate'")
    plot.add_argument("--layer", type=int, help="decoder layer index")
    plot.add_argument("--module", help="the linear, e.g. down_proj or self_attn.q_proj")
    plot.add_argument("--text", metavar="FILE.txt",
                      help="input text (default: the embedded held-out text)")
    plot.add_argument("--tokens", type=int, default=512, help="tokens run (default: %(default)s)")
    plot.add_argument("--losses", metavar="RUN_DIR",
                      help="a calibrate output folder or run folder (its calibration.jsonl)")
    plot.add_argument("--out", required=True, metavar="FIG.png", help="new PNG file")
    plot.set_defaults(func=cmd_plot)
    return parser


def _prepare_out(out: Path, model: Path, resume: bool, force: bool, writer: bool = True) -> Path:
    """Check --out; return the run folder inside it (activation cache and checkpoints).

    Only the ``writer`` (rank 0 of a data-parallel run) removes an old run.
    """
    run = out / ".calibration"
    if out.resolve() == model.resolve() or model.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} is inside --model; choose a new folder")
    if resume:
        if not (run / "run.json").is_file():
            raise ValueError(f"--resume: {out} holds no unfinished run")
        return run
    if out.exists():
        if not force:
            raise ValueError(f"--out {out} exists; pass --force to replace it, or --resume "
                             "to continue its unfinished run")  # fmt: skip
        if not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder")
        if run.exists() and writer:
            shutil.rmtree(run)
    return run


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run ``batquant calibrate``."""
    from batquant.algorithms.methods import get_method
    from batquant.config import CalibSpec, GPTQSpec, get_config
    from batquant.loading import (
        calibration_windows,
        load_model,
        load_tokenizer,
        read_token_ids,
    )
    from batquant.pipeline import quantize_model
    from batquant.pipeline.ranks import Ranks
    from batquant.pipeline.saving import save_quantized

    method = get_method(args.method)
    config = get_config(args.config)
    if args.act_order and args.weight_quantizer != "gptq":
        raise ValueError("--act-order is a GPTQ setting; add --weight-quantizer gptq")
    weight_quantizer = GPTQSpec(act_order=True) if args.act_order else args.weight_quantizer
    if args.epochs is not None and not method.calibrated:
        raise ValueError(f"--epochs: method {method.name!r} is training-free; leave --epochs out")
    if args.gradient_order is not None and not method.calibrated:
        raise ValueError(f"--gradient-order: method {method.name!r} is training-free; leave "
                         "--gradient-order out")  # fmt: skip
    calib = None
    if method.calibrated:
        epochs = CalibSpec().epochs if args.epochs is None else args.epochs
        order = CalibSpec().gradient_order if args.gradient_order is None else args.gradient_order
        calib = CalibSpec(epochs=epochs, samples=args.samples, gradient_order=order)
    out, model_dir = Path(args.out), Path(args.model)
    ranks = Ranks.of_process_group()
    if args.timeout is not None and not ranks.parallel:
        raise ValueError("--timeout: applies to the ranks of a torchrun run only; this "
                         "process runs alone")  # fmt: skip
    # every rank checks --out before rank 0 changes anything in it
    _prepare_out(out, model_dir, args.resume, args.force, writer=False)
    ranks.barrier("the check of --out")
    run = _prepare_out(out, model_dir, args.resume, args.force, writer=ranks.main)
    ranks.barrier("the preparation of --out")
    _check_architecture(model_dir)
    _check_seq_len(model_dir, args.seq_len)
    tokenizer = load_tokenizer(model_dir)
    ids = read_token_ids(tokenizer, args.calib)
    windows = calibration_windows(ids, args.samples, args.seq_len, args.seed,
                                  source=f"--calib {args.calib}")  # fmt: skip
    model = load_model(model_dir, offload=args.offload,
                       offload_dir=run / "offload" if args.offload else None)  # fmt: skip
    started = time.perf_counter()
    qmodel: Any = quantize_model(
        model, windows, method=method, config=config, calib=calib, seed=args.seed,
        cache_dir=run, progress=not args.quiet, device=args.device,
        objective=args.objective, propagate=args.propagate,
        min_expert_tokens=args.min_expert_tokens, weight_quantizer=weight_quantizer,
        inplace=True, offload=args.offload,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    ranks.barrier("the end of the calibration")
    if not ranks.main:
        return 0
    qmodel.batquant_info["source"] = {"model": str(model_dir), "calib": str(args.calib),
                                      "seconds": round(seconds, 1)}  # fmt: skip
    if ranks.parallel:
        qmodel.batquant_info["ranks"] = ranks.world
    save_quantized(qmodel, out, force=True)
    log = run / "calibration.jsonl"
    if log.is_file():
        shutil.copyfile(log, out / "calibration.jsonl")
    shutil.rmtree(run)
    on = f" on {ranks.world} ranks" if ranks.parallel else ""
    print(f"wrote {out} ({method.name}, {config.describe()}, {seconds:.0f} s{on})")
    return 0


def _check_architecture(model_dir: Path) -> None:
    """Fail before loading weights when no adapter knows the checkpoint's architecture."""
    from batquant.loading import architecture
    from batquant.models import ADAPTERS

    name = architecture(model_dir)
    if name and name not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(f"{model_dir}: architecture {name!r} has no adapter; supported: {known}")


def _check_seq_len(model_dir: Path, seq_len: int) -> None:
    """Refuse windows longer than the checkpoint's max_position_embeddings, before loading it."""
    from types import SimpleNamespace

    from batquant.loading import max_positions
    from batquant.pipeline.validate import check_seq_len

    check_seq_len(seq_len, SimpleNamespace(max_position_embeddings=max_positions(model_dir)),
                  "--seq-len")  # fmt: skip


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``batquant eval``: the perplexity table."""
    from batquant.eval import perplexity
    from batquant.loading import load_model, load_tokenizer, read_token_ids
    from batquant.pipeline.saving import load_quantized, read_settings

    if args.json is not None and Path(args.json).exists():
        raise ValueError(f"--json {args.json} exists; choose a new file")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    model_dir = Path(args.model)
    for q in args.quantized:
        read_settings(q)  # fail on a bad folder before the long full-precision run
    _check_architecture(model_dir)
    _check_seq_len(model_dir, args.seq_len)
    tokenizer = load_tokenizer(model_dir)
    ids = read_token_ids(tokenizer, args.ppl)
    if ids.numel() < args.seq_len:
        raise ValueError(f"--ppl {args.ppl} has {ids.numel()} tokens, fewer than one window "
                         f"of --seq-len {args.seq_len}")  # fmt: skip
    model = load_model(model_dir)
    fp = perplexity(model, ids, seq_len=args.seq_len, batch_size=args.batch_size,
                    progress=not args.quiet)
    rows: list[dict[str, object]] = [{"method": "full precision", "config": "-", "ppl": fp}]
    for q in args.quantized:
        qmodel: Any = load_quantized(q, model)
        info = qmodel.batquant_info
        rows.append({"method": info["method"], "config": info["config"].get("name") or "custom",
                     "ppl": perplexity(qmodel, ids, seq_len=args.seq_len,
                                       batch_size=args.batch_size, progress=not args.quiet),
                     "folder": str(q)})  # fmt: skip
        del qmodel
    print(format_table(rows, seq_len=args.seq_len, tokens=int(ids.numel())))
    if args.json is not None:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``batquant export``: rebuild the calibrated model, write the packed export."""
    from batquant.deploy import export
    from batquant.deploy.folders import check_new
    from batquant.loading import load_model, load_tokenizer
    from batquant.pipeline.saving import load_quantized, read_settings

    out = Path(args.out)
    check_new(out, args.force)
    info = read_settings(args.quantized)
    source = args.model or (info.get("source") or {}).get("model")
    if not source:
        raise ValueError(f"{args.quantized} does not name its original checkpoint; pass --model")
    model_dir = Path(source)
    _check_architecture(model_dir)
    tokenizer = load_tokenizer(model_dir)
    qmodel: Any = load_quantized(args.quantized, load_model(model_dir), inplace=True)
    summary = export(qmodel, out, force=args.force, tokenizer=tokenizer)
    original, saved = _folder_bytes(model_dir), _folder_bytes(Path(args.quantized))
    mib = 1 << 20
    print(f"wrote {out}: {summary.bytes / mib:.1f} MiB "
          f"({summary.bits_per_weight:.2f} bits per quantized weight), against "
          f"{original / mib:.1f} MiB for {model_dir} and {saved / mib:.1f} MiB for "
          f"{args.quantized}")  # fmt: skip
    if summary.plain:
        print("plain: a compressed-tensors checkpoint (transformers and vLLM load it)")
    else:
        print("needs online parts, load with batquant.load_export: " + "; ".join(summary.online))
    return 0


def cmd_dump_layer(args: argparse.Namespace) -> int:
    """Run ``batquant dump-layer``."""
    from batquant.deploy import load_export
    from batquant.deploy.folders import check_new
    from batquant.deploy.layer_dump import dump_layer
    from batquant.deploy.loading import load_export_tokenizer
    from batquant.loading import read_token_ids

    check_new(Path(args.out), args.force)
    if args.tokens < 1:
        raise ValueError(f"--tokens must be >= 1; got {args.tokens}")
    accum = tuple(a.strip() for a in args.accum.split(",") if a.strip())
    if not accum:
        raise ValueError("--accum names no accumulation model")
    if not Path(args.export).is_dir():
        raise ValueError(f"--export {args.export}: no such export folder")
    tokenizer = load_export_tokenizer(args.export)
    ids = read_token_ids(tokenizer, args.text)
    if ids.numel() < args.tokens:
        raise ValueError(f"--text {args.text} has {ids.numel()} tokens, fewer than --tokens "
                         f"{args.tokens}")  # fmt: skip
    model = load_export(args.export)
    summary = dump_layer(model, ids[: args.tokens].view(1, -1), args.out, layer=args.layer,
                         module=args.module, accum=accum, force=args.force)  # fmt: skip
    gap = summary["exact_vs_torch"]["max_abs"]
    print(f"wrote {args.out}: layer {args.layer} {args.module}, {args.tokens} tokens; exact "
          f"reference vs torch forward: max |diff| {gap:.3g}")  # fmt: skip
    print("check a device: " + " && ".join(summary["check"]))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """Run ``batquant plot``: block magnitudes of one linear, or the loss curves of a run."""
    from batquant.eval import figures

    out = figures.check_png_path(args.out)
    block_args = {"--model": args.model, "--quantized": args.quantized, "--layer": args.layer,
                  "--module": args.module}  # fmt: skip
    if args.losses is not None:
        given = [k for k, v in block_args.items() if v is not None] + (
            ["--text"] if args.text is not None else [])
        if given:
            raise ValueError(f"--losses draws a run's log; {', '.join(given)} belong to the "
                             "block figure")  # fmt: skip
        curves = figures.loss_curves(args.losses)
        figures.plot_losses(curves, out, title=f"calibration loss per layer: {args.losses}")
        print(f"wrote {out}: {len(curves)} layers, {sum(map(len, curves.values()))} steps")
        return 0
    missing = [k for k, v in block_args.items() if v is None]
    if missing:
        raise ValueError(f"the block figure needs {', '.join(missing)} (or pass --losses)")
    if args.tokens < 1:
        raise ValueError(f"--tokens must be >= 1; got {args.tokens}")
    from batquant.demo import model_dir
    from batquant.loading import load_model, load_tokenizer, read_token_ids
    from batquant.pipeline.saving import load_quantized, read_settings

    read_settings(args.quantized)
    model_path = Path(args.model)
    _check_architecture(model_path)
    text = Path(args.text) if args.text is not None else model_dir() / "heldout.txt"
    ids = read_token_ids(load_tokenizer(model_path), text)[: args.tokens]
    qmodel = load_quantized(args.quantized, load_model(model_path), inplace=True)
    view = figures.block_view(qmodel, ids, layer=args.layer, module=args.module)
    figures.plot_blocks(view, out)
    ratio = float(view.before.max() / view.after.max())
    print(f"wrote {out}: {view.title}, {view.before.shape[0]} tokens; largest block magnitude "
          f"{float(view.before.max()):.4g} before, {float(view.after.max()):.4g} after "
          f"the transform ({ratio:.2f}x)")  # fmt: skip
    return 0


def format_table(rows: list[dict[str, object]], *, seq_len: int, tokens: int) -> str:
    """Method, config, PPL and recovery (100 x PPL_fp / PPL) against the first row."""
    fp = float(rows[0]["ppl"])  # type: ignore[arg-type]
    lines = [f"perplexity, {tokens} tokens in windows of {seq_len}",
             f"{'method':<22} {'config':<10} {'PPL':>10} {'recovery':>9}"]  # fmt: skip
    for r in rows:
        ppl = float(r["ppl"])  # type: ignore[arg-type]
        lines.append(f"{r['method']!s:<22} {r['config']!s:<10} {ppl:>10.3f} "
                     f"{100 * fp / ppl:>8.1f}%")  # fmt: skip
    return "\n".join(lines)


def _torchrun_world() -> int:
    """The number of ranks torchrun started (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


@contextmanager
def _process_group(args: argparse.Namespace) -> Iterator[None]:
    """Under torchrun, the process group of a data-parallel calibration (gloo; NCCL on cuda)."""
    if _torchrun_world() == 1:
        yield
        return
    if args.func is not cmd_calibrate:
        raise ValueError("only 'batquant calibrate' runs under torchrun; run this command "
                         "as one process")  # fmt: skip
    import torch
    import torch.distributed as dist

    cuda = str(args.device).startswith("cuda")
    if cuda:  # one GPU per rank: this node's rank picks it
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    seconds = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if seconds <= 0:
        raise ValueError(f"--timeout must be > 0 seconds; got {seconds:g}")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=seconds))
    try:
        yield
    finally:
        dist.destroy_process_group()


def _report(text: str) -> None:
    """Print one error line; under torchrun also hand it to the launcher's failure summary."""
    parallel = os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1")
    rank = os.environ.get("RANK") if parallel else None
    line = f"batquant: error: {text}" if rank is None or text.startswith("rank ") \
        else f"batquant: error: rank {rank}: {text}"  # fmt: skip
    print(line, file=sys.stderr)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:  # torchelastic's error-file format; its summary then shows this line
        record = {"message": {"message": line, "extraInfo": {
            "py_callstack": line, "timestamp": str(int(time.time()))}}}  # fmt: skip
        with contextlib.suppress(OSError):
            Path(error_file).write_text(json.dumps(record), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``batquant`` command line; 2 and one line on stderr for bad input.

    Under torchrun, a rank's error line names the rank, and a rank whose
    error stops it makes the others stop at their next collective.
    """
    from batquant.pipeline.ranks import RankError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        with _process_group(args):
            return int(args.func(args))
    except (ValueError, TypeError, OSError, RankError) as exc:
        # batquant's errors are written for the user; OSError covers paths and a full disk
        _report(" ".join(str(exc).split()) or type(exc).__name__)
        return EXIT_USAGE
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("batquant: interrupted; continue with --resume", file=sys.stderr)
        return 130
