"""``mxref compare`` (:mod:`mxref.conformance.compare`): counts, ULP distances, streaming,
reports and errors, on files built bit by bit."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tracemalloc
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from mxref.cli.compare import add_arguments as add_compare_arguments
from mxref.cli.compare import run as run_compare
from mxref.conformance.compare import (
    LAYOUTS,
    CompareReport,
    bucket_label,
    compare_arrays,
    compare_files,
    decode_bits,
    format_report,
)
from mxref.io import InputError

UINT = {"float16": np.uint16, "bfloat16": np.uint16, "float32": np.uint32, "float64": np.uint64}
FLOAT = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}


def from_bits(bits: object, dtype: str) -> np.ndarray:
    """A float array of ``dtype`` with exactly these bit patterns."""
    return np.asarray(bits, dtype=UINT[dtype]).view(FLOAT[dtype])


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """Parse with :func:`add_compare_arguments`, run; return (status, stdout)."""
    parser = argparse.ArgumentParser(prog="mxref compare")
    add_compare_arguments(parser)
    ns = parser.parse_args([str(a) for a in args])
    rc = run_compare(ns)
    return rc, capsys.readouterr().out


def save(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr, allow_pickle=False)
    return path


def sample(n: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def counts(r: CompareReport) -> dict[str, int]:
    keys = (
        "total",
        "bit_exact",
        "finite_pairs",
        "max_ulp",
        "nan_matches",
        "nan_mismatches",
        "nan_payload_diffs",
        "inf_matches",
        "inf_mismatches",
        "signed_zero_mismatches",
        "ulp_exceeded",
        "mismatches",
    )
    return {k: getattr(r, k) for k in keys}


def assert_partition(r: CompareReport) -> None:
    """The classes cover every element once, and the histogram every finite pair."""
    assert r.total == (
        r.finite_pairs + r.nan_matches + r.nan_mismatches + r.inf_matches + r.inf_mismatches
    )
    assert sum(r.histogram) == r.finite_pairs
    assert r.mismatches == (
        r.ulp_exceeded + r.signed_zero_mismatches + r.nan_mismatches + r.inf_mismatches
    )


ZERO = dict.fromkeys(
    (
        "nan_mismatches",
        "nan_payload_diffs",
        "inf_mismatches",
        "signed_zero_mismatches",
        "ulp_exceeded",
        "mismatches",
    ),
    0,
)


# --------------------------------------------------------------------------
# identical, one ULP apart, tolerance
# --------------------------------------------------------------------------
def test_identical_files_pass_with_exact_counts(tmp_path, capsys):
    x = sample().reshape(16, 16)
    x[0, 0], x[0, 1], x[0, 2], x[0, 3] = np.nan, np.inf, -np.inf, -0.0
    ref, act = save(tmp_path / "ref.npy", x), save(tmp_path / "act.npy", x.copy())
    rc, out = cli(capsys, ref, act)
    assert rc == 0
    assert "PASS: 0 mismatches" in out
    r = compare_files(ref, act)
    assert counts(r) == {
        "total": 256,
        "bit_exact": 256,
        "finite_pairs": 253,
        "max_ulp": 0,
        "nan_matches": 1,
        "inf_matches": 2,
        **ZERO,
    }
    assert r.histogram[0] == 253
    assert r.first_mismatches == ()
    assert r.passed
    assert r.exit_status == 0
    assert_partition(r)


def one_ulp_case(tmp_path: Path) -> tuple[Path, Path]:
    x = np.ones((4, 8), np.float32)
    y = x.copy()
    y[1, 2] = np.nextafter(np.float32(1), np.float32(2))  # 0x3f800001
    y[3, 7] = np.nextafter(np.float32(1), np.float32(0))  # 0x3f7fffff
    return save(tmp_path / "ref.npy", x), save(tmp_path / "act.npy", y)


def test_one_ulp_fails_bit_exact_and_reports_the_first_mismatch(tmp_path, capsys):
    ref, act = one_ulp_case(tmp_path)
    rc, out = cli(capsys, ref, act, "--max-ulp", 0)
    assert rc == 1
    assert "FAIL: 2 mismatches" in out
    assert "0x3f800001" in out

    r = compare_files(ref, act)
    assert counts(r) == {
        **counts(r),
        "total": 32,
        "bit_exact": 30,
        "finite_pairs": 32,
        "max_ulp": 1,
        "ulp_exceeded": 2,
        "mismatches": 2,
    }
    assert r.histogram[:3] == (30, 2, 0)
    first = r.first_mismatches[0]
    assert first.index == 1 * 8 + 2
    assert first.multi_index == (1, 2)
    assert first.kind == "ulp"
    assert first.ulp == 1
    assert first.reference.hex == "0x3f800000"
    assert (first.reference.sign, first.reference.exponent) == (0, 0)
    assert first.reference.mantissa == "0x000000"
    assert first.reference.value == "1.0"
    assert first.actual.hex == "0x3f800001"
    assert (first.actual.sign, first.actual.exponent, first.actual.kind) == (0, 0, "normal")
    assert first.actual.mantissa == "0x000001"
    assert float(first.actual.value) == 1 + 2.0**-23
    assert first.source == {"a_row": 1, "b_col": 2}
    second = r.first_mismatches[1]
    assert (second.index, second.ulp, second.actual.hex) == (31, 1, "0x3f7fffff")
    assert second.actual.exponent == -1
    assert second.actual.mantissa == "0x7fffff"
    assert_partition(r)


def test_max_ulp_one_accepts_one_ulp(tmp_path, capsys):
    ref, act = one_ulp_case(tmp_path)
    rc, out = cli(capsys, ref, act, "--max-ulp", 1)
    assert rc == 0
    assert "PASS" in out
    r = compare_files(ref, act, max_ulp=1)
    assert (r.bit_exact, r.max_ulp, r.ulp_exceeded, r.first_mismatches) == (30, 1, 0, ())


def test_show_limits_the_list_but_not_the_counts(tmp_path, capsys):
    x = sample(100)
    y = from_bits(x.view(np.uint32) + 3, "float32")
    ref, act = save(tmp_path / "r.npy", x), save(tmp_path / "a.npy", y)
    r = compare_files(ref, act, show=4)
    assert [m.index for m in r.first_mismatches] == [0, 1, 2, 3]
    assert r.mismatches == 100
    assert compare_files(ref, act, show=0).first_mismatches == ()
    rc, out = cli(capsys, ref, act, "--show", 2, "--max-ulp", 2)
    assert rc == 1
    assert "first 2 of 100 mismatches" in out


# --------------------------------------------------------------------------
# NaN, Inf, signed zeros
# --------------------------------------------------------------------------
def test_nan_vs_number_is_a_nan_mismatch():
    r = compare_arrays(np.array([np.nan, 1.0], np.float32), np.array([1.0, np.nan], np.float32))
    assert (r.nan_mismatches, r.nan_matches, r.finite_pairs, r.mismatches) == (2, 0, 0, 2)
    assert [m.kind for m in r.first_mismatches] == ["nan", "nan"]
    assert r.first_mismatches[0].ulp is None
    assert r.first_mismatches[0].reference.kind == "nan"
    assert r.first_mismatches[0].reference.exponent is None
    assert sum(r.histogram) == 0
    assert r.exit_status == 1
    assert_partition(r)


def test_inf_vs_number_is_an_inf_mismatch_outside_the_histogram():
    big = np.finfo(np.float32).max
    ref = np.array([np.inf, -np.inf, np.inf, np.inf, 1.0], np.float32)
    act = np.array([big, -big, -np.inf, np.inf, 1.0], np.float32)
    r = compare_arrays(ref, act, max_ulp=10**9)
    assert (r.inf_mismatches, r.inf_matches, r.finite_pairs) == (3, 1, 1)
    # max vs inf is not "1 ULP": neither pair is in the histogram
    assert r.histogram[0] == 1
    assert sum(r.histogram) == 1
    assert r.max_ulp == 0
    assert [m.kind for m in r.first_mismatches] == ["inf"] * 3
    assert r.first_mismatches[0].ulp is None
    assert r.first_mismatches[0].reference.value == "inf"
    assert r.first_mismatches[1].reference.value == "-inf"
    assert r.exit_status == 1
    assert_partition(r)


def test_signed_zeros_are_distance_zero_but_a_mismatch(tmp_path, capsys):
    ref = save(tmp_path / "r.npy", np.array([0.0, -0.0, 0.0], np.float32))
    act = save(tmp_path / "a.npy", np.array([-0.0, 0.0, 0.0], np.float32))
    r = compare_files(ref, act, max_ulp=5)
    assert (r.signed_zero_mismatches, r.bit_exact, r.max_ulp, r.histogram[0]) == (2, 1, 0, 3)
    m = r.first_mismatches[0]
    assert (m.kind, m.ulp, m.reference.hex, m.actual.hex) == (
        "signed_zero",
        0,
        "0x00000000",
        "0x80000000",
    )
    assert (m.actual.sign, m.actual.kind, m.actual.value) == (1, "zero", "-0.0")
    assert cli(capsys, ref, act, "--max-ulp", 5)[0] == 1


def test_nan_payloads_are_counted_but_pass(tmp_path, capsys):
    nans = [0x7FC00000, 0x7FC00001, 0xFFC00000, 0x7F800001]
    ref = save(tmp_path / "r.npy", from_bits(nans, "float32"))
    act = save(
        tmp_path / "a.npy", from_bits([0x7FC00000, 0x7FC00002, 0x7FC00000, 0x7FA00000], "float32")
    )
    rc, out = cli(capsys, ref, act)
    assert rc == 0
    assert "3 with different payloads" in out
    r = compare_files(ref, act)
    assert (r.nan_matches, r.nan_payload_diffs, r.bit_exact, r.mismatches) == (4, 3, 1, 0)
    assert_partition(r)


# --------------------------------------------------------------------------
# ULP distance
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", list(LAYOUTS))
def test_ulp_distance_across_zero(dtype):
    sign = 1 << (LAYOUTS[dtype].bits - 1)
    #            -tiny vs +tiny, +0 vs +tiny, -0 vs +tiny, -tiny vs -0
    ref = from_bits([sign | 1, 0, sign, sign | 1], dtype)
    act = from_bits([1, 1, 1, sign], dtype)
    r = compare_arrays(ref, act, show=10)
    assert [m.ulp for m in r.first_mismatches] == [2, 1, 1, 1]
    assert r.max_ulp == 2
    first = r.first_mismatches[0]
    assert (first.reference.kind, first.reference.sign) == ("subnormal", 1)
    assert first.reference.exponent == 1 - LAYOUTS[dtype].bias
    assert float(first.actual.value) == -float(first.reference.value) > 0


def test_ulp_distance_spans_the_whole_float64_range_without_overflow():
    big = np.finfo(np.float64).max
    r = compare_arrays(np.array([big]), np.array([-big]))
    assert r.max_ulp == 2 * 0x7FEFFFFFFFFFFFFF  # above 2**63
    assert r.first_mismatches[0].ulp == r.max_ulp
    assert r.histogram[65] == 1  # 2**63 + 1 .. 2**64
    assert compare_arrays(np.array([big]), np.array([-big]), max_ulp=2**64).passed


def test_histogram_buckets_on_a_constructed_case():
    offsets = [0, 0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 1000, 1024, 1025]
    base = np.full(len(offsets), 0x3F800000, np.uint32)
    r = compare_arrays(
        from_bits(base, "float32"), from_bits(base + np.array(offsets, np.uint32), "float32")
    )
    want = {"0": 2, "1": 1, "2": 1, "3-4": 2, "5-8": 2, "9-16": 2, "17-32": 1, "513-1024": 2}
    want["1025-2048"] = 1
    got = {b["ulp"]: b["count"] for b in r.histogram_buckets() if b["count"]}
    assert got == want
    assert len(r.histogram) == 34
    assert r.max_ulp == 1025
    # empty buckets inside the range stay, so gaps show
    assert [b["ulp"] for b in r.histogram_buckets()][6:9] == ["17-32", "33-64", "65-128"]
    assert [bucket_label(k) for k in range(6)] == ["0", "1", "2", "3-4", "5-8", "9-16"]

    # the same offsets from -1000 ULP up through both zeros into the positives
    def bits_of_key(key: int) -> int:
        return key if key >= 0 else 0x80000000 | -key

    neg = compare_arrays(
        from_bits([bits_of_key(-1000)] * len(offsets), "float32"),
        from_bits([bits_of_key(-1000 + d) for d in offsets], "float32"),
    )
    assert neg.histogram == r.histogram


# --------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------
def mixed_pair(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """float32 reference and a perturbed copy with every kind of difference."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(n).astype(np.float32)
    ref[rng.integers(0, n, 50)] = np.nan
    ref[rng.integers(0, n, 50)] = np.inf
    ref[rng.integers(0, n, 50)] = 0.0
    bits = ref.view(np.uint32).copy()
    finite = np.isfinite(ref) & (ref != 0)
    pick = rng.random(n) < 0.05
    bits[pick & finite] += rng.integers(1, 5000, n, dtype=np.uint32)[pick & finite]
    bits[rng.integers(0, n, 20)] = 0x7FC00000  # NaN where the reference may be a number
    bits[rng.integers(0, n, 20)] = 0x7F800000
    zeros = np.flatnonzero(ref == 0)
    bits[zeros[::2]] ^= 0x80000000
    return ref, bits.view(np.float32)


