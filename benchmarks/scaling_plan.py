"""The arithmetic of docs/scaling.md: Qwen3-32B and Qwen3-235B-A22B, calibrated by batquant.

Run ``python benchmarks/scaling_plan.py`` (not part of ``make test``).  It

1. builds one decoder layer of each model on the meta device (their published
   widths) and counts its weights and what batquant trains in it;
2. measures here the seconds of one optimisation step of SmolLM2-135M's
   first decoder layer at two batch sizes (4 x 256 and 4 x 2048 tokens, the
   paper's), and fits ``step = a * weights + b * weights_per_token * tokens``
   (the weight side of a step is paid once, the activation side per token);
3. prints memory per rank, activation cache per layer, communication per
   step and per layer, and the expected wall time, as Markdown tables.

The paper's budget throughout: 128 samples x 2048 tokens, batch 4, 5 epochs
(160 steps per layer), float32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from timing import commit, cpu_model

import batquant
from batquant.algorithms.methods import get_method
from batquant.config import CalibSpec, get_config
from batquant.demo import model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.models import get_adapter
from batquant.pipeline.build import LayerPlan, build_layer, learnable_parameters

SAMPLES, SEQ_LEN, BATCH, EPOCHS = 128, 2048, 4, 5
STEPS = SAMPLES // BATCH * EPOCHS
FLOAT = 4  # bytes: calibration runs in float32


@dataclass(frozen=True)
class Model:
    """A model's published widths."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    experts: int = 0
    experts_per_token: int = 0
    expert_intermediate: int = 0

    def one_layer(self) -> torch.nn.Module:
        """The model with one decoder layer, on the meta device."""
        import transformers

        common = {"vocab_size": self.vocab, "hidden_size": self.hidden, "num_hidden_layers": 1,
                  "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads,
                  "head_dim": self.head_dim, "intermediate_size": self.intermediate,
                  "tie_word_embeddings": False}  # fmt: skip
        with torch.device("meta"):
            if self.experts:
                config = transformers.Qwen3MoeConfig(
                    **common, num_experts=self.experts, num_experts_per_tok=self.experts_per_token,
                    moe_intermediate_size=self.expert_intermediate)  # fmt: skip
                model = transformers.Qwen3MoeForCausalLM(config)
                model.config.architectures = ["Qwen3MoeForCausalLM"]
            else:
                model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common))
                model.config.architectures = ["Qwen3ForCausalLM"]
        return model


#: Published configurations (their config.json files).
QWEN3_32B = Model("Qwen3-32B", 5120, 64, 64, 8, 128, 25600, 151936)
QWEN3_235B = Model("Qwen3-235B-A22B", 4096, 94, 64, 4, 128, 12288, 151936, 128, 8, 1536)


def layer_counts(model: Model) -> dict[str, int]:
    """Weights of one layer, those a token passes, what batquant trains, and GPTQ's Hessians."""
    net = model.one_layer()
    adapter = get_adapter(net)
    layer = adapter.decoder_layers(net)[0]
    plan = LayerPlan(adapter, adapter.geometry(adapter.config_of(net)), get_method("batquant"),
                     get_config("W4A4KV16"), CalibSpec(), 0)  # fmt: skip
    transforms, clips = learnable_parameters(build_layer(layer, plan, 0))
    weights = sum(p.numel() for p in layer.parameters())
    attention = 2 * model.hidden * (model.heads + model.kv_heads) * model.head_dim
    if model.experts:
        expert = 3 * model.hidden * model.expert_intermediate
        per_token = attention + model.experts_per_token * expert
        # X^T X per stream, float64: q/k/v, o, and every expert's gate/up and down
        hessians = (model.hidden**2 + (model.heads * model.head_dim) ** 2
                    + model.experts * (model.hidden**2 + model.expert_intermediate**2)) * 8
        widest = model.experts_per_token * model.expert_intermediate
    else:
        per_token = weights
        hessians = (2 * model.hidden**2 + (model.heads * model.head_dim) ** 2
                    + model.intermediate**2) * 8
        widest = model.intermediate
    return {"weights": weights, "per_token": per_token,
            "trained": sum(p.numel() for p in transforms) + sum(p.numel() for p in clips),
            "hessian_bytes": hessians, "widest": widest}  # fmt: skip


