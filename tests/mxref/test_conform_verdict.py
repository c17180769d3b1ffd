"""mxref conform's verdict: spec violations once per root cause, open choices, golden cases.

A backend that differs from mxref only where the spec leaves the choice open
passes with a warning (exit 3); one spec bug is one violation however many
checks it touches; every failing golden case is explained by a root cause the
battery shows (docs/conformance.md, "Verdict").
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import mxref
from mxref.cli import main
from mxref.conformance import format_report, run_conformance
from mxref.conformance.golden import shipped_golden_dir
from mxref.conformance.junit import report_junit_xml
from mxref.conformance.verdict import CLASS_TABLE, IMPL, SPEC, rule_for

FORMATS = "mxfp4,mxfp8_e4m3"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def loses_negative_zero(x, fmt, **kw):
    """microxcaling: -0.0 comes back +0.0 (the spec does not address -0.0)."""
    mx = mxref.quantize(x, fmt, **kw)
    codes = mx.codes.copy()
    if mx.fmt.has_negative_zero:
        codes[codes == mx.fmt.sign_bit] = 0
    return codes, mx.scales


def other_nan_block_codes(x, fmt, **kw):
    """mxref, except that a NaN or Inf block's elements keep their finite codes (scale 0xFF)."""
    mx = mxref.quantize(x, fmt, **kw)
    finite = mxref.quantize(np.where(np.isfinite(x), x, np.float32(0)), fmt, **kw)
    nan_rows = mx.scales[:, 0] == 0xFF
    codes = mx.codes.copy()
    codes[nan_rows] = finite.codes[nan_rows]
    return codes, mx.scales


def scale_one_too_high(x, fmt, **kw):
    """One spec bug: every finite scale byte one too high, the codes left as they were."""
    mx = mxref.quantize(x, fmt, **kw)
    return mx.codes, np.where((mx.scales > 0) & (mx.scales < 0xFE), mx.scales + 1, mx.scales)


def run(backend, **kw):
    return run_conformance(backend, formats=FORMATS, golden=shipped_golden_dir(), **kw)


@pytest.mark.parametrize(
    ("backend", "choices"),
    [
        (other_nan_block_codes, {"element codes of a NaN or Inf block"}),
        # NaN blocks hold signed zeros too, so losing -0 shows in both
        (loses_negative_zero, {"sign of a zero code", "element codes of a NaN or Inf block"}),
    ],
    ids=["nan_block_codes", "negative_zero"],
)
def test_open_choices_only_pass_with_a_warning(backend, choices):
    report = run(backend)
    verdict = report.verdict()
    text = format_report(report)
    assert report.exit_status == 3, text
    assert report.passed
    assert not verdict.violations
    assert not verdict.errors
    assert not verdict.unexplained
    assert {f.label for f in verdict.implementation_defined} == choices
    assert verdict.golden, "the golden files repeat the open choices"
    assert all(f.explained_by == IMPL for f in verdict.golden)
    assert text.rstrip().splitlines()[-1].startswith("VERDICT PASS WITH WARNING (exit 3): 0 spec")
    assert "all explained by the above" in text.splitlines()[-1]
    data = report.to_dict()
    assert data["exit_status"] == 3
    assert data["verdict"]["exit_status"] == 3
    assert {c["class"] for c in data["checks"] if c["status"] != "pass"} == {IMPL}
    junit = ET.fromstring(report_junit_xml(report))
    assert junit.get("failures") == "0"
    assert junit.get("errors") == "0"
    classes = {p.get("value") for p in junit.iter("property") if p.get("name") == "mxref.class"}
    assert classes == {IMPL}


def test_one_spec_bug_is_one_violation_with_every_check_it_touches():
    report = run(scale_one_too_high)
    verdict = report.verdict()
    assert report.exit_status == 1
    (violation,) = verdict.violations
    assert violation.label == "scale high by 1"
    assert len(violation.checks) > 5
    assert violation.cases == sum(n for c in report.checks if not c.id.startswith("golden.")
                                  for cls, _, _, n in c.classes if cls == SPEC)  # fmt: skip
    assert verdict.golden
    assert not verdict.unexplained
    assert all(f.explained_by == SPEC for f in verdict.golden)
    text = format_report(report)
    assert text.count("spec violation: scale high by 1") == 1
    assert "VERDICT FAIL (exit 1): 1 spec violation; " in text
    junit = ET.fromstring(report_junit_xml(report))
    assert int(junit.get("failures")) > 0