def test_streaming_report_does_not_depend_on_the_chunk_size(tmp_path):
    ref, act = mixed_pair(20_000)
    rp, ap = tmp_path / "ref.bin", tmp_path / "act.bin"
    rp.write_bytes(ref.astype("<f4").tobytes())
    ap.write_bytes(act.astype("<f4").tobytes())
    kw = {"dtype": "float32", "shape": "100,200", "show": 25, "max_ulp": 100}
    whole = compare_files(rp, ap, chunk_size=1 << 20, **kw)
    kinds = ("nan_mismatches", "inf_mismatches", "signed_zero_mismatches", "ulp_exceeded")
    assert all(getattr(whole, k) > 0 for k in (*kinds, "nan_matches", "inf_matches"))
    assert len(whole.first_mismatches) == 25
    assert_partition(whole)
    for chunk in (7, 1000, 4096, 19_999):
        assert compare_files(rp, ap, chunk_size=chunk, **kw) == whole
    # and the same as the in-memory arrays
    mem = compare_arrays(
        ref.reshape(100, 200), act.reshape(100, 200), chunk_size=333, max_ulp=100, show=25
    )
    assert dataclasses.replace(mem, reference=str(rp), actual=str(ap)) == whole


def test_memory_stays_bounded_by_the_chunk(tmp_path):
    n = 1 << 22  # 16 MiB per file
    rp, ap = tmp_path / "ref.bin", tmp_path / "act.bin"
    data = np.arange(n, dtype=np.uint32)
    rp.write_bytes(data.tobytes())
    data[::1000] += 1
    ap.write_bytes(data.tobytes())
    del data
    tracemalloc.start()
    try:
        r = compare_files(rp, ap, dtype="float32", shape=(n,), chunk_size=1 << 14)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.mismatches == math.ceil(n / 1000)
    assert peak < 4 << 20, peak  # well below one file's 16 MiB


