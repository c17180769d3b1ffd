"""The ``mxref`` command line and :mod:`mxref.io`: results equal the API bit
for bit, and every user error is one line on stderr with exit status 2."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import mxref
import mxref.packing
from mxref.cli import main
from mxref.io import read_tensor
from mxref.mx_files import NPZ_VERSION, PACKED_VERSION, SCALE_LAYOUTS, read_mx
from tests.mxref.conftest import assert_user_error, run


def sample(shape: tuple[int, ...] = (4, 64), seed: int = 0) -> np.ndarray:
    """Normal values with a few large ones, so that overflow policies matter."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::37] *= 1000.0
    return x


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """Write a .safetensors file by hand: u64 LE header length, JSON header, data."""
    header: dict[str, object] = {"__metadata__": {"format": "np"}}
    blobs = []
    offset = 0
    for name, (tag, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": tag,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


POLICIES = [
    ("mxfp4", "floor", "rne", "saturate", None),
    ("mxfp8_e4m3", "rceil", "away", "ieee", None),
    ("mxfp8_e5m2", "ceil", "zero", "ieee", None),
    ("mxint8", "even", "rne", "saturate", None),
    ("mxfp6_e3m2", "floor", "stochastic", "saturate", 1234),
]


def policy_args(fmt: str, rule: str, rnd: str, ovf: str, seed: int | None) -> list[str]:
    args = ["--format", fmt, "--scale-rule", rule, "--rounding", rnd, "--overflow", ovf]
    return args + ([] if seed is None else ["--seed", str(seed)])


def api(x: np.ndarray, fmt: str, rule: str, rnd: str, ovf: str, seed: int | None, **kw: object):
    return mxref.quantize(
        x,
        fmt,
        scale_rule=rule,
        rounding=rnd,
        overflow=ovf,
        seed=seed,
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------
# round trips: the CLI equals the API bit for bit
# --------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "rule", "rnd", "ovf", "seed"), POLICIES)
def test_encode_npz_then_decode_equals_api(capsys, tmp_path, fmt, rule, rnd, ovf, seed):
    x = sample()
    np.save(tmp_path / "x.npy", x)
    rc, _, err = run(
        capsys,
        "encode",
        *policy_args(fmt, rule, rnd, ovf, seed),
        tmp_path / "x.npy",
        tmp_path / "x.npz",
    )
    assert rc == 0, err
    want = api(x, fmt, rule, rnd, ovf, seed)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert np.array_equal(z["codes"], want.codes)
        assert np.array_equal(z["scales"], want.scales)
        assert str(z["version"]) == NPZ_VERSION
        assert str(z["format"]) == fmt
        assert (str(z["scale_rule"]), str(z["rounding"]), str(z["overflow"])) == (rule, rnd, ovf)
        assert int(z["axis"]) == 1
        assert int(z["block_size"]) == 32
        assert tuple(z["shape"]) == x.shape
        assert ("seed" in z.files) == (seed is not None)

    for dtype, view in (("float32", np.uint32), ("float64", np.uint64)):
        out = tmp_path / f"d_{dtype}.npy"
        rc, _, err = run(capsys, "decode", "--dtype", dtype, tmp_path / "x.npz", out)
        assert rc == 0, err
        got = np.load(out)
        ref = mxref.dequantize(want, dtype)
        assert got.dtype == ref.dtype
        assert np.array_equal(got.view(view), ref.view(view))


@pytest.mark.parametrize("layout", SCALE_LAYOUTS)
@pytest.mark.parametrize(("fmt", "rule", "rnd", "ovf", "seed"), POLICIES)
def test_encode_packed_then_decode_equals_api(capsys, tmp_path, fmt, rule, rnd, ovf, seed, layout):
    x = sample((5, 80))  # ragged: 5 rows, a short last block
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "p.bin"
    rc, _, err = run(
        capsys,
        "encode",
        *policy_args(fmt, rule, rnd, ovf, seed),
        "--scale-layout",
        layout,
        tmp_path / "x.npy",
        out,
    )
    assert rc == 0, err
    want = api(x, fmt, rule, rnd, ovf, seed)
    side = json.loads((tmp_path / "p.json").read_text())
    assert side["version"] == PACKED_VERSION
    assert side["format"] == fmt
    assert side["scale_layout"] == layout
    assert side["shape"] == [5, 80]
    assert side["axis"] == 1
    assert side["block_size"] == 32
    assert side["data_file"] == "p.bin"
    assert side["scales_file"] == "p.scales.bin"
    assert side["data_bytes"] == out.stat().st_size
    assert side["scales_bytes"] == (tmp_path / "p.scales.bin").stat().st_size
    assert isinstance(side["packing"], str)
    assert side["packing"]

    packed = mxref.packing.pack(want, scale_layout=layout)
    assert out.read_bytes() == packed.data.tobytes()
    assert (tmp_path / "p.scales.bin").read_bytes() == packed.scales.tobytes()

    for src in ("p.bin", "p.json"):  # the data file or its sidecar
        back = read_mx(tmp_path / src)
        assert np.array_equal(back.codes, want.codes)
        assert np.array_equal(back.scales, want.scales)
        dec = tmp_path / f"d_{src}.npy"
        rc, _, err = run(capsys, "decode", tmp_path / src, dec)
        assert rc == 0, err
        assert np.array_equal(np.load(dec).view(np.uint32), mxref.dequantize(want).view(np.uint32))


def test_decode_to_raw_bin_in_every_dtype(capsys, tmp_path):
    x = sample()
    np.save(tmp_path / "x.npy", x)
    assert (
        run(capsys, "encode", "--format", "mxfp8_e4m3", tmp_path / "x.npy", tmp_path / "x.npz")[0]
        == 0
    )
    want = mxref.quantize(x, "mxfp8_e4m3")
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        out = tmp_path / f"{dtype}.bin"
        rc, _, err = run(capsys, "decode", "--dtype", dtype, tmp_path / "x.npz", out)
        assert rc == 0, err
        ref = mxref.dequantize(want, dtype)
        assert out.read_bytes() == ref.astype(ref.dtype.newbyteorder("<")).tobytes()


def test_bfloat16_npy_round_trip(capsys, tmp_path):
    """numpy saves bfloat16 as 2-byte void; --dtype bfloat16 reads it back."""
    x = sample().astype(ml_dtypes.bfloat16)
    np.save(tmp_path / "x.npy", x)
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "a.npz")
    assert_user_error(rc, err, "x.npy", "bfloat16")
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp4",
        "--dtype",
        "bfloat16",
        tmp_path / "x.npy",
        tmp_path / "a.npz",
    )
    assert rc == 0, err
    assert np.array_equal(read_mx(tmp_path / "a.npz").codes, mxref.quantize(x, "mxfp4").codes)