def test_a_golden_case_without_a_battery_cause_is_not_explained():
    def golden_only(x, fmt, **kw):  # wrong only on rows the battery never sends: short ones
        mx = mxref.quantize(x, fmt, **kw)
        if x.shape[-1] == 32:
            return mx
        return mx.codes ^ 1, mx.scales

    report = run(golden_only)
    verdict = report.verdict()
    assert verdict.unexplained
    assert report.exit_status == 1
    assert "not explained" in format_report(report).splitlines()[-1]


def test_an_exception_is_an_error_even_where_declared():
    def raises_on_nan(x, fmt, **kw):
        if np.isnan(x).any():
            raise RuntimeError("NaN input")
        return mxref.quantize(x, fmt, **kw)

    report = run_conformance(raises_on_nan, formats="mxfp4",
                             deviations={"special.*": "NaN blocks are ours"})  # fmt: skip
    assert report.exit_status == 1
    assert any("NaN input" in f.label for f in report.verdict().errors)


def test_the_class_table_is_data_and_ends_with_spec():
    assert rule_for("special.nan_block_codes", "nan_inf_codes").cls == IMPL
    assert rule_for("special.nan_block_scale", "nan_scale").cls == SPEC
    assert rule_for("scale.tiny_blocks", "codes").cls == SPEC
    assert rule_for("scale.tiny_blocks", "clamp").cls == IMPL
    # NVFP4: the checks' own table (checks.NV_CHECK_CLASS) gives each its class
    assert rule_for("nvfp4.block_scale_rounding", "scale").cls == SPEC
    assert rule_for("nvfp4.tensor_scale", "scale").cls == IMPL
    assert rule_for("nvfp4.special_values", "codes").cls == IMPL
    assert rule_for("area.no_such_check", "codes").cls == SPEC  # unknown: a violation
    assert (CLASS_TABLE[-1].checks, CLASS_TABLE[-1].cls) == ("*", SPEC)
    assert all(r.choice and r.why for r in CLASS_TABLE if r.cls == IMPL)


def test_cli_exit_status_3_for_open_choices(capsys, monkeypatch, tmp_path):
    (tmp_path / "open_choice_mx.py").write_text(
        "import mxref\n"
        "def quantize(x, fmt, **kw):\n"
        "    mx = mxref.quantize(x, fmt, **kw)\n"
        "    f = mx.fmt\n"
        "    codes = mx.codes.copy()\n"
        "    if f.has_negative_zero:\n"
        "        codes[codes == f.sign_bit] = 0\n"
        "    return codes, mx.scales\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["conform", "--backend", "open_choice_mx:quantize", "--format", "mxfp4"])
    out = capsys.readouterr().out
    assert rc == 3, out
    assert "WARNING, implementation-defined: special.negative_zero" in out


def test_torchao_to_mx_verdict(monkeypatch):
    pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("torchao_backend", None)
    from torchao_backend import quantize

    report = run(quantize)
    verdict = report.verdict()
    assert report.exit_status == 1
    (violation,) = verdict.violations  # the 2^-126 divisor clamp, once
    assert "clamped at 2^-126" in violation.label
    assert {"scale.tiny_blocks", "rounding.exact_codes"} <= set(violation.checks)
    assert {f.label for f in verdict.implementation_defined} == {
        "element codes of a NaN or Inf block",
        "scale byte of a block holding Inf",
    }
    assert not verdict.unexplained
    assert {f.explained_by for f in verdict.golden} == {SPEC, IMPL}
    # the wrapper refuses float64 (to_mx takes float32 or bfloat16): the one regression line
    assert [f.checks for f in verdict.errors] == [("golden.rounding.regressions",)]