# --------------------------------------------------------------------------
# layouts: Fortran order, byte order, float16, bfloat16
# --------------------------------------------------------------------------
def test_fortran_order_and_big_endian_npy_compare_by_logical_index(tmp_path):
    x = sample(60).reshape(6, 10)
    ref = save(tmp_path / "c.npy", x)
    fort = save(tmp_path / "f.npy", np.asfortranarray(x))
    big = save(tmp_path / "b.npy", x.astype(">f4"))
    assert compare_files(ref, fort, chunk_size=7).passed
    assert compare_files(big, ref).passed
    y = x.copy()
    y[4, 3] = -y[4, 3]
    r = compare_files(ref, save(tmp_path / "f2.npy", np.asfortranarray(y)), chunk_size=7)
    assert [(m.index, m.multi_index) for m in r.first_mismatches] == [(43, (4, 3))]


def test_float16_files(tmp_path, capsys):
    ref = from_bits([0x3C00, 0x0001, 0x7BFF, 0xFE00, 0x8000], "float16")
    act = from_bits([0x3C01, 0x8001, 0x7C00, 0xFE00, 0x8000], "float16")
    rp, ap = save(tmp_path / "r.npy", ref), tmp_path / "a.bin"
    ap.write_bytes(act.astype("<f2").tobytes())
    r = compare_files(rp, ap, dtype="float16", shape="5")
    assert (r.dtype, r.bit_exact, r.nan_matches, r.inf_mismatches) == ("float16", 2, 1, 1)
    m0, m1, m2 = r.first_mismatches
    assert (m0.reference.hex, m0.actual.hex, m0.ulp) == ("0x3c00", "0x3c01", 1)
    assert (m0.actual.exponent, m0.actual.mantissa, m0.actual.value) == (0, "0x001", "1.0009765625")
    assert (m1.ulp, m1.reference.exponent, m1.reference.value) == (2, -14, repr(2.0**-24))
    assert (m2.kind, m2.reference.value, m2.actual.value) == ("inf", "65504.0", "inf")
    assert len(r.histogram) == 18
    rc, _ = cli(capsys, rp, ap, "--dtype", "float16", "--shape", "5")
    assert rc == 1


