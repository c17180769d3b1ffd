"""mxref conform: it passes faithful backends and fails the bugs real implementations have.

Each planted bug below wraps :func:`mxref.quantize` (or :func:`mxref.pack`,
:func:`mxref.matmul`) and reproduces one documented deviation of a real
implementation (docs/semantics.md section 8, notes section 5); the battery
must fail it in the named check, and pass the faithful wrappers.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mxref
from mxref.cli import main
from mxref.conformance import (
    AREAS,
    CHECKS,
    CommandBackend,
    Config,
    as_quantize,
    build_batch,
    format_report,
    load_deviations,
    oracle_quantize,
    parse_deviations,
    run_conformance,
)
from mxref.io import InputError

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "mxref" / "golden_vectors"
SIM = ROOT / "examples" / "sim_quantize.py"
PY = shlex.quote(sys.executable)


# --------------------------------------------------------------------------
# planted bugs
# --------------------------------------------------------------------------
def codes_under(x: np.ndarray, fmt: str, scale_bytes: np.ndarray, **policy: Any) -> np.ndarray:
    """Codes of the rows of ``x`` when each row's scale is ``2**(byte - 127)``.

    A float64 anchor lane ``max_normal * X`` in front of each row pins the
    FLOOR scale to X (every lane is below ``2**(emax + 1) * X`` here).
    """
    f = mxref.get_format(fmt)
    anchor = float(f.max_normal) * np.ldexp(1.0, scale_bytes.astype(np.int64) - 127)
    with np.errstate(invalid="ignore"):  # signalling NaNs warn when widened
        y = np.concatenate([anchor[:, None], x.astype(np.float64)], axis=1)
    policy = {**policy, "scale_rule": "floor", "block_size": y.shape[1]}
    mx = mxref.quantize(y, fmt, **policy)
    assert (mx.scales[:, 0] == scale_bytes).all()
    return mx.codes[:, 1:]


def rescaled(x: np.ndarray, fmt: str, mx: mxref.MXArray, new: np.ndarray, **kw: Any):
    """``mx`` with the rows whose scale byte changes to ``new`` re-encoded under it."""
    old = mx.scales[:, 0]
    rows = (new != old) & (old != 0xFF)
    codes, scales = mx.codes.copy(), mx.scales.copy()
    if rows.any():
        policy = {k: kw[k] for k in ("rounding", "overflow") if k in kw}
        codes[rows] = codes_under(x[rows], fmt, new[rows], **policy)
        scales[rows, 0] = new[rows]
    return codes, scales


def faithful(x, fmt, **kw):
    return mxref.quantize(x, fmt, **kw)


def float_log2_scale(x, fmt, **kw):
    """microxcaling's Python path: floor(log2(amax)) in float32 (one binade high below 2**k)."""
    mx = mxref.quantize(x, fmt, **kw)
    f = mxref.get_format(fmt)
    amax = np.max(np.abs(x), axis=-1).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.floor(np.log2(amax))
    ok = np.isfinite(e)
    new = mx.scales[:, 0].astype(np.int64)
    new[ok] = np.clip(e[ok].astype(np.int64) - f.emax, -127, 127) + 127
    return rescaled(x, fmt, mx, new, **kw)


def ties_away(x, fmt, **kw):
    """microxcaling's default rounding "nearest": ties away from zero."""
    if kw.get("rounding") == "rne":
        kw = {**kw, "rounding": "away"}
    return mxref.quantize(x, fmt, **kw)


def no_saturation(x, fmt, **kw):
    """An IEEE-style cast (ml_dtypes): E4M3 480 -> NaN, E5M2 61440 -> Inf."""
    return mxref.quantize(x, fmt, **{**kw, "overflow": "ieee"})


def clamps_at_2_pow_minus_126(x, fmt, **kw):
    """A scale clamped at 2**-126 (the smallest float32 normal) instead of 2**-127."""
    mx = mxref.quantize(x, fmt, **kw)
    new = np.maximum(mx.scales[:, 0], 1)
    new[mx.scales[:, 0] == 0xFF] = 0xFF
    return rescaled(x, fmt, mx, new, **kw)


def nan_block_finite_scale(x, fmt, **kw):
    """torchao-0.18-like: the NaN is left out of amax, so the block gets a finite scale."""
    return mxref.quantize(np.where(np.isnan(x), np.float32(0), x), fmt, **kw)


