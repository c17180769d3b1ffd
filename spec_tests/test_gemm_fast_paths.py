"""The BLAS paths of mxref.matmul against the exact oracle, one path at a time.

``block_fp32`` takes a single BLAS product where its float32 accumulator
provably never rounds, the per-block path where it may, and the exact kernel
for a few leftover outputs; ``exact`` stores straight into float32 or keeps
float64 for a float16 output.  Each test forces the BLAS paths on a small
shape, checks which path ran, and compares with the oracle bit for bit.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

import mxref
import mxref.gemm
from mxref.kernels.gemm_blas import add_block_fp32
from mxref.ref import gemm as ref_gemm
from mxref.ref.element import BINARY32, encode_float
from spec_tests.assertions import assert_bits_equal


@pytest.fixture
def paths(monkeypatch):
    """Force the BLAS paths and count the calls of each one."""
    monkeypatch.setattr(mxref.gemm, "_BLAS_MIN_WORK", 0)
    calls: Counter[str] = Counter()
    for name in ("_exact_blas", "_per_block_rows", "matmul_exact_pairs", "never_rounds"):
        original = getattr(mxref.gemm, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(mxref.gemm, name, counted)
    return calls


def operands(fmt, m, n, k, seed, spread=0, b_axis=0, scale=1.0):
    """Quantized Gaussian A (m x k) and B (k x n, or n x k when b_axis is 1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)) * np.exp2(rng.integers(-spread, spread + 1, (m, k))) * scale
    y = rng.standard_normal((k, n)) * np.exp2(rng.integers(-spread, spread + 1, (k, n))) * scale
    a = mxref.quantize(x.astype(np.float32), fmt)
    if b_axis == 0:
        return a, mxref.quantize(y.astype(np.float32), fmt, axis=0)
    return a, mxref.quantize(np.ascontiguousarray(y.T).astype(np.float32), fmt)


def check(a, b, accum, c=None, out_dtype=np.float32):
    got = mxref.matmul(a, b, accum=accum, c=c, out_dtype=out_dtype)
    want = ref_gemm.matmul(a, b, accum=accum, c=c, out_dtype=out_dtype)
    assert_bits_equal(got, want, f"{a.fmt.name} {accum} -> {np.dtype(out_dtype).name}")


@pytest.mark.parametrize("b_axis", [0, 1])
@pytest.mark.parametrize("accum", ["block_fp32", "block_fp32:ftz"])
def test_block_fp32_that_never_rounds_is_one_product(paths, b_axis, accum):
    """mxfp4 sums of 96 lanes stay far below 2**24 quanta: one product, no per-block path."""
    a, b = operands("mxfp4", 5, 70, 96, seed=1, b_axis=b_axis)  # 70 columns: two column chunks
    check(a, b, accum)
    assert paths["_exact_blas"] == 1
    assert paths["_per_block_rows"] == paths["never_rounds"] == paths["matmul_exact_pairs"] == 0


@pytest.mark.parametrize("share", [0.0, 1e9])  # the per-block path, or the kernel, for misses
def test_block_fp32_that_rounds_takes_the_per_block_path_or_the_kernel(paths, monkeypatch, share):
    monkeypatch.setattr(mxref.gemm, "_KERNEL_SHARE", share)
    a, b = operands("mxfp8_e4m3", 4, 6, 200, seed=2, spread=3)
    check(a, b, "block_fp32")
    assert paths["never_rounds"] == 1
    assert (paths["_per_block_rows"] == 1) == (share == 0.0)
    assert (paths["matmul_exact_pairs"] == 1) == (share != 0.0)


def test_block_fp32_mixes_the_product_and_the_per_block_path_by_row(paths, monkeypatch):
    """A row whose block scales are 70 binades apart is not foldable; the others are."""
    monkeypatch.setattr(mxref.gemm, "_KERNEL_SHARE", 0.0)
    a, b = operands("mxfp4", 6, 5, 128, seed=3)
    a.scales[2, 0] = a.scales[2, 1] + 70
    check(a, b, "block_fp32")
    assert paths["_exact_blas"] == paths["_per_block_rows"] == 1


@pytest.mark.parametrize("accum", ["block_fp32", "block_fp32:ftz", "exact"])
def test_c_on_the_quantum_grid_and_off_it(paths, accum):
    """C in whole quanta keeps block_fp32 on the product; other C takes it off; -0 gives +0."""
    a, b = operands("mxfp4", 4, 5, 64, seed=4)
    rng = np.random.default_rng(5)
    on_grid = (rng.integers(-40, 40, (4, 5)) * 2.0**-3).astype(np.float32)
    off_grid = rng.standard_normal((4, 5)).astype(np.float32)
    minus_zero = np.full((4, 5), -0.0, np.float32)
    for c in (on_grid, off_grid, minus_zero):
        check(a, b, accum, c=c)


def test_subnormal_partial_sums_leave_the_product_under_ftz(paths):
    """Quanta below 2**-126: the flushing model may not use the product; the plain one may."""
    a, b = operands("mxfp4", 3, 4, 64, seed=6, scale=2.0**-64)
    check(a, b, "block_fp32:ftz")
    assert paths["never_rounds"] == 1
    check(a, b, "block_fp32")
    assert paths["never_rounds"] == 1  # the plain model passed the quick test


@pytest.mark.parametrize("accum", ["exact", "block_fp32"])
def test_nan_c_is_the_canonical_nan(paths, accum):
    a, b = operands("mxfp4", 3, 4, 64, seed=7)
    c = np.zeros((3, 4), np.float32)
    c.view(np.uint32)[0, 0] = 0xFFC00123  # a negative NaN with a payload
    c[1, 1] = np.inf
    got = mxref.matmul(a, b, accum=accum, c=c)
    assert got.view(np.uint32)[0, 0] == 0x7FC00000
    check(a, b, accum, c=c)


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp8_e4m3"])
def test_exact_float16_output_is_rounded_once(paths, fmt):
    a, b = operands(fmt, 4, 5, 96, seed=8, spread=2)
    c = np.random.default_rng(9).standard_normal((4, 5)).astype(np.float32)
    check(a, b, "exact", c=c, out_dtype=np.float16)
    assert paths["_exact_blas"] == 1


def test_add_block_fp32_rounds_once_at_near_ties():
    """float32(acc + v) through float64 rounds twice; the kernel's round-to-odd does not."""
    rng = np.random.default_rng(10)
    acc = rng.standard_normal((16, 16)).astype(np.float32)
    ulp = np.spacing(acc).astype(np.float64)
    nudge = np.ldexp(1.0, rng.integers(-40, -26, acc.shape)) * ulp
    v = np.where(rng.random(acc.shape) < 0.5, ulp / 2 + nudge, -ulp / 2 - nudge)
    want = np.empty_like(acc)
    for idx in np.ndindex(acc.shape):
        exact = Fraction(float(acc[idx])) + Fraction(float(v[idx]))
        bits = encode_float((int(exact < 0), abs(exact)), BINARY32)
        want[idx] = np.uint32(bits).view(np.float32)
    got = acc.copy()
    add_block_fp32(got, v, np.ones(16), np.ones(16), False, False)
    assert_bits_equal(got, want, "RN32(acc + v)")
    assert ((acc.astype(np.float64) + v).astype(np.float32) != want).any()  # the test bites
