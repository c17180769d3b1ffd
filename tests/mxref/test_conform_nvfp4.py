"""mxref conform on NVFP4: mxref's own codec passes, and each planted bug fails its check.

The planted backends are one small NVFP4 encoder written here from the
oracle's pieces (:mod:`mxref.ref.nvfp4`), each with one bug real
implementations have; the battery must fail each in the named check and
name the root cause.
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import mxref
from mxref.conformance import format_report, run_conformance
from mxref.conformance.checks import IMPLEMENTATION_DEFINED, NV_CHECK_CLASS, NV_CHECKS, SPEC_LIKE
from mxref.conformance.claims import Claims
from mxref.conformance.nvfp4_checks import nv_oracle
from mxref.formats import get_format
from mxref.policies import Overflow, Rounding
from mxref.ref.element import BINARY32, apply_sign, decode_element, encode_element
from mxref.ref.nvfp4 import E2M1, E4M3, decode_block_scale, tensor_scale
from mxref.testing.cases.nvfp4 import nv_cases

ROOT = Path(__file__).resolve().parents[2]
PY = shlex.quote(sys.executable)


def planted(bug: str | None = None) -> Any:
    """An NVFP4 quantize (mxref.quantize's signature) with one bug, or none."""

    def quantize(x: Any, fmt: str, *, axis: int = -1, block_size: int = 16, rounding: str = "rne",
                 per_row: bool = False, tensor_scale: Any = None) -> Any:  # fmt: skip
        assert (fmt, axis, block_size) == ("nvfp4", -1, 16)
        bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
        rows = [[decode_element(int(b), BINARY32) for b in row] for row in bits]
        rnd = Rounding.parse(rounding)

        def amax(values: list[Any]) -> Fraction:
            mags = [m for _, m in values if isinstance(m, Fraction) or bug == "inf_in_amax"]
            if bug == "inf_in_amax" and any(m == float("inf") for m in mags):
                return Fraction(10**60)
            return max((m for m in mags if isinstance(m, Fraction)), default=Fraction(0))

        if tensor_scale is not None:
            gs = [Fraction(float(tensor_scale))] * len(rows)
        else:
            whole = max(amax(r) for r in rows)
            by_row = per_row and bug != "per_row_mixed"
            gs = [scale_of(amax(r) if by_row else whole) for r in rows]
        codes, scales = [], []
        for row, g in zip(rows, gs, strict=True):
            row_codes, row_bytes = [], []
            for start in range(0, len(row), 16):
                byte, cs = block(row[start : start + 16], g, rnd)
                row_bytes.append(byte)
                row_codes += cs
            codes.append(row_codes)
            scales.append(row_bytes)
        ts = np.array([float(g) for g in gs], np.float32)
        return (np.array(codes, np.uint8), np.array(scales, np.uint8),
                ts if per_row else ts[:1].reshape(()))  # fmt: skip

    def scale_of(a: Fraction) -> Fraction:
        if bug == "tensor_scale_inverted" and a > 0:  # torchao: amax / 2688 in float32, inverted
            with np.errstate(over="ignore", divide="ignore", under="ignore"):
                t = np.float32(float(a)) / np.float32(2688)
                g = np.float32(1) / t
            if 0 < g < np.inf:  # where torchao's recipe is defined at all
                return Fraction(float(g))
        return tensor_scale(a)

    def block(values: list[Any], g: Fraction, rnd: Rounding) -> tuple[int, list[int]]:
        zeros = [apply_sign(s, 0, E2M1) for s, _ in values]
        if not all(isinstance(m, Fraction) for _, m in values):
            return (0x00 if bug == "nan_block_zero" else 0x7F), zeros
        a = max(m for _, m in values)
        s_rnd = Rounding.ZERO if bug == "block_scale_truncated" else Rounding.RNE
        ovf = Overflow.IEEE if bug == "no_saturation_448" else Overflow.SATURATE
        byte = encode_element(0, a / 6 * g, E4M3, s_rnd, ovf)
        scale = decode_block_scale(byte)
        if scale is None or scale == 0:
            return byte, zeros
        out = []
        e_rnd = Rounding.AWAY if bug == "elements_half_away" else rnd
        for sign, mag in values:
            q = mag * g / scale
            if bug == "no_element_saturation" and q > 7:
                out.append(apply_sign(sign ^ 1, 0, E2M1))  # index 8 spills into the sign bit
                continue
            code = encode_element(sign, q, E2M1, e_rnd, Overflow.SATURATE)
            out.append(0 if bug == "negative_zero_lost" and code == 0x8 else code)
        return byte, out

    return quantize


def bad_swizzle_pack(mx: Any, *, scale_layout: str = "plain") -> Any:
    """mxref.pack, but each 128x4 tile stores row 32q + p at q * 128 + p * 4 (unswizzled)."""
    packed = mxref.pack(mx, scale_layout=scale_layout)
    rows, cols = mx.scales.shape
    rt, ct = -(-rows // 128), -(-cols // 4)
    padded = np.zeros((rt * 128, ct * 4), np.uint8)
    padded[:rows, :cols] = mx.scales
    tiled = padded.reshape(rt, 128, ct, 4).transpose(0, 2, 1, 3).reshape(-1)
    return SimpleNamespace(data=packed.data, scales=tiled, tensor_scale=packed.tensor_scale)


def nan_byte_finite_dequantize(mx: Any, dtype: Any = np.float32) -> np.ndarray:
    """mxref.dequantize, but the E4M3 byte 0x7F decodes as 480 (S.1111.111 read as a number)."""
    out = mxref.dequantize(mx, np.float64)
    blocks = np.repeat(mx.scales, mx.block_size, axis=1)[:, : mx.codes.shape[1]] == 0x7F
    values = np.array([[float(decode_element(int(c), E2M1)[1]) * (-1 if c & 8 else 1)
                        for c in row] for row in mx.codes])  # fmt: skip
    g = np.broadcast_to(mx.tensor_scale.astype(np.float64).reshape(-1, 1), values.shape)
    out = np.where(blocks, values * 480.0 / g, out)
    return out.astype(np.float32)


NV = {"formats": "nvfp4"}


def test_mxref_own_nvfp4_passes_every_check():
    report = run_conformance(mxref.quantize, pack=mxref.pack, dequantize=mxref.dequantize,
                             roundings="all", **NV)  # fmt: skip
    assert report.passed, format_report(report)
    ran = {c.id for c in report.checks}
    assert ran == set(NV_CHECKS), ran ^ set(NV_CHECKS)
    assert report.selection["format"] == ["nvfp4"]


def test_the_planted_encoder_without_a_bug_passes():
    report = run_conformance(planted(None), **NV)
    assert report.passed, format_report(report)


@pytest.mark.parametrize(
    ("bug", "check", "cause"),
    [
        ("tensor_scale_inverted", "nvfp4.tensor_scale", "tensor scale differs"),
        ("block_scale_truncated", "nvfp4.block_scale_rounding", "block scale low by 1 E4M3 step"),
        ("no_saturation_448", "nvfp4.block_scale_saturation", "NaN/Inf policy (the E4M3 NaN"),
        ("elements_half_away", "nvfp4.element_rounding", "element rounding"),
        ("no_element_saturation", "nvfp4.element_saturation", "element rounding"),
        ("nan_block_zero", "nvfp4.special_values", "NaN/Inf policy"),
        ("inf_in_amax", "nvfp4.special_values", "tensor scale differs"),
        ("per_row_mixed", "nvfp4.per_row", "tensor scale differs"),
        ("negative_zero_lost", "nvfp4.negative_zero", "sign"),
    ],
)
def test_each_planted_bug_fails_its_check_with_its_cause(bug, check, cause):
    report = run_conformance(planted(bug), **NV)
    failed = {c.id for c in report.failures}
    assert check in failed, format_report(report)
    causes = [c for c, checks in report.root_causes() if check in checks]
    assert causes, report.root_causes()
    assert causes[0].startswith(cause), causes
    text = format_report(report)
    # headed by its class: a format violation fails, an open choice warns
    head = "FAIL" if NV_CHECK_CLASS[check] == SPEC_LIKE else "WARNING, implementation-defined:"
    assert f"{head} {check}" in text
    first = next(c for c in report.checks if c.id == check).first_failure
    assert first is not None
    assert "; block (" in first.where  # pinpointed: (row, block)
    if cause == "element rounding":
        assert any(" lane " in d for d in first.differs)


def test_a_truncated_block_scale_is_reported_in_blocks():
    report = run_conformance(planted("block_scale_truncated"), **NV)
    causes = dict(report.root_causes())
    named = [c for c in causes if c.startswith("block scale low by 1 E4M3 step in ")]
    assert named, causes
    assert named[0].endswith("blocks"), causes
    # G is computed right: no check blames the tensor scale
    assert "tensor scale differs" not in causes


def test_a_wrong_swizzle_and_a_finite_nan_byte_are_caught():
    report = run_conformance(mxref.quantize, pack=bad_swizzle_pack,
                             dequantize=nan_byte_finite_dequantize, **NV)  # fmt: skip
    assert {c.id for c in report.failures} == {"nvfp4.packing", "nvfp4.decode"}
    causes = dict(report.root_causes())
    assert causes["packing (swizzled scale layout)"] == ["nvfp4.packing"]
    assert causes["decoding"] == ["nvfp4.decode"]
    first = next(c for c in report.checks if c.id == "nvfp4.decode").first_failure
    assert "scale byte 7f" in first.differs[0]
    first = next(c for c in report.checks if c.id == "nvfp4.packing").first_failure
    assert "belongs there" in first.differs[0]


def test_nvfp4_runs_only_when_named_or_claimed():
    report = run_conformance(mxref.quantize, formats="mxfp4")
    assert not any(c.area == "nvfp4" for c in report.checks)
    every_mx = run_conformance(mxref.quantize, formats="all", level=1,
                               claims=Claims.parse("formats=mxfp4"))  # fmt: skip
    assert every_mx.selection["format"] == ["mxfp4"]
    both = run_conformance(planted(None), claims=Claims.parse("formats=nvfp4"))
    assert both.selection["format"] == ["nvfp4"]
    assert both.passed
    assert "nvfp4" not in " ".join(Claims().not_claimed())


def test_a_backend_that_breaks_the_contract_errors_every_case():
    def no_tensor_scale(x: Any, fmt: str, **kw: Any) -> Any:
        mx = mxref.quantize(x, fmt, **kw)
        return mx.codes, mx.scales

    report = run_conformance(no_tensor_scale, **NV)
    assert all(c.errors == c.cases for c in report.checks), format_report(report)
    causes = [c for c, _ in report.root_causes()]
    assert causes == ["backend error (raised, crashed or no usable output)"]


def test_every_nvfp4_check_has_a_class_and_is_fed():
    assert set(NV_CHECK_CLASS) == set(NV_CHECKS)
    assert set(NV_CHECK_CLASS.values()) == {SPEC_LIKE, IMPLEMENTATION_DEFINED}
    fed = {c.check for c in nv_cases(1)} | {"nvfp4.packing", "nvfp4.decode"}
    assert fed == set(NV_CHECKS)


def test_the_oracle_agrees_with_mxref_on_the_cases():
    for case in nv_cases(1)[::7]:
        kw: dict[str, Any] = {"per_row": case.per_row}
        if case.given is not None:
            kw["tensor_scale"] = np.array([case.given], np.uint32).view(np.float32)[0]
        mx = mxref.quantize(case.array(), "nvfp4", **kw)
        t, s, c = nv_oracle(case.array(), "rne", case.per_row, case.given)
        assert np.array_equal(mx.tensor_scale.reshape(-1).view(np.uint32), t.view(np.uint32))
        assert np.array_equal(mx.scales, s)
        assert np.array_equal(mx.codes, c)


SIM_NV = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import mxref

    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    with np.load(args["--in"]) as z:
        meta = json.loads(str(z["meta"]))
        x = z["x"]
        given = z["tensor_scale"] if "tensor_scale" in z.files else None
    codes, scales, ts = [], [], []
    for t in range(x.shape[0]):
        kw = {"rounding": meta["rounding"], "per_row": meta["per_row"]}
        if given is not None:
            kw["tensor_scale"] = given[t]
        mx = mxref.quantize(x[t], meta["format"], **kw)
        codes.append(mx.codes)
        scales.append(mx.scales)
        ts.append(mx.tensor_scale)
    np.savez(args["--out"], codes=np.stack(codes), scales=np.stack(scales),
             tensor_scale=np.stack(ts))
    """
)


def test_the_command_protocol_carries_the_tensor_scale(tmp_path: Path):
    sim = tmp_path / "sim_nv.py"
    sim.write_text(SIM_NV)
    command = f"{PY} {shlex.quote(str(sim))} --in {{in}} --out {{out}}"
    report = run_conformance(command=command, **NV)
    assert report.passed, format_report(report)
    assert sum(c.cases for c in report.checks) == len(nv_cases(1))


def test_the_command_line_runs_nvfp4_and_writes_the_checks(tmp_path: Path, capsys):
    from mxref.cli import main

    out = tmp_path / "r.json"
    status = main(["conform", "--backend", "mxref:quantize", "--format", "nvfp4",
                   "--no-golden", "--json", str(out)])  # fmt: skip
    assert status == 0, capsys.readouterr().out
    data = json.loads(out.read_text())
    assert {c["id"] for c in data["checks"]} >= {"nvfp4.tensor_scale", "nvfp4.per_row"}
    assert "NVFP4" in capsys.readouterr().out
    assert get_format("nvfp4", two_level=True).block_size == 16


# --------------------------------------------------------------------------
# the NVFP4 golden files
# --------------------------------------------------------------------------
GOLDEN = ROOT / "mxref" / "golden_vectors"
NV_FILES = sorted(p.name for p in GOLDEN.glob("*nvfp4*.hex"))


@pytest.fixture
def nv_golden(tmp_path: Path) -> Path:
    """The shipped NVFP4 golden files alone, with a MANIFEST listing just them."""
    import shutil

    from mxref.conformance import golden
    from mxref.conformance.golden.manifest import _manifest_text

    target = tmp_path / "nv"
    target.mkdir()
    for name in NV_FILES:
        shutil.copy(GOLDEN / name, target / name)
    digests = [(name, golden.sha256_file(target / name)) for name in NV_FILES]
    (target / golden.MANIFEST).write_text(_manifest_text(digests))
    return target


def test_the_nvfp4_golden_files_are_generated_and_listed():
    from mxref.conformance import golden
    from mxref.conformance.golden.nvfp4 import nv_plan

    assert sorted(name for name, _ in nv_plan()) == NV_FILES
    assert set(NV_FILES) <= set(golden.read_manifest(GOLDEN).files)
    for name, build in nv_plan():
        if name in ("decode_nvfp4.hex", "pack_nvfp4.hex", "encode_nvfp4_rne_given.hex"):
            assert (GOLDEN / name).read_text() == build(), name  # reproducible bytes


def test_mxref_passes_the_nvfp4_golden_files_and_a_planted_bug_fails_them(nv_golden: Path):
    from mxref.conformance import golden

    report = golden.verify(nv_golden, **golden.mxref_backend())
    assert report.complete, report.summary()
    bad = golden.verify(nv_golden, quantize=planted("block_scale_truncated"),
                        claims=Claims.parse("formats=nvfp4;roundings=rne"))  # fmt: skip
    status = {f.name: f.status for f in bad.files}
    assert status["encode_nvfp4_rne.hex"] == "fail"
    assert status["encode_nvfp4_away.hex"] == "not provided"  # not claimed
    assert status["decode_nvfp4.hex"] == "not provided"
    assert bad.area("scale").failed


def test_an_mx_backend_is_not_run_on_the_nvfp4_files(nv_golden: Path, capsys):
    from mxref.cli import main

    assert main(["golden", "verify", "--dir", str(nv_golden), "--backend", "mxref:quantize"]) == 0
    out = capsys.readouterr().out
    assert "not claimed by the backend: nvfp4 rne" in out
    status = main(["golden", "verify", "--dir", str(nv_golden), "--backend", "mxref:quantize",
                   "--claims", "formats=nvfp4"])  # fmt: skip
    assert status == 0
    out = capsys.readouterr().out
    assert "not claimed" not in out
    assert "NOT PROVIDED (the backend provides no pack)" in out


def test_conform_folds_the_nvfp4_golden_files_into_its_checks(nv_golden: Path):
    report = run_conformance(mxref.quantize, pack=mxref.pack, dequantize=mxref.dequantize,
                             golden=nv_golden, **NV)  # fmt: skip
    assert report.passed, format_report(report)
    golden_ids = {c.id for c in report.checks if c.area != "nvfp4"}
    assert "golden.scale.encode_nvfp4_rne" in golden_ids
    assert "golden.packing.pack_nvfp4" in golden_ids
    bad = run_conformance(planted("elements_half_away"), golden=nv_golden, **NV)
    assert "golden.rounding.encode_nvfp4_rne" in {c.id for c in bad.failures}


@pytest.mark.parametrize(
    ("bug", "status", "verdict"),
    [
        # another tensor-scale formula (torchao's float32 amax / 2688, inverted) is a choice
        ("tensor_scale_inverted", 3, "0 spec violations; "),
        # a block scale rounded down breaks what every NVFP4 implementation shares
        ("block_scale_truncated", 1, "1 spec violation"),
    ],
)
def test_the_nvfp4_verdict_separates_choices_from_violations(bug, status, verdict):
    report = run_conformance(planted(bug), **NV)
    text = format_report(report)
    assert report.exit_status == status, text
    assert verdict in text.splitlines()[-1], text.splitlines()[-1]
