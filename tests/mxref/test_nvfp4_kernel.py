"""The NVFP4 kernels (:mod:`mxref.kernels.nvfp4`) against the oracle, bit for bit.

Structured cases put values at and beside every E2M1 midpoint, block scales
on and beside E4M3 midpoints and subnormals, saturation, tiny blocks beside
large ones, zeros, NaN and Inf; hypothesis adds random float32 and float64
rows; every (code, scale byte) pair is decoded under several tensor scales.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mxref.kernels import nvfp4 as kernel
from mxref.policies import ROUNDING_CODES, Rounding
from mxref.ref import nvfp4 as oracle
from mxref.ref.element import BINARY32, BINARY64

BLOCK = oracle.NV_BLOCK_SIZE


def exact(v: float) -> tuple[int, Fraction | float]:
    sign = int(math.copysign(1.0, v) < 0)
    if math.isnan(v) or math.isinf(v):
        return sign, (math.nan if math.isnan(v) else math.inf)
    return sign, Fraction(abs(v))


def check(x: np.ndarray, per_row: bool = False, rounding: Rounding = Rounding.RNE) -> None:
    """Kernel and oracle agree on ``x``'s tensor scales, bytes, codes and decoded values,
    on the fast path (with the block maxima of ``row_stats``) and the general one."""
    x2 = np.atleast_2d(x)
    rows = x2.shape[0]
    scales, ref_bytes, ref_codes = oracle.quantize_nv_rows(
        [[exact(float(v)) for v in row] for row in x2], per_row=per_row, rounding=rounding)
    amax, tops = kernel.row_stats(x2, BLOCK, True)
    for general in (False, True):
        check_rows(x2, np.zeros((rows, 0), np.uint32) if general else tops, amax, per_row,
                   rounding, scales, ref_bytes, ref_codes)


def check_rows(x2, tops, amax, per_row, rounding, scales, ref_bytes, ref_codes) -> None:
    rows, n = x2.shape
    nblk = -(-n // BLOCK)
    if per_row:
        g = np.array([kernel.tensor_scale(a) for a in amax])
    else:
        g = np.full(rows, kernel.tensor_scale(float(amax.max()) if rows else 0.0))
    assert [Fraction(v) for v in g] == [scales[r if per_row else 0] for r in range(rows)]
    code = ROUNDING_CODES[rounding]
    codes = np.empty(x2.shape, np.uint8)
    bytes_ = np.empty((rows, nblk), np.uint8)
    kernel.quantize_rows(x2, codes, bytes_, tops, g, BLOCK, code)
    assert bytes_.tolist() == ref_bytes
    assert codes.tolist() == ref_codes
    for dtype, target, view in ((np.float32, BINARY32, np.uint32),
                                (np.float64, BINARY64, np.uint64)):  # fmt: skip
        want = np.array([[bits for b in range(nblk) for bits in oracle.dequantize_nv_block(
            ref_bytes[r][b], ref_codes[r][b * BLOCK:(b + 1) * BLOCK],
            scales[r if per_row else 0], target)] for r in range(rows)], view)  # fmt: skip
        decoded = np.empty(x2.shape, dtype)
        kernel.dequantize_rows(codes, bytes_, g, BLOCK, decoded)
        assert np.array_equal(decoded.view(view), want)
        if x2.dtype == dtype or x2.dtype == np.float32:  # float32 inputs decode to both
            fused, fused_bytes = np.empty(x2.shape, dtype), np.empty_like(bytes_)
            kernel.fake_quantize_rows(x2, fused, fused_bytes, tops, g, BLOCK, code)
            assert np.array_equal(fused.view(view), want)
            assert np.array_equal(fused_bytes, bytes_)


def at_scale(values: list[float], s_b: float, g: float) -> list[float]:
    """Inputs whose quotients ``x * G / s_b`` are ``values`` (float64, exact where it can)."""
    return [v * s_b / g for v in values]


E2M1_POINTS = sorted({float(v) for v in kernel.E2M1_GRID} | {
    float(a + b) / 2 for a, b in zip(kernel.E2M1_GRID, kernel.E2M1_GRID[1:], strict=False)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rounding", [Rounding.RNE, Rounding.AWAY, Rounding.ZERO])
def test_elements_at_and_beside_every_e2m1_midpoint(dtype, rounding):
    rows = []
    for amax in (6.0, 5.0, 448.0, 1e-3, 3.0e5):
        for s_frac in (1.0, 0.5, 1.125, 0.0703125):
            base = [6.0 * s_frac] + E2M1_POINTS  # the first element fixes the block's scale
            row = np.array(at_scale(base, 1.0, 1.0), np.float64) * (amax / 6.0)
            for step in (-1, 0, 1):
                shifted = row.astype(dtype)
                if step:
                    shifted[1:] = np.nextafter(shifted[1:], dtype(np.inf) * step)
                rows.append(np.concatenate([[dtype(amax)], shifted]).astype(dtype))
    width = max(len(r) for r in rows)
    x = np.zeros((len(rows), width), dtype)
    for i, r in enumerate(rows):
        x[i, : len(r)] = r
    check(x, rounding=rounding)
    check(x, per_row=True, rounding=rounding)


E4M3_MIDPOINTS = [float(a + b) / 2 for a, b in zip(kernel.E4M3_GRID, kernel.E4M3_GRID[1:],
                                                    strict=False)]  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_scales_at_and_beside_e4m3_midpoints_and_subnormals(dtype):
    # the first block holds 2688, so G is 1 and a block's scale is its amax / 6
    targets = E4M3_MIDPOINTS + [float(v) for v in kernel.E4M3_GRID] + [449.0, 464.0, 500.0]
    blocks = [np.full(BLOCK, 2688.0, dtype)]
    for t in targets:
        for step in (-1, 0, 1):
            amax = dtype(6.0 * t)
            if step:
                amax = np.nextafter(amax, dtype(np.inf) * step)
            block = np.zeros(BLOCK, dtype)
            block[0] = amax
            block[1] = -amax / dtype(3)
            blocks.append(block)
    check(np.concatenate(blocks).reshape(1, -1))


def test_special_rows():
    f32 = np.float32
    tiny = np.finfo(f32).smallest_subnormal
    rows = {
        "zeros": np.zeros(2 * BLOCK, f32),
        "negative zeros": -np.zeros(BLOCK, f32),
        "tiny beside large": np.concatenate([np.full(BLOCK, 1e-20, f32), np.full(BLOCK, 1e3, f32)]),
        "nan and inf blocks": np.array([1.0, np.nan, -2.0] + [0.5] * 13 + [-np.inf] + [3.0] * 15
                                       + [-np.nan, 1.0], f32),  # fmt: skip
        "subnormal inputs": np.array([tiny, -tiny * 3, tiny * 100] + [0.0] * 13, f32),
        "float32 max": np.array([np.finfo(f32).max, -1.0, 1e30] + [0.0] * 13, f32),
        "short last block": np.arange(1, 21, dtype=f32) / 7,
    }
    for name, row in rows.items():
        try:
            check(row)
        except AssertionError as exc:  # pragma: no cover - names the failing row
            raise AssertionError(name) from exc


def test_float64_inputs_beyond_float32():
    rows = [np.array([1e300, -1e-300, 3e200, 1.0] + [0.0] * 12),
            np.array([1e-300, 5e-301, -1e-310] + [0.0] * 13),
            np.array([2.0**200 * 1.75, 2.0**190] + [1.0] * 14)]  # fmt: skip
    for row in rows:
        check(row)


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 40)),
                  elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       st.booleans())  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_random_float32_rows(x, per_row):
    check(x, per_row=per_row)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 2), st.integers(1, 33)),
                  elements=st.floats(min_value=-1e250, max_value=1e250)))  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_random_float64_rows(x):
    check(x)


@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
@settings(max_examples=400, deadline=None)
def test_the_tensor_scale(amax):
    assert Fraction(kernel.tensor_scale(amax)) == oracle.tensor_scale(Fraction(amax))


@pytest.mark.parametrize("g", [1.0, 2688.0 / 3, 2688.0 / 7e-3, float(np.float32(1 / 3)),
                               2.0**-140, float(np.finfo(np.float32).max)])  # fmt: skip
def test_every_code_and_scale_byte_decodes_as_the_oracle(g):
    codes = np.tile(np.arange(16, dtype=np.uint8), 0x80).reshape(0x80, 16)
    bytes_ = np.arange(0x80, dtype=np.uint8).reshape(0x80, 1)
    gs = np.full(0x80, g)
    for dtype, target, view in ((np.float32, BINARY32, np.uint32),
                                (np.float64, BINARY64, np.uint64)):  # fmt: skip
        out = np.empty(codes.shape, dtype)
        kernel.dequantize_rows(codes, bytes_, gs, BLOCK, out)
        want = np.array([oracle.dequantize_nv_block(b, list(range(16)), Fraction(g), target)
                         for b in range(0x80)], view)  # fmt: skip
        assert np.array_equal(out.view(view), want)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("g", [1.0, float(np.float32(2688 / 3.7)), 2.0**-149,
                               float(np.finfo(np.float32).max),
                               float(np.float32(1 / 3))])  # fmt: skip
def test_float32_thresholds_are_the_smallest_qualifying_float32(g, strict):
    # the float32 path decides elements by these thresholds: each must be the
    # smallest float32 a with a * g >= c (> c when strict), checked in Fractions
    for byte in range(1, kernel.E4M3_TOP + 1):
        s = Fraction(float(kernel.E4M3_GRID[byte]))
        for c in {s * Fraction(k, 4) for k in range(1, 25)}:
            a = np.float32(kernel.float32_threshold(float(c), g, strict))

            def ok(v: np.float32, c: Fraction = c) -> bool:
                product = Fraction(float(v)) * Fraction(g)
                return product > c if strict else product >= c

            if np.isinf(a):
                assert not ok(np.finfo(np.float32).max)
                continue
            assert ok(a)
            assert a == 0 or not ok(np.nextafter(a, np.float32(0)))


@pytest.mark.parametrize("rounding", [Rounding.RNE, Rounding.AWAY, Rounding.ZERO])
def test_float32_rows_fast_and_general_paths(rounding):
    # whole finite rows take the vectorised path; a NaN, an Inf or a short last
    # block sends a row through the general one; per-row scales refill the tables
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 64)) * rng.choice([1e-3, 1.0, 50.0], (6, 64))).astype(np.float32)
    x[1, 5] = np.nan
    x[2, 40] = -np.inf
    x[3, ::7] = -0.0
    check(x, rounding=rounding)
    check(x, per_row=True, rounding=rounding)
    check(np.ascontiguousarray(x[:, :57]), per_row=True, rounding=rounding)
    # values exactly on the decision thresholds of one block scale, and beside them
    g = float(np.float32(2688.0 / 6.0))
    levels = np.zeros((kernel.E4M3_TOP + 1, 16), np.float32)
    kernel._fill_levels(levels, 100, g, ROUNDING_CODES[rounding])
    on = levels[100, :7]
    row = np.concatenate([on, np.nextafter(on, np.float32(0)), np.nextafter(on, np.float32(9)),
                          np.float32([6.0]), np.zeros(2, np.float32)])  # fmt: skip
    check(np.concatenate([row, -row]).reshape(2, -1), rounding=rounding)


@pytest.mark.parametrize("n", [64, 48, 16704])
def test_row_stats_gives_each_blocks_largest_magnitude_and_the_finite_amax(n):
    # 48: half a row is no multiple of 32 pairs; and a long row
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((5, n)) * 10.0 ** rng.integers(-30, 30, (5, n))).astype(np.float32)
    x[1, 3] = np.nan
    x[1, 20] = 3e38  # beside the NaN's block, the row's largest finite |x|
    x[2, 17] = -np.inf
    x[3] = -0.0
    x[4, n - 1] = -np.inf  # in the last block
    for block in (2, 8, 16):
        amax, tops = kernel.row_stats(x, block, True)
        magnitudes = np.abs(x).view(np.uint32).reshape(5, -1, block)
        assert np.array_equal(tops, magnitudes.max(axis=2))  # NaN and Inf bits are the largest
        finite = np.where(np.isfinite(x), np.abs(x), 0).astype(np.float64)
        assert np.array_equal(amax, finite.max(axis=1))
    for block, width, dtype in ((16, 60, np.float32), (24, 48, np.float32), (1, 16, np.float32),
                                (16, 64, np.float64)):  # fmt: skip
        ones = np.ones((3, width), dtype)
        amax, tops = kernel.row_stats(ones, block, True)
        assert tops.shape == (3, 0)  # no whole power-of-two blocks of float32: the general path
        assert amax.tolist() == [1.0] * 3
        # a given tensor scale needs no amax: without block maxima to keep, no pass at all
        assert kernel.row_stats(ones, block, False)[0].tolist() == [0.0] * 3


@pytest.mark.parametrize("block", [2, 8, 16, 32, 64, 24])
@pytest.mark.parametrize("rounding", [Rounding.RNE, Rounding.AWAY, Rounding.ZERO])
def test_fast_and_general_paths_agree_for_every_block_size(block, rounding):
    # the general path is the one checked against the oracle above for any block size
    # (24, no power of two, takes it both times); decoding the codes gives the fused values.
    # 200 rows share 64 chunks, so a second G every third row changes G inside a chunk,
    # which refills the tables
    rows = 200
    rng = np.random.default_rng(block)
    spread = rng.choice([1e-3, 1.0, 50.0], (rows, 1))
    x = (rng.standard_normal((rows, 192)) * spread).astype(np.float32)
    x[5, 7] = np.nan
    code = ROUNDING_CODES[rounding]
    amax, tops = kernel.row_stats(x, block, True)
    g = np.full(rows, kernel.tensor_scale(float(amax.max())))
    g[::3] = kernel.tensor_scale(float(amax.max()) * 3.0)
    nblk = -(-192 // block)
    outputs = []
    for t in (tops, np.zeros((rows, 0), np.uint32)):
        codes, values = np.empty(x.shape, np.uint8), np.empty(x.shape, np.float32)
        bytes_, fused_bytes = np.empty((rows, nblk), np.uint8), np.empty((rows, nblk), np.uint8)
        kernel.quantize_rows(x, codes, bytes_, t, g, block, code)
        kernel.fake_quantize_rows(x, values, fused_bytes, t, g, block, code)
        assert np.array_equal(bytes_, fused_bytes)
        decoded = np.empty(x.shape, np.float32)
        kernel.dequantize_rows(codes, bytes_, g, block, decoded)  # decoding agrees with qdq
        assert np.array_equal(decoded.view(np.uint32), values.view(np.uint32))
        outputs.append((codes, values.view(np.uint32), bytes_))
    for fast, general in zip(*outputs, strict=True):
        assert np.array_equal(fast, general)


@pytest.mark.parametrize("rounding", [Rounding.RNE, Rounding.AWAY, Rounding.ZERO])
def test_one_tensor_scale_over_many_blocks_fills_the_whole_table_first(rounding):
    # more blocks than _WHOLE_TABLE_BLOCKS under one G: the table is filled before the rows
    rng = np.random.default_rng(11)
    rows = kernel._WHOLE_TABLE_BLOCKS // 8 + 1
    spread = rng.choice([1e-4, 1.0, 300.0], (rows, 1))
    x = (rng.standard_normal((rows, 128)) * spread).astype(np.float32)
    g = np.full(rows, 1000.0)
    assert kernel._shared_table(g, ROUNDING_CODES[rounding], rows * 128 // BLOCK).shape[0] > 0
    assert kernel._shared_table(g, ROUNDING_CODES[rounding], kernel._WHOLE_TABLE_BLOCKS).size == 0
    check(x, rounding=rounding)