def test_bfloat16_files(tmp_path, capsys):
    ref = from_bits([0x3F80, 0xC040, 0x0001, 0x7FC0], "bfloat16")
    act = from_bits([0x3F81, 0xC040, 0x8001, 0x7FC1], "bfloat16")
    # numpy saves bfloat16 as 2-byte void: --dtype bfloat16 says what it is
    rp = save(tmp_path / "r.npy", ref)
    ap = tmp_path / "a.bin"
    ap.write_bytes(act.tobytes())
    with pytest.raises(InputError, match=r"r\.npy: .*--dtype bfloat16"):
        compare_files(rp, rp)
    r = compare_files(rp, ap, dtype="bfloat16", shape=[4])
    assert (r.dtype, r.bit_exact, r.nan_payload_diffs, r.mismatches) == ("bfloat16", 1, 1, 2)
    m0, m1 = r.first_mismatches
    assert (m0.actual.hex, m0.actual.exponent, m0.actual.mantissa, m0.ulp) == (
        "0x3f81",
        0,
        "0x01",
        1,
    )
    assert float(m0.actual.value) == 1 + 2.0**-7
    assert (m1.ulp, m1.reference.exponent, float(m1.reference.value)) == (2, -126, 2.0**-133)
    rc, out = cli(capsys, rp, ap, "--dtype", "bfloat16", "--shape", "4", "--max-ulp", 2)
    assert rc == 0, out
    # in-memory ml_dtypes arrays too
    assert compare_arrays(ref, act, max_ulp=2).passed


