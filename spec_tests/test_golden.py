"""The golden vector files: integrity, regeneration, and verification of an implementation.

``verify`` runs on the shipped ``golden/`` with the ``mx_quantize`` fixture,
so ``pytest spec_tests --mx-backend=module:function`` checks a backend
against every golden encode case (its packing, GEMM and decode cases are
then reported "not provided").

Spec: OCP MX v1.0 sections 5, 5.1, 6.2 and 6.3 (through the oracle's golden cases).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mxref
from mxref.cli import main
from mxref.conformance import golden
from mxref.conformance.golden.manifest import _manifest_text as manifest_text
from mxref.io import InputError
from mxref.ref.packing import pack_row
from mxref.testing import cases
from mxref.testing.backend import codes_and_scales

GOLDEN = Path(__file__).resolve().parent.parent / "mxref" / "golden_vectors"


@pytest.fixture(scope="module")
def golden_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of the shipped golden directory (copy it again to modify it)."""
    target = tmp_path_factory.mktemp("golden") / "golden"
    shutil.copytree(GOLDEN, target)
    return target


#: A few files of every operation, for tests that run the whole (slow-ish) mxref backend.
SMALL_SET = (
    "decode_mxfp4.hex",
    "decode_e8m0.hex",
    "encode_mxfp4_floor_rne.hex",
    "encode_mxint8_ceil_stochastic.hex",
    "pack_mxfp6_e3m2.hex",
    "gemm_fixed_point_14_32_rne.hex",
    golden.REGRESSIONS,
)


@pytest.fixture
def small_golden(tmp_path: Path) -> Path:
    """A golden directory with a few shipped files and a MANIFEST listing just them."""
    target = tmp_path / "small"
    target.mkdir()
    for name in SMALL_SET:
        shutil.copy(GOLDEN / name, target / name)
    digests = [(name, golden.sha256_file(target / name)) for name in SMALL_SET]
    (target / golden.MANIFEST).write_text(manifest_text(digests))
    return target


def fresh_copy(golden_copy: Path, tmp_path: Path) -> Path:
    target = tmp_path / "golden"
    shutil.copytree(golden_copy, target)
    return target


# --- the shipped files ------------------------------------------------------------------


def test_shipped_files_verify_against_the_backend_under_test(mx_quantize, mx_encode):
    backend = golden.mxref_backend() if mx_quantize is mxref.quantize else {}
    report = golden.verify(GOLDEN, **{**backend, "quantize": mx_quantize},
                           claims=mx_encode.claims)  # fmt: skip
    assert report.ok, report.summary()
    assert not report.integrity
    names = {f.name for f in report.files}
    assert names == set(golden.file_names()) | {golden.REGRESSIONS}
    if mx_quantize is mxref.quantize:
        assert report.complete, report.summary()
        counts = {c.area: c for c in report.areas}
        assert set(counts) == set(golden.AREAS)
        assert all(c.passed > 0 and c.failed == 0 for c in counts.values())


def test_manifest_lists_every_file_with_generator_and_seed():
    manifest = golden.read_manifest(GOLDEN)
    assert manifest.generator == golden.GENERATOR
    assert manifest.seed == golden.SEED
    assert set(manifest.files) == set(golden.file_names()) | {golden.REGRESSIONS}
    for name, digest in manifest.files.items():
        assert golden.sha256_file(GOLDEN / name) == digest, name


def test_file_set_and_size():
    names = golden.file_names()
    for fmt in mxref.mx_format_names():  # nvfp4 has no golden files yet
        assert f"decode_{fmt}.hex" in names
        assert f"pack_{fmt}.hex" in names
        for rule in ("floor", "ceil", "even", "rceil"):
            for rounding in ("rne", "away", "zero", "stochastic"):
                assert f"encode_{fmt}_{rule}_{rounding}.hex" in names
    assert "encode_mxfp8_e4m3_floor_rne_ieee.hex" in names
    assert "encode_mxfp8_e5m2_floor_rne_ieee.hex" in names
    assert "decode_e8m0.hex" in names
    assert {n for n in names if n.startswith("gemm_")} == {
        "gemm_exact.hex",
        "gemm_block_fp32.hex",
        "gemm_fixed_point_25_32.hex",
        "gemm_fixed_point_14_32_rne.hex",
        "gemm_block_fp32_ftz.hex",
    }
    total = sum(p.stat().st_size for p in GOLDEN.iterdir())
    assert total < 8 * 2**20