def even_off_by_one(x, fmt, **kw):
    """EVEN rounding amax to mbits + 1 fraction bits instead of mbits."""
    mx = mxref.quantize(x, fmt, **kw)
    if kw.get("scale_rule") != "even":
        return mx
    f = mxref.get_format(fmt)
    floor = mxref.quantize(x, fmt, **{**kw, "scale_rule": "floor"})
    with np.errstate(invalid="ignore"):  # signalling NaNs warn when widened
        amax = np.max(np.abs(x.astype(np.float64)), axis=-1)
        sig = 2 * np.frexp(amax)[0]
        late = np.isfinite(amax) & (amax > 0) & (sig < 2 - 2.0 ** -(f.mbits + 2))
    codes, scales = mx.codes.copy(), mx.scales.copy()
    codes[late], scales[late] = floor.codes[late], floor.scales[late]
    return codes, scales


def swapped_nibbles(mx):
    """FP4 pairs with element 2j in the HIGH nibble."""
    packed = mxref.pack(mx)
    if mx.fmt.bits != 4:
        return packed
    return ((packed.data >> 4) | (packed.data << 4)).astype(np.uint8)


def matmul_in_float32(a, b, accum="exact"):
    """Decode to float32 and multiply there: products beyond the float32 range overflow."""
    return (mxref.dequantize(a) @ mxref.dequantize(b)).astype(np.float32)


def raises(x, fmt, **kw):
    raise RuntimeError("simulator not ready")


def returns_garbage(x, fmt, **kw):
    return np.zeros(3)


def run(backend, **kw) -> Any:
    kw.setdefault("formats", "mxfp4,mxfp8_e4m3,mxfp8_e5m2,mxint8")
    return run_conformance(backend, **kw)


def failing(report) -> set[str]:
    return {c.id for c in report.failures}


# --------------------------------------------------------------------------
# the battery itself
# --------------------------------------------------------------------------
def test_every_check_id_is_stable_and_in_an_area():
    for cid, info in CHECKS.items():
        area, _, name = cid.partition(".")
        assert info.area == area
        assert area in AREAS
        assert name
        assert name.replace("_", "").isalnum()


def test_batches_are_deterministic_and_seeded():
    cfg = Config("mxfp4")
    a, b = build_batch(cfg, 1, 0), build_batch(cfg, 1, 0)
    assert np.array_equal(a.x.view(np.uint32), b.x.view(np.uint32))
    c = build_batch(cfg, 1, 1)
    assert not np.array_equal(a.x.view(np.uint32), c.x.view(np.uint32))
    assert build_batch(cfg, 2, 0).x.shape[0] > 2 * a.x.shape[0]


def test_structured_rows_hit_their_targets():
    """The midpoint rows hold exact ties; the NaN rows hold NaN; tiny rows get byte 0x00."""
    cfg = Config("mxfp8_e4m3")
    batch = build_batch(cfg)
    codes, scales = oracle_quantize(batch.x, cfg)
    ids = [dict(t) for t in batch.checks]
    nan_rows = [i for i, t in enumerate(ids) if "special.nan_block_scale" in t]
    assert nan_rows
    assert all(np.isnan(batch.x[i]).any() for i in nan_rows)
    assert (scales[nan_rows] == 0xFF).all()
    tiny = [i for i, t in enumerate(ids) if "scale.tiny_blocks" in t]
    assert (scales[tiny] <= 1).all()
    assert (scales[tiny] == 0).sum() > len(tiny) // 2
    pow2 = [i for i, t in enumerate(ids) if "scale.pow2_neighbours" in t]
    assert len(pow2) > 150


def test_faithful_backend_passes_every_area():
    report = run(faithful, pack=mxref.pack, matmul=mxref.matmul, dequantize=mxref.dequantize,
                 golden=GOLDEN)  # fmt: skip
    assert report.passed, format_report(report)
    assert report.exit_status == 0
    assert {a.area for a in report.areas() if a.checks} == set(AREAS)
    golden = [c for c in report.checks if c.id.startswith("golden.")]
    assert {c.area for c in golden} == set(AREAS)
    assert "golden_vectors/ verified" in report.golden


