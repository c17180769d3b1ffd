"""Regenerate the tables and figures of docs/quality.md from benchmark JSON files.

Run ``python benchmarks/quality_report.py --model A.json [B.json ...] --layers L.json
--peer P.json``.  The inputs are what ``bench_model.py --json``,
``bench_layers.py --json`` and ``peer_llmcompressor.py --json`` wrote; every
table names the commit its rows were measured at.  The script rewrites only
the parts of docs/quality.md between ``<!-- generated:NAME -->`` and
``<!-- end:NAME -->`` and the PNG files under docs/figures/ that it owns;
the prose around them is written by hand.

Seeds: a method's PPL is the mean over its seeds, and its spread is max - min.
A seed measured twice (a rerun in a later file) counts once, the later run's.
A method wins over another only when the gap between their means is larger
than both spreads (the developers' rule); the verdict line says whether it did.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "quality.md"
FIGURES = REPO / "docs" / "figures"


def load(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


MODEL_NAMES = {"smollm2": "SmolLM2-135M", "embedded": "Embedded tiny Qwen3"}
CONFIG_ORDER = ("W4A4KV16", "W4A8KV16", "W4A8KV8", "W4A8KV4")

# (model, config, scale rule, weights, budget) -> method -> (mean PPL, spread, seeds)
Summary = dict[tuple[str, str, str, str, str], dict[str, tuple[float, float, int]]]


def config_rank(config: str) -> tuple[int, str]:
    return (CONFIG_ORDER.index(config) if config in CONFIG_ORDER else len(CONFIG_ORDER), config)


def full_precision(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each model's full-precision PPL: the mean of its runs' first rows (one evaluation)."""
    found: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        found[run["settings"].get("model", "smollm2")].append(run["rows"][0]["ppl"])
    return {model: statistics.mean(values) for model, values in found.items()}


