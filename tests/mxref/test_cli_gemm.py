"""``mxref gemm`` and ``mxref compare`` on the command line: D equals
:func:`mxref.matmul` bit for bit, and every user error is one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import mxref
from mxref.cli import main
from mxref.mx_files import read_mx
from tests.mxref.conftest import assert_user_error, run

M, K, N = 5, 80, 7  # K = 2.5 blocks of 32: the last block is short


def sample(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Normal values spread over a wide range, so that blocks get different scales."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    return x * np.float32(2.0) ** rng.integers(-8, 9, shape).astype(np.float32)


def encode(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    x: np.ndarray,
    fmt: str,
    *extra: object,
    suffix: str = ".npz",
) -> Path:
    """Save ``x`` as NAME.npy and encode it with the CLI to NAME + suffix."""
    src = tmp_path / f"{name}.npy"
    np.save(src, x)
    out = tmp_path / f"{name}{suffix}"
    rc, _, err = run(capsys, "encode", "--format", fmt, *extra, src, out)
    assert rc == 0, err
    return out


@pytest.fixture
def operands(capsys, tmp_path):
    """A (M x K, mxfp4, axis -1), B (K x N, mxfp8_e4m3, axis 0) and C (M x N float32)."""
    a = encode(capsys, tmp_path, "a", sample((M, K), 1), "mxfp4")
    b = encode(capsys, tmp_path, "b", sample((K, N), 2), "mxfp8_e4m3", "--axis", "0")
    c = tmp_path / "c.npy"
    np.save(c, sample((M, N), 3))
    return a, b, c


ACCUMS = ["exact", "block_fp32", "fixed_point:25:32"]


# --------------------------------------------------------------------------
# results equal the API bit for bit
# --------------------------------------------------------------------------
@pytest.mark.parametrize("accum", ACCUMS)
@pytest.mark.parametrize("with_c", [False, True], ids=["no-c", "c"])
def test_gemm_equals_matmul(capsys, tmp_path, operands, accum, with_c):
    a, b, c = operands
    out = tmp_path / "d.npy"
    extra = ["--c", c] if with_c else []
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, *extra, "--accum", accum, "--out", out)
    assert rc == 0, err
    assert err == ""
    want = mxref.matmul(read_mx(a), read_mx(b), accum=accum, c=np.load(c) if with_c else None)
    # the same as from the codec directly, not only through the files
    direct = mxref.matmul(
        mxref.quantize(np.load(tmp_path / "a.npy"), "mxfp4"),
        mxref.quantize(np.load(tmp_path / "b.npy"), "mxfp8_e4m3", axis=0),
        accum=accum,
        c=np.load(c) if with_c else None,
    )
    got = np.load(out)
    assert got.dtype == np.float32
    assert got.shape == (M, N)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(got.view(np.uint32), direct.view(np.uint32))


@pytest.mark.parametrize("accum", ACCUMS)
@pytest.mark.parametrize("layout", ["plain", "nvidia_blocked"])
def test_gemm_with_packed_bin_inputs(capsys, tmp_path, accum, layout):
    xa, xc = sample((M, K), 4), sample((M, N), 6)
    extra = ["--scale-layout", layout]
    a = encode(capsys, tmp_path, "a", xa, "mxfp4", *extra, suffix=".bin")
    if layout == "plain":  # B as K x N, blocked along axis 0
        xb = sample((K, N), 5)
        mb = mxref.quantize(xb, "mxfp6_e2m3", axis=0)
        encode(capsys, tmp_path, "b", xb, "mxfp6_e2m3", "--axis", "0", *extra, suffix=".bin")
    else:  # the blocked scale layout needs the blocks last: B as N x K, D = A @ B.T
        xb = sample((N, K), 5)
        mb = mxref.quantize(xb, "mxfp6_e2m3")
        encode(capsys, tmp_path, "b", xb, "mxfp6_e2m3", *extra, suffix=".bin")
    np.save(tmp_path / "c.npy", xc)
    out = tmp_path / "d.npy"
    # A as its data file, B as its sidecar: both name the same result
    rc, _, err = run(
        capsys, "gemm", "--a", a, "--b", tmp_path / "b.json", "--c", tmp_path / "c.npy",
        "--accum", accum, "--out", out,
    )  # fmt: skip
    assert rc == 0, err
    want = mxref.matmul(mxref.quantize(xa, "mxfp4"), mb, accum=accum, c=xc)
    np.testing.assert_array_equal(np.load(out).view(np.uint32), want.view(np.uint32))


def test_gemm_b_as_n_by_k_is_a_times_b_transposed(capsys, tmp_path):
    xa, xbt = sample((M, K), 7), sample((N, K), 8)
    a = encode(capsys, tmp_path, "a", xa, "mxfp8_e5m2")
    bt = encode(capsys, tmp_path, "bt", xbt, "mxfp4")  # N x K, blocked along its last axis
    out = tmp_path / "d.npy"
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", bt, "--out", out)
    assert rc == 0, err
    want = mxref.matmul(mxref.quantize(xa, "mxfp8_e5m2"), mxref.quantize(xbt, "mxfp4"))
    assert want.shape == (M, N)
    np.testing.assert_array_equal(np.load(out).view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize(
    ("name", "dtype", "uint"),
    [("float16", np.float16, np.uint16), ("bfloat16", ml_dtypes.bfloat16, np.uint16)],
)
def test_gemm_out_dtypes_and_raw_bin_output(capsys, tmp_path, operands, name, dtype, uint):
    a, b, c = operands
    for accum in ("exact", "block_fp32"):
        out = tmp_path / f"d-{accum}.bin"
        rc, _, err = run(
            capsys, "gemm", "--a", a, "--b", b, "--c", c, "--accum", accum,
            "--out-dtype", name, "--out", out,
        )  # fmt: skip
        assert rc == 0, err
        want = mxref.matmul(read_mx(a), read_mx(b), accum=accum, out_dtype=dtype, c=np.load(c))
        got = np.frombuffer(out.read_bytes(), dtype="<u2").reshape(M, N)
        assert out.stat().st_size == M * N * 2
        np.testing.assert_array_equal(got, want.view(uint))


def test_gemm_refuses_to_overwrite_without_force(capsys, tmp_path, operands):
    a, b, _ = operands
    out = tmp_path / "d.npy"
    out.write_bytes(b"keep me")
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--out", out)
    assert_user_error(rc, err, "d.npy", "--force")
    assert out.read_bytes() == b"keep me"
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--force", "--out", out)
    assert rc == 0, err
    want = mxref.matmul(read_mx(a), read_mx(b))
    np.testing.assert_array_equal(np.load(out).view(np.uint32), want.view(np.uint32))


# --------------------------------------------------------------------------
# bad input: one line, exit 2, no output file
# --------------------------------------------------------------------------
def test_gemm_operands_that_do_not_fit(capsys, tmp_path, operands):
    a, b, _ = operands
    out = tmp_path / "d.npy"
    # K differs: A is M x 80, B is 96 x N
    b96 = encode(capsys, tmp_path, "b96", sample((96, N), 9), "mxfp4", "--axis", "0")
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b96, "--out", out)
    assert_user_error(rc, err, "K = 80", "K = 96")
    # block sizes differ
    b16 = encode(
        capsys, tmp_path, "b16", sample((K, N), 9), "mxfp4", "--axis", "0", "--block-size", "16"
    )
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b16, "--out", out)
    assert_user_error(rc, err, "block size", "32", "16")
    # A blocked along its rows instead of K
    a0 = encode(capsys, tmp_path, "a0", sample((M, K), 1), "mxfp4", "--axis", "0")
    rc, _, err = run(capsys, "gemm", "--a", a0, "--b", b, "--out", out)
    assert_user_error(rc, err, "a must be M x K blocked along K")
    # a 3-D operand
    a3 = encode(capsys, tmp_path, "a3", sample((2, M, K), 1), "mxfp4")
    rc, _, err = run(capsys, "gemm", "--a", a3, "--b", b, "--out", out)
    assert_user_error(rc, err, "2-D")
    assert not out.exists()


def test_gemm_bad_c(capsys, tmp_path, operands):
    a, b, c = operands
    out = tmp_path / "d.npy"
    cases = {
        "c64.npy": (sample((M, N), 3).astype(np.float64), ["c64.npy", "float64", "float32"]),
        "c16.npy": (sample((M, N), 3).astype(np.float16), ["c16.npy", "float16", "float32"]),
        "cint.npy": (np.zeros((M, N), np.int32), ["cint.npy", "int32", "float32"]),
        "cT.npy": (sample((N, M), 3), ["cT.npy", f"({N}, {M})", f"({M}, {N})"]),
        "c1.npy": (sample((M * N,), 3), ["c1.npy", f"({M * N},)", f"({M}, {N})"]),
    }
    for name, (arr, needles) in cases.items():
        np.save(tmp_path / name, arr)
        rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--c", tmp_path / name, "--out", out)
        assert_user_error(rc, err, *needles)
    raw = tmp_path / "c.bin"
    raw.write_bytes(np.load(c).tobytes())
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--c", raw, "--out", out)
    assert_user_error(rc, err, "c.bin", ".npy")
    data = c.read_bytes()
    (tmp_path / "ctrunc.npy").write_bytes(data[:-8])
    rc, _, err = run(
        capsys, "gemm", "--a", a, "--b", b, "--c", tmp_path / "ctrunc.npy", "--out", out
    )
    assert_user_error(rc, err, "ctrunc.npy")
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--c", tmp_path / "no.npy", "--out", out)
    assert_user_error(rc, err, "no.npy", "no such file")
    assert not out.exists()


def test_gemm_bad_arguments(capsys, tmp_path, operands):
    a, b, _ = operands
    out = tmp_path / "d.npy"
    for accum, needle in [
        ("exactly", "exactly"),
        ("fixed_point:25", "fixed_point:25"),
        ("fixed_point:x:32", "integers"),
        ("fixed_point:25:48", "group"),
        ("fixed_point:1:32", "width"),
        ("fixed_point:25:32:up", "up"),
        ("exact:ftz", "ftz"),
    ]:
        rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--accum", accum, "--out", out)
        assert_user_error(rc, err, needle)
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--out-dtype", "float64", "--out", out)
    assert_user_error(rc, err, "float64", "float32, float16, bfloat16")
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--out", tmp_path / "d.txt")
    assert_user_error(rc, err, "d.txt", ".npy", ".bin")
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--out", tmp_path / "nodir" / "d.npy")
    assert_user_error(rc, err, "does not exist")
    rc, _, err = run(capsys, "gemm", "--a", tmp_path / "a.npy", "--b", b, "--out", out)
    assert_user_error(rc, err, "a.npy", ".npz")
    rc, _, err = run(capsys, "gemm", "--a", tmp_path / "none.npz", "--b", b, "--out", out)
    assert_user_error(rc, err, "none.npz", "no such file")
    assert main(["gemm", "--a", str(a), "--out", str(out)]) == 2  # --b missing: usage error
    capsys.readouterr()
    assert not out.exists()


def test_gemm_truncated_and_mismatched_files(capsys, tmp_path, operands):
    a, b, _ = operands
    out = tmp_path / "d.npy"
    data = a.read_bytes()
    (tmp_path / "atrunc.npz").write_bytes(data[: len(data) // 2])
    rc, _, err = run(capsys, "gemm", "--a", tmp_path / "atrunc.npz", "--b", b, "--out", out)
    assert_user_error(rc, err, "atrunc.npz", "truncated")

    xb = np.load(tmp_path / "b.npy")
    pb = encode(capsys, tmp_path, "pb", xb, "mxfp8_e4m3", "--axis", "0", suffix=".bin")
    body = pb.read_bytes()
    pb.write_bytes(body[:-3])
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", pb, "--out", out)
    assert_user_error(rc, err, "pb.bin", "truncated")
    pb.write_bytes(body)
    scales = tmp_path / "pb.scales.bin"
    scales.write_bytes(scales.read_bytes()[:-1])
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", pb, "--out", out)
    assert_user_error(rc, err, "pb.scales.bin")

    pc = encode(capsys, tmp_path, "pc", xb, "mxfp8_e4m3", "--axis", "0", suffix=".bin")
    side = tmp_path / "pc.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "shape": [K + 32, N]}))  # sidecar says more rows
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", pc, "--out", out)
    assert_user_error(rc, err, "pc")
    side.write_text(json.dumps({**meta, "format": "mxfp4"}))  # sidecar names another format
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", pc, "--out", out)
    assert_user_error(rc, err, "pc")
    side.unlink()
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", pc, "--out", out)
    assert_user_error(rc, err, "pc.json")
    assert not out.exists()


def test_gemm_module_entry_point_user_error_has_no_traceback(capsys, tmp_path, operands):
    a, b, _ = operands
    b96 = encode(capsys, tmp_path, "b96", sample((96, N), 9), "mxfp4", "--axis", "0")
    proc = subprocess.run(
        [sys.executable, "-m", "mxref.cli", "gemm", "--a", a.name, "--b", b96.name,
         "--out", "d.npy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mxref: error: ")
    assert "K = 80" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "d.npy").exists()


# --------------------------------------------------------------------------
# mxref compare, wired into the CLI
# --------------------------------------------------------------------------
def test_compare_gemm_output(capsys, tmp_path, operands):
    a, b, c = operands
    ref = tmp_path / "ref.npy"
    rc, _, err = run(capsys, "gemm", "--a", a, "--b", b, "--c", c, "--out", ref)
    assert rc == 0, err

    rc, out, err = run(capsys, "compare", ref, ref)
    assert rc == 0, err
    assert "PASS: 0 mismatches" in out

    d = np.load(ref)
    i, j = 3, 4
    bits = d.view(np.uint32).copy()
    bits[i, j] += 1  # one ULP away from zero (d[i, j] is finite and nonzero)
    assert np.isfinite(d[i, j])
    assert d[i, j] != 0
    actual = tmp_path / "actual.npy"
    np.save(actual, bits.view(np.float32))

    rc, out, err = run(capsys, "compare", ref, actual, "--k", K, "--block-size", 32)
    assert rc == 1, err
    assert err == ""
    assert "FAIL: 1 mismatches" in out
    assert f"[{i * N + j}] ({i}, {j})" in out
    assert f"from row {i} of A, column {j} of B" in out
    assert "K-blocks 0..2" in out
    assert "1 ULP" in out

    rc, out, err = run(capsys, "compare", ref, actual, "--max-ulp", 1)
    assert rc == 0, err
    assert "PASS" in out

    rc, _, err = run(capsys, "compare", ref, tmp_path / "missing.npy")
    assert_user_error(rc, err, "missing.npy")


@pytest.mark.parametrize("accum", ["exact", "block_fp32"])
def test_gemm_on_nvfp4_operand_files_equals_matmul(capsys, tmp_path, accum):
    a = mxref.quantize(sample((M, K), 11), "nvfp4", per_row=True)
    b = mxref.quantize(sample((N, K), 12), "nvfp4")  # N x K: D = A @ B.T
    mxref.save(tmp_path / "a.npz", a)
    mxref.save(tmp_path / "b.bin", b, scale_layout="nvidia_blocked")
    rc, _, err = run(capsys, "gemm", "--a", tmp_path / "a.npz", "--b", tmp_path / "b.json",
                     "--accum", accum, "--out", tmp_path / "d.npy")  # fmt: skip
    assert (rc, err) == (0, "")
    want = mxref.matmul(a, b, accum=accum)
    assert np.load(tmp_path / "d.npy").view(np.uint32).tolist() == want.view(np.uint32).tolist()
    mxref.save(tmp_path / "m.npz", mxref.quantize(sample((N, K), 13), "mxfp4"))
    rc, _, err = run(capsys, "gemm", "--a", tmp_path / "a.npz", "--b", tmp_path / "m.npz",
                     "--out", tmp_path / "d2.npy")  # fmt: skip
    assert_user_error(rc, err, "a is nvfp4 and b is mxfp4")