def test_safetensors_input(capsys, tmp_path):
    w = sample((8, 32), seed=1).astype(ml_dtypes.bfloat16)
    b = sample((3, 64), seed=2)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"w": ("BF16", w), "b": ("F32", b)})

    assert read_tensor(path, tensor="w").dtype == np.dtype(ml_dtypes.bfloat16)
    for name, arr in (("w", w), ("b", b)):
        out = tmp_path / f"{name}.npz"
        rc, _, err = run(capsys, "encode", "--format", "mxfp6_e2m3", "--tensor", name, path, out)
        assert rc == 0, err
        want = mxref.quantize(arr, "mxfp6_e2m3")
        got = read_mx(out)
        assert np.array_equal(got.codes, want.codes)
        assert np.array_equal(got.scales, want.scales)

    # several tensors and no --tensor: the error lists them
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", path, tmp_path / "x.npz")
    assert_user_error(rc, err, "m.safetensors", "b, w", "--tensor")
    rc, _, err = run(
        capsys, "encode", "--format", "mxfp4", "--tensor", "nope", path, tmp_path / "x.npz"
    )
    assert_user_error(rc, err, "'nope'", "b, w")


def test_safetensors_reader_matches_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    x = sample((6, 40)).astype(np.float16)
    y = sample((2, 2, 32)).astype(np.float64)
    st.save_file({"x": x, "y": y}, str(tmp_path / "t.safetensors"))
    assert np.array_equal(read_tensor(tmp_path / "t.safetensors", tensor="x"), x)
    assert np.array_equal(read_tensor(tmp_path / "t.safetensors", tensor="y"), y)