def model_tables(runs: list[dict[str, Any]], peer: dict[str, Any] | None
                 ) -> tuple[str, Summary, dict[str, float]]:  # fmt: skip
    """One markdown table per (model, config, scale rule, weights, calibration budget).

    Runs with another budget get their own table: a mean over seeds never mixes budgets.
    """
    fp = full_precision(runs)
    groups: dict[tuple[str, str, str, str, str], dict[str, list[dict[str, Any]]]] = \
        defaultdict(lambda: defaultdict(list))  # fmt: skip
    commits: dict[tuple[str, str, str, str, str], set[str]] = defaultdict(set)
    evaluation: dict[str, dict[str, Any]] = {}
    for run in runs:
        settings = run["settings"]
        model = settings.get("model", "smollm2")
        evaluation[model] = settings
        budget = f"{settings['samples']} x {settings['seq_len']} tokens, " \
            f"{settings['epochs']} epoch(s)"  # fmt: skip
        for row in run["rows"][1:]:
            key = (model, row["config"], row["scale_rule"], row["weights"], budget)
            same = [r for r in groups[key][row["method"]] if r.get("seed") == row.get("seed")]
            if same:  # one run per seed: a later file's rerun replaces the earlier one
                groups[key][row["method"]].remove(same[0])
            groups[key][row["method"]].append(row)
            commits[key].add(settings["commit"])
    out = []
    for model, settings in sorted(evaluation.items(), key=lambda kv: kv[0] != "smollm2"):
        out += [f"{MODEL_NAMES.get(model, model)}: full precision PPL {fp[model]:.3f}.  Held-out "
                f"{settings.get('heldout_tokens')} tokens in windows of "
                f"{settings.get('eval_seq_len')}; {settings.get('cpu', '')}, "
                f"{settings.get('torch_threads')} threads.", ""]
    summary: Summary = {}
    order = sorted(groups, key=lambda k: (k[0] != "smollm2", config_rank(k[1]), k[2], k[3],
                                          k[4]))  # fmt: skip
    for key in order:
        model, config, rule, weights, budget = key
        methods = groups[key]
        stats = {m: (statistics.mean(r["ppl"] for r in rows),
                     max(r["ppl"] for r in rows) - min(r["ppl"] for r in rows), len(rows))
                 for m, rows in methods.items()}  # fmt: skip
        summary[key] = stats
        fp_ppl = fp[model]
        out += [f"**{MODEL_NAMES.get(model, model)}, {config}, scale rule {rule}, "
                f"{weights.upper()} weights** "
                f"(calibration {budget}; commit "
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
        if peer is not None and model == "smollm2" and rule == "even" and config.startswith("W4A4"):
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
    return "\n".join(out), summary, fp


def main_budget(summary: Summary, model: str) -> str:
    """The calibration budget of most of ``model``'s tables."""
    counts = Counter(k[4] for k in summary if k[0] == model)
    return counts.most_common(1)[0][0]


def matrix_tables(summary: Summary, fp: dict[str, float]) -> str:
    """Per model and weight quantizer, under FLOOR: methods by config, PPL and recovery.

    Only the model's main budget (the one with the most tables) enters the matrix.
    """
    out = []
    for model in sorted(fp, key=lambda m: m != "smollm2"):
        main = main_budget(summary, model)
        for weights in ("gptq", "rtn"):
            cells = {(k[1], m): v for k, stats in summary.items()
                     if k[0] == model and k[2] == "floor" and k[3] == weights and k[4] == main
                     for m, v in stats.items()}  # fmt: skip
            configs = sorted({c for c, _ in cells}, key=config_rank)
            if not configs:
                continue
            # by the first config's column, then the next: a method run on fewer configs
            # stands where its first figure puts it
            methods = sorted({m for _, m in cells},
                             key=lambda m: [cells[c, m][0] if (c, m) in cells else math.inf
                                            for c in configs])  # fmt: skip
            best = {c: min(v[0] for (cc, _), v in cells.items() if cc == c) for c in configs}
            out += [f"**{MODEL_NAMES.get(model, model)}, {weights.upper()} weights, FLOOR** "
                    f"(PPL, recovery; calibration {main}; full precision {fp[model]:.3f}; "
                    "bold: best of the column; "
                    "a mean over seeds where the config's table says so)", "",
                    "| method | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
            for m in methods:
                row = []
                for c in configs:
                    if (c, m) not in cells:
                        row.append("-")
                        continue
                    ppl = cells[c, m][0]
                    text = f"{ppl:.2f} ({100 * fp[model] / ppl:.0f}%)"
                    row.append(f"**{text}**" if ppl == best[c] else text)
                out.append(f"| {m} | " + " | ".join(row) + " |")
            out.append("")
    return "\n".join(out)


RULES = ("floor", "even", "rceil")


def rule_tables(summary: Summary) -> str:
    """Per (model, config, weights) run under more than one rule: methods by scale rule."""
    out = []
    seen = sorted({(k[0], k[1], k[3], k[4]) for k in summary},
                  key=lambda k: (k[0] != "smollm2", config_rank(k[1]), k[2], k[3]))
    for model, config, weights, budget in seen:
        cells = {(k[2], m): v[0] for k, stats in summary.items()
                 if (k[0], k[1], k[3], k[4]) == (model, config, weights, budget)
                 for m, v in stats.items()}  # fmt: skip
        rules = [r for r in RULES if any(rule == r for rule, _ in cells)]
        methods = sorted({m for rule, m in cells if len([r for r in rules if (r, m) in cells])
                          > 1}, key=lambda m: cells.get((rules[0], m), math.inf))
        if len(rules) < 2 or not methods:
            continue
        out += [f"**{MODEL_NAMES.get(model, model)}, {config}, {weights.upper()} weights** "
                f"(PPL; calibration {budget}; the methods run under more than one rule)", "",
                "| method | " + " | ".join(r.upper() for r in rules) + " |",
                "|---" * (len(rules) + 1) + "|"]
        for m in methods:
            out.append(f"| {m} | " + " | ".join(f"{cells[r, m]:.2f}" if (r, m) in cells else "-"
                                               for r in rules) + " |")  # fmt: skip
        out.append("")
    return "\n".join(out)


def layer_table(layers: dict[str, Any]) -> str:
    table = layers["table"]
    methods = list(next(iter(table.values())))
    out = [f"Relative output MSE on held-out tokens, W4A4, `quantize_linear` defaults "
           f"(commit {layers['table_meta']['commit']}; calibration "
           f"{layers['table_meta']['calibration_tokens']} tokens).  "
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
           f"(commit {layers['ablations_meta']['commit']}; calibration "
           f"{layers['ablations_meta']['calibration_tokens']} tokens, held-out "
           f"{layers['ablations_meta']['heldout_tokens']}; W4A4, `quantize_linear`'s 160 "
           "steps).", ""]
    for title, study in layers["ablations"].items():
        sites = study.get("linears", [])
        out += [f"**{title}** ({len(sites)} linears: {', '.join(sites)})", "",
                "| variant | geo-mean rel. MSE |", "|---|---|"]
        out += [f"| {name} | {value:.5f} |" for name, value in study.items() if name != "linears"]
        out.append("")
    return "\n".join(out)


def factor_table(layers: dict[str, Any]) -> str:
    found = layers["factors"]
    sites = [k for k in next(iter(found.values())) if k != "geo-mean"]
    base = found["flatquant"]["geo-mean"]
    out = [f"Relative output MSE on held-out tokens, W4A4, 160 steps, one change at a time "
           f"from the paper's method (commit {layers['factors_meta']['commit']}).  The last "
           "column is the "
           "geometric mean over the linears, as a ratio to FlatQuant's.", "",
           "| variant | " + " | ".join(sites) + " | geo-mean | x FlatQuant |",
           "|---" * (len(sites) + 3) + "|"]
    for name, row in found.items():
        out.append(f"| {name} | " + " | ".join(f"{row[s]:.4f}" for s in sites)
                   + f" | {row['geo-mean']:.5f} | {row['geo-mean'] / base:.3f} |")
    return "\n".join(out)


def figures(summary: Summary, fp_ppl: dict[str, float], layers: dict[str, Any] | None
            ) -> list[str]:  # fmt: skip
    import matplotlib
    from matplotlib.figure import Figure

    FIGURES.mkdir(exist_ok=True)
    written = []
    main = main_budget(summary, "smollm2")
    for key, stats in summary.items():
        model, config, rule, weights, budget = key
        if model != "smollm2" or config != "W4A4KV16" or rule != "floor" \
                or budget != main:  # fmt: skip
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
    for weights in ("rtn", "gptq"):
        by_config = {k[1]: stats for k, stats in summary.items()
                     if k[0] == "smollm2" and k[2] == "floor" and k[3] == weights
                     and k[4] == main}  # fmt: skip
        configs = sorted(by_config, key=config_rank)
        if len(configs) < 2:
            continue
        fp = fp_ppl["smollm2"]
        # the methods measured under every config, best first at the first config
        methods = sorted(set.intersection(*(set(by_config[c]) for c in configs)),
                         key=lambda m: by_config[configs[0]][m][0])
        if not methods:
            continue
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        ax = fig.add_subplot()
        width = 0.8 / len(methods)
        colours = matplotlib.colormaps["tab10"]
        for i, m in enumerate(methods):
            ax.bar([j + i * width for j in range(len(configs))],
                   [100 * fp / by_config[c][m][0] for c in configs], width, label=m,
                   color=colours(i % 10))  # fmt: skip
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(configs))], configs)
        ax.set_ylabel("recovery % (100 x PPL_fp / PPL)")
        ax.set_title(f"SmolLM2-135M, {weights.upper()} weights, FLOOR: recovery by config")
        fig.legend(fontsize=8, ncol=len(methods), loc="outside lower center")
        name = f"smollm2-configs-{weights}.png"
        fig.savefig(FIGURES / name, dpi=100)
        written.append(name)
    if layers is not None and "ablations" in layers:
        fig = Figure(figsize=(10, 3.5), layout="constrained")
        for i, (title, study) in enumerate(layers["ablations"].items()):
            ax = fig.add_subplot(1, len(layers["ablations"]), i + 1)
            names = [n for n in study if n != "linears"]
            values = [study[n] for n in names]
            # bars, not a line: the variants are categories; the axis starts near the
            # smallest value so that the differences show
            ax.bar(range(len(names)), values, color="tab:blue")
            ax.set_ylim(0.9 * min(values), 1.03 * max(values))
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
        # each study keeps the commit and the budget of the file it came from
        layers = {}
        for part in load(args.layers):
            for study in ("table", "ablations", "factors"):
                if study in part:
                    layers[study] = part[study]
                    layers[f"{study}_meta"] = part
            if "table_seconds" in part:
                layers["table_seconds"] = part["table_seconds"]
    text, summary, fp = model_tables(load(args.model), peer)
    doc = DOC.read_text(encoding="utf-8")
    doc = replace(doc, "matrix", matrix_tables(summary, fp))
    doc = replace(doc, "rules", rule_tables(summary))
    doc = replace(doc, "model", text)
    if layers is not None and "table" in layers:
        doc = replace(doc, "layers", layer_table(layers))
    if layers is not None and "ablations" in layers:
        doc = replace(doc, "ablations", ablation_tables(layers))
    if layers is not None and "factors" in layers:
        doc = replace(doc, "factors", factor_table(layers))
    DOC.write_text(doc, encoding="utf-8")
    print(f"rewrote {DOC}; figures: {', '.join(figures(summary, fp, layers))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
