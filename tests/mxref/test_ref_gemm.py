"""The exact GEMM oracle (mxref.ref.gemm): hand-computed cases for every accumulation model.

Every expectation is an exact Fraction worked out by hand in the test (then
turned into float32 bits only where it is exactly representable), or a bit
pattern written in hex: no float tolerances anywhere.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from mxref.accum import AlignRounding, BlockFP32, Exact, FixedPoint
from mxref.array import MXArray
from mxref.formats import get_format
from mxref.gemm_operands import operands
from mxref.ref.element import decode_element
from mxref.ref.gemm import (
    block_dot,
    ext_sum,
    fp32_add,
    group_value,
    is_nan,
    matmul,
    matmul_operands,
    scaled_product,
)

E4M3 = get_format("mxfp8_e4m3")
E5M2 = get_format("mxfp8_e5m2")
FP4 = get_format("mxfp4")

DOCS_GEMM = Path(__file__).resolve().parents[2] / "docs" / "gemm.md"

F32_NAN = 0x7FC00000
F32_INF = 0x7F800000
F32_NEG_INF = 0xFF800000

MODELS = ["exact", "block_fp32", "fixed_point:25:32", "fixed_point:14:32", "block_fp32:ftz"]


def mx(codes, scales, fmt, axis=1, block_size=32) -> MXArray:
    """An MXArray from nested lists of codes and scale bytes."""
    return MXArray(
        np.array(codes, dtype=np.uint8), np.array(scales, dtype=np.uint8), fmt, axis, block_size
    )


def bits(d: np.ndarray) -> list[list[int]]:
    """The bit patterns of a float32/float16/bfloat16 result, as Python ints."""
    word = np.uint32 if d.dtype.itemsize == 4 else np.uint16
    return d.view(word).tolist()


def f32_bits(x: Fraction) -> int:
    """float32 bits of a value that float32 holds exactly (checked), without the oracle."""
    f = np.float32(float(x))
    assert Fraction(float(f)) == x, f"{x} is not a float32"
    return int(f.view(np.uint32))


def one(codes_a, codes_b, scales_a, scales_b, fmt_a=E4M3, fmt_b=None, block_size=32):
    """A 1 x K times K x 1 problem given as two code lists (B as a row, N x K)."""
    a = mx([codes_a], [scales_a], fmt_a, 1, block_size)
    b = mx([codes_b], [scales_b], fmt_b or fmt_a, 1, block_size)
    return a, b


def lanes(k: int, **placed: int) -> list[int]:
    """K zero codes with some lanes set: lanes(64, l0=0x78, l33=0x38)."""
    out = [0] * k
    for name, code in placed.items():
        out[int(name[1:])] = code
    return out


def test_element_codes_used_below():
    # the hex codes the tests spell out, checked once against the decoder
    assert decode_element(0x38, E4M3) == (0, Fraction(1))
    assert decode_element(0x78, E4M3) == (0, Fraction(256))
    assert decode_element(0x7E, E4M3) == (0, Fraction(448))
    assert decode_element(0x23, E4M3) == (0, Fraction(11, 64))
    assert decode_element(0x20, E4M3) == (0, Fraction(1, 8))
    assert decode_element(0x18, E4M3) == (0, Fraction(1, 16))
    assert decode_element(0x10, E4M3) == (0, Fraction(1, 32))
    assert decode_element(0x08, E4M3) == (0, Fraction(1, 64))
    assert decode_element(0x01, E4M3) == (0, Fraction(1, 512))
    assert decode_element(0xB8, E4M3) == (1, Fraction(1))
    assert decode_element(0x3C, E5M2) == (0, Fraction(1))
    assert decode_element(0x7C, E5M2) == (0, math.inf)
    assert decode_element(0xFC, E5M2) == (1, math.inf)
    assert [decode_element(c, FP4)[1] for c in range(8)] == [
        Fraction(v) for v in ("0", "0.5", "1", "1.5", "2", "3", "4", "6")
    ]
    assert decode_element(0xD, FP4) == (1, Fraction(3))


# --- (1) a 1x32 by 32x1 mxfp4 case by hand -------------------------------------------------------


def test_mxfp4_row_times_column_by_hand():
    # A: codes 0..7 four times = values 0, .5, 1, 1.5, 2, 3, 4, 6 (sum 18 per cycle), X_A = 2.
    # B (32 x 1, blocked on axis 0): 1.0 on lanes 0..15, -3.0 on lanes 16..31, X_B = 1/4.
    # sum = 36 * 1 + 36 * (-3) = -72; D = 2 * 1/4 * -72 = -36.
    a = mx([[k % 8 for k in range(32)]], [[0x80]], FP4)
    b = mx([[0x2]] * 16 + [[0xD]] * 16, [[0x7D]], FP4, axis=0)
    want = f32_bits(Fraction(-36))
    assert want == 0xC2100000
    for model in MODELS:
        assert bits(matmul(a, b, model)) == [[want]], model


def test_block_dot_is_the_spec_dot():
    codes_a = [k % 8 for k in range(32)]
    codes_b = [0x2] * 16 + [0xD] * 16
    assert block_dot(codes_a, 0x80, codes_b, 0x7D, FP4, FP4) == Fraction(-36)
    assert block_dot([], 0x7F, [], 0x7F, FP4, FP4) == 0
    with pytest.raises(ValueError, match="equal length"):
        block_dot([1, 2], 0x7F, [1], 0x7F, FP4, FP4)


# --- (2) three models, three answers -------------------------------------------------------------


def models_differ_operands() -> tuple[MXArray, MXArray]:
    """The worked example of docs/gemm.md: mxfp8_e4m3, K = 64, two blocks.

    Block 0 (scales 2^0 x 2^0): lane 0 is 256 x 256 = 2^16, lane 1 is
    (11/64) x (1/8) = 11 * 2^-9.  Block 1 (scales 2^-4 x 2^-4): lane 32 is
    1 x 1 = 1, scaled to 2^-8.
    """
    a_codes = lanes(64, l0=0x78, l1=0x23, l32=0x38)
    b_codes = lanes(64, l0=0x78, l1=0x20, l32=0x38)
    return one(a_codes, b_codes, [0x7F, 0x7B], [0x7F, 0x7B])


def test_exact_block_fp32_and_fixed_point_give_different_bits():
    a, b = models_differ_operands()
    # u = 2^-7 is the float32 ulp on [2^16, 2^17).  Block 0's Dot is 2^16 + 2.75u,
    # block 1's is 0.5u (2^-8).
    u = Fraction(1, 2**7)
    big, v0, v1 = Fraction(2**16), Fraction(2**16) + Fraction(11, 512), Fraction(1, 256)
    assert v0 == big + Fraction(11, 4) * u
    assert v1 == u / 2
    # exact: 2^16 + 3.25u rounds once to 2^16 + 3u
    exact = big + 3 * u
    # block_fp32: RN(v0) = 2^16 + 3u (2.75u -> 3u), then 3u + 0.5u = 3.5u ties to even 4u
    block_fp32 = big + 4 * u
    # fixed_point:25:32: e_max = 16, quantum 2^(16+1-25) = 2^-8 = 0.5u; 11*2^-9 = 5.5 quanta
    # truncates to 5 quanta = 2.5u; RN(2^16 + 2.5u) ties to even 2u; then + 0.5u -> 2.5u -> 2u
    fixed25 = big + 2 * u
    # fixed_point:14:32: quantum 2^3, so lane 1 vanishes; 2^16, then 2^16 + 0.5u ties to 2^16
    fixed14 = big
    # with RNE alignment, 5.5 quanta round to 6 = 3u, and the rest is block_fp32's path
    fixed25_rne = big + 4 * u
    want = {
        "exact": f32_bits(exact),
        "block_fp32": f32_bits(block_fp32),
        "fixed_point:25:32": f32_bits(fixed25),
        "fixed_point:14:32": f32_bits(fixed14),
        "fixed_point:25:32:rne": f32_bits(fixed25_rne),
    }
    assert want == {
        "exact": 0x47800003,
        "block_fp32": 0x47800004,
        "fixed_point:25:32": 0x47800002,
        "fixed_point:14:32": 0x47800000,
        "fixed_point:25:32:rne": 0x47800004,
    }
    for model, expected in want.items():
        assert bits(matmul(a, b, model)) == [[expected]], model


def test_docs_worked_example_matches_the_oracle():
    text = DOCS_GEMM.read_text(encoding="utf-8")
    a, b = models_differ_operands()
    for model in ("exact", "block_fp32", "fixed_point:25:32", "fixed_point:14:32"):
        hexbits = f"0x{bits(matmul(a, b, model))[0][0]:08X}"
        assert hexbits in text, f"docs/gemm.md lacks {model}'s result {hexbits}"


# --- (3) NaN and Inf propagation -----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_nan_scale_reaches_only_its_row_or_column(model):
    rng = np.random.default_rng(7)
    codes_a = rng.integers(0, 0x7E, size=(3, 64), dtype=np.uint8)  # finite E4M3, no NaN code
    codes_b = rng.integers(0, 0x7E, size=(2, 64), dtype=np.uint8)
    codes_a[1, :32] = 0  # a NaN scale wins even over zero elements
    scales_a = np.full((3, 2), 0x7F, np.uint8)
    scales_b = np.full((2, 2), 0x7F, np.uint8)
    clean = matmul(
        MXArray(codes_a, scales_a, E4M3, 1, 32), MXArray(codes_b, scales_b, E4M3, 1, 32), model
    )
    assert not np.isnan(clean).any()
    scales_a[1, 0] = 0xFF
    d = matmul(
        MXArray(codes_a, scales_a, E4M3, 1, 32), MXArray(codes_b, scales_b, E4M3, 1, 32), model
    )
    got = bits(d)
    assert got[1] == [F32_NAN, F32_NAN]
    assert [got[0], got[2]] == [bits(clean)[0], bits(clean)[2]]
    scales_a[1, 0] = 0x7F
    scales_b[0, 1] = 0xFF  # column 0 of B
    got = bits(
        matmul(
            MXArray(codes_a, scales_a, E4M3, 1, 32), MXArray(codes_b, scales_b, E4M3, 1, 32), model
        )
    )
    assert [row[0] for row in got] == [F32_NAN] * 3
    assert [row[1] for row in got] == [row[1] for row in bits(clean)]


@pytest.mark.parametrize("model", MODELS)
def test_e5m2_inf_times_zero_is_nan_and_inf_times_one_is_inf(model):
    a, b = one(lanes(32, l0=0x7C), lanes(32, l0=0x00), [0x7F], [0x7F], E5M2)
    assert bits(matmul(a, b, model)) == [[F32_NAN]]
    a, b = one(lanes(32, l0=0x7C, l1=0x3C), lanes(32, l0=0xBC, l1=0x3C), [0x7F], [0x7F], E5M2)
    assert bits(matmul(a, b, model)) == [[F32_NEG_INF]]  # Inf * -1 = -Inf; + 1 stays -Inf


@pytest.mark.parametrize("model", [*MODELS, "fixed_point:14:64"])
def test_plus_and_minus_inf_across_blocks_is_nan(model):
    # lane 0: +Inf * 1, lane 32 (next block): -Inf * 1.  block_fp32: acc = +Inf, then
    # +Inf + -Inf = NaN; fixed_point:14:64 sees both in one group: NaN as well.
    a, b = one(
        lanes(64, l0=0x7C, l32=0xFC), lanes(64, l0=0x3C, l32=0x3C), [0x7F] * 2, [0x7F] * 2, E5M2
    )
    assert bits(matmul(a, b, model)) == [[F32_NAN]]


@pytest.mark.parametrize("model", MODELS)
def test_e4m3_nan_element_is_nan(model):
    a, b = one(lanes(32, l0=0x7F, l1=0x38), lanes(32, l0=0x00, l1=0x38), [0x7F], [0x7F])
    assert bits(matmul(a, b, model)) == [[F32_NAN]]


def test_extended_arithmetic_rules():
    one_, zero = (0, Fraction(1)), (0, Fraction(0))
    inf, ninf, nan = (0, math.inf), (1, math.inf), (0, math.nan)
    assert is_nan(scaled_product(None, Fraction(1), zero, zero))
    assert is_nan(scaled_product(Fraction(1), None, one_, one_))
    assert is_nan(scaled_product(Fraction(1), Fraction(1), nan, zero))
    assert is_nan(scaled_product(Fraction(1), Fraction(1), inf, zero))
    assert scaled_product(Fraction(1), Fraction(1), ninf, one_) == -math.inf
    assert scaled_product(Fraction(1), Fraction(1), ninf, (1, Fraction(1, 2))) == math.inf
    assert scaled_product(Fraction(2), Fraction(1, 8), (1, Fraction(3)), one_) == Fraction(-3, 4)
    assert ext_sum([]) == 0
    assert ext_sum([Fraction(1), math.inf, Fraction(-5)]) == math.inf
    assert is_nan(ext_sum([math.inf, Fraction(1), -math.inf]))
    assert is_nan(ext_sum([math.nan, math.inf]))
    assert ext_sum([Fraction(3), Fraction(-3)]) == 0


# --- (4) scale products beyond float32 -----------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_scales_two_to_the_254_overflow_float32(model):
    a, b = one(lanes(32, l0=0x38), lanes(32, l0=0x38), [0xFE], [0xFE])  # 2^127 * 2^127 * 1 * 1
    assert bits(matmul(a, b, model)) == [[F32_INF]]


def test_huge_block_cancelled_by_its_negative_is_finite_only_when_exact():
    # block 0: +1 * 2^254, block 1: -1 * 2^254, block 2: 1 * 1 (scales 2^0).
    a, b = one(
        lanes(96, l0=0x38, l32=0xB8, l64=0x38),
        lanes(96, l0=0x38, l32=0x38, l64=0x38),
        [0xFE, 0xFE, 0x7F],
        [0xFE, 0xFE, 0x7F],
    )
    assert bits(matmul(a, b, "exact")) == [[f32_bits(Fraction(1))]]
    # IEEE: RN(+0 + 2^254) = +Inf; +Inf + (-2^254) = +Inf (a finite addend); +Inf + 1 = +Inf
    for model in ("block_fp32", "fixed_point:25:32", "fixed_point:14:32"):
        assert bits(matmul(a, b, model)) == [[F32_INF]], model
    # with the cancelling pair inside one fixed-point group of 64 the group is exactly 0
    assert bits(matmul(a, b, "fixed_point:25:64")) == [[f32_bits(Fraction(1))]]


def test_huge_products_cancelling_inside_one_block_are_finite_everywhere():
    a, b = one(
        lanes(64, l0=0x38, l1=0xB8, l32=0x38),
        lanes(64, l0=0x38, l1=0x38, l32=0x38),
        [0xFE, 0x7F],
        [0xFE, 0x7F],
    )
    for model in MODELS:
        assert bits(matmul(a, b, model)) == [[f32_bits(Fraction(1))]], model


@pytest.mark.parametrize("model", MODELS)
def test_scales_two_to_the_minus_254_underflow_with_rne(model):
    tiny = [0x00]  # 2^-127
    a, b = one(lanes(32, l0=0x38), lanes(32, l0=0x38), tiny, tiny)
    assert bits(matmul(a, b, model)) == [[0x00000000]]  # 2^-254 rounds to +0
    a, b = one(lanes(32, l0=0xB8), lanes(32, l0=0x38), tiny, tiny)
    assert bits(matmul(a, b, model)) == [[0x80000000]]  # -2^-254 rounds to -0, sign kept


@pytest.mark.parametrize(
    ("code_a", "scale_b", "want"),
    [
        (0x38, 0x7F, 0x00400000),  # 2^-127 * 1: the float32 subnormal 2^-127
        (0x38, 0x68, 0x00000000),  # 2^-127 * 2^-23 = 2^-150: a tie, to even (zero)
        (0x3C, 0x68, 0x00000001),  # 1.5 * 2^-150: above the tie, min subnormal 2^-149
        (0x3C, 0x69, 0x00000002),  # 1.5 * 2^-149: tie between 1 and 2 quanta, to even (2)
        (0x3A, 0x69, 0x00000001),  # 1.25 * 2^-149: below the tie, 1 quantum
    ],
)
def test_subnormal_results_round_to_nearest_even(code_a, scale_b, want):
    a, b = one(lanes(32, l0=code_a), lanes(32, l0=0x38), [0x00], [scale_b])
    for model in ("exact", "block_fp32", "fixed_point:25:32"):
        assert bits(matmul(a, b, model)) == [[want]], model


def test_flush_subnormals_gives_a_zero_of_the_accumulators_sign():
    # -1 * 2^-127 * 2^-3 = -2^-130, a float32 subnormal (2^19 quanta of 2^-149)
    a, b = one(lanes(32, l0=0xB8), lanes(32, l0=0x38), [0x00], [0x7C])
    assert bits(matmul(a, b, "exact")) == [[0x80080000]]
    assert bits(matmul(a, b, "block_fp32")) == [[0x80080000]]
    assert bits(matmul(a, b, "block_fp32:ftz")) == [[0x80000000]]
    assert bits(matmul(a, b, "fixed_point:25:32:ftz")) == [[0x80000000]]
    # flushing happens after every add, so a later block cannot build on the subnormal
    a, b = one(
        lanes(64, l0=0xB8, l32=0x38), lanes(64, l0=0x38, l32=0x38), [0x00, 0x00], [0x7C, 0x7D]
    )
    assert bits(matmul(a, b, "block_fp32")) == [[f32_bits(Fraction(1, 2**130))]]
    assert bits(matmul(a, b, "block_fp32:ftz")) == [[0x00000000]]  # -0 + 2^-129, flushed


def test_fp32_add_signs_of_zero():
    neg_zero, pos_zero = (1, Fraction(0)), (0, Fraction(0))
    assert fp32_add(neg_zero, Fraction(0)) == pos_zero  # -0 + (+0) = +0 under RNE
    assert fp32_add((1, Fraction(3)), Fraction(3)) == pos_zero  # x + (-x) = +0
    assert fp32_add((0, math.inf), Fraction(-(2**200))) == (0, math.inf)
    assert fp32_add((0, math.inf), -math.inf)[1] != fp32_add((0, math.inf), -math.inf)[1]  # NaN
    assert fp32_add((0, Fraction(2**24)), Fraction(1)) == (0, Fraction(2**24))  # tie to even
    assert fp32_add((0, Fraction(2**24)), Fraction(3)) == (0, Fraction(2**24 + 4))


# --- (5) K not a multiple of the block size ------------------------------------------------------


@pytest.mark.parametrize("model", [*MODELS, "fixed_point:14:64", "fixed_point:25:128:rne"])
def test_short_last_block_equals_zero_padding(model):
    rng = np.random.default_rng(5)
    k, padded = 40, 64
    codes_a = rng.integers(0, 256, size=(3, k), dtype=np.uint8)
    codes_b = rng.integers(0, 256, size=(2, k), dtype=np.uint8)
    for codes in (codes_a, codes_b):  # keep it finite: E4M3's NaN codes to max normal
        codes[(codes & 0x7F) == 0x7F] -= 1
    scales_a = rng.integers(0x70, 0x8F, size=(3, 2), dtype=np.uint8)
    scales_b = rng.integers(0x70, 0x8F, size=(2, 2), dtype=np.uint8)
    pad_a = np.zeros((3, padded), np.uint8)
    pad_b = np.zeros((2, padded), np.uint8)
    pad_a[:, :k], pad_b[:, :k] = codes_a, codes_b
    short = matmul(
        MXArray(codes_a, scales_a, E4M3, 1, 32), MXArray(codes_b, scales_b, E4M3, 1, 32), model
    )
    long = matmul(
        MXArray(pad_a, scales_a, E4M3, 1, 32), MXArray(pad_b, scales_b, E4M3, 1, 32), model
    )
    assert bits(short) == bits(long)
    # and B given K x N (blocked on axis 0) is the same problem
    b_kn = MXArray(np.ascontiguousarray(codes_b.T), np.ascontiguousarray(scales_b.T), E4M3, 0, 32)
    assert bits(matmul(MXArray(codes_a, scales_a, E4M3, 1, 32), b_kn, model)) == bits(short)


# --- (6) mixed formats ---------------------------------------------------------------------------


def test_mixed_e4m3_times_fp4_by_hand():
    # A (e4m3): 448 on lane 0, -2^-6 on lane 5; X_A = 2^-3.
    # B (fp4):    6 on lane 0,  0.5 on lane 5;  X_B = 2^1.
    # D = 2^-2 * (448 * 6 - 2^-6 * 0.5) = 672 - 2^-9, which float32 holds.
    a = mx([lanes(32, l0=0x7E, l5=0x88)], [[0x7C]], E4M3)
    b = mx([[c] for c in lanes(32, l0=0x7, l5=0x1)], [[0x80]], FP4, axis=0)
    want = f32_bits(Fraction(672) - Fraction(1, 512))
    for model in ("exact", "block_fp32", "fixed_point:25:32", "block_fp32:ftz"):
        assert bits(matmul(a, b, model)) == [[want]], model
    # 14 bits from 672's leading bit (2^9) keep multiples of 2^-4: the -2^-9 truncates away
    assert bits(matmul(a, b, "fixed_point:14:32")) == [[f32_bits(Fraction(672))]]
    # and the other way round (fp4 x e4m3) gives the same
    a2 = mx([lanes(32, l0=0x7, l5=0x1)], [[0x80]], FP4)
    b2 = mx([[c] for c in lanes(32, l0=0x7E, l5=0x88)], [[0x7C]], E4M3, axis=0)
    assert bits(matmul(a2, b2)) == [[want]]


# --- (7) exact does not depend on block order ----------------------------------------------------


def test_exact_is_independent_of_block_order():
    rng = np.random.default_rng(11)
    nb = 4
    codes_a = rng.integers(0, 256, size=(2, 32 * nb), dtype=np.uint8)
    codes_b = rng.integers(0, 256, size=(3, 32 * nb), dtype=np.uint8)
    for codes in (codes_a, codes_b):
        codes[(codes & 0x7F) == 0x7F] -= 1
    scales_a = rng.integers(0x60, 0xA0, size=(2, nb), dtype=np.uint8)
    scales_b = rng.integers(0x60, 0xA0, size=(3, nb), dtype=np.uint8)
    perm = [2, 0, 3, 1]
    lane_perm = np.concatenate([np.arange(32 * p, 32 * p + 32) for p in perm])

    def run(ca, sa, cb, sb, model):
        return bits(matmul(MXArray(ca, sa, E4M3, 1, 32), MXArray(cb, sb, E4M3, 1, 32), model))

    base = run(codes_a, scales_a, codes_b, scales_b, "exact")
    permuted = run(
        codes_a[:, lane_perm], scales_a[:, perm], codes_b[:, lane_perm], scales_b[:, perm], "exact"
    )
    assert base == permuted


# --- fixed-point groups and blocks ---------------------------------------------------------------


def test_group_value_truncates_toward_zero_or_rounds_to_even():
    q = Fraction(1, 2**24)  # the quantum for width 25 when the largest product is in [1, 2)
    trunc, rne = AlignRounding.TRUNCATE, AlignRounding.RNE
    assert group_value([Fraction(1), q * Fraction(3, 4)], 25, trunc) == 1
    assert group_value([Fraction(1), q * Fraction(3, 4)], 25, rne) == 1 + q
    assert group_value([Fraction(1), -q * Fraction(3, 4)], 25, trunc) == 1  # toward zero
    assert group_value([Fraction(1), -q * Fraction(3, 4)], 25, rne) == 1 - q
    assert group_value([Fraction(1), q * Fraction(5, 2)], 25, rne) == 1 + 2 * q  # tie to even
    assert group_value([Fraction(1), q * Fraction(7, 2)], 25, rne) == 1 + 4 * q
    assert group_value([Fraction(1), q * Fraction(7, 2)], 25, trunc) == 1 + 3 * q
    assert group_value([Fraction(0), Fraction(0)], 25, trunc) == 0
    assert group_value([Fraction(-3, 2)], 2, trunc) == Fraction(-3, 2)  # 2 bits hold 1.5
    assert group_value([Fraction(-7, 4)], 2, trunc) == Fraction(-3, 2)
    assert group_value([Fraction(-7, 4)], 2, rne) == -2
    assert is_nan(group_value([Fraction(1), math.nan], 25, trunc))
    assert group_value([Fraction(1), -math.inf], 25, trunc) == -math.inf


def test_fixed_point_group_spanning_blocks_uses_each_blocks_scales():
    # block 0 (scales 2^5 x 2^5): lane 0 = 1 * 2^10; block 1 (scales 2^0): lane 32 = 2^-4.
    a, b = one(
        lanes(64, l0=0x38, l32=0x18), lanes(64, l0=0x38, l32=0x38), [0x84, 0x7F], [0x84, 0x7F]
    )
    exact = Fraction(1024) + Fraction(1, 16)
    assert bits(matmul(a, b, "exact")) == [[f32_bits(exact)]]
    # groups of 32 align each block alone: nothing is lost
    assert bits(matmul(a, b, "fixed_point:14:32")) == [[f32_bits(exact)]]
    # one group of 64: e_max = 10, quantum 2^(11-14) = 1/8, and 1/16 truncates to 0
    assert bits(matmul(a, b, "fixed_point:14:64")) == [[f32_bits(Fraction(1024))]]
    # ... or rounds to even (half a quantum, 0 is even)
    assert bits(matmul(a, b, "fixed_point:14:64:rne")) == [[f32_bits(Fraction(1024))]]


def test_fixed_point_group_need_not_align_with_blocks():
    # block size 24, K = 48: blocks [0, 24) and [24, 48); groups of 32: [0, 32) and [32, 48).
    # lane 0 (block 0, scale 1): 1.  lanes 30 and 40 (block 1, scales 2^-10 x 2^-10): 2^-20 each.
    a, b = one(
        lanes(48, l0=0x38, l30=0x38, l40=0x38),
        lanes(48, l0=0x38, l30=0x38, l40=0x38),
        [0x7F, 0x75],
        [0x7F, 0x75],
        block_size=24,
    )
    tiny = Fraction(1, 2**20)
    assert bits(matmul(a, b, "exact")) == [[f32_bits(1 + 2 * tiny)]]
    assert bits(matmul(a, b, "block_fp32")) == [[f32_bits(1 + 2 * tiny)]]
    # group 0 holds 1 and lane 30's 2^-20: quantum 2^(1-14), so 2^-20 truncates away
    assert bits(matmul(a, b, "fixed_point:14:32")) == [[f32_bits(1 + tiny)]]


# --- (8) C and the output type -------------------------------------------------------------------


def single_rounding_operands(low: int) -> tuple[MXArray, MXArray]:
    """Exact value 1 + 2^-low + 2^-30 (block 0: 1 and 2^-low; block 1: 2^-30).

    Block 1 is 2^-9 * 2^-9 (code 0x01 twice) under scales 2^-6 x 2^-6.
    """
    half = {11: (0x10, 0x08), 8: (0x18, 0x18)}[low]  # 2^-5 * 2^-6, or 2^-4 * 2^-4
    a_codes = lanes(64, l0=0x38, l1=half[0], l32=0x01)
    b_codes = lanes(64, l0=0x38, l1=half[1], l32=0x01)
    return one(a_codes, b_codes, [0x7F, 0x79], [0x7F, 0x79])


def test_float16_output_is_rounded_once_from_the_exact_value():
    # 1 + 2^-11 + 2^-30: float16's ulp at 1 is 2^-10, so this is just above a tie: 1 + 2^-10.
    # Via float32 it would be 1 + 2^-11 first (2^-30 < half of float32's ulp), then a tie -> 1.
    a, b = single_rounding_operands(11)
    assert bits(matmul(a, b, "exact", np.float16)) == [[0x3C01]]
    via_f32 = matmul(a, b, "exact").astype(np.float16)  # what double rounding would give
    assert bits(via_f32) == [[0x3C00]]
    # the float32-accumulator models round their float32 accumulator: 1 + 2^-11, then a tie
    assert bits(matmul(a, b, "block_fp32", np.float16)) == [[0x3C00]]
    assert matmul(a, b, "exact", np.float16).dtype == np.float16


def test_bfloat16_output_is_rounded_once_from_the_exact_value():
    # 1 + 2^-8 + 2^-30: bfloat16's ulp at 1 is 2^-7, so 1 + 2^-7 (0x3F81); via float32, 1.
    a, b = single_rounding_operands(8)
    d = matmul(a, b, "exact", ml_dtypes.bfloat16)
    assert d.dtype == np.dtype(ml_dtypes.bfloat16)
    assert bits(d) == [[0x3F81]]
    assert bits(matmul(a, b, "exact", "bfloat16")) == [[0x3F81]]
    assert bits(matmul(a, b, "exact").astype(ml_dtypes.bfloat16)) == [[0x3F80]]
    assert bits(matmul(a, b, "block_fp32", ml_dtypes.bfloat16)) == [[0x3F80]]


def test_c_is_added_exactly_or_as_the_accumulator_start():
    # C = 2^24 and two blocks contributing 1 each.
    a, b = one(lanes(64, l0=0x38, l32=0x38), lanes(64, l0=0x38, l32=0x38), [0x7F] * 2, [0x7F] * 2)
    c = np.array([[2.0**24]], np.float32)
    assert bits(matmul(a, b, "exact", c=c)) == [[f32_bits(Fraction(2**24 + 2))]]
    # each add is 2^24 + 1, a tie that goes back to 2^24 (even)
    assert bits(matmul(a, b, "block_fp32", c=c)) == [[f32_bits(Fraction(2**24))]]
    assert bits(matmul(a, b, "fixed_point:25:32", c=c)) == [[f32_bits(Fraction(2**24))]]
    # C cancelling the products exactly: +0
    c = np.array([[-2.0]], np.float32)
    for model in MODELS:
        assert bits(matmul(a, b, model, c=c)) == [[0x00000000]], model


@pytest.mark.parametrize("model", MODELS)
def test_c_special_values(model):
    zero_a, zero_b = one(lanes(32), lanes(32), [0x7F], [0x7F])
    # -0.0 plus an exact zero: +0 (the exact sum has no sign; IEEE -0 + +0 is +0)
    c = np.array([[-0.0]], np.float32)
    assert bits(matmul(zero_a, zero_b, model, c=c)) == [[0x00000000]]
    for value, want in ((np.nan, F32_NAN), (-np.inf, F32_NEG_INF), (np.inf, F32_INF)):
        c = np.array([[value]], np.float32)
        assert bits(matmul(zero_a, zero_b, model, c=c)) == [[want]], value
    # C = +Inf and a -Inf product: NaN
    a, b = one(lanes(32, l0=0xFC), lanes(32, l0=0x3C), [0x7F], [0x7F], E5M2)
    assert bits(matmul(a, b, model, c=np.array([[np.inf]], np.float32))) == [[F32_NAN]]
    # a negative-NaN C still gives the canonical (positive) quiet NaN
    neg_nan = np.array([[0xFFC00001]], np.uint32).view(np.float32)
    assert bits(matmul(zero_a, zero_b, model, c=neg_nan)) == [[F32_NAN]]


def test_c_per_element_and_shapes():
    # A 2 x 32, B 32 x 3 (N x K given), all products 1 on lane 0
    a = mx([lanes(32, l0=0x38)] * 2, [[0x7F]] * 2, E4M3)
    b = mx([lanes(32, l0=0x38)] * 3, [[0x7F]] * 3, E4M3)
    c = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = matmul(a, b, "exact", c=c)
    assert d.shape == (2, 3)
    assert d.dtype == np.float32
    assert bits(d) == [[f32_bits(Fraction(v)) for v in row] for row in ([1, 2, 3], [4, 5, 6])]


def test_argument_errors():
    a, b = one(lanes(32, l0=0x38), lanes(32, l0=0x38), [0x7F], [0x7F])
    with pytest.raises(TypeError, match="c must be a float32 array"):
        matmul(a, b, c=np.zeros((1, 1), np.float64))
    with pytest.raises(TypeError, match="c must be a float32 numpy array"):
        matmul(a, b, c=[[0.0]])
    with pytest.raises(ValueError, match=r"c must have shape \(M, N\) = \(1, 1\)"):
        matmul(a, b, c=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="out_dtype must be float32, float16 or bfloat16"):
        matmul(a, b, out_dtype=np.float64)
    with pytest.raises(ValueError, match="out_dtype must be"):
        matmul(a, b, out_dtype="no such type")
    with pytest.raises(ValueError, match="is not one of"):
        matmul(a, b, accum="fp16_accumulate")
    with pytest.raises(TypeError, match="model must be Exact, BlockFP32 or FixedPoint"):
        matmul_operands(operands(a, b), "exact")  # type: ignore[arg-type]


def test_model_objects_and_strings_agree():
    a, b = models_differ_operands()
    ops = operands(a, b)
    pairs = [
        (Exact(), "exact"),
        (BlockFP32(), "block_fp32"),
        (FixedPoint(25, 32), "fixed_point:25:32"),
        (FixedPoint(14, 32, AlignRounding.RNE), "fixed_point:14:32:rne"),
    ]
    for model, name in pairs:
        assert bits(matmul_operands(ops, model)) == bits(matmul(a, b, name)), name
