"""The NVFP4 oracle (:mod:`mxref.ref.nvfp4`) against independent brute force.

Each rounding the oracle does through :func:`mxref.ref.element.encode_element`
is checked here by another route: the nearest of every representable value,
found by enumeration, with ties to the even code.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxref.ref.element import BINARY32, BINARY64, decode_element
from mxref.ref.nvfp4 import (
    E2M1,
    E4M3,
    SCALE_NAN_BYTE,
    decode_block_scale,
    dequantize_nv_block,
    encode_block_scale,
    quantize_nv_block,
    quantize_nv_rows,
    tensor_scale,
)

#: every finite E2M1 magnitude by code, and every finite positive E4M3 scale by byte
E2M1_GRID = {c: decode_element(c, E2M1)[1] for c in range(8)}
E4M3_GRID = {b: decode_element(b, E4M3)[1] for b in range(0x7F)}


def nearest(value: Fraction, grid: dict[int, Fraction]) -> int:
    """The code of the grid value nearest ``value``, ties to the even code, saturating."""
    top = max(grid, key=lambda c: grid[c])
    if value >= grid[top]:
        return top
    best = min(abs(v - value) for v in grid.values())
    ties = [c for c, v in grid.items() if abs(v - value) == best]
    return min(ties, key=lambda c: (c % 2, c))


def midpoints(grid: dict[int, Fraction]) -> list[Fraction]:
    values = sorted(grid.values())
    return [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]


@pytest.mark.parametrize("q", [*midpoints(E2M1_GRID), *E2M1_GRID.values()])
def test_elements_round_to_the_nearest_e2m1_value_ties_even(q):
    # a block whose scale is 1 under G = 1: its second element's code is q's rounding
    g = Fraction(1)
    byte, codes = quantize_nv_block([(0, Fraction(6)), (0, q)], g)
    assert decode_block_scale(byte) == 1
    assert codes[1] == nearest(q, E2M1_GRID)


def test_an_element_above_six_times_its_rounded_down_scale_saturates():
    # 6.375 / 6 = 1.0625, the midpoint of 1 and 1.125: the scale ties to even, 1,
    # so the element's quotient is 6.375 and saturates at 6
    byte, codes = quantize_nv_block([(1, Fraction(51, 8))], Fraction(1))
    assert decode_block_scale(byte) == 1
    assert codes == [8 | 7]


@given(st.fractions(min_value=0, max_value=6, max_denominator=1 << 12))
@settings(max_examples=300, deadline=None)
def test_elements_round_to_nearest_anywhere(q):
    byte, codes = quantize_nv_block([(0, Fraction(6)), (1, q)], Fraction(1))
    assert codes[1] == 8 | nearest(q, E2M1_GRID)


SCALE_TARGETS = [*midpoints(E4M3_GRID), *E4M3_GRID.values(), Fraction(449), Fraction(464),
                 Fraction(1, 1 << 10)]  # fmt: skip


@pytest.mark.parametrize("target", SCALE_TARGETS)
def test_block_scales_round_to_the_nearest_e4m3_value_ties_even(target):
    # block_amax / 6 * G == target with G = 1
    assert encode_block_scale(target * 6, Fraction(1)) == nearest(target, E4M3_GRID)


@given(st.fractions(min_value=0, max_value=600, max_denominator=1 << 16))
@settings(max_examples=300, deadline=None)
def test_block_scales_round_to_nearest_anywhere(target):
    assert encode_block_scale(target * 6, Fraction(1)) == nearest(target, E4M3_GRID)


@given(st.floats(min_value=2.0**-100, max_value=2.0**127, width=32))
@settings(max_examples=300, deadline=None)
def test_the_tensor_scale_is_the_nearest_float32(amax):
    exact = Fraction(448 * 6) / Fraction(amax)
    g = tensor_scale(Fraction(amax))
    as32 = np.float32(float(g))
    assert Fraction(float(as32)) == g  # a float32 value
    for neighbour in (np.nextafter(as32, np.float32(0)), np.nextafter(as32, np.float32(np.inf))):
        if np.isfinite(neighbour):
            assert abs(Fraction(float(neighbour)) - exact) >= abs(g - exact)


def test_the_tensor_scale_stays_in_float32():
    assert tensor_scale(Fraction(0)) == 1
    assert tensor_scale(Fraction(1, 1 << 140)) == BINARY32.max_normal
    assert tensor_scale(Fraction(1 << 200)) == BINARY32.min_subnormal
    with pytest.raises(ValueError, match="amax"):
        tensor_scale(Fraction(-1))


def test_a_nan_or_inf_block_is_a_nan_scale_with_signed_zero_codes():
    byte, codes = quantize_nv_block([(0, Fraction(1)), (1, math.inf), (1, Fraction(2))],
                                    Fraction(1))  # fmt: skip
    assert byte == SCALE_NAN_BYTE
    assert codes == [0, 8, 8]
    bits = dequantize_nv_block(byte, codes, Fraction(1))
    assert all(math.isnan(np.array(b, np.uint32).view(np.float32)) for b in bits)


def test_a_tiny_block_beside_large_ones_gets_zero_codes():
    rows = [[(0, Fraction(1, 1 << 20))] * 16 + [(0, Fraction(1000))] * 16]
    scales, bytes_, codes = quantize_nv_rows(rows)
    assert bytes_[0][0] == 0  # 2**-20 / 6 * G rounds to 0 on E4M3's grid
    assert codes[0][:16] == [0] * 16
    assert scales == [tensor_scale(Fraction(1000))]
    # per row, the same row scales on its own amax (the same here: one row)
    assert quantize_nv_rows(rows, per_row=True)[0] == scales


def test_a_zero_tensor_has_zero_codes():
    scales, bytes_, codes = quantize_nv_rows([[(0, Fraction(0)), (1, Fraction(0))]])
    assert scales == [1]
    assert bytes_ == [[0]]
    assert codes == [[0, 8]]


def test_the_amax_is_over_finite_values():
    rows = [[(0, math.nan), (0, Fraction(3))] + [(0, Fraction(0))] * 14,
            [(0, Fraction(2))] * 16]  # fmt: skip
    scales, bytes_, _ = quantize_nv_rows(rows)
    assert scales == [tensor_scale(Fraction(3))]
    assert bytes_[0] == [SCALE_NAN_BYTE]
    assert bytes_[1] == [encode_block_scale(Fraction(2), scales[0])]


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, width=32), min_size=1, max_size=16))
@settings(max_examples=200, deadline=None)
def test_decoding_rounds_the_exact_value_once(xs):
    values = [(int(math.copysign(1, x) < 0), Fraction(abs(x))) for x in xs]
    g = tensor_scale(max(m for _, m in values))
    byte, codes = quantize_nv_block(values, g)
    scale = decode_block_scale(byte)
    for target in (BINARY32, BINARY64):
        for code, bits in zip(codes, dequantize_nv_block(byte, codes, g, target), strict=True):
            sign, mag = decode_element(code, E2M1)
            got_sign, got = decode_element(bits, target)
            exact = mag * scale / g
            assert got_sign == sign
            # the nearest value of the target: no neighbour is closer
            for step in (-1, 1):
                other = decode_element((bits & ~(1 << (target.bits - 1))) + step, target)[1] \
                    if (bits & ((1 << (target.bits - 1)) - 1)) + step >= 0 else None  # fmt: skip
                if isinstance(other, Fraction):
                    assert abs(other - exact) >= abs(got - exact)


def test_block_scale_bytes_are_positive_e4m3():
    with pytest.raises(ValueError, match="0x80"):
        decode_block_scale(0x80)
    assert decode_block_scale(0x7E) == 448