def test_raw_bin_input(capsys, tmp_path):
    x = sample((4, 2, 64)).astype(np.float16)
    (tmp_path / "x.bin").write_bytes(x.astype("<f2").tobytes())
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp8_e5m2",
        "--dtype",
        "float16",
        "--shape",
        "4,2,64",
        "--axis",
        "0",
        "--block-size",
        "2",
        tmp_path / "x.bin",
        tmp_path / "x.npz",
    )
    assert rc == 0, err
    want = mxref.quantize(x, "mxfp8_e5m2", axis=0, block_size=2)
    got = read_mx(tmp_path / "x.npz")
    assert got.axis == 0
    assert got.block_size == 2
    assert np.array_equal(got.codes, want.codes)
    assert np.array_equal(got.scales, want.scales)


# --------------------------------------------------------------------------
# user errors: exit 2, one line, the problem named
# --------------------------------------------------------------------------
def test_raw_bin_with_wrong_shape(capsys, tmp_path):
    (tmp_path / "x.bin").write_bytes(np.zeros((4, 64), np.float32).tobytes())
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp4",
        "--dtype",
        "float32",
        "--shape",
        "4,63",
        tmp_path / "x.bin",
        tmp_path / "x.npz",
    )
    assert_user_error(rc, err, "x.bin", "1024 bytes", "1008")
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp4",
        "--dtype",
        "float32",
        "--shape",
        "4,x",
        tmp_path / "x.bin",
        tmp_path / "x.npz",
    )
    assert_user_error(rc, err, "bad shape", "'4,x'")
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.bin", tmp_path / "x.npz")
    assert_user_error(rc, err, "x.bin", "--dtype", "--shape")
    assert not (tmp_path / "x.npz").exists()


def test_truncated_npy(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    data = (tmp_path / "x.npy").read_bytes()
    for n in (len(data) - 4, 100, 0):
        (tmp_path / "x.npy").write_bytes(data[:n])
        rc, _, err = run(
            capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "y.npz"
        )
        assert_user_error(rc, err, "x.npy", "truncated")


def test_truncated_safetensors(capsys, tmp_path):
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"w": ("F32", sample())})
    data = path.read_bytes()
    for n in (len(data) - 1, 40, 4):
        path.write_bytes(data[:n])
        rc, _, err = run(capsys, "encode", "--format", "mxfp4", path, tmp_path / "y.npz")
        assert_user_error(rc, err, "m.safetensors", "truncated")


def test_corrupt_safetensors_header(capsys, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 5) + b"{oops")
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", path, tmp_path / "y.npz")
    assert_user_error(rc, err, "m.safetensors", "header")
    write_safetensors(path, {"w": ("I32", np.zeros(4, np.int32))})
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", path, tmp_path / "y.npz")
    assert_user_error(rc, err, "m.safetensors", "'I32'")


def test_unknown_format_and_policy(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    rc, _, err = run(capsys, "encode", "--format", "mxfp5", tmp_path / "x.npy", tmp_path / "y.npz")
    assert_user_error(rc, err, "unknown format 'mxfp5'", "mxfp4")
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp4",
        "--rounding",
        "up",
        tmp_path / "x.npy",
        tmp_path / "y.npz",
    )
    assert_user_error(rc, err, "--rounding", "'up'", "stochastic")
    rc, _, err = run(
        capsys, "encode", "--format", "mxfp4", "--seed", "3", tmp_path / "x.npy", tmp_path / "y.npz"
    )
    assert_user_error(rc, err, "--seed", "stochastic")
    rc, _, err = run(
        capsys, "encode", "--format", "mxfp4", "--axis", "2", tmp_path / "x.npy", tmp_path / "y.npz"
    )
    assert_user_error(rc, err, "axis 2")
    rc, _, err = run(capsys, "info", "mxfp5")
    assert_user_error(rc, err, "unknown format 'mxfp5'")
    assert not (tmp_path / "y.npz").exists()


