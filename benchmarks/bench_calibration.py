"""Cost of calibrating one decoder layer, and the inference overhead of the quantized layer.

Run ``python benchmarks/bench_calibration.py`` (``make bench``).  One Qwen3
decoder layer with Qwen3-0.6B's dimensions (hidden 1024, intermediate 3072,
16 heads, 8 KV heads, head_dim 128) and random weights is calibrated by
``batquant.quantize_model`` (method batquant, W4A4KV16, 1 epoch) on 32 x 512
tokens, batch 4: 8 optimiser steps.  Reported, with same-run baselines:

- seconds per calibration step, and its ratio to a plain full-precision
  forward+backward of the same layer on the same batch of 4 x 512 tokens
  (weights requiring grad): target <= 3x;
- peak resident memory of the process over the calibration, and its growth;
- the quantized layer's forward (online transforms, clipping and fake
  quantization of every activation) against the full-precision layer's, on
  the same batch: target <= 1.25x.

torch runs on 2 threads.  The exit status is 0 either way: a measurement,
not a test.
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import (  # beside this script
    cpu_model,
    full_precision_layer_costs,
    median_seconds,
    rss_mib,
)

import batquant

TORCH_THREADS = 2
STEP_TARGET = 3.0
INFERENCE_TARGET = 1.25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--method", default="batquant")
    parser.add_argument("--config", default="W4A4KV16")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=1024, hidden_size=1024, intermediate_size=3072, num_hidden_layers=1,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=4096, rms_norm_eps=1e-6,
    )  # fmt: skip
    config.architectures = ["Qwen3ForCausalLM"]
    model = Qwen3ForCausalLM(config).eval()
    ids = torch.randint(0, 1024, (args.samples, args.seq_len))
    batch = 4

    # the same-run baselines: full-precision forward+backward and forward of the layer
    layer = model.model.layers[0]
    x = torch.randn(batch, args.seq_len, 1024)
    pos = torch.arange(args.seq_len)[None]
    rope = model.model.rotary_emb(x, pos)
    fp_step_s, fp_forward_s = full_precision_layer_costs(layer, x, rope, args.reps)

    before = rss_mib()
    started = time.perf_counter()
    calib = batquant.CalibSpec(epochs=1, batch_size=batch, samples=args.samples)
    q = batquant.quantize_model(model, ids, method=args.method, config=args.config,
                                calib=calib, progress=False)  # fmt: skip
    total_s = time.perf_counter() - started
    peak = rss_mib()
    summary = q.batquant_info["layers"][0]
    step_s = summary["train_seconds"] / summary["steps"]
    qlayer = q.model.layers[0]
    with torch.no_grad():
        q_forward_s = median_seconds(lambda: qlayer(x, position_embeddings=rope,
                                                    attention_mask=None), args.reps)  # fmt: skip

    print(f"cpu: {cpu_model()}; torch {torch.__version__}, {TORCH_THREADS} threads")
    print(f"layer: Qwen3-0.6B dimensions; {args.method} {args.config}; {args.samples} x "
          f"{args.seq_len} tokens, batch {batch}, 1 epoch = {summary['steps']} steps")
    print(f"calibration step:   {step_s:8.3f} s   full-precision fwd+bwd {fp_step_s:.3f} s   "
          f"ratio {step_s / fp_step_s:.2f}x (target <= {STEP_TARGET}x)")
    print(f"whole layer:        {summary['seconds']:8.2f} s (FP pass, training, freezing, "
          f"propagation); quantize_model {total_s:.2f} s")
    print(f"peak memory:        {peak:8.0f} MiB resident (before calibration {before:.0f} MiB; "
          f"growth {peak - before:.0f} MiB)")
    print(f"inference forward:  {q_forward_s:8.3f} s   full-precision {fp_forward_s:.3f} s   "
          f"ratio {q_forward_s / fp_forward_s:.2f}x (target <= {INFERENCE_TARGET}x)")
    print(f"{'PASS' if step_s / fp_step_s <= STEP_TARGET else 'FAIL'} calibration step, "
          f"{'PASS' if q_forward_s / fp_forward_s <= INFERENCE_TARGET else 'FAIL'} inference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
