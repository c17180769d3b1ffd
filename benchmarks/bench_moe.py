"""Cost of calibrating one MoE decoder layer with Qwen3-30B-A3B's per-expert shapes.

Run ``python benchmarks/bench_moe.py`` (``make bench``).  One Qwen3-MoE
decoder layer with Qwen3-30B-A3B's dimensions (hidden 2048, 32 heads, 4 KV
heads, head_dim 128, moe_intermediate 768, top-8) but 16 experts instead of
128, so that it fits here, with random weights, is calibrated by
``batquant.quantize_model`` (W4A4KV16, 1 epoch) on 16 x 256 tokens, batch 4:
4 optimiser steps.  Reported, with same-run baselines:

- seconds per calibration step, and its ratio to a plain full-precision
  forward+backward of the same layer on the same batch (weights requiring grad);
- the tokens each expert was routed in the full-precision pass;
- peak resident memory of the process, and its growth over the calibration;
- the quantized layer's forward against the full-precision layer's.

torch runs on 2 threads.  The exit status is 0: a measurement, not a test.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--method", default="batquant")
    parser.add_argument("--config", default="W4A4KV16")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    if args.experts < 8:
        parser.error(f"--experts {args.experts}: the layer routes every token to 8 experts")
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=1024, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
        num_hidden_layers=1, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
        num_experts=args.experts, num_experts_per_tok=8, norm_topk_prob=True,
        max_position_embeddings=4096, rms_norm_eps=1e-6,
    )  # fmt: skip
    config.architectures = ["Qwen3MoeForCausalLM"]
    model = Qwen3MoeForCausalLM(config).eval()
    ids = torch.randint(0, 1024, (args.samples, args.seq_len))
    batch = 4

    layer = model.model.layers[0]
    x = torch.randn(batch, args.seq_len, 2048)
    pos = torch.arange(args.seq_len)[None]
    rope = model.model.rotary_emb(x, pos)
    fp_step_s, fp_forward_s = full_precision_layer_costs(layer, x, rope, args.reps)

    before = rss_mib()
    started = time.perf_counter()
    calib = batquant.CalibSpec(epochs=1, batch_size=batch, samples=args.samples)
    q = batquant.quantize_model(model, ids, method=args.method, config=args.config,
                                calib=calib, progress=False, inplace=True)  # fmt: skip
    total_s = time.perf_counter() - started
    peak = rss_mib()
    summary = q.batquant_info["layers"][0]
    step_s = summary["train_seconds"] / max(1, summary["steps"])
    qlayer = q.model.layers[0]
    with torch.no_grad():
        q_forward_s = median_seconds(lambda: qlayer(x, position_embeddings=rope,
                                                    attention_mask=None), args.reps)  # fmt: skip
    tokens = summary["expert_tokens"]["experts"]

    print(f"cpu: {cpu_model()}; torch {torch.__version__}, {TORCH_THREADS} threads")
    print(f"layer: Qwen3-30B-A3B shapes, {args.experts} experts of 768, top-8; {args.method} "
          f"{args.config}; {args.samples} x {args.seq_len} tokens, batch {batch}, 1 epoch = "
          f"{summary['steps']} steps")
    print(f"calibration step:   {step_s:8.3f} s   full-precision fwd+bwd {fp_step_s:.3f} s   "
          f"ratio {step_s / fp_step_s:.2f}x")
    print(f"whole layer:        {summary['seconds']:8.2f} s (FP pass, training, freezing, "
          f"propagation); quantize_model {total_s:.2f} s")
    print(f"tokens per expert:  {tokens} (min {min(tokens)}, max {max(tokens)}); kept "
          f"initial: {summary['experts_kept_initial'] or 'none'}")
    print(f"peak memory:        {peak:8.0f} MiB resident (before calibration {before:.0f} MiB; "
          f"growth {peak - before:.0f} MiB)")
    print(f"inference forward:  {q_forward_s:8.3f} s   full-precision {fp_forward_s:.3f} s   "
          f"ratio {q_forward_s / fp_forward_s:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
