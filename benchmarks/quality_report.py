"""Regenerate the tables and figures of docs/quality.md from benchmark JSON files.

Run ``python benchmarks/quality_report.py --model A.json [B.json ...] --layers L.json
--peer P.json``.  The inputs are what ``bench_model.py --json``,
``bench_layers.py --json`` and ``peer_llmcompressor.py --json`` wrote; every
table names the commit its rows were measured at.  The script rewrites only
the parts of docs/quality.md between ``<!-- generated:NAME -->`` and
``<!-- end:NAME -->`` and the PNG files under docs/figures/ that it owns;
the prose around them is written by hand.

Seeds: a method's PPL is the mean over its seeds, and its spread is max - min.
A method wins over another only when the gap between their means is larger
than both spreads (the developers' rule); the verdict line says whether it did.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "quality.md"
FIGURES = REPO / "docs" / "figures"


def load(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def model_tables(runs: list[dict[str, Any]], peer: dict[str, Any] | None) -> tuple[str, dict]:
    """One markdown table per (config, scale rule, weights), and the numbers behind them."""
    fp = {run["settings"]["commit"]: run["rows"][0]["ppl"] for run in runs}
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    commits: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    budgets: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    settings = {}
    for run in runs:
        settings = run["settings"]
        for row in run["rows"][1:]:
            key = (row["config"], row["scale_rule"], row["weights"])
            groups[key][row["method"]].append(row)
            commits[key].add(run["settings"]["commit"])
            budgets[key].add(f"{settings['samples']} x {settings['seq_len']} tokens, "
                             f"{settings['epochs']} epoch(s)")
    fp_ppl = statistics.mean(fp.values())
    out = [f"Full precision: PPL {fp_ppl:.3f}.  Held-out "
           f"{settings.get('heldout_tokens')} tokens in windows of "
           f"{settings.get('eval_seq_len')}; {settings.get('cpu', '')}, "
           f"{settings.get('torch_threads')} threads.", ""]
    summary: dict[tuple[str, str, str], dict[str, tuple[float, float, int]]] = {}
    for key in sorted(groups):
        config, rule, weights = key
        methods = groups[key]
        stats = {m: (statistics.mean(r["ppl"] for r in rows),
                     max(r["ppl"] for r in rows) - min(r["ppl"] for r in rows), len(rows))
                 for m, rows in methods.items()}  # fmt: skip
        summary[key] = stats
        out += [f"**{config}, scale rule {rule}, {weights.upper()} weights** "
                f"(calibration {'; '.join(sorted(budgets[key]))}; commit "
                f"{', '.join(sorted(commits[key]))})", "",
                "| method | PPL (mean) | spread (max - min) | seeds | recovery | calibration "
                "| peak RSS | layers worse than rtn |", "|---|---|---|---|---|---|---|---|"]
        for m, (mean, spread, n) in sorted(stats.items(), key=lambda kv: kv[1][0]):
            rows = methods[m]
            seconds = statistics.mean(r["seconds"] for r in rows)
            peaks = [r["peak_rss_mib"] for r in rows if "peak_rss_mib" in r]
            peak = f"{max(peaks):.0f} MiB" if peaks else "-"
            worse = sorted({layer for r in rows for layer in r.get("layers_worse_than_rtn", [])})
            spread_text = f"{spread:.3f}" if n > 1 else "-"
            out.append(f"| {m} | {mean:.3f} | {spread_text} | {n} | "
                       f"{100 * fp_ppl / mean:.1f}% | {seconds:.0f} s | {peak} | "
                       f"{', '.join(map(str, worse)) or '-'} |")
        if peer is not None and rule == "even" and config.startswith("W4A4"):
            for row in peer["rows"][1:]:
                if "error" in row:
                    continue  # listed under the table
                if row["method"].endswith("gptq") == (weights == "gptq"):
                    out.append(f"| {row['method']} (peer, W4A4 {row['scheme']}) | "
                               f"{row['ppl']:.3f} | - | 1 | {100 * fp_ppl / row['ppl']:.1f}% | "
                               f"{row['seconds']:.0f} s | - | - |")
        ranked = sorted(stats.items(), key=lambda kv: kv[1][0])
        if len(ranked) > 1 and ranked[0][1][2] > 1:
            (m1, (a, sa, _)), (m2, (b, sb, _)) = ranked[0], ranked[1]
            verdict = "a win" if b - a > max(sa, sb) else "NOT a win (within the spread)"
            out += ["", f"Best: {m1}, {b - a:.3f} below {m2}; spreads {sa:.3f} and {sb:.3f}: "
                        f"{verdict}."]
        out.append("")
    return "\n".join(out), summary


def layer_table(layers: dict[str, Any]) -> str:
    table = layers["table"]
    methods = list(next(iter(table.values())))
    out = [f"Relative output MSE on held-out tokens, W4A4, `quantize_linear` defaults "
           f"(commit {layers['commit']}; calibration {layers['calibration_tokens']} tokens).  "
           "Bold: the lowest of the row.", "",
           "| linear | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    wins: dict[str, int] = dict.fromkeys(methods, 0)
    for site, row in table.items():
        best = min(row, key=row.__getitem__)
        wins[best] += 1
        out.append(f"| {site} | " + " | ".join(f"**{v:.4f}**" if m == best else f"{v:.4f}"
                                               for m, v in row.items()) + " |")  # fmt: skip
    geo = {m: math.exp(statistics.mean(math.log(table[s][m]) for s in table)) for m in methods}
    out.append("| geo-mean | " + " | ".join(f"{geo[m]:.4f}" for m in methods) + " |")
    out.append("| lowest on | " + " | ".join(str(wins[m]) for m in methods) + " |")
    secs = layers.get("table_seconds", {})
    out.append("| seconds | " + " | ".join(f"{secs.get(m, 0):.0f}" for m in methods) + " |")
    return "\n".join(out)


def ablation_tables(layers: dict[str, Any]) -> str:
    out = [f"Geometric mean of the relative output MSE over the linears each study fits "
           f"(commit {layers['commit']}).", ""]
    for title, study in layers["ablations"].items():
        sites = study.get("linears", [])
        out += [f"**{title}** ({len(sites)} linears)", "", "| variant | geo-mean rel. MSE |",
                "|---|---|"]
        out += [f"| {name} | {value:.5f} |" for name, value in study.items() if name != "linears"]
        out.append("")
    return "\n".join(out)


def factor_table(layers: dict[str, Any]) -> str:
    found = layers["factors"]
    sites = [k for k in next(iter(found.values())) if k != "geo-mean"]
    base = found["flatquant"]["geo-mean"]
    out = [f"Relative output MSE on held-out tokens, W4A4, 160 steps, one change at a time "
           f"from the paper's method (commit {layers['commit']}).  The last column is the "
           "geometric mean over the linears, as a ratio to FlatQuant's.", "",
           "| variant | " + " | ".join(sites) + " | geo-mean | x FlatQuant |",
           "|---" * (len(sites) + 3) + "|"]
    for name, row in found.items():
        out.append(f"| {name} | " + " | ".join(f"{row[s]:.4f}" for s in sites)
                   + f" | {row['geo-mean']:.5f} | {row['geo-mean'] / base:.3f} |")
    return "\n".join(out)


def figures(summary: dict, layers: dict[str, Any] | None) -> list[str]:
    from matplotlib.figure import Figure

    FIGURES.mkdir(exist_ok=True)
    written = []
    for key, stats in summary.items():
        config, rule, weights = key
        if config != "W4A4KV16" or rule != "floor":
            continue
        fig = Figure(figsize=(8, 0.5 * len(stats) + 1.5), layout="constrained")
        ax = fig.add_subplot()
        ranked = sorted(stats.items(), key=lambda kv: -kv[1][0])
        ax.barh([m for m, _ in ranked], [s[0] for _, s in ranked],
                xerr=[s[1] / 2 for _, s in ranked], capsize=3)
        ax.set_xlabel("held-out perplexity (mean over seeds; whiskers: half the spread)")
        ax.set_title(f"SmolLM2-135M, {config}, {weights.upper()} weights, {rule}")
        name = f"smollm2-{config.lower()}-{weights}.png"
        fig.savefig(FIGURES / name, dpi=100)
        written.append(name)
    if layers is not None and "ablations" in layers:
        fig = Figure(figsize=(10, 3.5), layout="constrained")
        for i, (title, study) in enumerate(layers["ablations"].items()):
            ax = fig.add_subplot(1, len(layers["ablations"]), i + 1)
            names = [n for n in study if n != "linears"]
            ax.plot(range(len(names)), [study[n] for n in names], marker="o")
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
            ax.set_title(title, fontsize=8)
            ax.set_ylabel("geo-mean rel. MSE", fontsize=8)
        fig.savefig(FIGURES / "smollm2-ablations.png", dpi=100)
        written.append("smollm2-ablations.png")
    return written


def replace(doc: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end:{name} -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{DOC}: no <!-- generated:{name} --> ... <!-- end:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", required=True)
    parser.add_argument("--layers", type=Path, nargs="+",
                        help="bench_layers JSON files (--table, --ablations, --factors)")
    parser.add_argument("--peer", type=Path, nargs="+", help="peer_llmcompressor JSON files")
    args = parser.parse_args(argv)
    peer = None
    if args.peer:
        parts = load(args.peer)
        # one full-precision row, then every part's rows (a rerun of a failed recipe last)
        rows = {r["method"]: r for part in parts for r in part["rows"][1:]}
        peer = {"settings": parts[0]["settings"],
                "rows": parts[0]["rows"][:1] + list(rows.values())}
    layers: dict[str, Any] | None = None
    if args.layers:
        layers = {}
        for part in load(args.layers):
            commits = {layers.get("commit"), part["commit"]} - {None}
            layers.update(part)
            layers["commit"] = ", ".join(sorted(commits))
    text, summary = model_tables(load(args.model), peer)
    doc = DOC.read_text(encoding="utf-8")
    doc = replace(doc, "model", text)
    if layers is not None and "table" in layers:
        doc = replace(doc, "layers", layer_table(layers))
    if layers is not None and "ablations" in layers:
        doc = replace(doc, "ablations", ablation_tables(layers))
    if layers is not None and "factors" in layers:
        doc = replace(doc, "factors", factor_table(layers))
    DOC.write_text(doc, encoding="utf-8")
    print(f"rewrote {DOC}; figures: {', '.join(figures(summary, layers))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