def test_decode_bits():
    assert decode_bits(0x3C00, "float16") == decode_bits(0x3C00, "float16")
    v = decode_bits(0xC0490FDB, "float32")
    assert (v.sign, v.exponent, v.mantissa, v.kind) == (1, 1, "0x490fdb", "normal")
    assert float(v.value) == float(np.float32(-np.pi))
    assert decode_bits(0x7E00, "float16").value == "nan"
    assert decode_bits(0xFE00, "float16").value == "-nan"
    assert decode_bits(0x0000000000000001, "float64").value == "5e-324"
    assert decode_bits(0x7FF0000000000000, "float64").hex == "0x7ff0000000000000"


# --------------------------------------------------------------------------
# where a mismatch came from
# --------------------------------------------------------------------------
def test_gemm_source_names_row_column_and_k_blocks(tmp_path, capsys):
    ref, act = one_ulp_case(tmp_path)
    r = compare_files(ref, act, k=100, block_size=32)
    assert r.first_mismatches[0].source == {"a_row": 1, "b_col": 2, "k_blocks": [0, 3]}
    assert compare_files(ref, act, k=64, block_size=32).first_mismatches[0].source == {
        "a_row": 1,
        "b_col": 2,
        "k_blocks": [0, 1],
    }
    rc, out = cli(capsys, ref, act, "--k", 100, "--block-size", 32)
    assert rc == 1
    assert "from row 1 of A, column 2 of B, K-blocks 0..3" in out
    flat = compare_arrays(np.zeros(4, np.float32), np.ones(4, np.float32))
    assert flat.first_mismatches[0].source is None
    with pytest.raises(InputError, match="2-D"):
        compare_arrays(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), k=4, block_size=2)
    with pytest.raises(InputError, match="--k and --block-size"):
        compare_files(ref, act, k=64)
    with pytest.raises(InputError, match="--block-size must be >= 1"):
        compare_files(ref, act, k=64, block_size=0)


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------
def test_json_report_and_refusing_to_overwrite(tmp_path, capsys):
    ref, act = one_ulp_case(tmp_path)
    out = tmp_path / "report.json"
    rc, _ = cli(capsys, ref, act, "--json", out)
    assert rc == 1
    data = json.loads(out.read_text())
    r = compare_files(ref, act)
    assert {k: data[k] for k in counts(r)} == counts(r)
    assert data["shape"] == [4, 8]
    assert data["passed"] is False
    assert data["exit_status"] == 1
    assert data["histogram"] == [
        {"ulp": "0", "lo": 0, "hi": 0, "count": 30},
        {"ulp": "1", "lo": 1, "hi": 1, "count": 2},
    ]
    first = data["first_mismatches"][0]
    assert (first["index"], first["multi_index"], first["ulp"]) == (10, [1, 2], 1)
    assert first["actual"]["hex"] == "0x3f800001"
    assert first["source"] == {"a_row": 1, "b_col": 2}
    assert data == json.loads(r.to_json())

    out.write_text("keep me")
    with pytest.raises(InputError, match=r"report\.json: already exists"):
        cli(capsys, ref, act, "--json", out)
    assert out.read_text() == "keep me"
    rc, _ = cli(capsys, ref, act, "--max-ulp", 1, "--json", out, "--force")
    assert rc == 0
    assert json.loads(out.read_text())["passed"] is True
    with pytest.raises(InputError, match="does not exist"):
        cli(capsys, ref, act, "--json", tmp_path / "no" / "r.json")


