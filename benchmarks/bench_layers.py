"""The layer-level table on SmolLM2, and the paper's ablations, through ``quantize_linear``.

Run ``python benchmarks/bench_layers.py --json FILE`` (``make bench-layers``).
It captures, in one pass of SmolLM2-135M over the shipped calibration text
(``--samples`` windows of 512 tokens) and one over the held-out text (8 x 256),
the real inputs of q_proj, o_proj, up_proj and down_proj in layers 0, 7, 15,
22 and 29: twenty linears of a real pretrained model, whose q/down inputs
hold channels 10 to 80 times the median.

``--table``: every method at ``quantize_linear``'s defaults (the paper's
calibration: 128 samples, 5 epochs, batch 4, that is 160 steps) at W4A4, and
the relative output MSE of each linear on the held-out tokens, so that a
regression can be traced to a layer.  ``--ablations``: the paper's Fig. 6
(the transform's block size, at an MX block of 32), Fig. 7 (g1 of g1 x g2 =
32) and Table 4 (block-wise against global, for the transform and for the
clipping), on the same linears; each summarised by the geometric mean of the
relative MSE over the linears.  ``--factors``: why GPK loses to FlatQuant,
one factor at a time and combined (``gpk_factors.py``), on eight of the
linears.  The JSON names the commit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

import batquant
from batquant.algorithms.clipping import ClipGroups
from batquant.algorithms.methods import BLOCK_INIT, Method, TransformContext
from batquant.algorithms.transforms import GPK, GlobalKronecker, Transform
from batquant.demo import model_dir, smollm2_dir
from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids
from batquant.models import get_adapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpk_factors import FACTOR_LINEARS, factors  # noqa: E402  (beside this script)
from timing import commit  # noqa: E402

TORCH_THREADS = 2
LAYERS = (0, 7, 15, 22, 29)
PATHS = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")
#: The table's methods: the baselines, the paper's method, its variants, ours.
TABLE = ("rtn", "quarot", "brq", "smoothquant", "flatquant", "torq", "batquant",
         "batquant-full", "batquant-naive", "batquant-globalclip", "batquant-smooth",
         batquant.RECOMMENDED_METHOD)  # fmt: skip


def capture(model: nn.Module, linears: dict[str, nn.Linear], ids: torch.Tensor
            ) -> dict[str, torch.Tensor]:  # fmt: skip
    """Every named linear's inputs over ``ids``, in one pass of the model."""
    store: dict[str, list[torch.Tensor]] = {k: [] for k in linears}
    hooks = [lin.register_forward_pre_hook(
        lambda _m, a, k=k: store[k].append(a[0].detach().flatten(0, -2)))
        for k, lin in linears.items()]  # fmt: skip
    with torch.no_grad():
        for row in ids:
            model(row[None], use_cache=False)
    for h in hooks:
        h.remove()
    return {k: torch.cat(v) for k, v in store.items()}


def relative_error(linear: nn.Linear, x_cal: torch.Tensor, x_held: torch.Tensor,
                   method: str | Method, calib: batquant.CalibSpec | None = None,
                   config: str = "W4A4") -> tuple[float, float]:  # fmt: skip
    started = time.perf_counter()
    q = batquant.quantize_linear(linear, x_cal, method=method, config=config, calib=calib)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        ref = linear(x_held)
        return float(((q(x_held) - ref) ** 2).mean() / (ref**2).mean()), seconds


def gpk_method(g1: int, g2: int, clip: ClipGroups = ClipGroups.BLOCK) -> Method:
    """The paper's method with a g1 x g2 transform block (its own size, not the MX block's)."""
    def build(ctx: TransformContext) -> Transform:
        return GPK(ctx.size, g1=g1, g2=g2, init=BLOCK_INIT, seed=ctx.seed)

    return Method(f"gpk {g1}x{g2}" + ("" if clip is ClipGroups.BLOCK else ", global clip"),
                  "ablation", build, clip, calibrated=True)  # fmt: skip


def transform_block(method: Method) -> int:
    """The block a method's transform needs in_features to be a multiple of."""
    ctx = TransformContext(4096, 32, 0, torch.ones(4096), torch.ones(4096))
    transform = method.build_transform(ctx)
    return getattr(transform, "block_size", 1)


def global_method(clip: ClipGroups) -> Method:
    """A global Kronecker transform over N (FlatQuant's, without its diagonal)."""
    def build(ctx: TransformContext) -> Transform:
        return GlobalKronecker(ctx.size, init="orthogonal", seed=ctx.seed)

    return Method(f"global kron, {clip.value} clip", "ablation", build, clip, calibrated=True)


