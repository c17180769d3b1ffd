"""The per-layer calibration summary: GPTQ's outcome per layer, and the table printed at the end."""

from __future__ import annotations

import sys
from typing import Any

from batquant.algorithms.methods import BASELINE
from batquant.config import GPTQSpec


def gptq_summary(reports: dict[str, dict[str, Any]], spec: GPTQSpec, seconds: float
                  ) -> dict[str, Any]:  # fmt: skip
    """One layer's GPTQ outcome: output error against RTN's, raised damping, RTN fallbacks."""
    done = {n: r for n, r in reports.items() if r["rounding"] == "gptq"}
    error = sum(r["error"] for r in done.values())
    rtn_error = sum(r["rtn_error"] for r in done.values())
    return {"weights": len(done), "seconds": round(seconds, 3),
            "error_vs_rtn": error / rtn_error if rtn_error > 0 else None,
            "damping_raised": [f"{n} (damping {r['damping']:g})" for n, r in done.items()
                               if r["damping"] > spec.damping],
            "rtn_fallback": [f"{n} ({r['reason']})" for n, r in reports.items()
                             if r["rounding"] == "rtn"]}  # fmt: skip


def print_summary(summaries: list[dict[str, Any]], method: str, config: str,
                  file: Any = None) -> None:  # fmt: skip
    """The per-layer summary table (layer, steps, first and last loss, output MSE, seconds).

    MoE layers add a line with the experts that kept their initial transform.
    """
    lines = [f"{method} {config}: calibration summary",
             f"{'layer':>5}  {'steps':>5}  {'first loss':>11}  {'last loss':>11}  "
             f"{'rel. MSE':>9}  {'seconds':>8}"]  # fmt: skip

    def num(v: Any, width: int, spec: str) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width}{spec}}"

    for s in summaries:
        if s.get("resumed"):
            lines.append(f"{s['layer']:>5}  (from the checkpoint of an earlier run)")
            continue
        lines.append(f"{s['layer']:>5}  {s['steps']:>5}  {num(s['first_loss'], 11, '.4g')}  "
                     f"{num(s['last_loss'], 11, '.4g')}  {num(s['relative_mse'], 9, '.3g')}  "
                     f"{s['seconds']:>8.1f}")  # fmt: skip
        if s.get("worse_than_baseline"):
            lines.append(f"{'':>5}  worse than {BASELINE}: rel. MSE {s['relative_mse']:.3g} "
                         f"against {s['baseline_relative_mse']:.3g}")  # fmt: skip
        gptq = s.get("gptq")
        if gptq is not None:
            ratio = gptq["error_vs_rtn"]
            lines.append(f"{'':>5}  GPTQ: {gptq['weights']} weights, output error "
                         f"{'-' if ratio is None else f'{ratio:.3f}'} x RTN's, "
                         f"{gptq['seconds']:.1f} s")  # fmt: skip
            for key, label in (("damping_raised", "Cholesky failed, damping raised"),
                               ("rtn_fallback", "rounded to nearest")):  # fmt: skip
                if gptq[key]:
                    lines.append(f"{'':>5}  GPTQ {label}: {', '.join(gptq[key])}")
        if s.get("experts_kept_initial"):
            kept = ", ".join(s["experts_kept_initial"])
            lines.append(f"{'':>5}  experts below min_expert_tokens, kept initial: {kept}")
    print("\n".join(lines), file=file or sys.stderr)
