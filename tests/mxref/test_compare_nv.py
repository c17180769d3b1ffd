"""NVFP4 dumps in ``mxref decode`` and ``mxref compare``: tensor scale, E4M3 bytes and codes."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest

import mxref
from mxref.conformance.compare_nv import (
    _float32_parts,
    _scale_integers,
    compare_nv,
    format_nv_report,
    same_value,
)
from mxref.formats import NV_SCALE_FORMAT
from mxref.io import InputError
from mxref.mx_files import write_mx
from mxref.ref.element import decode_element
from tests.mxref.conftest import assert_user_error, run


def rows(per_row: bool = False, seed: int = 0) -> mxref.MXArray:
    x = np.random.default_rng(seed).standard_normal((4, 64)).astype(np.float32)
    x[2] *= 100  # rows of different amax: per-row scales differ
    return mxref.quantize(x, "nvfp4", per_row=per_row)


def next_up(g: np.ndarray) -> np.ndarray:
    return np.array(g.view(np.uint32) + 1, np.uint32).view(np.float32)


def bits(g: object) -> str:
    return f"0x{int(np.array(g, np.float32).view(np.uint32)):08X}"


def write_raw(folder, mx: mxref.MXArray, name: str, layout: str = "plain") -> str:
    packed = mxref.pack(mx, scale_layout=layout)
    packed.data.tofile(folder / f"{name}.bin")
    packed.scales.tofile(folder / f"{name}.scales.bin")
    return str(folder / f"{name}.bin")


# -- decode: encode -> dump -> decode is dequantize, bit for bit ------------------------


@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("dump", ["npz", "bin", "bin-blocked", "raw", "raw-blocked"])
def test_decode_of_every_dump_is_dequantize_bit_for_bit(tmp_path, capsys, per_row, dump):
    x = np.random.default_rng(3).standard_normal((128, 80)).astype(np.float32)
    x[5] *= 1e4
    x[7, :40] = 0.0
    mx = mxref.quantize(x, "nvfp4", per_row=per_row)
    layout = "nvidia_blocked" if dump.endswith("blocked") else "plain"
    extra: list[str] = []
    if dump == "npz":
        src = str(tmp_path / "w.npz")
        write_mx(src, mx)
    elif dump.startswith("bin"):
        src = str(tmp_path / "w.bin")
        write_mx(src, mx, scale_layout=layout)
    else:
        src = write_raw(tmp_path, mx, "dev", layout)
        if per_row:
            np.save(tmp_path / "g.npy", mx.tensor_scale)
            g = str(tmp_path / "g.npy")
        else:
            g = bits(mx.tensor_scale)
        extra = ["--format", "nvfp4", "--shape", "128,80", "--scale-layout", layout]
        extra += ["--tensor-scale", g]
    for dtype in ("float32", "float64", "bfloat16"):
        out = tmp_path / f"out_{dtype}.npy"
        rc, stdout, err = run(capsys, "decode", *extra, "--dtype", dtype, src, out)
        assert (rc, err) == (0, "")
        want = mxref.dequantize(mx, dtype)
        got = np.load(out) if dtype != "bfloat16" else np.load(out).view(want.dtype)
        assert got.tobytes() == want.tobytes()
        assert stdout.startswith("nvfp4: tensor scale")
    g0 = mx.tensor_scale[0] if per_row else mx.tensor_scale[()]
    assert f"{np.float32(g0)!s} ({bits(g0)})" in stdout


def test_decode_show_lists_blocks_by_lane_with_the_e4m3_byte_decoded(tmp_path, capsys):
    mx = rows()
    write_mx(tmp_path / "w.npz", mx)
    rc, out, _ = run(capsys, "decode", "--show", "2", tmp_path / "w.npz", tmp_path / "w.npy")
    assert rc == 0
    values = np.load(tmp_path / "w.npy")
    byte = int(mx.scales[0, 1])
    s = decode_element(byte, NV_SCALE_FORMAT)[1]
    assert f"block (0, 1): scale 0x{byte:02X} ({s.numerator / s.denominator:g})" in out
    code = int(mx.codes[0, 16 + 3])
    assert f"  lane  3: 0x{code:02X} " in out
    assert f"-> {values[0, 19]!s}" in out
    assert "block (0, 2)" not in out
    assert f"tensor scale G = {mx.tensor_scale[()]!s} ({bits(mx.tensor_scale)})" in out


# -- compare: identical, then each planted difference at its block and lane -------------


def test_identical_dumps_pass_through_every_reader(tmp_path, capsys):
    mx = rows(per_row=True)
    write_mx(tmp_path / "ref.npz", mx)
    write_mx(tmp_path / "dev.bin", mx, scale_layout="nvidia_blocked")
    rc, out, _ = run(capsys, "compare", tmp_path / "ref.npz", tmp_path / "dev.json")
    assert rc == 0
    assert "tensor scale one per row" in out
    assert "tensor scales differ: 0 / 4 rows" in out
    assert out.endswith("IDENTICAL\n")


def test_a_tensor_scale_one_ulp_off_is_reported_once_with_values_and_bits():
    mx = rows()
    g = mx.tensor_scale
    report = compare_nv(mx, dataclasses.replace(mx, tensor_scale=next_up(g)))
    assert report.exit_status == 1
    assert (report.tensor_scale_mismatches, report.blocks_identical) == (1, 0)
    assert report.code_mismatches_by_kind == {}
    text = format_nv_report(report)
    assert text.count("tensor scale differs") == 1
    want = (f"tensor scale differs: reference {g[()]!s} ({bits(g)}), "
            f"actual {next_up(g)[()]!s} ({bits(next_up(g))})")  # fmt: skip
    assert want in text
    assert text.endswith("DIFFERENT\n")


def test_one_block_byte_one_higher_is_reported_at_its_block_with_e4m3_values():
    mx = rows()
    scales = mx.scales.copy()
    scales[2, 3] += 1
    report = compare_nv(mx, dataclasses.replace(mx, scales=scales))
    (s,) = report.first_scales
    assert (s.block, s.actual - s.reference) == ((2, 3), 1)
    ref_value = decode_element(s.reference, NV_SCALE_FORMAT)[1]
    assert Fraction(s.reference_value) == ref_value
    assert Fraction(s.actual_value) > ref_value
    assert (report.scale_mismatches, report.blocks_identical) == (1, report.blocks - 1)
    assert f"scale of block (2, 3): reference 0x{s.reference:02X} ({s.reference_value})" in (
        format_nv_report(report)
    )


def test_one_changed_code_is_reported_at_its_block_and_lane():
    mx = rows()
    codes = mx.codes.copy()
    codes[1, 37] ^= 0x8
    report = compare_nv(mx, dataclasses.replace(mx, codes=codes))
    (c,) = report.first_codes
    assert (c.block, c.lane, c.index, c.kind) == ((1, 2), 5, (1, 37), "sign flip")
    assert "block (1, 2) lane  5 (element (1, 37))" in format_nv_report(report)
    codes[1, 37] = 0x7 if mx.codes[1, 37] & 0x7 != 0x7 else 0x6
    (c,) = compare_nv(mx, dataclasses.replace(mx, codes=codes)).first_codes
    assert c.kind == "magnitude"
    assert c.codes_apart is not None
    assert c.codes_apart >= 1


def test_the_same_value_under_another_block_scale_or_tensor_scale_is_labelled_so():
    # 1 x 1.0 / G (code 0x2 under byte 0x38) is 0.5 x 2.0 / G (code 0x1 under 0x40); and
    # under a doubled G with a doubled block scale every code keeps its value
    codes = np.array([[0x2, 0x3, 0xA] + [0] * 13], np.uint8)
    g = np.array(3.0, np.float32)
    reference = mxref.MXArray(codes, np.array([[0x38]], np.uint8), "nvfp4", 1, 16, g)
    act_codes = codes.copy()
    act_codes[0, :3] = [0x1, 0x2, 0x9]  # 0x3 (1.5) cannot follow: 0.75 is no E2M1 value
    actual = mxref.MXArray(act_codes, np.array([[0x40]], np.uint8), "nvfp4", 1, 16, g)
    report = compare_nv(reference, actual)
    assert report.code_mismatches_by_kind == {"same value, scale differs": 2, "magnitude": 1}
    assert [c.kind for c in report.first_codes] == [
        "same value, scale differs",
        "magnitude",
        "same value, scale differs",
    ]
    text = format_nv_report(report)
    assert "reference 0x2 (1 x 1 / 3.0), actual 0x1 (0.5 x 2 / 3.0): same value" in text
    doubled = mxref.MXArray(codes.copy(), np.array([[0x40]], np.uint8), "nvfp4", 1, 16,
                            np.array(6.0, np.float32))  # fmt: skip
    report = compare_nv(reference, doubled)
    assert report.tensor_scale_mismatches == 1
    assert report.code_mismatches_by_kind == {}  # no code differs; G and the byte do
    doubled.codes[0, 0] = 0x1
    assert compare_nv(reference, doubled).code_mismatches_by_kind == {"magnitude": 1}


def test_per_row_tensor_scales_are_compared_row_by_row():
    mx = rows(per_row=True)
    g = mx.tensor_scale.copy()
    g[2] = next_up(g[2:3])[0]
    report = compare_nv(mx, dataclasses.replace(mx, tensor_scale=g))
    (t,) = report.first_tensor_scales
    assert t.row == (2,)
    assert t.actual == f"{g[2]!s} ({bits(g[2])})"
    assert report.blocks_identical == report.blocks - 4  # the four blocks of row 2
    text = format_nv_report(report)
    assert "tensor scales differ: 1 / 4 rows" in text
    assert "tensor scale of row (2) differs" in text


def test_an_npz_reference_compares_with_a_raw_dump_and_its_tensor_scale(tmp_path, capsys):
    mx = rows(per_row=True)
    write_mx(tmp_path / "ref.npz", mx)
    dev = write_raw(tmp_path, mx, "dev")
    g = ",".join(bits(v) for v in mx.tensor_scale)
    raw = ["--format", "nvfp4", "--shape", "4,64", "--tensor-scale", g]
    rc, out, _ = run(capsys, "compare", *raw, tmp_path / "ref.npz", dev)
    assert (rc, out.endswith("IDENTICAL\n")) == (0, True)
    decimal = ",".join(str(v) for v in mx.tensor_scale)  # shortest float32 decimals
    rc, out, _ = run(capsys, "compare", *raw[:-1], decimal, tmp_path / "ref.npz", dev)
    assert rc == 0
    data = np.fromfile(dev, np.uint8)
    data[40] ^= 0x10  # row 1, lane 16 + 1 = element (1, 17): the high nibble of byte 8
    data.tofile(dev)
    report_path = tmp_path / "r.json"
    rc, out, _ = run(capsys, "compare", *raw, "--json", report_path, tmp_path / "ref.npz", dev)
    assert rc == 1
    assert "block (1, 1) lane  1 (element (1, 17))" in out
    report = json.loads(report_path.read_text())
    assert report["kind"] == "nvfp4"
    assert report["first_codes"][0]["index"] == [1, 17]


def test_a_preset_array_compares_its_own_decoded_values():
    x = np.random.default_rng(5).standard_normal((2, 32)).astype(np.float32)
    mx = mxref.quantize(x, "nvfp4", preset="torchao")
    assert compare_nv(mx, mx).identical
    codes = mx.codes.copy()
    codes[0, 0] ^= 0x8
    assert compare_nv(mx, dataclasses.replace(mx, codes=codes)).code_mismatches_by_kind == {
        "sign flip": 1
    }
    other = mxref.quantize(x, "nvfp4")
    with pytest.raises(InputError, match="differ in preset"):
        compare_nv(mx, other)


# -- the exact value test against Fractions ---------------------------------------------


@pytest.mark.parametrize(
    ("g_ref", "g_act"), [(1.0, 1.0), (3.0, 6.0), (865.3279, 865.3279), (0.1, 0.3), (1e-40, 2e-40)]
)
def test_same_value_is_fractions_equality_on_every_code_and_byte(g_ref, g_act):
    g = [np.array(v, np.float32) for v in (g_ref, g_act)]
    ints, e0 = _scale_integers(NV_SCALE_FORMAT)
    nibbles = np.arange(8)
    twice = np.array([int(decode_element(int(c), mxref.get_format("nvfp4", two_level=True))[1] * 2)
                      for c in nibbles])  # fmt: skip
    bytes_ = np.arange(0x7F)  # every finite E4M3 scale byte
    k, b = (a.ravel() for a in np.meshgrid(twice, bytes_, indexing="ij"))
    values = []
    for side in g:
        gf = Fraction(float(side))
        values.append([Fraction(int(kk), 2) * decode_element(int(bb), NV_SCALE_FORMAT)[1] / gf
                       for kk, bb in zip(k, b, strict=True)])  # fmt: skip
    ids = {v: i for i, v in enumerate(sorted(set(values[0]) | set(values[1])))}
    want = np.array([ids[v] for v in values[0]])[:, None] == np.array([ids[v] for v in values[1]])
    n = len(k)
    ref = (np.repeat(k, n), np.repeat(ints[b], n))
    act = (np.tile(k, n), np.tile(ints[b], n))
    parts = tuple(_float32_parts(np.full(n * n, side, np.float32)) for side in g)
    got = same_value((ref[0], act[0]), (ref[1], act[1]), parts)  # type: ignore[arg-type]
    assert e0 == -9
    np.testing.assert_array_equal(got.reshape(n, n), want)
    assert want.sum() > n  # equal pairs beyond the diagonal exist (zeros, rescalings)


# -- bad input: one line, status 2 ------------------------------------------------------


def test_bad_nvfp4_input_is_one_line_and_status_2(tmp_path, capsys):
    mx = rows()
    dev = write_raw(tmp_path, mx, "dev")
    out = tmp_path / "o.npy"
    raw = ["--format", "nvfp4", "--shape", "4,64"]
    assert_user_error(*run(capsys, "decode", *raw, dev, out)[::2], "needs --tensor-scale")
    for bad in ("nan", "-1", "0", "inf", "0x7FC00000", "0xBF800000", "abc"):
        rc, _, err = run(capsys, "decode", *raw, "--tensor-scale", bad, dev, out)
        assert_user_error(rc, err, "--tensor-scale")
    rc, _, err = run(capsys, "decode", "--format", "nvfp4", "--shape", "4,32",
                     "--tensor-scale", "1", dev, out)  # fmt: skip
    assert_user_error(rc, err, "dev.bin: is 128 bytes, but the description given implies 64")
    rc, _, err = run(capsys, "decode", *raw, "--tensor-scale", "1,2,3", dev, out)
    assert_user_error(rc, err, "one per row (shape (4))")
    rc, _, err = run(capsys, "decode", "--format", "mxfp4", "--shape", "4,64",
                     "--tensor-scale", "1", dev, out)  # fmt: skip
    assert_user_error(rc, err, "--tensor-scale: mxfp4 has no tensor scale")
    # a sidecar without its tensor scale, or with a bad one
    write_mx(tmp_path / "p.bin", mx)
    side = tmp_path / "p.json"
    meta = json.loads(side.read_text())
    for value, needle in ((None, "missing field 'tensor_scale'"), (-2.0, "positive"),
                          ("NaN", "positive"), ([1.0, 2.0], "one per row")):  # fmt: skip
        changed = {k: v for k, v in meta.items() if k != "tensor_scale"}
        if value is not None:
            changed["tensor_scale"] = value
        side.write_text(json.dumps(changed))
        rc, _, err = run(capsys, "compare", side, side)
        assert_user_error(rc, err, "p.json", needle)
    side.write_text(json.dumps({**meta, "scale_rule": "floor"}))
    assert_user_error(*run(capsys, "decode", side, out)[::2], "'scale_rule' does not apply")
    # an .npz with a NaN tensor scale, or none
    np.savez(tmp_path / "n.npz", **{**_npz_fields(mx), "tensor_scale": np.float32("nan")})
    assert_user_error(*run(capsys, "decode", tmp_path / "n.npz", out)[::2], "tensor_scale")
    fields = _npz_fields(mx)
    del fields["tensor_scale"]
    np.savez(tmp_path / "m.npz", **fields)
    assert_user_error(*run(capsys, "decode", tmp_path / "m.npz", out)[::2], "tensor_scale")
    # NVFP4 against MX, per-row against per-tensor
    write_mx(tmp_path / "mx.npz", mxref.quantize(np.ones((4, 64), np.float32), "mxfp4"))
    write_mx(tmp_path / "nv.npz", mx)
    write_mx(tmp_path / "row.npz", rows(per_row=True))
    rc, _, err = run(capsys, "compare", tmp_path / "nv.npz", tmp_path / "mx.npz")
    assert_user_error(rc, err, "differ in format")
    rc, _, err = run(capsys, "compare", tmp_path / "nv.npz", tmp_path / "row.npz")
    assert_user_error(rc, err, "differ in tensor scale (per row)")


def _npz_fields(mx: mxref.MXArray) -> dict[str, np.ndarray]:
    return {
        "version": np.array("mxref-npz-1"),
        "format": np.array("nvfp4"),
        "axis": np.array(mx.axis, np.int64),
        "block_size": np.array(mx.block_size, np.int64),
        "shape": np.array(mx.shape, np.int64),
        "codes": mx.codes,
        "scales": mx.scales,
        "rounding": np.array("rne"),
        "tensor_scale": mx.tensor_scale,
    }
