"""``mxref encode --format nvfp4``: the file holds what mxref.quantize gives, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import mxref
from mxref.mx_files import read_mx
from tests.mxref.conftest import assert_user_error, run


@pytest.fixture
def x_file(tmp_path):
    x = np.random.default_rng(3).standard_normal((8, 72)).astype(np.float32)
    x[2, 5] = -0.0
    x[4, :16] *= 1e-3  # a tiny block beside large ones
    path = tmp_path / "x.npy"
    np.save(path, x)
    return x, path


@pytest.mark.parametrize(
    ("options", "kwargs"),
    [
        ([], {}),
        (["--per-row"], {"per_row": True}),
        (["--rounding", "away"], {"rounding": "away"}),
        (["--tensor-scale", "0x44D80000"], {"tensor_scale": np.float32(1728.0)}),
        (["--preset", "torchao"], {"preset": "torchao"}),
        (["--preset", "transformer-engine", "--per-row"],
         {"preset": "transformer-engine", "per_row": True}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("suffix", ["npz", "bin"])
def test_encode_writes_what_quantize_gives(tmp_path, capsys, x_file, options, kwargs, suffix):
    x, path = x_file
    out = tmp_path / f"out.{suffix}"
    rc, _, err = run(capsys, "encode", "--format", "nvfp4", *options, path, out)
    assert rc == 0, err
    got = read_mx(out)
    want = mxref.quantize(x, "nvfp4", **kwargs)
    assert got.block_size == 16
    assert np.array_equal(got.codes, want.codes)
    assert np.array_equal(got.scales, want.scales)
    assert want.tensor_scale is not None
    assert got.tensor_scale is not None
    assert np.array_equal(got.tensor_scale.view(np.uint32), want.tensor_scale.view(np.uint32))
    decoded = mxref.dequantize(got, np.float32)
    assert np.array_equal(decoded.view(np.uint32),
                          mxref.dequantize(want, np.float32).view(np.uint32))  # fmt: skip


def test_the_swizzled_scale_layout_round_trips(tmp_path, capsys, x_file):
    x, path = x_file
    out = tmp_path / "w.bin"
    rc, _, err = run(capsys, "encode", "--format", "nvfp4", "--scale-layout", "nvidia_blocked",
                     path, out)  # fmt: skip
    assert rc == 0, err
    assert np.array_equal(read_mx(out).codes, mxref.quantize(x, "nvfp4").codes)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--scale-rule", "even"], "--scale-rule does not apply to nvfp4"),
        (["--overflow", "ieee"], "--overflow does not apply to nvfp4"),
        (["--seed", "3"], "--seed does not apply to nvfp4"),
        (["--rounding", "stochastic"], "nvfp4 takes rne, away or zero"),
        (["--preset", "cublas"], "is an MX preset"),
        (["--tensor-scale", "-1"], "--tensor-scale"),
        (["--tensor-scale", "1,2,3"], "--tensor-scale"),
    ],
)
def test_bad_nvfp4_options_are_one_line_errors(tmp_path, capsys, x_file, options, needle):
    _, path = x_file
    rc, _, err = run(capsys, "encode", "--format", "nvfp4", *options, path, tmp_path / "o.npz")
    assert_user_error(rc, err, needle)


def test_nvfp4_options_are_refused_for_mx(tmp_path, capsys, x_file):
    _, path = x_file
    for option in (["--per-row"], ["--tensor-scale", "2.0"]):
        rc, _, err = run(capsys, "encode", "--format", "mxfp4", *option, path, tmp_path / "o.npz")
        assert_user_error(rc, err, option[0], "nvfp4 only")
