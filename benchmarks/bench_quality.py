"""Layer-level quality of every registered method on LLM-like synthetic activations.

Run ``python benchmarks/bench_quality.py`` (``make bench-quality``).  One
linear layer (1024 -> 1024 by default; ``--features 4096`` for the paper's
size) sees activations from :func:`batquant.synthetic.llm_like_activations`
(a few channels 100-1000x the median, log-normal channel scales, 1% of
tokens spiked 10-50x, Student-t(4) tails) and a Student-t weight.  Every
method is calibrated on ``--calib-tokens`` tokens and scored on as many
held-out tokens from the same distribution:

    relative output MSE = ||x W^T - Q(x) Q(W)^T||^2 / ||x W^T||^2

The script prints, for W4A4 and W4A8, every method's relative MSE on the
held-out and on the calibration tokens, its calibration time and its
transform's parameter count; then the ablation table of the BATQuant
variants; then whether BATQuant beats BRQ, QuaRot and FlatQuant here.  It is
a measurement: the exit status is 0 whatever the outcome.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from timing import cpu_model  # beside this script

import batquant
from batquant.synthetic import llm_like_activations, llm_like_weight

ABLATION = ("batquant", "batquant-full", "batquant-naive", "batquant-globalclip")
RIVALS = ("brq", "quarot", "flatquant")


def relative_mse(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``||reference - approx||^2 / ||reference||^2`` in float64."""
    ref = reference.double()
    return float((ref - approx.double()).square().sum() / ref.square().sum())


def run(args: argparse.Namespace) -> dict[tuple[str, str], dict[str, float]]:
    n, m = args.features, args.out_features or args.features
    x = llm_like_activations(args.calib_tokens + args.eval_tokens, n, seed=args.seed)
    x_cal, x_eval = x[: args.calib_tokens], x[args.calib_tokens :]
    linear = torch.nn.Linear(n, m, bias=False)
    with torch.no_grad():
        linear.weight.copy_(llm_like_weight(m, n, seed=args.seed + 1))
        y_cal, y_eval = linear(x_cal), linear(x_eval)
    spec = batquant.CalibSpec(epochs=args.epochs)
    results = {}
    for config in args.configs:
        print(f"\n## {config}: {n} -> {m}, {args.calib_tokens} calibration tokens, "
              f"{args.eval_tokens} held-out tokens")  # fmt: skip
        print(f"{'method':<22}{'rel MSE held-out':>18}{'rel MSE calib':>15}{'calib s':>10}"
              f"{'params':>10}")  # fmt: skip
        for name in args.methods:
            t0 = time.perf_counter()
            # a training-free method rejects a CalibSpec rather than ignore it
            method_spec = spec if batquant.METHODS[name].calibrated else None
            group = batquant.calibrate(linear, x_cal, method_spec, method=name, config=config,
                                       seed=args.seed)  # fmt: skip
            seconds = time.perf_counter() - t0
            qlin = group.quantized_linears()[0]
            with torch.no_grad():
                held_out = relative_mse(y_eval, qlin(x_eval))
                calib = relative_mse(y_cal, qlin(x_cal))
            params = 0 if group.transform is None else group.transform.num_params
            results[config, name] = {"held_out": held_out, "calib": calib, "seconds": seconds,
                                     "params": params}  # fmt: skip
            print(f"{name:<22}{held_out:>18.5f}{calib:>15.5f}{seconds:>10.1f}{params:>10,}",
                  flush=True)  # fmt: skip
    return results


def report(results: dict[tuple[str, str], dict[str, float]], args: argparse.Namespace) -> None:
    names = [a for a in ABLATION if a in args.methods]
    if names:
        print("\n## Ablation (relative output MSE, held-out)")
        print(f"{'variant':<22}{'P params':>10}" + "".join(f"{c:>10}" for c in args.configs))
        for name in names:
            params = results[args.configs[0], name]["params"]
            row = "".join(f"{results[c, name]['held_out']:>10.5f}" for c in args.configs)
            print(f"{name:<22}{int(params):>10,}{row}")
    if "batquant" not in args.methods:
        return
    print("\n## Does BATQuant beat BRQ, QuaRot and FlatQuant here?")
    for config in args.configs:
        ours = results[config, "batquant"]["held_out"]
        for rival in RIVALS:
            if rival in args.methods:
                theirs = results[config, rival]["held_out"]
                verdict = "yes" if ours < theirs else "NO"
                print(f"{config} vs {rival:<10} {verdict:>4}  ({ours:.5f} vs {theirs:.5f}, "
                      f"ratio {ours / theirs:.3f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--out-features", type=int, default=None)
    parser.add_argument("--calib-tokens", type=int, default=2048)
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", nargs="+", default=["W4A4", "W4A8"])
    parser.add_argument("--methods", nargs="+", default=list(batquant.METHODS))
    args = parser.parse_args()
    for name in args.methods:
        batquant.get_method(name)  # unknown names fail before any work
    torch.set_num_threads(2)
    print(f"bench_quality: {cpu_model()}, {platform.python_version()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    report(run(args), args)


if __name__ == "__main__":
    main()