def test_faithful_backend_passes_every_scale_rule_and_policy():
    report = run(faithful, formats="mxfp8_e4m3", scale_rules="all")
    assert report.passed, format_report(report)
    assert len(report.selection["scale_rule"]) == len(mxref.ScaleRule)
    report = run(faithful, formats="mxfp4", roundings="all", overflows="all")
    assert report.passed, format_report(report)
    assert report.selection["rounding"] == ["rne", "away", "zero"]


@pytest.mark.parametrize(
    ("backend", "options", "expected_failures"),
    [
        (float_log2_scale, {}, {"scale.pow2_neighbours"}),
        (ties_away, {}, {"rounding.midpoints", "rounding.random_ties"}),
        (no_saturation, {}, {"saturation.above_max_normal", "saturation.overflow_midpoint"}),
        (clamps_at_2_pow_minus_126, {}, {"scale.tiny_blocks"}),
        (nan_block_finite_scale, {}, {"special.nan_block_scale"}),
        (even_off_by_one, {"scale_rules": "even"}, {"scale.rule_thresholds"}),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_planted_bug_fails_its_check(backend, options, expected_failures):
    report = run(backend, **options)
    assert not report.passed
    assert report.exit_status == 1
    assert expected_failures <= failing(report), format_report(report)
    for c in report.failures:
        f = c.first_failure
        assert f is not None
        assert f.error is None
        assert f.inputs["x"]
        assert all(len(w) == 8 for w in f.inputs["x"])
        assert f.expected != f.got


def test_float_log2_bug_names_the_power_of_two():
    report = run(float_log2_scale, formats="mxfp8_e4m3")
    (check,) = [c for c in report.failures if c.id == "scale.pow2_neighbours"]
    f = check.first_failure
    assert "pred(2**" in f.where
    assert int(f.got["scale"][0], 16) == int(f.expected["scale"][0], 16) + 1
    assert f.differs[0] == "scale"


def test_ties_away_shows_the_tie_lanes():
    report = run(ties_away, formats="mxfp4")
    (check,) = [c for c in report.failures if c.id == "rounding.midpoints"]
    f = check.first_failure
    assert "scale pinned to 2**0" in f.where  # the plainest scale comes first
    assert f.differs[0] == "codes at lanes 1, 2, 5, 6, 9, 10, 13, 14"  # 0.25, 0.75, 1.25, ...
    assert f.differs[1] == "lane 1: x 3e800000 (0.25) expected 00, got 01"
    assert "scale" not in f.differs


def test_no_saturation_e4m3_480_becomes_nan():
    report = run(no_saturation, formats="mxfp8_e4m3")
    f = {c.id: c for c in report.failures}["saturation.above_max_normal"].first_failure
    assert "7f" in f.got["codes"] or "ff" in f.got["codes"]  # E4M3 NaN codes


def test_fp4_nibble_swap_fails_packing_only():
    report = run(faithful, formats="mxfp4,mxfp6_e2m3,mxfp8_e4m3", pack=swapped_nibbles)
    assert failing(report) == {"packing.fp4_nibbles"}
    f = report.failures[0].first_failure
    assert f.expected["packed"] != f.got["packed"]


def test_float32_matmul_fails_gemm():
    report = run(faithful, formats="mxfp8_e4m3,mxfp4", matmul=matmul_in_float32)
    assert "gemm.extreme_scales" in failing(report)
    f = {c.id: c for c in report.failures}["gemm.extreme_scales"].first_failure
    assert set(f.inputs) == {"a_codes", "a_scales", "b_codes", "b_scales"}
    assert len(f.expected["d"][0]) == 8


@pytest.mark.parametrize(
    ("backend", "failing_golden"),
    [(ties_away, "golden.rounding.encode_mxfp4_floor_rne"),
     (float_log2_scale, "golden.scale.encode_mxfp8_e4m3_floor_rne"),
     (nan_block_finite_scale, "golden.special.encode_mxint8_floor_rne")],
    ids=["ties_away", "float_log2_scale", "nan_block_finite_scale"],
)  # fmt: skip
def test_planted_bugs_fail_the_golden_files_too(backend, failing_golden):
    report = run(backend, golden=GOLDEN)
    assert failing_golden in failing(report), sorted(failing(report))
    f = {c.id: c for c in report.failures}[failing_golden].first_failure
    assert f.where.startswith(failing_golden.split(".")[2] + ".hex:")
    assert f.expected["outputs"] != f.got["outputs"]


def test_golden_files_outside_the_selection_are_not_counted():
    report = run(faithful, formats="mxfp4", golden=GOLDEN, scale_rules="even")
    golden = sorted(c.id for c in report.checks if c.id.startswith("golden."))
    assert golden
    assert all("mxfp4_even_rne" in c or "regressions" in c for c in golden), golden
    assert "outside the selection" in report.golden


def test_golden_integrity_problems_fail(tmp_path):
    copy = tmp_path / "golden"
    shutil.copytree(GOLDEN, copy)
    target = copy / "encode_mxfp4_floor_rne.hex"
    target.write_text(target.read_text().replace("-> 7F", "-> 80", 1))
    report = run(faithful, formats="mxfp4", golden=copy)
    assert failing(report) == {"golden.integrity"}
    (check,) = report.failures
    assert "encode_mxfp4_floor_rne.hex" in check.first_failure.where
    assert "modified" in check.first_failure.differs[0]


def test_a_backend_that_raises_or_returns_garbage_fails_with_the_reason():
    for backend, needle in ((raises, "raised RuntimeError: simulator not ready"),
                            (returns_garbage, "must return an object")):  # fmt: skip
        report = run(backend, formats="mxfp4")
        assert not report.passed
        assert {c.id for c in report.checks} == set(failing(report))
        assert needle in report.failures[0].first_failure.error
        assert needle in format_report(report)


# --------------------------------------------------------------------------
# deviations
# --------------------------------------------------------------------------
def test_declared_deviation_is_reported_not_failed_and_unobserved_ones_listed():
    deviations = {
        "special.nan_block_scale": "NaN is left out of amax",
        "special.nan_block_codes": "NaN is left out of amax",
        "special.inf_block_codes": "never happens here",
        "scale.no_such_check": "typo",
    }
    report = run(nan_block_finite_scale, deviations=deviations)
    assert report.passed
    assert report.exit_status == 0
    assert {c.id for c in report.deviations} == {"special.nan_block_scale",
                                                  "special.nan_block_codes"}  # fmt: skip
    assert report.deviations[0].deviation == "NaN is left out of amax"
    assert report.deviations[0].first_failure is not None  # not a silent skip
    assert set(report.unobserved) == {("special.inf_block_codes", "never happens here", True),
                                      ("scale.no_such_check", "typo", False)}  # fmt: skip
    text = format_report(report)
    assert "DEVIATION special.nan_block_scale" in text
    assert "declared: NaN is left out of amax" in text
    assert "DECLARED BUT NOT OBSERVED special.inf_block_codes" in text
    assert "no check with this id ran" in text
    assert "(2 declared deviations observed)" in text
    assert text.rstrip().splitlines()[-1].startswith("VERDICT PASS (exit 0)")
    special = {a.area: a for a in report.areas()}["special"]
    assert special.deviations == 2
    assert special.failed == 0
    assert special.first_failure


def raises_for_mxfp4(x, fmt, **kw):
    """A backend that does not implement mxfp4 at all."""
    if mxref.get_format(fmt).name == "mxfp4":
        raise NotImplementedError("mxfp4 is not implemented")
    return mxref.quantize(x, fmt, **kw)


def scale_one_too_high(x, fmt, **kw):
    """An accelerator model with one scale bug: every finite scale byte one too high."""
    mx = mxref.quantize(x, fmt, **kw)
    return mx.codes, np.where((mx.scales > 0) & (mx.scales < 0xFE), mx.scales + 1, mx.scales)


@pytest.mark.parametrize(("backend", "cause"), [
    (scale_one_too_high, "scale high by 1"),
    (ties_away, "element rounding"),
    (raises, "backend error"),
    (nan_block_finite_scale, "NaN/Inf policy"),
])  # fmt: skip
def test_the_report_leads_with_the_root_causes(backend, cause):
    from mxref.conformance.golden import shipped_golden_dir

    report = run(backend, formats="mxfp4", golden=shipped_golden_dir())
    causes = dict(report.root_causes())
    biggest = report.root_causes()[0][0]
    assert biggest.startswith(cause), causes
    text = format_report(report)
    assert text.index("root causes") < text.index("\nFAIL ")  # the summary comes first
    assert report.to_dict()["root_causes"][0]["cause"] == biggest
    if backend is scale_one_too_high:  # one bug, every check it touches, golden ones included
        assert len(causes[biggest]) == len(report.failures)


def test_a_sign_bug_is_named_a_sign_bug():
    x = np.full((1, 32), -1.0, np.float32)
    from mxref.conformance.failures import CaseFailure
    from mxref.conformance.root_causes import root_cause

    mx = mxref.quantize(x, "mxfp4")
    want = [f"{int(c):02x}" for c in mx.codes[0]]
    got = list(want)
    got[3] = f"{int(want[3], 16) ^ 0x8:02x}"  # the sign bit of an mxfp4 code
    failure = CaseFailure("special.signs", "mxfp4 floor/rne/saturate, block 0", {"x": []},
                          {"scale": ["7f"], "codes": want}, {"scale": ["7f"], "codes": got},
                          ["codes at lanes 3"])  # fmt: skip
    assert root_cause(failure) == "sign"


def test_a_declared_deviation_never_absorbs_an_exception():
    report = run(raises_for_mxfp4, deviations={"special.nan_block_codes": "our NaN blocks"},
                 formats="mxfp4")  # fmt: skip
    assert not report.passed
    check = next(c for c in report.checks if c.id == "special.nan_block_codes")
    assert check.status == "fail"
    assert check.errors == check.failed > 0
    assert "NotImplementedError" in (check.first_failure.error or "")
    assert not report.deviations
    text = format_report(report)
    assert "FAIL special.nan_block_codes" in text
    assert "an error is never a deviation, though this check is declared" in text


def test_deviation_patterns_and_other_failures():
    report = run(nan_block_finite_scale, deviations={"special.nan_*": "r"}, formats="mxfp4")
    assert report.passed
    report = run(ties_away, deviations={"special.nan_*": "r"}, formats="mxfp4")
    assert not report.passed
    assert report.unobserved == (("special.nan_*", "r", True),)


def test_deviation_files_json_and_toml(tmp_path):
    j = tmp_path / "d.json"
    j.write_text(json.dumps({"_comment": "ignored", "special.nan_block_codes": "kept codes"}))
    assert load_deviations(j) == {"special.nan_block_codes": "kept codes"}
    t = tmp_path / "d.toml"
    t.write_text('[special]\nnan_block_codes = "kept codes"\n"inf_block_codes" = "same"\n')
    assert load_deviations(t) == {"special.nan_block_codes": "kept codes",
                                  "special.inf_block_codes": "same"}  # fmt: skip
    shipped = load_deviations(ROOT / "deviations" / "example.json")
    assert shipped
    assert all(any(k.startswith(p) for p in AREAS) for k in shipped)


@pytest.mark.parametrize(
    ("data", "needle"),
    [([1, 2], "must be an object"), ({"special.x": ""}, "needs a reason"),
     ({"special.x": 3}, "needs a reason"), ({"bad id!": "r"}, "is not a check id")],
)  # fmt: skip
def test_bad_deviations_are_input_errors(data, needle):
    with pytest.raises(InputError, match=needle):
        parse_deviations(data)


# --------------------------------------------------------------------------
# --command
# --------------------------------------------------------------------------
def sim_command(script: Path = SIM, extra: str = "") -> str:
    return f"{PY} {shlex.quote(str(script))} --in {{in}} --out {{out}}{extra}"


def test_example_simulator_passes_via_command():
    report = run_conformance(command=sim_command())
    assert report.passed, format_report(report)
    packing = {a.area: a for a in report.areas()}["packing"]
    assert packing.checks == 3
    assert packing.failed == 0


def test_example_simulator_passes_the_golden_files_via_command():
    report = run_conformance(command=sim_command(), golden=GOLDEN, formats="mxfp8_e4m3")
    assert report.passed, format_report(report)
    assert "golden.scale.encode_mxfp8_e4m3_floor_rne" in {c.id for c in report.checks}
    # the float64 regression case cannot travel through the float32 protocol: not counted
    assert "golden.rounding.regressions" not in {c.id for c in report.failures}


def test_command_without_packed_output_says_packing_was_not_run():
    report = run_conformance(command=sim_command(extra=" --no-packed"), formats="mxfp4")
    assert report.passed
    assert "no 'packed' array" in report.not_run["packing"]
    assert "the command's output has no 'packed' array" in format_report(report)


def write_script(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


def test_command_with_swapped_nibbles_fails_packing(tmp_path):
    script = write_script(
        tmp_path,
        "swap.py",
        f"""
        import sys
        sys.path.insert(0, {str(SIM.parent)!r})
        import numpy as np
        import sim_quantize as sim
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        with np.load(args["--in"]) as z:
            import json
            out = sim.simulate(z["x"], json.loads(z["meta"].item()))
        p = out["packed"]
        out["packed"] = ((p >> 4) | (p << 4)).astype(np.uint8)
        with open(args["--out"], "wb") as f:
            np.savez(f, **out)
    """,
    )
    report = run_conformance(command=sim_command(script), formats="mxfp4")
    assert failing(report) == {"packing.fp4_nibbles"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("import sys; print('boom', file=sys.stderr); sys.exit(3)",
         "command exited with status 3; stderr: boom"),
        ("pass", "wrote no {out} file"),
        ("import sys, numpy as np; np.savez(open(sys.argv[-1], 'wb'), codes=np.zeros(3))",
         "has no 'scales' array"),
        ("import sys, numpy as np; np.savez(open(sys.argv[-1], 'wb'), codes=np.zeros((2, 32),"
         " np.uint8), scales=np.zeros(2, np.uint8))", "codes have shape (2, 32)"),
        ("import sys; open(sys.argv[-1], 'w').write('not a zip')", "not a readable .npz"),
        ("import time; time.sleep(30)", "timed out after 1 s"),
    ],
    ids=["crash", "no-output", "missing-array", "wrong-shape", "corrupt", "timeout"],
)  # fmt: skip
def test_command_failures_are_clear_failures(tmp_path, body, needle):
    script = write_script(tmp_path, "bad.py", body + "\n")
    report = run_conformance(command=sim_command(script), formats="mxfp4", timeout=1.0)
    assert not report.passed
    assert all(c.status == "fail" for c in report.checks)
    first = report.failures[0].first_failure
    assert needle in first.error, first.error
    assert first.inputs["x"]
    assert not first.got


def test_command_backend_errors_that_are_bad_input(tmp_path):
    with pytest.raises(InputError, match="must contain \\{out\\}"):
        CommandBackend("sim --in {in}")
    with pytest.raises(InputError, match="empty"):
        CommandBackend("  ")
    with pytest.raises(InputError, match="No closing quotation"):
        CommandBackend("sim 'oops {in} {out}")
    with pytest.raises(InputError, match="not found"):
        run_conformance(command=f"{tmp_path / 'missing-sim'} {{in}} {{out}}", formats="mxfp4")


def test_command_as_quantize_takes_any_shape_and_axis():
    q = as_quantize(CommandBackend(sim_command()))
    x = np.random.default_rng(3).standard_normal((3, 70, 2)).astype(np.float32)
    got = q(x, "mxfp6_e3m2", axis=1, block_size=32)
    want = mxref.quantize(x, "mxfp6_e3m2", axis=1)
    assert np.array_equal(got.codes, want.codes)
    assert np.array_equal(got.scales, want.scales)
    with pytest.raises(ValueError, match="float32 inputs only"):
        q(np.array([0.1], np.float64), "mxfp4")


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------
def cli(capsys, *args: object) -> tuple[int, str, str]:
    rc = main(["conform", "--no-golden", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_junit_report(capsys, tmp_path, monkeypatch):
    import xml.etree.ElementTree as ET

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "junit_mx.py").write_text(textwrap.dedent("""
        import numpy as np
        import mxref
        def quantize(x, fmt, **kw):
            if mxref.get_format(fmt).name == "mxint8":
                raise NotImplementedError("no mxint8")
            return mxref.quantize(x, fmt, **{**kw, "rounding": "away"})
    """))  # fmt: skip
    deviations = tmp_path / "known.json"
    deviations.write_text('{"rounding.midpoints": "we round ties away"}')
    junit = tmp_path / "conform.xml"
    rc, out, err = cli(capsys, "--backend", "junit_mx:quantize", "--format", "mxfp4,mxint8",
                       "--deviations", deviations, "--junit", junit)  # fmt: skip
    assert rc == 1, err
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert int(root.get("tests")) == len(cases)
    failed = [n for n, c in cases.items() if c.find("failure") is not None]
    errored = [n for n, c in cases.items() if c.find("error") is not None]
    assert errored  # mxint8 raised: errors, never failures or deviations
    assert int(root.get("errors")) == len(errored)
    assert int(root.get("failures")) == len(failed)
    assert "NotImplementedError" in cases[errored[0]].find("error").text
    skipped = [n for n, c in cases.items() if c.find("skipped") is not None]
    assert "gemm" in skipped  # no --matmul backend
    assert int(root.get("skipped")) == len(skipped)
    declared = cases["rounding.midpoints"]  # mxfp4's fail as declared; mxint8's raised
    assert declared.find("error") is not None
    rc, out, err = cli(capsys, "--backend", "junit_mx:quantize", "--format", "mxfp4",
                       "--deviations", deviations, "--junit", junit, "--force")  # fmt: skip
    declared = next(c for c in ET.parse(junit).getroot().iter("testcase")
                    if c.get("name") == "rounding.midpoints")  # fmt: skip
    assert declared.find("failure") is None
    assert "declared: we round ties away" in declared.find("system-out").text
    # an existing file is kept unless --force
    rc, _, err = cli(capsys, "--backend", "mxref:quantize", "--format", "mxfp4", "--junit", junit)
    assert rc == 2
    assert "--force" in err


def test_cli_pass_fail_and_json(capsys, tmp_path, monkeypatch):
    rc, out, err = cli(capsys, "--backend", "mxref:quantize", "--format", "mxfp4")
    assert rc == 0, out + err
    assert out.rstrip().splitlines()[-3].startswith("PASS: ")
    assert out.rstrip().splitlines()[-1].startswith("VERDICT PASS (exit 0)")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "buggy_mx.py").write_text(
        textwrap.dedent("""
        import numpy as np
        import mxref
        def quantize(x, fmt, **kw):
            return mxref.quantize(x, fmt, **{**kw, "rounding": "away"})
        def nan_blind(x, fmt, **kw):
            return mxref.quantize(np.where(np.isnan(x), np.float32(0), x), fmt, **kw)
    """)
    )
    report = tmp_path / "r.json"
    rc, out, err = cli(capsys, "--backend", "buggy_mx:quantize", "--format", "mxfp4",
                       "--json", report)  # fmt: skip
    assert rc == 1, err
    assert "FAIL rounding.midpoints" in out
    data = json.loads(report.read_text())
    assert data["exit_status"] == 1
    assert not data["passed"]
    mid = {c["id"]: c for c in data["checks"]}["rounding.midpoints"]
    assert mid["status"] == "fail"
    assert mid["first_failure"]["inputs"]["x"]
    areas = {a["area"]: a for a in data["areas"]}
    assert areas["rounding"]["failed"] >= 1
    assert areas["rounding"]["first_failure"]
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"special.nan_block_*": "NaN is left out of amax"}))
    rc, out, err = cli(capsys, "--backend", "buggy_mx:nan_blind", "--format", "mxfp4",
                       "--deviations", dev)  # fmt: skip
    assert rc == 0, out
    assert "DEVIATION special.nan_block_scale" in out