# --------------------------------------------------------------------------
# bad input: InputError, which the CLI turns into exit status 2
# --------------------------------------------------------------------------
def test_mismatched_shapes_name_both_files(tmp_path, capsys):
    ref = save(tmp_path / "ref.npy", np.zeros((4, 8), np.float32))
    act = save(tmp_path / "act.npy", np.zeros((8, 4), np.float32))
    with pytest.raises(
        InputError, match=r"ref\.npy has shape \(4, 8\) but .*act\.npy has shape \(8, 4\)"
    ):
        cli(capsys, ref, act)


def test_mismatched_dtypes_name_both_files(tmp_path):
    ref = save(tmp_path / "ref.npy", np.zeros(4, np.float32))
    act = save(tmp_path / "act.npy", np.zeros(4, np.float16))
    with pytest.raises(InputError, match=r"ref\.npy holds float32 .*act\.npy holds float16"):
        compare_files(ref, act)
    with pytest.raises(InputError, match=r"act\.npy: holds float16 values, not float32"):
        compare_files(ref, act, dtype="float32")


def test_raw_input_needs_the_right_dtype_and_shape(tmp_path, capsys):
    raw = tmp_path / "d.bin"
    raw.write_bytes(np.zeros(32, "<f4").tobytes())
    with pytest.raises(
        InputError, match=r"d\.bin: is 128 bytes, but float32 of shape \(4, 4\) needs 64"
    ):
        cli(capsys, raw, raw, "--dtype", "float32", "--shape", "4,4")
    with pytest.raises(InputError, match=r"d\.bin: raw \.bin input needs both --dtype and --shape"):
        cli(capsys, raw, raw, "--dtype", "float32")
    with pytest.raises(InputError, match="unknown --dtype 'int8'"):
        cli(capsys, raw, raw, "--dtype", "int8", "--shape", "32")
    with pytest.raises(InputError, match="bad shape"):
        cli(capsys, raw, raw, "--dtype", "float32", "--shape", "4x8")
    assert cli(capsys, raw, raw, "--dtype", "float32", "--shape", "4,8")[0] == 0
    npy = save(tmp_path / "d.npy", np.zeros(32, np.float32))
    with pytest.raises(InputError, match=r"d\.npy: has shape \(32,\), not \(4, 8\)"):
        cli(capsys, npy, raw, "--dtype", "float32", "--shape", "4,8")