def measure_steps(tokens_per_sample: list[int]) -> dict[int, float]:
    """Seconds per optimisation step of SmolLM2's first layer, per window length."""
    tokenizer = load_tokenizer(smollm2_dir())
    ids = read_token_ids(tokenizer, model_dir() / "calib.txt")
    seconds = {}
    for seq_len in tokens_per_sample:
        model = load_model(smollm2_dir())
        model.model.layers = model.model.layers[:1]
        model.config.num_hidden_layers = 1
        windows = calibration_windows(ids, 2 * BATCH, seq_len, seed=0)
        with tempfile.TemporaryDirectory() as run:
            batquant.quantize_model(model, windows, method="batquant", config="W4A4KV16",
                                    calib=CalibSpec(epochs=2), cache_dir=run, progress=False,
                                    inplace=True)  # fmt: skip
            steps = [json.loads(line) for line in
                     (Path(run) / "calibration.jsonl").read_text().splitlines()]  # fmt: skip
        times = [s["seconds"] for s in steps if "step" in s]
        # the first step pays for warm-up: the median of the differences after it
        gaps = sorted(b - a for a, b in zip(times[:-1], times[1:], strict=True))
        seconds[seq_len] = gaps[len(gaps) // 2]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,8,32", help="ranks to plan for")
    args = parser.parse_args(argv)
    ranks = [int(r) for r in args.ranks.split(",")]
    torch.set_num_threads(2)
    smol = layer_counts(Model("SmolLM2-135M", 576, 30, 9, 3, 64, 1536, 49152))
    # SmolLM2 is a Llama; its layer counts come from the Qwen3 class of the same widths,
    # less q/k norms (2 x 64 weights): the difference is below the measurement's noise
    started = time.perf_counter()
    steps = measure_steps([256, 2048])
    tokens = {k: BATCH * k for k in steps}
    # step = a * weights + b * per_token * tokens, from the two measurements
    (t1, s1), (t2, s2) = sorted((tokens[k], v) for k, v in steps.items())
    b = (s2 - s1) / (smol["per_token"] * (t2 - t1))
    a = max(0.0, (s1 - b * smol["per_token"] * t1) / smol["weights"])
    print(f"measured here ({cpu_model()}, 2 threads, commit {commit()}, "
          f"{time.perf_counter() - started:.0f} s): SmolLM2 layer 0, batquant W4A4KV16, "
          + ", ".join(f"{tokens[k]} tokens/step: {v:.3f} s" for k, v in steps.items()))
    print(f"fit: a = {a:.3e} s per weight per step, b = {b:.3e} s per weight-token\n")
    print("| | Qwen3-32B | Qwen3-235B-A22B |\n|---|---|---|")
    counts = [layer_counts(QWEN3_32B), layer_counts(QWEN3_235B)]
    models = [QWEN3_32B, QWEN3_235B]
    gib = 1024**3

    def row(label: str, values: list[str]) -> None:
        print(f"| {label} | " + " | ".join(values) + " |")

    row("decoder layers", [str(m.layers) for m in models])
    row("weights per layer (float32)",
        [f"{c['weights'] / 1e6:.0f} M ({c['weights'] * FLOAT / gib:.1f} GiB)" for c in counts])
    row("weights a token passes per layer", [f"{c['per_token'] / 1e6:.0f} M" for c in counts])
    row("batquant trains per layer", [f"{c['trained'] / 1e6:.1f} M" for c in counts])
    # a linear under calibration holds W, W T, its fake-quantized value and the gradient
    # that flows through it: four copies; the batch's activations on top
    for n in ranks:
        cache = [SAMPLES * SEQ_LEN * m.hidden * FLOAT * 2 / n for m in models]
        row(f"activation cache per layer per rank, {n} rank(s) (inputs + targets)",
            [f"{c / gib:.1f} GiB" for c in cache])
    acts = [BATCH * SEQ_LEN * c["widest"] * FLOAT * 6 for c in counts]
    memory = [4 * c["weights"] * FLOAT + a_ for c, a_ in zip(counts, acts, strict=True)]
    row("memory per rank (4 x layer weights + 6 x widest activation of a batch)",
        [f"{m / gib:.0f} GiB" for m in memory])
    row("all-reduce per step (gradients, float32)",
        [f"{c['trained'] * FLOAT / 2**20:.0f} MiB" for c in counts])
    row("all-reduce per layer, GPTQ's X^T X (float64)",
        [f"{c['hessian_bytes'] / gib:.1f} GiB" for c in counts])
    for n in ranks:
        hours = []
        for m, c in zip(models, counts, strict=True):
            per_step = a * c["weights"] + b * c["per_token"] * BATCH * SEQ_LEN / n
            hours.append(per_step * STEPS * m.layers / 3600)
        row(f"wall time here, {n} rank(s) of 2 cores (hours)", [f"{h:,.0f}" for h in hours])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
