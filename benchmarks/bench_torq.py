"""TORQ's two effects on real activations, and the layer-level comparison.

Run ``python benchmarks/bench_torq.py`` (``make bench-torq``; SmolLM2 must have
been fetched by ``make bench-model`` first, else only the embedded model is
measured).  On the embedded tiny Qwen3 and on SmolLM2-135M it captures the
real inputs of every linear group (qkv, o, up, down) of the first, a middle
and the last decoder layer, on the demo's calibration text, and reports per
site:

- the spread of block energies (max / min of each 32-block's mean square)
  before and after TORQ's Schur-Horn inter-block rotation, on the
  calibration tokens it was fitted on and on held-out tokens;
- the Shannon entropy (bits, of 3) of the MXFP4 magnitude codes the blocks
  quantize to: unrotated, after BRQ's block Hadamard, after the Schur-Horn
  rotation alone, and after TORQ's both levels.

Then, on SmolLM2's middle layer, ``quantize_linear`` with rtn, quarot, brq,
flatquant, batquant and torq at W4A4 on q_proj and down_proj: relative
output MSE on held-out tokens after calibrating on 2048 tokens, and the
calibration time of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

import batquant
from batquant.demo import model_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.models import get_adapter
from batquant.transforms import BlockHadamard, MaxEntropyBlockRotation, SchurHornBalance
from batquant.transforms.rotations import code_entropy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import GGUF, cache_root  # noqa: E402  (beside this script)

TORCH_THREADS = 2


def capture(model: nn.Module, ids: torch.Tensor, layers: list[int]) -> dict[str, torch.Tensor]:
    """Inputs ``[tokens, N]`` of each group's first linear in ``layers``, keyed ``L<i>.<group>``."""
    adapter = get_adapter(model)
    decoder = adapter.decoder_layers(model)
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for i in layers:
        for group in adapter.groups:
            key = f"L{i}.{group.name}"

            def hook(module: nn.Module, args: tuple[torch.Tensor, ...], key: str = key) -> None:
                seen.setdefault(key, []).append(args[0].detach().flatten(0, -2).float())

            hooks.append(decoder[i].get_submodule(group.linears[0]).register_forward_pre_hook(hook))
    with torch.no_grad():
        for row in ids:
            model(row[None], use_cache=False)
    for h in hooks:
        h.remove()
    return {k: torch.cat(v) for k, v in seen.items()}


def spread(x: torch.Tensor) -> float:
    energy = (x.double().view(x.shape[0], -1, 32) ** 2).mean(dim=(0, 2))
    return float(energy.max() / energy.min())


def effects(name: str, model: nn.Module, calib: torch.Tensor, heldout: torch.Tensor) -> None:
    n = len(get_adapter(model).decoder_layers(model))
    layers = sorted({0, n // 2, n - 1})
    fit = capture(model, calib, layers)
    test = capture(model, heldout, layers)
    print(f"\n{name}: block-energy spread (max/min) and MXFP4 code entropy (bits of 3)")
    print(f"{'site':<9} {'spread before':>13} {'after (cal)':>11} {'after (held)':>12} "
          f"{'H none':>7} {'H brq':>6} {'H balance':>9} {'H torq':>7}")  # fmt: skip
    for key, x in fit.items():
        size = x.shape[1]
        balance = SchurHornBalance(size).fit(x)
        micro = MaxEntropyBlockRotation(size).fit(balance(x))
        y = test[key]
        h = {
            "none": code_entropy(y.view(-1, 32)),
            "brq": code_entropy(BlockHadamard(size)(y).view(-1, 32)),
            "balance": code_entropy(balance(y).view(-1, 32)),
            "torq": code_entropy(micro(balance(y)).view(-1, 32)),
        }
        print(f"{key:<9} {spread(y):>13.3g} {spread(balance(x)):>11.7f} "
              f"{spread(balance(y)):>12.3g} {float(h['none']):>7.3f} {float(h['brq']):>6.3f} "
              f"{float(h['balance']):>9.3f} {float(h['torq']):>7.3f}", flush=True)  # fmt: skip


def layer_table(model: nn.Module, calib: torch.Tensor, heldout: torch.Tensor) -> None:
    n = len(get_adapter(model).decoder_layers(model))
    mid = n // 2
    layer = get_adapter(model).decoder_layers(model)[mid]
    print(f"\nSmolLM2 layer {mid}, W4A4, relative output MSE on held-out tokens "
          "(calibration: 2048 tokens, the paper's defaults for calibrated methods)")
    for path in ("self_attn.q_proj", "mlp.down_proj"):
        linear = layer.get_submodule(path)
        inputs: dict[str, list[torch.Tensor]] = {"cal": [], "held": []}
        for key, ids in (("cal", calib), ("held", heldout)):
            store = inputs[key]
            h = linear.register_forward_pre_hook(
                lambda m, a, store=store: store.append(a[0].detach().flatten(0, -2)))
            with torch.no_grad():
                for row in ids:
                    model(row[None], use_cache=False)
            h.remove()
        x_cal, x_held = torch.cat(inputs["cal"]), torch.cat(inputs["held"])
        with torch.no_grad():
            ref = linear(x_held)
        print(f"{path} ({linear.in_features} -> {linear.out_features}):")
        for method in ("rtn", "quarot", "brq", "flatquant", "batquant", "torq"):
            started = time.perf_counter()
            q = batquant.quantize_linear(linear, x_cal, method=method, config="W4A4")
            seconds = time.perf_counter() - started
            with torch.no_grad():
                err = float(((q(x_held) - ref) ** 2).mean() / (ref**2).mean())
            print(f"  {method:<10} {err:.5f}   calibration {seconds:6.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="windows of 256 tokens")
    args = parser.parse_args(argv)
    torch.set_num_threads(TORCH_THREADS)
    demo = model_dir()
    for name, folder in (("embedded tiny Qwen3", demo),
                         ("SmolLM2-135M", cache_root() / "smollm2-135m-instruct")):  # fmt: skip
        if folder != demo and not (folder / GGUF).is_file():
            print(f"\n{name}: not fetched; run make bench-model first", flush=True)
            continue
        tokenizer, model = load_tokenizer(folder), load_model(folder)
        calib = calibration_windows(read_token_ids(tokenizer, demo / "calib.txt"),
                                    args.samples, 256, seed=0)  # fmt: skip
        heldout = calibration_windows(read_token_ids(tokenizer, demo / "heldout.txt"),
                                      args.samples, 256, seed=1)  # fmt: skip
        effects(name, model, calib, heldout)
        if folder != demo:
            layer_table(model, calib, heldout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