def test_headers_record_generator_seed_and_policies():
    text = (GOLDEN / "encode_mxfp4_floor_stochastic.hex").read_text()
    parsed = golden.parse_golden(text)
    h = parsed.header
    assert h["generator"] == golden.GENERATOR
    assert h["seed"] == str(golden.SEED)
    assert (h["operation"], h["format"], h["scale_rule"], h["rounding"], h["overflow"]) == (
        "encode",
        "mxfp4",
        "floor",
        "stochastic",
        "saturate",
    )
    assert int(h["stochastic_seed"]) > 0
    assert all(len(c.inputs) == 32 and len(c.outputs) == 33 for c in parsed.cases)
    assert {c.area for c in parsed.cases} <= set(golden.AREAS)


def test_decode_e8m0_extremes():
    parsed = golden.parse_golden((GOLDEN / "decode_e8m0.hex").read_text())
    table = {c.inputs[0]: c.outputs[0] for c in parsed.cases}
    assert len(table) == 256
    assert table["00"] == "00400000"  # 2**-127, an fp32 subnormal
    assert table["7F"] == "3F800000"
    assert table["FE"] == "7F000000"
    assert table["FF"] == "7FC00000"


def spec_corner(fmt_file: str, *first_inputs: str) -> golden.GoldenCase:
    """The first case of a file whose inputs start with ``first_inputs``."""
    parsed = golden.parse_golden((GOLDEN / fmt_file).read_text())
    n = len(first_inputs)
    return next(c for c in parsed.cases if c.inputs[:n] == first_inputs)


def test_corner_cases_are_in_the_files():
    # 1023.99994 in E4M3: FLOOR gives 2**1 (byte 0x80) and 448 (0x7E), not 2**2
    case = spec_corner("encode_mxfp8_e4m3_floor_rne.hex", "447FFFFF")
    assert case.outputs[:2] == ("80", "7E")
    # E2M1 amax 7: FLOOR clamps to 6 at 2**0; RCEIL picks 2**1 and 3.5 -> 4 (tie to even)
    assert spec_corner("encode_mxfp4_floor_rne.hex", "40E00000").outputs[:2] == ("7F", "7")
    assert spec_corner("encode_mxfp4_rceil_rne.hex", "40E00000").outputs[:2] == ("80", "6")
    # E4M3 480: FLOOR 448 at 2**0, CEIL 240 at 2**1
    assert spec_corner("encode_mxfp8_e4m3_floor_rne.hex", "43F00000").outputs[:2] == ("7F", "7E")
    assert spec_corner("encode_mxfp8_e4m3_ceil_rne.hex", "43F00000").outputs[:2] == ("80", "77")
    # E5M2 61440 saturates to 57344 (0x7B); with IEEE overflow it is Inf (0x7C)
    assert spec_corner("encode_mxfp8_e5m2_floor_rne.hex", "47700000").outputs[:2] == ("7F", "7B")
    assert spec_corner("encode_mxfp8_e5m2_floor_rne_ieee.hex", "47700000").outputs[:2] == (
        "7F",
        "7C",
    )
    # E2M1 ties under a 6.0 anchor: 0.25 0.75 1.25 1.75 2.5 3.5 5.0 -> 0 1 1 2 2 4 4
    ties = spec_corner("encode_mxfp4_floor_rne.hex", "40C00000", "3E800000", "3F400000")
    assert ties.outputs[:9] == ("7F", "7", "0", "2", "2", "4", "4", "6", "6")
    # MXINT8 -1.9921875 -> 0x81 (never 0x80); 2**-7 -> 0 under RNE, 1 under ties-away
    int8 = spec_corner("encode_mxint8_floor_rne.hex", "BFFF0000")
    assert int8.outputs[:4] == ("7F", "81", "7F", "00")
    assert spec_corner("encode_mxint8_floor_away.hex", "BFFF0000").outputs[3] == "01"


def test_regressions_file_holds_the_known_bugs():
    parsed = golden.parse_golden((GOLDEN / golden.REGRESSIONS).read_text())
    assert "append_regression" in parsed.header["appending"]
    outputs = [(c.op, c.outputs[-1]) for c in parsed.cases]
    assert ("gemm", "4819") in outputs
    assert outputs.count(("gemm", "7FC00000")) == 2
    double = next(c for c in parsed.cases if c.params.get("input") == "float64")
    assert double.outputs == ("7F", "7", "1", "7")
    assert all(c.note for c in parsed.cases)