def test_cli_command_with_the_example_simulator(capsys):
    rc, out, err = cli(capsys, "--command", sim_command(), "--format", "mxint8")
    assert rc == 0, out + err
    assert "packing" in out
    assert "PASS" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backend", "no_such_module_xyz:quantize"], "does not import"),
        (["--backend", "mxref"], "must look like"),
        (["--backend", "mxref:quantize", "--format", "mxfp5"], "unknown format 'mxfp5'"),
        (["--backend", "mxref:quantize", "--scale-rule", "round"], "unknown scale rule"),
        (["--backend", "mxref:quantize", "--deviations", "missing.json"], "cannot read"),
        (["--command", "sim --in {in}"], "must contain {out}"),
        (["--backend", "mxref:quantize", "--matmul", "mxref:matmul", "--accum", "bogus"],
         "bogus"),
        (["--backend", "mxref:quantize", "--golden", "no/such/dir"], "must be a directory"),
    ],
)  # fmt: skip
def test_cli_bad_input_exits_2(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    rc = main(["conform", *args])
    out, err = capsys.readouterr()
    assert rc == 2, out + err
    assert err.startswith("mxref: error: "), err
    assert needle in err, err
    assert err.count("\n") == 1


def test_cli_refuses_an_existing_json_before_running(capsys, tmp_path):
    p = tmp_path / "r.json"
    p.write_text("{}")
    rc, out, err = cli(capsys, "--backend", "mxref:quantize", "--json", p)
    assert rc == 2
    assert "already exists" in err
    assert not out
