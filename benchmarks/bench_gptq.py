"""Cost of MX-GPTQ on one decoder layer with Qwen3-0.6B's dimensions, against the same layer's RTN.

Run ``python benchmarks/bench_gptq.py`` (``make bench``).  One Qwen3 decoder
layer with Qwen3-0.6B's dimensions (hidden 1024, 16 heads x 128, 8 KV heads,
MLP 3072), random weights, is quantized by ``batquant.quantize_model``
(``rtn``, W4A4KV16) on 16 x 512 tokens, once with ``weight_quantizer="rtn"``
and once with ``"gptq"``, each in its own process so that each peak resident
memory is its own.  Reported, with the RTN run as the same-run baseline:

- seconds for the whole layer (full-precision pass, Hessian pass, rounding,
  propagation) and for the rounding alone (GPTQ's column sweeps);
- peak resident memory of each process;
- GPTQ's layer-output error on the calibration inputs, as a fraction of RTN's
  with the same static scales.

torch runs on 2 threads.  The exit status is 0: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
from timing import cpu_model, rss_mib  # beside this script

import batquant

TORCH_THREADS = 2


def one_run(weight_quantizer: str, samples: int, seq_len: int) -> dict[str, float]:
    """Quantize the layer with one weight quantizer; its timings and peak memory."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=1024, hidden_size=1024, intermediate_size=3072, num_hidden_layers=1,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False,
    )  # fmt: skip
    config.architectures = ["Qwen3ForCausalLM"]
    model = Qwen3ForCausalLM(config).eval()
    ids = torch.randint(0, 1024, (samples, seq_len), generator=torch.Generator().manual_seed(1))
    before = rss_mib()
    started = time.perf_counter()
    q = batquant.quantize_model(model, ids, method="rtn", config="W4A4KV16",
                                weight_quantizer=weight_quantizer, progress=False,
                                inplace=True)  # fmt: skip
    total = time.perf_counter() - started
    layer = q.batquant_info["layers"][0]
    gptq = layer.get("gptq") or {}
    return {"total_s": total, "layer_s": layer["seconds"], "rounding_s": gptq.get("seconds", 0.0),
            "error_vs_rtn": gptq.get("error_vs_rtn"), "peak_mib": rss_mib(),
            "before_mib": before}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--child", choices=("rtn", "gptq"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_run(args.child, args.samples, args.seq_len)))
        return 0
    runs = {}
    for wq in ("rtn", "gptq"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", wq, "--samples", str(args.samples),
             "--seq-len", str(args.seq_len)], check=True, capture_output=True, text=True,
        )  # fmt: skip
        runs[wq] = json.loads(out.stdout.strip().splitlines()[-1])
    rtn, gptq = runs["rtn"], runs["gptq"]
    print(f"cpu: {cpu_model()}; torch {torch.__version__}, {TORCH_THREADS} threads")
    print(f"layer: Qwen3-0.6B dimensions (hidden 1024, MLP 3072, 16 x 128 heads, 8 KV heads); "
          f"rtn W4A4KV16; {args.samples} x {args.seq_len} tokens; each run in its own process")
    print(f"whole layer:  gptq {gptq['layer_s']:7.2f} s   rtn {rtn['layer_s']:7.2f} s   "
          f"ratio {gptq['layer_s'] / rtn['layer_s']:.2f}x")
    print(f"GPTQ rounding alone (7 weights, column sweeps): {gptq['rounding_s']:.2f} s")
    print(f"peak memory:  gptq {gptq['peak_mib']:7.0f} MiB   rtn {rtn['peak_mib']:7.0f} MiB   "
          f"(+{gptq['peak_mib'] - rtn['peak_mib']:.0f} MiB; both from "
          f"{rtn['before_mib']:.0f} MiB before quantizing)")
    print(f"layer-output error on the calibration inputs: GPTQ {gptq['error_vs_rtn']:.3f} x RTN's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