def test_missing_truncated_and_unsupported_files(tmp_path, capsys):
    good = save(tmp_path / "good.npy", np.zeros(1000, np.float32))
    with pytest.raises(InputError, match=r"missing\.npy: no such file"):
        cli(capsys, good, tmp_path / "missing.npy")
    data = good.read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:500])
    with pytest.raises(InputError, match=r"cut\.npy: not a readable \.npy file \(truncated"):
        cli(capsys, good, tmp_path / "cut.npy")
    (tmp_path / "head.npy").write_bytes(data[:40])
    with pytest.raises(InputError, match=r"head\.npy: not a readable \.npy file"):
        cli(capsys, tmp_path / "head.npy", good)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"x\.txt: unsupported file type '\.txt'"):
        cli(capsys, tmp_path / "x.txt", good)
    ints = save(tmp_path / "ints.npy", np.zeros(1000, np.int32))
    with pytest.raises(InputError, match=r"ints\.npy: holds int32 values"):
        cli(capsys, good, ints)
    for flag in ("--max-ulp", "--show"):
        with pytest.raises(InputError, match=f"{flag} must be >= 0"):
            cli(capsys, good, good, flag, -1)


def test_input_errors_are_value_errors_for_the_cli():
    # mxref.cli.main reports ValueError as one line with exit status 2
    assert issubclass(InputError, ValueError)


# --------------------------------------------------------------------------
# edges
# --------------------------------------------------------------------------
def test_empty_arrays_pass(tmp_path, capsys):
    ref = save(tmp_path / "r.npy", np.zeros((0, 4), np.float32))
    raw = tmp_path / "a.bin"
    raw.write_bytes(b"")
    r = compare_files(ref, raw, dtype="float32", shape="0,4")
    assert (r.total, r.mismatches, r.passed) == (0, 0, True)
    assert "0 elements" in format_report(r)
    assert cli(capsys, ref, raw, "--dtype", "float32", "--shape", "0,4")[0] == 0