# --- integrity --------------------------------------------------------------------------


def flip_one_digit(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    i = next(k for k, line in enumerate(lines) if not line.startswith("#"))
    line = lines[i]
    j = line.index("->") + 3  # first digit of the scale byte
    lines[i] = line[:j] + ("1" if line[j] != "1" else "2") + line[j + 1 :]
    path.write_text("".join(lines))


def test_corrupted_file_is_reported_by_name_and_not_used(golden_copy, tmp_path):
    d = fresh_copy(golden_copy, tmp_path)
    name = "encode_mxfp4_floor_rne.hex"
    flip_one_digit(d / name)
    report = golden.verify(d, quantize=mxref.quantize)
    assert not report.ok
    assert [(p.file, p.problem.split(":")[0]) for p in report.integrity] == [(name, "modified")]
    assert name not in {f.name for f in report.files}
    assert name in report.summary()
    assert report.to_dict()["integrity"][0]["file"] == name


def test_missing_and_extra_files_are_reported(golden_copy, tmp_path):
    d = fresh_copy(golden_copy, tmp_path)
    (d / "pack_mxfp4.hex").unlink()
    (d / "encode_mxfp4_floor_rne_l3.hex").write_text("# not generated\n")
    report = golden.verify(d, quantize=mxref.quantize)
    problems = {p.file: p.problem for p in report.integrity}
    assert problems["pack_mxfp4.hex"] == "missing"
    assert problems["encode_mxfp4_floor_rne_l3.hex"].startswith("extra")
    assert not report.ok
    assert "encode_mxfp4_floor_rne_l3.hex" not in {f.name for f in report.files}


def test_missing_manifest_is_reported(golden_copy, tmp_path):
    d = fresh_copy(golden_copy, tmp_path)
    (d / golden.MANIFEST).unlink()
    report = golden.verify(d)
    assert not report.ok
    assert report.integrity[0].file == golden.MANIFEST
    assert not report.files


def test_not_provided_operations_are_reported_not_passed():
    report = golden.verify(GOLDEN, quantize=mxref.quantize)
    assert report.ok
    assert not report.complete
    for area in ("packing", "gemm", "decode"):
        counts = report.area(area)
        assert counts.not_provided > 0
        assert counts.passed == 0, area
    statuses = {f.name: f.status for f in report.files}
    assert statuses["pack_mxfp4.hex"] == "not provided"
    assert statuses["gemm_exact.hex"] == "not provided"
    assert statuses[golden.REGRESSIONS] == "partial"
    assert "NOT PROVIDED" in report.summary()
    assert report.to_dict()["areas"]["packing"]["not_provided"] > 0


# --- wrong backends fail, naming the area --------------------------------------------------


def ties_away(x, fmt, **kw):
    """A quantize that rounds ties away from zero where RNE was asked (microxcaling's default)."""
    if kw.get("rounding", "rne") == "rne":
        kw["rounding"] = "away"
    return mxref.quantize(x, fmt, **kw)


def positive_zero(x, fmt, **kw):
    """A quantize that turns every -0 code into +0 (microxcaling's C++ path)."""
    mx = mxref.quantize(x, fmt, **kw)
    codes, scales = codes_and_scales(mx)
    f = mxref.get_format(fmt)
    codes = codes.copy()
    if f.has_negative_zero:
        codes[codes == f.sign_bit] = 0
    return codes, scales


def test_ties_away_backend_fails_in_the_rounding_area():
    report = golden.verify(GOLDEN, quantize=ties_away)
    assert not report.ok
    assert "rounding" in report.failed_areas
    first = report.area("rounding").first_failure
    assert first is not None
    assert "_rne" in first.file or first.file == golden.REGRESSIONS
    assert all(
        "_rne" in f.name or f.name == golden.REGRESSIONS for f in report.files if f.status == "fail"
    )
    assert "FAIL encode_" in report.summary()


def test_negative_zero_dropping_backend_fails_in_the_special_area():
    report = golden.verify(GOLDEN, quantize=positive_zero)
    assert not report.ok
    assert "special" in report.failed_areas
    assert report.area("special").first_failure is not None


def test_wrong_packer_fails_in_the_packing_area():
    def swapped(mx):
        data = mxref.pack(mx).data.copy()
        if mx.fmt.bits == 4:
            data = (data >> 4) | ((data & 0xF) << 4)
        return data

    report = golden.verify(GOLDEN, quantize=mxref.quantize, pack=swapped)
    assert report.failed_areas == ["packing"]
    assert {f.name for f in report.files if f.status == "fail"} == {"pack_mxfp4.hex"}


def test_a_raising_backend_is_an_error_not_a_crash():
    def broken(x, fmt, **kw):
        raise RuntimeError("no such format here")

    report = golden.verify(GOLDEN, quantize=broken)
    assert not report.ok
    assert all(f.status == "error" for f in report.files if f.operation == "encode")
    assert "RuntimeError" in report.summary()


# --- generation ----------------------------------------------------------------------------


@pytest.mark.slow
def test_regeneration_is_byte_identical(tmp_path):
    result = golden.generate(tmp_path / "g", regressions=GOLDEN / golden.REGRESSIONS)
    shipped = golden.read_manifest(GOLDEN)
    fresh = golden.read_manifest(tmp_path / "g")
    assert fresh.files == shipped.files
    assert (tmp_path / "g" / golden.MANIFEST).read_bytes() == (
        GOLDEN / golden.MANIFEST
    ).read_bytes()
    assert result.seconds < 120


def test_generate_refuses_to_overwrite_without_force(golden_copy):
    with pytest.raises(InputError, match="already exists"):
        golden.generate(golden_copy)


def test_reference_packer_matches_the_documented_formulas():
    assert pack_row([1, 2, 3], 4) == bytes([0x21, 0x03])
    assert pack_row([0x3F, 0, 0, 0], 6) == bytes([0x3F, 0, 0])
    assert pack_row([0, 0x3F, 0, 0], 6) == bytes([0xC0, 0x0F, 0])
    assert pack_row([0, 0, 0, 0x3F], 6) == bytes([0, 0, 0xFC])
    assert pack_row([0xAB], 8) == bytes([0xAB])


# --- regressions ----------------------------------------------------------------------------


def test_append_regression_updates_the_file_and_manifest_and_is_carried(small_golden):
    d = small_golden
    x = np.array([6.0, 0.75, -0.25, 2.5], np.float32)
    case = golden.EncodeRegression(x, "mxfp4", rounding="away")
    line = golden.append_regression(d, case, note="ties away on a short block")
    assert line.startswith("encode format=mxfp4 scale_rule=floor rounding=away")
    assert line.endswith("-> 7F 7 2 9 5 01 rounding")
    text = (d / golden.REGRESSIONS).read_text()
    assert text.endswith("# note: ties away on a short block\n" + line + "\n")
    assert golden.append_regression(d, case, note="again") == line  # idempotent
    assert (d / golden.REGRESSIONS).read_text() == text
    gemm = golden.GemmRegression(
        "mxfp4", "mxint8", [7, 1], [0x7F], [0x40, 0xC0], [0x80], accum="block_fp32"
    )
    golden.append_regression(d, gemm, note="mixed pair")
    report = golden.verify(d, **golden.mxref_backend())
    assert report.ok, report.summary()
    # generate carries appended cases, re-derived from the oracle
    assert golden.regressions_text(d / golden.REGRESSIONS) == (d / golden.REGRESSIONS).read_text()
    notes = [c.note for c in golden.parse_golden((d / golden.REGRESSIONS).read_text()).cases]
    assert notes[-2:] == ["ties away on a short block", "mixed pair"]


def test_append_regression_refuses_an_unverified_file(small_golden):
    d = small_golden
    with (d / golden.REGRESSIONS).open("a") as f:
        f.write("# edited by hand\n")
    case = golden.EncodeRegression(np.array([1.0], np.float32), "mxfp4")
    with pytest.raises(InputError, match="does not match the MANIFEST"):
        golden.append_regression(d, case, note="x")


def test_generate_rejects_a_regression_the_oracle_disagrees_with(small_golden, tmp_path):
    d = small_golden
    golden.append_regression(
        d, golden.EncodeRegression(np.array([6.0, 0.75], np.float32), "mxfp4"), note="tie"
    )
    path = d / golden.REGRESSIONS
    path.write_text(path.read_text().replace("-> 7F 7 2 01", "-> 7F 7 3 01"))
    with pytest.raises(InputError, match="oracle now gives"):
        golden.regressions_text(path)
    with pytest.raises(InputError, match="oracle now gives"):
        golden.generate(tmp_path / "regen", regressions=path)
    assert not (tmp_path / "regen").exists()


# --- the structured generator ----------------------------------------------------------------


@pytest.mark.parametrize("name", mxref.mx_format_names())
def test_level_two_is_a_superset_of_level_one(name):
    fmt = mxref.get_format(name)
    one = {b.inputs for b in cases.encode_blocks(fmt, 1, seed=5)}
    two = {b.inputs for b in cases.encode_blocks(fmt, 2, seed=5)}
    assert one < two
    for block in cases.encode_blocks(fmt, 1, seed=5):
        assert len(block.inputs) == 32
        assert block.area in cases.AREAS
        assert all(0 <= b < 2**32 for b in block.inputs)


def test_midpoints_are_exact_and_their_neighbours_adjacent():
    fmt = mxref.get_format("mxfp8_e4m3")
    mids = cases.midpoint_values(fmt, -127, ["below", "mid", "above"])
    for below, mid, above in zip(mids[0::3], mids[1::3], mids[2::3], strict=True):
        assert below + 1 == mid == above - 1


def test_significand_patterns_levels():
    one, two = cases.significand_patterns(1), cases.significand_patterns(2)
    assert set(one) < set(two)
    assert all(1 << i in two for i in range(23))
    with pytest.raises(ValueError, match="level"):
        cases.significand_patterns(3)


# --- command line ------------------------------------------------------------------------------


def test_cli_verify_exit_status_and_json(small_golden, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["golden", "verify", "--dir", str(small_golden), "--json", str(report_path)]) == 0
    assert "result: PASS" in capsys.readouterr().out
    data = json.loads(report_path.read_text())
    assert data["ok"] is True
    assert data["complete"] is True
    assert {f["name"] for f in data["files"]} == set(SMALL_SET)


def test_cli_verify_failure_is_exit_one(small_golden, capsys):
    backend = "spec_tests.test_golden:ties_away"
    assert main(["golden", "verify", "--dir", str(small_golden), "--backend", backend]) == 1
    out = capsys.readouterr().out
    assert "FAIL encode_mxfp4_floor_rne.hex" in out
    assert "NOT PROVIDED (the backend provides no matmul)" in out
    assert "differs:  output tokens" in out
    flip_one_digit(small_golden / "decode_mxfp4.hex")
    assert main(["golden", "verify", "--dir", str(small_golden)]) == 1
    assert "decode_mxfp4.hex: modified" in capsys.readouterr().out


def shifted_scales(x, fmt, **kw):
    """A quantize whose every scale byte is one too high: it fails every encode file."""
    mx = mxref.quantize(x, fmt, **kw)
    scales = np.where(mx.scales < 0xFE, mx.scales + 1, mx.scales).astype(np.uint8)
    return mx.codes, scales


def test_cli_verify_lists_the_rest_of_the_failures_in_cli_words(tmp_path, capsys):
    backend = "spec_tests.test_golden:shifted_scales"
    assert main(["golden", "verify", "--backend", backend]) == 1
    out = capsys.readouterr().out
    assert "more failing files (rerun with --json REPORT.json to list all of them)" in out
    assert "to_dict" not in out
    report = tmp_path / "report.json"
    assert main(["golden", "verify", "--backend", backend, "--json", str(report)]) == 1
    assert f"more failing files (all of them are in {report})" in capsys.readouterr().out


def test_cli_bad_input_is_exit_two_with_one_line(tmp_path, capsys):
    assert main(["golden", "verify", "--dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mxref: error:")
    assert main(["golden", "verify", "--backend", "no_such_module_xyz:quantize"]) == 2
    assert "does not import" in capsys.readouterr().err
    assert main(["golden", "generate", "--dir", str(tmp_path / "a" / "b")]) == 2
    assert main(["golden", "generate", "--dir", str(GOLDEN)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_defaults_to_the_shipped_golden_files(capsys):
    assert golden.shipped_golden_dir() == GOLDEN
    before = golden.sha256_file(GOLDEN / "MANIFEST")
    assert main(["golden", "generate"]) == 2  # the shipped files are never replaced silently
    assert "already exists" in capsys.readouterr().err
    assert golden.sha256_file(GOLDEN / "MANIFEST") == before
