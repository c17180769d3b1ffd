"""Comparing MX-encoded outputs directly: by block, lane, code and scale byte."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mxref
from mxref.cli import main
from mxref.conformance.compare_mx import compare_mx, format_mx_report
from mxref.conformance.float_bits import percent_text
from mxref.io import InputError


@pytest.fixture
def encoded() -> mxref.MXArray:
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    return mxref.quantize(x, "mxfp4")


def with_codes(mx: mxref.MXArray, changes: dict[tuple[int, int], int]) -> mxref.MXArray:
    codes = mx.codes.copy()
    for idx, code in changes.items():
        codes[idx] = code
    return dataclasses.replace(mx, codes=codes)


def test_a_flipped_sign_bit_is_a_sign_flip_at_its_block_and_lane(encoded):
    idx = (1, 37)
    bad = with_codes(encoded, {idx: int(encoded.codes[idx]) ^ 0x8})
    report = compare_mx(encoded, bad)
    assert report.exit_status == 1
    assert report.code_mismatches_by_kind == {"sign flip": 1}
    (m,) = report.first_codes
    assert (m.block, m.lane, m.index) == ((1, 1), 5, idx)
    text = format_mx_report(report)
    assert "block (1, 1) lane  5" in text
    assert "sign flip" in text
    assert "ULP" not in text
    assert "DIFFERENT" in text


def test_magnitudes_count_the_codes_between_and_scales_are_powers_of_two(encoded):
    idx = (2, 3)
    code = int(encoded.codes[idx])
    neighbour = code + 1 if code & 0x7 < 0x7 else code - 1
    scales = encoded.scales.copy()
    scales[3, 1] += 1
    bad = dataclasses.replace(with_codes(encoded, {idx: neighbour}), scales=scales)
    report = compare_mx(encoded, bad)
    (m,) = report.first_codes
    assert (m.kind, m.codes_apart) == ("magnitude", 1)
    (s,) = report.first_scales
    assert s.block == (3, 1)
    assert s.actual == s.reference + 1
    assert s.actual_value == f"2^{s.reference - 127 + 1}"
    assert report.blocks_identical == report.blocks - 2


def test_the_same_value_under_another_scale_is_labelled_so():
    # -72 x 2^-10 (0xE9) and -36 x 2^-9 (0xE1) are one number: the scale differs, not the
    # element; elements that cannot follow the scale are still magnitude differences
    x = np.zeros(32, np.float32)
    x[0], x[1] = -72 * 2.0**-10, 448 * 2.0**-10
    reference = mxref.quantize(x, "mxfp8_e4m3", scale_rule="floor")
    scales = reference.scales.copy()
    scales[0] += 1
    actual = mxref.MXArray(reference.codes.copy(), scales, reference.fmt, 0, 32)
    actual.codes[0] = 0xE1
    actual.codes[1] = 0x76  # 224 x 2^-9: the same number again
    actual.codes[2] = 0x01  # +0 became a subnormal: a real difference
    report = compare_mx(reference, actual)
    assert report.code_mismatches_by_kind == {"same value, scale differs": 2, "magnitude": 1}
    first = report.first_codes[0]
    assert (first.reference, first.actual, first.codes_apart) == (0xE9, 0xE1, None)
    assert "0xE1 (-36 x 2^-9): same value, scale differs" in format_mx_report(report)


def test_two_nan_encodings_are_reported_as_such():
    mx = mxref.quantize(np.ones(32, np.float32), "mxfp8_e4m3")
    positive, negative = with_codes(mx, {(0,): 0x7F}), with_codes(mx, {(0,): 0xFF})
    assert compare_mx(positive, negative).code_mismatches_by_kind == {"NaN code": 1}


def test_identical_arrays_pass_and_different_layouts_are_refused(encoded):
    report = compare_mx(encoded, encoded)
    assert report.identical
    assert report.exit_status == 0
    assert "IDENTICAL" in format_mx_report(report)
    other = mxref.quantize(np.zeros((4, 64), np.float32), "mxfp8_e4m3")
    with pytest.raises(InputError, match="differ in format"):
        compare_mx(encoded, other)


def test_a_failing_share_never_prints_as_100_percent():
    assert percent_text(9_999_999, 10_000_000) == "> 99.9999%"
    assert percent_text(999_999, 1_000_000) == "99.9999%"
    assert percent_text(1, 10**9) == "< 0.0001%"
    assert percent_text(5, 5) == "100.0000%"
    assert percent_text(1, 3) == "33.3333%"


def write_dump(folder, mx: mxref.MXArray, name: str) -> None:
    packed = mxref.pack(mx)
    packed.data.tofile(folder / f"{name}.bin")
    packed.scales.tofile(folder / f"{name}.scales.bin")


def test_raw_device_dumps_decode_and_compare_without_a_sidecar(tmp_path, encoded, capsys):
    write_dump(tmp_path, encoded, "ref")
    bad = with_codes(encoded, {(1, 37): int(encoded.codes[1, 37]) ^ 0x8})
    write_dump(tmp_path, bad, "dev")
    raw = ["--format", "mxfp4", "--shape", "4,64"]
    assert main(["decode", *raw, str(tmp_path / "ref.bin"), str(tmp_path / "ref.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "ref.npy"), mxref.dequantize(encoded))
    capsys.readouterr()
    assert main(["compare", *raw, str(tmp_path / "ref.bin"), str(tmp_path / "dev.bin")]) == 1
    out = capsys.readouterr().out
    assert "block (1, 1) lane  5 (element (1, 37))" in out
    assert "sign flip" in out
    # a wrong description is caught by the file sizes
    assert main(["decode", "--format", "mxfp8_e4m3", "--shape", "4,64",
                 str(tmp_path / "ref.bin"), str(tmp_path / "x.npy")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "ref.bin: is 128 bytes, but 256 8-bit codes of shape (4, 64)" in err
    assert "as the description given says" in err


def test_cli_refuses_mixed_inputs_and_options_that_do_not_apply(tmp_path, encoded, capsys):
    mxref.save(tmp_path / "a.npz", encoded)
    np.save(tmp_path / "f.npy", mxref.dequantize(encoded))
    a, f = str(tmp_path / "a.npz"), str(tmp_path / "f.npy")
    assert main(["compare", a, f]) == 2
    assert "REFERENCE is MX-encoded and the other is not" in capsys.readouterr().err
    assert main(["compare", "--max-ulp", "1", a, a]) == 2
    assert "--max-ulp only applies to float outputs" in capsys.readouterr().err
    assert main(["decode", "--axis", "0", a, str(tmp_path / "o.npy")]) == 2
    err = capsys.readouterr().err
    assert "--axis describes a raw MX dump; give --format and --shape too" in err
    assert main(["decode", "--format", "mxfp4", a, str(tmp_path / "o.npy")]) == 2
    assert "needs --shape too" in capsys.readouterr().err


def test_an_npz_reference_compares_with_a_raw_device_dump(tmp_path, encoded, capsys):
    mxref.save(tmp_path / "ref.npz", encoded)
    write_dump(tmp_path, encoded, "device")
    shape = ",".join(map(str, encoded.shape))
    args = ["compare", str(tmp_path / "ref.npz"), str(tmp_path / "device.bin"),
            "--format", encoded.fmt.name, "--shape", shape]  # fmt: skip
    assert main(args) == 0
    assert "IDENTICAL" in capsys.readouterr().out
    data = np.fromfile(tmp_path / "device.bin", np.uint8)
    data[0] ^= 0x01
    data.tofile(tmp_path / "device.bin")
    assert main(args) == 1
    capsys.readouterr()
    # a description that fits neither input is bad input
    assert main(["compare", str(tmp_path / "ref.npz"), str(tmp_path / "ref.npz"),
                 "--format", encoded.fmt.name, "--shape", shape]) == 2  # fmt: skip
    assert "neither input is one" in capsys.readouterr().err