def ablations() -> dict[str, list[Method]]:
    return {
        "transform block size (g1 x g2), MX block 32 (Fig. 6)": [
            gpk_method(4, 2), gpk_method(4, 4), gpk_method(8, 4), gpk_method(8, 8),
            gpk_method(16, 8)],
        "g1 at a transform block of 32 (Fig. 7)": [
            gpk_method(g1, 32 // g1) for g1 in (1, 2, 4, 8, 16, 32)],
        "block-wise against global (Table 4)": [
            gpk_method(8, 4), gpk_method(8, 4, ClipGroups.ROW),
            global_method(ClipGroups.BLOCK), global_method(ClipGroups.ROW)],
    }  # fmt: skip


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16, help="calibration windows of 512")
    parser.add_argument("--table", action="store_true", help="every method, every linear")
    parser.add_argument("--methods", default=",".join(dict.fromkeys(TABLE)),
                        help="the table's methods (default: %(default)s)")
    parser.add_argument("--ablations", action="store_true", help="the paper's ablations")
    parser.add_argument("--factors", action="store_true",
                        help="why GPK loses: one factor at a time (gpk_factors.py)")
    parser.add_argument("--model", choices=("smollm2", "embedded"), default="smollm2")
    parser.add_argument("--linears",
                        help="only these captured linears, comma-separated (e.g. "
                        "L7.down_proj,L15.down_proj; default: all twenty)")
    parser.add_argument("--json", type=Path, help="write the results here (a new file)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; choose a new file")
    if not (args.table or args.ablations or args.factors):
        parser.error("choose --table, --ablations, --factors or several")
    torch.set_num_threads(TORCH_THREADS)
    text = model_dir()
    folder = smollm2_dir() if args.model == "smollm2" else text
    tokenizer, model = load_tokenizer(folder), load_model(folder)
    decoder = get_adapter(model).decoder_layers(model)
    layers = [i for i in LAYERS if i < len(decoder)] if args.model == "smollm2" else \
        sorted({0, len(decoder) // 2, len(decoder) - 1})  # fmt: skip
    linears = {f"L{i}.{p.rsplit('.', 1)[-1]}": decoder[i].get_submodule(p)
               for i in layers for p in PATHS}  # fmt: skip
    if args.linears is not None:
        chosen = args.linears.split(",")
        unknown = [k for k in chosen if k not in linears]
        if unknown:
            parser.error(f"--linears {unknown}: choose from {', '.join(linears)}")
        linears = {k: linears[k] for k in chosen}
    calib = calibration_windows(read_token_ids(tokenizer, text / "calib.txt"), args.samples,
                                512, seed=0)  # fmt: skip
    heldout = calibration_windows(read_token_ids(tokenizer, text / "heldout.txt"), 8, 256,
                                  seed=1)  # fmt: skip
    x_cal, x_held = capture(model, linears, calib), capture(model, linears, heldout)
    result: dict[str, object] = {"commit": commit(), "model": args.model,
                                 "calibration_tokens": int(calib.numel()),
                                 "heldout_tokens": int(heldout.numel()), "config": "W4A4",
                                 "recommended": batquant.RECOMMENDED_METHOD}  # fmt: skip
    print(f"{args.model}: {len(linears)} linears, calibration {calib.numel()} tokens, held-out "
          f"{heldout.numel()}; W4A4, relative output MSE on held-out tokens "
          f"(commit {result['commit']})", flush=True)
    if args.table:
        methods = list(dict.fromkeys(args.methods.split(",")))
        table: dict[str, dict[str, float]] = {}
        seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
        print("| linear | " + " | ".join(methods) + " |", flush=True)
        for site, linear in linears.items():
            row = {}
            for m in methods:
                row[m], s = relative_error(linear, x_cal[site], x_held[site], m)
                seconds[m] += s
            table[site] = row
            best = min(row, key=row.__getitem__)
            print(f"| {site} | " + " | ".join(f"**{v:.5f}**" if m == best else f"{v:.5f}"
                                               for m, v in row.items()) + " |", flush=True)
        result["table"] = table
        result["table_seconds"] = seconds
        means = {m: geomean([table[s][m] for s in table]) for m in methods}
        print("| geo-mean | " + " | ".join(f"{means[m]:.5f}" for m in methods) + " |")
        print("| seconds | " + " | ".join(f"{seconds[m]:.0f}" for m in methods) + " |")
    if args.ablations:
        studies: dict[str, dict[str, object]] = {}
        for title, variants in ablations().items():
            print(f"\n{title}", flush=True)
            # the linears every variant fits (hidden 576 = 18 x 32 has no 128-block)
            sites = [s for s, lin in linears.items()
                     if all(lin.in_features % g == 0 for g in map(transform_block, variants))]
            studies[title] = {"linears": sites}  # type: ignore[dict-item]
            print(f"  on {len(sites)} linears: {', '.join(sites)}", flush=True)
            for method in variants:
                errors = [relative_error(linears[s], x_cal[s], x_held[s], method)[0]
                          for s in sites]  # fmt: skip
                studies[title][method.name] = geomean(errors)
                print(f"  {method.name:<28} geo-mean relative MSE {geomean(errors):.5f}",
                      flush=True)  # fmt: skip
        result["ablations"] = studies
    if args.factors:
        sites = [s for s in FACTOR_LINEARS if s in linears]
        print(f"\nwhy GPK loses, on {', '.join(sites)}", flush=True)
        found: dict[str, dict[str, float]] = {}
        for factor in factors():
            with factor.patch():
                errors = {s: relative_error(linears[s], x_cal[s], x_held[s], factor.method,
                                            factor.spec)[0] for s in sites}  # fmt: skip
            found[factor.name] = {**errors, "geo-mean": geomean(list(errors.values()))}
            print(f"  {factor.name:<60} geo-mean relative MSE "
                  f"{found[factor.name]['geo-mean']:.5f}", flush=True)  # fmt: skip
        result["factors"] = found
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
