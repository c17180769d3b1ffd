"""What a backend claims to implement: presets, and only the claimed policies and formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mxref
from mxref.cli import main
from mxref.conformance import run_conformance
from mxref.conformance.claims import Claims, load_claims
from mxref.conformance.report import format_report
from mxref.io import InputError
from mxref.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RNE_FLOOR = "roundings=rne;scale_rules=floor"


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    """The example backend imports as ``rne_only_backend``, in-process and in subprocesses."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    paths = [str(EXAMPLES), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))


def rne_only(x, fmt, **kwargs):
    from rne_only_backend import quantize

    return quantize(x, fmt, **kwargs)


def ignores_preset_quirks(x, fmt, *, preset=None, **kwargs):
    """A backend with torchao's three policies but not its divisor clamp."""
    chosen = get_preset(preset)
    return mxref.quantize(x, fmt, scale_rule=chosen.scale_rule, rounding=chosen.rounding,
                          overflow=chosen.overflow, **kwargs)  # fmt: skip


def test_a_preset_is_tested_with_its_quirks():
    formats = "mxfp4,mxfp8_e4m3"
    assert run_conformance(mxref.quantize, preset="torchao", formats=formats).exit_status == 0
    report = run_conformance(ignores_preset_quirks, preset="torchao", formats=formats)
    assert report.exit_status == 1
    assert any(c.id.startswith("scale.") for c in report.failures)


def test_the_compressed_tensors_preset_is_checked_with_its_scale_byte_overflow():
    # its quirk gives byte 0xFF (a NaN block) where amax >= 1.75 * 2**127 in mxfp4: the
    # oracle must model it, or mxref's own preset would fail its own conformance run
    report = run_conformance(mxref.quantize, preset="compressed-tensors", formats="mxfp4")
    assert report.exit_status == 0, format_report(report)
    report = run_conformance(ignores_overflow_quirk, preset="compressed-tensors",
                             formats="mxfp4")  # fmt: skip
    assert report.exit_status == 1


def ignores_overflow_quirk(x, fmt, **kw):
    """compressed-tensors' rule without its overflow quirk: the byte stays finite."""
    assert kw.pop("preset") == "compressed-tensors"
    return mxref.quantize(x, fmt, scale_rule="even", **kw)


def test_cli_preset_excludes_explicit_policies(capsys):
    argv = ["conform", "--backend", "mxref:quantize", "--preset", "cublas", "--rounding", "rne"]
    assert main(argv) == 2
    assert "--preset fixes --rounding" in capsys.readouterr().err
    assert main(["encode", "--format", "mxfp4", "--preset", "torchao", "--overflow", "ieee",
                 "x.npy", "x.npz"]) == 2  # fmt: skip
    assert "--preset fixes --overflow" in capsys.readouterr().err



def test_claims_parse_and_refuse_what_they_do_not_know():
    claims = Claims.parse("rounding=rne;formats=mxfp4,float8_e4m3fn")
    assert claims.roundings == {"rne"}
    assert claims.formats == {"mxfp4", "mxfp8_e4m3"}  # aliases name the same format
    assert claims.covers(fmt="mxfp4", rounding="rne")
    assert not claims.covers(rounding="away")
    assert claims.not_claimed()[0].startswith("format: mxfp6_e2m3")
    for text, message in (("roundings=nearest", "'nearest' is not a rounding"),
                          ("speed=fast", "unknown key"), ("roundings", "key=value"),
                          ("", "is empty")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            Claims.parse(text)


def test_an_rne_floor_only_backend_passes_when_it_claims_only_that():
    kwargs = {"formats": "mxfp4,mxint8", "roundings": "all", "scale_rules": "all"}
    assert run_conformance(rne_only, **kwargs).exit_status == 1  # claims everything: fails
    report = run_conformance(rne_only, claims=Claims.parse(RNE_FLOOR), **kwargs)
    assert report.exit_status == 0
    assert "rounding: away, zero, stochastic" in report.not_claimed
    assert report.selection["rounding"] == ["rne"]
    assert report.to_dict()["not_claimed"] == list(report.not_claimed)


def test_claims_come_from_the_deviations_file_or_the_command_line(tmp_path, capsys):
    deviations = tmp_path / "known.json"
    deviations.write_text(json.dumps({"claims": {"roundings": ["rne"], "scale_rules": "floor"},
                                      "special.*": "not a real deviation"}))  # fmt: skip
    assert load_claims(deviations) == Claims.parse(RNE_FLOOR)
    argv = ["conform", "--backend", "rne_only_backend:quantize", "--format", "mxfp4",
            "--rounding", "all", "--no-golden", "--deviations", str(deviations)]  # fmt: skip
    assert main(argv) == 0
    assert "not claimed, not tested: rounding: away, zero, stochastic" in capsys.readouterr().out
    assert main([*argv, "--claims", RNE_FLOOR]) == 2
    assert "keep one" in capsys.readouterr().err


def test_the_pytest_battery_skips_what_is_not_claimed():
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(ROOT / "spec_tests" / "test_midpoints.py"), "--mx-backend",
           "rne_only_backend:quantize"]  # fmt: skip
    failing = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert failing.returncode == 1, failing.stdout[-2000:]
    passing = subprocess.run([*run, "--mx-claims", RNE_FLOOR], capture_output=True, text=True,
                             cwd=ROOT)  # fmt: skip
    assert passing.returncode == 0, passing.stdout[-2000:]
    assert "skipped" in passing.stdout


def test_one_area_vocabulary_and_old_ids_in_deviations_files():
    from mxref.conformance import CHECKS, parse_deviations
    from mxref.testing.areas import AREA_NAMES
    from mxref.testing.cases import AREAS as CASE_AREAS

    assert CASE_AREAS == AREA_NAMES
    assert {c.area for c in CHECKS.values()} <= set(AREA_NAMES)
    assert all(check_id.split(".")[0] in AREA_NAMES for check_id in CHECKS)
    assert parse_deviations({"element.midpoints": "ours ties away"}) == {
        "rounding.midpoints": "ours ties away"}