def test_unknown_dtype(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    assert (
        run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "x.npz")[0] == 0
    )
    rc, _, err = run(capsys, "decode", "--dtype", "int8", tmp_path / "x.npz", tmp_path / "y.npy")
    assert_user_error(rc, err, "unknown dtype 'int8'", "bfloat16")
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp4",
        "--dtype",
        "float8",
        "--shape",
        "4",
        tmp_path / "x.npy",
        tmp_path / "y.npz",
    )
    assert_user_error(rc, err, "unknown dtype 'float8'")


def test_existing_output_needs_force(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    out = tmp_path / "out.npz"
    out.write_bytes(b"precious")
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", out)
    assert_user_error(rc, err, "out.npz", "already exists", "--force")
    assert out.read_bytes() == b"precious"
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", "--force", tmp_path / "x.npy", out)
    assert rc == 0, err
    assert np.array_equal(read_mx(out).codes, mxref.quantize(sample(), "mxfp4").codes)

    dec = tmp_path / "dec.npy"
    dec.write_bytes(b"precious")
    rc, _, err = run(capsys, "decode", out, dec)
    assert_user_error(rc, err, "dec.npy", "already exists")
    assert dec.read_bytes() == b"precious"
    assert run(capsys, "decode", "--force", out, dec)[0] == 0
    assert np.array_equal(np.load(dec), mxref.dequantize(read_mx(out)))


def test_existing_packed_scales_or_sidecar_needs_force(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    for name in ("p.scales.bin", "p.json"):
        (tmp_path / name).write_bytes(b"precious")
        rc, _, err = run(
            capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "p.bin"
        )
        assert_user_error(rc, err, name, "already exists")
        assert (tmp_path / name).read_bytes() == b"precious"
        assert not (tmp_path / "p.bin").exists()
        (tmp_path / name).unlink()
    assert (
        run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "p.bin")[0] == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "p.bin",
        "p.json",
        "p.scales.bin",
        "x.npy",
    ]


def test_sidecar_that_does_not_match_the_data(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    assert (
        run(capsys, "encode", "--format", "mxfp6_e2m3", tmp_path / "x.npy", tmp_path / "p.bin")[0]
        == 0
    )
    side_path = tmp_path / "p.json"
    good = json.loads(side_path.read_text())

    def decode_with(side: dict) -> str:
        side_path.write_text(json.dumps(side))
        rc, _, err = run(capsys, "decode", "--force", tmp_path / "p.bin", tmp_path / "d.npy")
        assert rc == 2
        return err

    # the shape says more codes than the data file holds
    err = decode_with({**good, "shape": [8, 64]})
    assert_user_error(2, err, "p.bin", "bytes", "p.json")
    # the recorded size disagrees with what format and shape imply
    err = decode_with({**good, "data_bytes": good["data_bytes"] + 3})
    assert_user_error(2, err, "p.json", "'data_bytes'", str(good["data_bytes"]))
    # a field missing, of the wrong type, or an unknown format
    err = decode_with({k: v for k, v in good.items() if k != "block_size"})
    assert_user_error(2, err, "p.json", "'block_size'")
    err = decode_with({**good, "axis": "1"})
    assert_user_error(2, err, "p.json", "'axis'")
    err = decode_with({**good, "format": "mxfp7"})
    assert_user_error(2, err, "p.json", "'format'", "mxfp7")
    err = decode_with({**good, "data_file": "../elsewhere.bin"})
    assert_user_error(2, err, "p.json", "'data_file'")

    # the data file longer or shorter than the (intact) sidecar implies
    side_path.write_text(json.dumps(good))
    data = (tmp_path / "p.bin").read_bytes()
    for blob, word in ((data + b"\0", "too long"), (data[:-1], "truncated")):
        (tmp_path / "p.bin").write_bytes(blob)
        rc, _, err = run(capsys, "decode", "--force", tmp_path / "p.bin", tmp_path / "d.npy")
        assert_user_error(rc, err, "p.bin", word, str(len(data)))
    (tmp_path / "p.scales.bin").write_bytes(b"")
    (tmp_path / "p.bin").write_bytes(data)
    rc, _, err = run(capsys, "decode", "--force", tmp_path / "p.bin", tmp_path / "d.npy")
    assert_user_error(rc, err, "p.scales.bin", "truncated")
    assert not (tmp_path / "d.npy").exists()


def test_corrupt_npz(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    assert (
        run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "x.npz")[0] == 0
    )
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    rc, _, err = run(capsys, "decode", tmp_path / "t.npz", tmp_path / "d.npy")
    assert_user_error(rc, err, "t.npz")
    np.savez(tmp_path / "other.npz", codes=np.zeros(4, np.uint8))
    rc, _, err = run(capsys, "decode", tmp_path / "other.npz", tmp_path / "d.npy")
    assert_user_error(rc, err, "other.npz", "missing keys", "scales")


def test_missing_input(capsys, tmp_path):
    for name in ("nope.npy", "nope.safetensors", "nope.bin"):
        rc, _, err = run(capsys, "encode", "--format", "mxfp4", tmp_path / name, tmp_path / "o.npz")
        assert_user_error(rc, err, name, "no such file")
    for name in ("nope.npz", "nope.bin", "nope.json"):
        rc, _, err = run(capsys, "decode", tmp_path / name, tmp_path / "o.npy")
        assert_user_error(rc, err, name, "no such file")
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["encode", "x.npy"]) == 2
    assert main(["frobnicate"]) == 2
    capsys.readouterr()
    assert main(["--version"]) == 0
    assert mxref.__version__ in capsys.readouterr().out


def test_bad_output_suffix(capsys, tmp_path):
    np.save(tmp_path / "x.npy", sample())
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", tmp_path / "x.npy", tmp_path / "x.txt")
    assert_user_error(rc, err, "x.txt", ".npz", ".bin")
    rc, _, err = run(
        capsys,
        "encode",
        "--format",
        "mxfp4",
        "--scale-layout",
        "nvidia_blocked",
        tmp_path / "x.npy",
        tmp_path / "x.npz",
    )
    assert_user_error(rc, err, "--scale-layout")


# --------------------------------------------------------------------------
# info, the module entry point, and agreement with mxref.packing
# --------------------------------------------------------------------------
def test_info_mxfp4_lists_every_code_value(capsys):
    rc, out, err = run(capsys, "info", "mxfp4")
    assert rc == 0, err
    tokens = set(re.findall(r"-?\d+(?:\.\d+)?", out))
    magnitudes = ["0", "0.5", "1", "1.5", "2", "3", "4", "6"]
    for value in magnitudes + ["-" + m for m in magnitudes]:  # "-0" included
        assert value in tokens, value


def test_scale_layouts_match_packing():
    from mxref.packing import ScaleLayout

    assert tuple(m.value for m in ScaleLayout) == SCALE_LAYOUTS


def test_module_entry_point_user_error_has_no_traceback(tmp_path):
    np.save(tmp_path / "x.npy", sample())
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-10])
    proc = subprocess.run(
        [sys.executable, "-m", "mxref.cli", "encode", "--format", "mxfp4", "x.npy", "x.npz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mxref: error: x.npy: ")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("encode", "decode", "gemm", "compare", "info"):
        assert command in out, command
    for command in ("gemm", "compare"):
        assert main([command, "--help"]) == 0
        assert f"usage: mxref {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ((), ("required: COMMAND", "'mxref --help'")),
        (("decode", "in.npz"), ("required: OUT", "'mxref decode --help'")),
        (("golden", "bogus"), ("invalid choice: 'bogus'", "'mxref golden --help'")),
        (("info", "mxfp4", "--bogus"), ("unrecognized arguments: --bogus",)),
    ],
)
def test_usage_errors_are_one_line_too(capsys, args, needles) -> None:
    """argparse's own errors follow the CLI's convention: one line, which --help to read."""
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, *needles)
