"""mxref.matmul on NVFP4 operands against the oracle mxref.ref.nvfp4_gemm, bit for bit.

The fast path (:mod:`mxref.nvfp4_gemm`) has three ways to an output: one
BLAS product where a bound proves it exact, the MX exact kernel on folded
integers, and an exact fallback where the float64 epilogue cannot decide the
rounding.  The tests force each of them and compare bit patterns with the
oracle; the hand-made cases also state the expected bits themselves.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral); NVFP4 per docs/gemm.md.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mxref
import mxref.nvfp4_gemm as fast
from mxref.array import MXArray
from mxref.ref import gemm as ref_mx
from mxref.ref import nvfp4_gemm as ref
from mxref.ref.element import BINARY32, decode_element, encode_float
from mxref.ref.nvfp4 import E2M1, decode_block_scale
from mxref.testing.strategies import PROFILE

NV = mxref.get_format("nvfp4", two_level=True)
DOCS_GEMM = Path(__file__).resolve().parents[2] / "docs" / "gemm.md"
MODELS = ["exact", "block_fp32", "block_fp32:ftz", "fixed_point:25:32", "fixed_point:14:32:rne"]
DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16]
F32_NAN = 0x7FC00000


def nv(codes, scales, g, axis=1, block_size=16) -> MXArray:
    """An NVFP4 MXArray from nested lists (codes, E4M3 bytes) and a tensor scale."""
    return MXArray(np.array(codes, np.uint8), np.array(scales, np.uint8), NV, axis, block_size,
                   np.array(g, np.float32))  # fmt: skip


def bits(d: np.ndarray) -> np.ndarray:
    return d.view(np.uint32 if d.dtype.itemsize == 4 else np.uint16)


def assert_same(a, b, accum, out_dtype=np.float32, c=None) -> np.ndarray:
    got = mxref.matmul(a, b, accum=accum, out_dtype=out_dtype, c=c)
    want = ref.matmul(a, b, accum, out_dtype, c)
    assert got.dtype == want.dtype
    bad = np.argwhere(bits(got) != bits(want))
    assert not bad.size, (accum, np.dtype(out_dtype).name, bad[:4].tolist(),
                          bits(got)[tuple(bad[0])], bits(want)[tuple(bad[0])])  # fmt: skip
    return got


@pytest.fixture
def paths(monkeypatch):
    """Count the calls of each path of the fast implementation."""
    calls: Counter[str] = Counter()
    for name in ("epilogue_blas", "matmul_exact_kernel", "matmul_exact_pairs", "_exact_fallback"):
        original = getattr(fast, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(fast, name, counted)
    return calls


def quantized(m, n, k, seed, *, per_row_a=False, per_row_b=False, b_axis=0, spread=0):
    """Gaussian A (m x k) and B (k x n, or n x k for b_axis 1), quantized to NVFP4."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)) * np.exp2(rng.integers(-spread, spread + 1, (m, k)))
    y = rng.standard_normal((k, n)) * np.exp2(rng.integers(-spread, spread + 1, (k, n)))
    a = mxref.quantize(x.astype(np.float32), "nvfp4", per_row=per_row_a)
    if b_axis == 0:
        return a, mxref.quantize(y.astype(np.float32), "nvfp4", axis=0, per_row=per_row_b)
    b = mxref.quantize(np.ascontiguousarray(y.T).astype(np.float32), "nvfp4", per_row=per_row_b)
    return a, b


# --- hypothesis: any codes, scale bytes and tensor scales -------------------------------------

_SCALE_BYTES = st.one_of(st.integers(0x01, 0x7E), st.sampled_from([0x00, 0x01, 0x38, 0x7E, 0x7F]))
_G = st.one_of(
    st.sampled_from([1.0, 2.0, 0.5, 3.0, 2.0**-149, 2.0**127, 1e-30, 448.0 * 6]),
    st.floats(2.0**-20, 2.0**20, width=32),
)
_C = st.one_of(
    st.floats(-1e4, 1e4, width=32),
    st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 1e38, -1e-45]),
)


@st.composite
def problems(draw):
    m, n = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = draw(st.integers(0, 50))
    nb = -(-k // 16)
    nan_weight = draw(st.sampled_from([0, 0, 1]))  # NaN bytes in some draws only

    def byte():
        b = draw(_SCALE_BYTES)
        return b if b != 0x7F or nan_weight else 0x38

    def g(rows):
        if draw(st.booleans()):
            return draw(_G)
        return [draw(_G) for _ in range(rows)]

    a = nv([[draw(st.integers(0, 15)) for _ in range(k)] for _ in range(m)],
           [[byte() for _ in range(nb)] for _ in range(m)], g(m))  # fmt: skip
    b_rows = [[draw(st.integers(0, 15)) for _ in range(k)] for _ in range(n)]
    b_scales = [[byte() for _ in range(nb)] for _ in range(n)]
    if draw(st.booleans()):
        b = nv(b_rows, b_scales, g(n))
    else:  # K x N, blocked along axis 0
        codes_kn = np.array(b_rows, np.uint8).T.reshape(k, n)
        b = nv(codes_kn, np.array(b_scales, np.uint8).T.reshape(nb, n), g(n), axis=0)
    c = None
    if draw(st.booleans()):
        c = np.array([[draw(_C) for _ in range(n)] for _ in range(m)], np.float32)
    return a, b, c


@settings(settings.get_profile(PROFILE), max_examples=120)
@given(problems(), st.sampled_from(MODELS), st.sampled_from(DTYPES), st.booleans())
def test_fast_path_equals_the_oracle(problem, accum, out_dtype, force_blas):
    a, b, c = problem
    saved = fast.BLAS_MIN_WORK
    fast.BLAS_MIN_WORK = 0 if force_blas else saved
    try:
        with np.errstate(all="ignore"):
            assert_same(a, b, accum, out_dtype, c)
    finally:
        fast.BLAS_MIN_WORK = saved


# --- structured cases --------------------------------------------------------------------------


@pytest.mark.parametrize("b_axis", [0, 1])
@pytest.mark.parametrize("per_row", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("force_blas", [False, True])
def test_tensor_scales_per_tensor_and_per_row_both_layouts(monkeypatch, b_axis, per_row,
                                                           force_blas):  # fmt: skip
    if force_blas:
        monkeypatch.setattr(fast, "BLAS_MIN_WORK", 0)
    a, b = quantized(5, 4, 37, seed=3, per_row_a=per_row[0], per_row_b=per_row[1],
                     b_axis=b_axis, spread=3)  # fmt: skip
    c = np.random.default_rng(4).standard_normal((5, 4)).astype(np.float32)
    for accum in MODELS:
        for dt in DTYPES:
            assert_same(a, b, accum, dt, c if dt is np.float16 else None)


def test_a_per_row_scale_is_per_output_row_and_b_per_column():
    # one nonzero lane: D[i, j] = 6 * 6 / (G_a[i] * G_b[j]), exact in float32
    a = nv([[7] + [0] * 15, [7] + [0] * 15], [[0x38], [0x38]], [1.0, 2.0])
    b = nv([[7] + [0] * 15] * 3, [[0x38]] * 3, [1.0, 4.0, 0.5])
    got = mxref.matmul(a, b)
    want = np.array([[36 / (ga * gb) for gb in (1.0, 4.0, 0.5)] for ga in (1.0, 2.0)], np.float32)
    assert np.array_equal(bits(got), bits(want))
    assert_same(a, b, "exact")


def test_c_zero_inf_and_nan():
    a = nv([[7] + [0] * 15, [0] * 16], [[0x38], [0x38]], 1.0)
    b = nv([[0xF] + [0] * 15, [0] * 16], [[0x38], [0x38]], 1.0)  # -6, then zeros
    c = np.array([[36.0, -0.0], [np.inf, np.nan]], np.float32)
    for accum in MODELS:
        d = assert_same(a, b, accum, np.float32, c)
        # -36 + 36 and 0 + -0 are exact zeros: +0; Inf and NaN come through
        assert bits(d).tolist() == [[0, 0], [0x7F800000, F32_NAN]], accum
    c = np.array([[-np.inf, np.inf], [-1.0, 0.0]], np.float32)
    for accum in MODELS:
        assert bits(assert_same(a, b, accum, np.float32, c))[0].tolist() == [0xFF800000, 0x7F800000]


@pytest.mark.parametrize("force_blas", [False, True])
def test_nan_block_scale_makes_its_row_or_column_nan(monkeypatch, force_blas):
    if force_blas:
        monkeypatch.setattr(fast, "BLAS_MIN_WORK", 0)
    a, b = quantized(4, 3, 48, seed=5, b_axis=1)
    a_scales = a.scales.copy()
    a_scales[1, 2] = 0x7F  # its codes are nonzero: the NaN scale wins anyway
    b_scales = b.scales.copy()
    b_scales[2, 0] = 0x7F
    a = MXArray(a.codes, a_scales, NV, 1, 16, a.tensor_scale)
    b = MXArray(b.codes, b_scales, NV, 1, 16, b.tensor_scale)
    c = np.full((4, 3), np.inf, np.float32)
    for accum in MODELS:
        d = assert_same(a, b, accum, np.float32, c)
        nan = bits(d) == F32_NAN
        assert (bool(nan[1].all()), bool(nan[:, 2].all()), int(nan.sum())) == (True, True, 6)


def test_zero_scale_byte_contributes_zero():
    a = nv([[7] * 32], [[0x00, 0x38]], 1.0)
    b = nv([[7] * 32], [[0x7E, 0x38]], 1.0)
    for accum in MODELS:
        d = assert_same(a, b, accum)
        assert d[0, 0] == np.float32(16 * 36), accum  # block 0 is zero, whatever B holds


def near_midpoint(half_ulp: float, g_a: float, tiny: int) -> tuple[MXArray, MXArray]:
    """Operands with ``S = 3 * 2**27 * half_ulp + tiny * 2**-20`` (two blocks).

    Block 0 holds ``lanes`` products 6 * 2 * 4**e (codes 7 and 4, scales
    2**e): ``lanes * 12 * 4**e = 3 * 2**27 * half_ulp``.  Block 1 holds 0 or
    +-0.5 * 2**-9 on each side, the smallest NVFP4 product.
    """
    k2 = 25 + round(np.log2(half_ulp))  # lanes * 4**e = 2**k2
    e = min(8, k2 // 2)
    lanes = 2 ** (k2 - 2 * e)
    byte = (e + 7) << 3  # E4M3 2**e
    a_codes = [7] * lanes + [0] * (16 - lanes) + [1 if tiny else 0] + [0] * 15
    b_codes = [4] * lanes + [0] * (16 - lanes) + [1 if tiny > 0 else 9] + [0] * 15
    return nv([a_codes], [[byte, 0x01]], g_a), nv([b_codes], [[byte, 0x01]], 1.0)


@pytest.mark.parametrize("accum", ["exact", "block_fp32", "fixed_point:14:32"])
@pytest.mark.parametrize("force_blas", [False, True])
@pytest.mark.parametrize(
    ("out_dtype", "half_ulp", "even"),
    [(np.float32, 2.0**-23, 0x40000000), (np.float16, 2.0**-10, 0x4000),
     (ml_dtypes.bfloat16, 2.0**-7, 0x4000)],
)  # fmt: skip
def test_outputs_on_and_next_to_a_midpoint_take_the_exact_fallback(
    monkeypatch, paths, accum, force_blas, out_dtype, half_ulp, even
):
    # The midpoint is m = 2 + half an ulp of 2 in the output type, between the
    # even 2 and the odd next value.  With P no power of two the float64
    # epilogue bounds its error (about 2**-45 here) and cannot decide values
    # that close to m: the exact fallback rounds them.
    if force_blas:
        monkeypatch.setattr(fast, "BLAS_MIN_WORK", 0)
    two = np.array([[2.0]], np.float32)
    # the float32 accumulators round the tiny lane away (3 * 2**27 * half_ulp is
    # at least 48, whose float32 ulp is 2**-18): their X / P is m - 2 itself
    lost = accum != "exact"
    cases = [
        # on it: S = 6 * 1, P = 3, S / P = 2 exactly and C = half an ulp: a tie, to even
        (nv([[7] + [0] * 15], [[0x38]], 3.0), nv([[2] + [0] * 15], [[0x38]], 1.0),
         np.array([[half_ulp]], np.float32), even),
        # on it again: P = 3 * 2**27, S / P = half an ulp, and C = 2
        (*near_midpoint(half_ulp, 3.0 * 2**27, 0), two, even),
        # next to it: S / P = half an ulp +- 2**-20 / (3 * 2**27), about 2**-48.6
        (*near_midpoint(half_ulp, 3.0 * 2**27, 1), two, even if lost else even + 1),
        (*near_midpoint(half_ulp, 3.0 * 2**27, -1), two, even),
    ]  # fmt: skip
    for a, b, c, want in cases:
        paths.clear()
        d = assert_same(a, b, accum, out_dtype, c)
        assert int(bits(d)[0, 0]) == want, hex(int(bits(d)[0, 0]))
        assert paths["_exact_fallback"] == 1, dict(paths)
    # with P = 2**27 the epilogue is exact itself (TwoSum, round to odd): S / P
    # is three half ulps (a tie between the odd 2 + ulp and the even 2 + 2 ulp),
    # +- 2**-47; and 6 / 4 + (0.5 + half an ulp) is m
    cases = [
        (*near_midpoint(half_ulp, 2.0**27, 0), two, even + 2),
        (*near_midpoint(half_ulp, 2.0**27, 1), two, even + 2),
        (*near_midpoint(half_ulp, 2.0**27, -1), two, even + (2 if lost else 1)),
        (nv([[7] + [0] * 15], [[0x38]], 4.0), nv([[2] + [0] * 15], [[0x38]], 1.0),
         np.array([[0.5 + half_ulp]], np.float32), even),
    ]  # fmt: skip
    for a, b, c, want in cases:
        paths.clear()
        d = assert_same(a, b, accum, out_dtype, c)
        assert int(bits(d)[0, 0]) == want, hex(int(bits(d)[0, 0]))
        assert paths["_exact_fallback"] == 0, dict(paths)


@pytest.mark.parametrize("out_dtype", DTYPES)
def test_overflow_to_inf_and_underflow_keeping_the_sign(out_dtype):
    # P = 2**-298: 36 / P overflows every output type
    a = nv([[7] + [0] * 15], [[0x38]], 2.0**-149)
    b = nv([[7] + [0] * 15, [0xF] + [0] * 15], [[0x38], [0x38]], 2.0**-149)
    for accum in MODELS:
        d = assert_same(a, b, accum, out_dtype)
        assert d[0].tolist() == [np.inf, -np.inf], accum
    # P = 2**254: 2**-20 * 2**-254 rounds to a zero of its sign; larger ones to subnormals
    a = nv([[1] + [0] * 15, [7] * 16], [[0x01], [0x7E]], 2.0**127)
    b = nv([[1] + [0] * 15, [0x9] + [0] * 15], [[0x01], [0x01]], 2.0**127)
    for accum in MODELS:
        d = assert_same(a, b, accum, out_dtype)
        assert bits(d)[0, 1] == (0x80000000 if out_dtype is np.float32 else 0x8000), accum


def test_float16_overflow_of_a_float32_finite_value():
    a = nv([[7] * 16], [[0x7E]], 1.0)  # 6 * 448 per lane
    b = nv([[7] * 16], [[0x7E]], 1.0)
    assert np.isposinf(assert_same(a, b, "exact", np.float16)[0, 0])
    assert np.isfinite(assert_same(a, b, "exact", np.float32)[0, 0])


@pytest.mark.parametrize("k", [1, 15, 17, 33, 47])
def test_k_not_a_multiple_of_16(k):
    a, b = quantized(3, 2, k, seed=k, b_axis=0, spread=2)
    for accum in MODELS:
        assert_same(a, b, accum)


def test_fixed_point_group_spans_blocks_with_their_own_scales():
    # a group of 32 lanes covers two blocks; lane 16 carries 2**-9 * 448: a
    # width of 8 bits below the leading 36 keeps quanta of 2**-2, so -0.875 is
    # cut to -0.75 (truncation) or -1 (RNE, 3.5 quanta to even 4)
    a = nv([[7, 1] + [0] * 14 + [2] + [0] * 15], [[0x38, 0x01]], 1.0)
    b = nv([[7, 1] + [0] * 14 + [0xA] + [0] * 15], [[0x38, 0x7E]], 1.0)
    want = {
        "exact": Fraction(283, 8),
        "block_fp32": Fraction(283, 8),
        "fixed_point:8:32": Fraction(36) + Fraction(1, 4) - Fraction(3, 4),
        "fixed_point:8:32:rne": Fraction(36) + Fraction(1, 4) - 1,
    }
    for accum, value in want.items():
        d = assert_same(a, b, accum)
        assert Fraction(float(d[0, 0])) == value, accum


def test_blas_and_kernel_paths_are_both_exercised(monkeypatch, paths):
    monkeypatch.setattr(fast, "BLAS_MIN_WORK", 0)
    # a row whose blocks span 2**-9 to 448 with many large lanes: its block_fp32
    # bound passes 2**24 (kernel), while the other rows stay on the BLAS path
    k = 64
    codes = np.full((3, k), 7, np.uint8)
    scales = np.array([[0x01, 0x7E, 0x7E, 0x7E], [0x38] * 4, [0x30] * 4], np.uint8)
    a = MXArray(codes, scales, NV, 1, 16, np.array(3.0, np.float32))
    b = MXArray(codes.copy(), scales.copy(), NV, 1, 16, np.array(1.0, np.float32))
    assert_same(a, b, "block_fp32")
    assert (paths["epilogue_blas"], paths["matmul_exact_pairs"]) == (1, 1), dict(paths)
    assert paths["matmul_exact_kernel"] == 0
    # exact: the bound is 2**53; 2048 lanes of 6 * 448 beside 2**-9 pass it
    k = 2048
    codes = np.full((2, k), 7, np.uint8)
    scales = np.full((2, k // 16), 0x7E, np.uint8)
    scales[:, 0] = 0x01
    scales[1] = 0x38
    a = MXArray(codes, scales, NV, 1, 16, np.array(3.0, np.float32))
    paths.clear()
    assert_same(a, a, "exact")
    assert (paths["epilogue_blas"], paths["matmul_exact_pairs"]) == (1, 1), dict(paths)
    # small problems skip BLAS
    monkeypatch.setattr(fast, "BLAS_MIN_WORK", 1 << 60)
    paths.clear()
    assert_same(a, a, "exact")
    assert (paths["epilogue_blas"], paths["matmul_exact_kernel"]) == (0, 1), dict(paths)


def test_large_gaussian_problem_on_the_blas_path(paths):
    a, b = quantized(16, 16, 1024, seed=11, b_axis=0)
    assert fast.BLAS_MIN_WORK <= 16 * 16 * 1024  # the default threshold, not forced
    c = np.random.default_rng(12).standard_normal((16, 16)).astype(np.float32)
    assert_same(a, b, "exact", np.float32, c)
    assert_same(a, b, "exact", ml_dtypes.bfloat16)
    assert (paths["epilogue_blas"], paths["matmul_exact_pairs"]) == (2, 0), dict(paths)


# --- the definitions ---------------------------------------------------------------------------


def test_exact_is_the_exact_dot_of_the_decoded_operands():
    a, b = quantized(3, 2, 40, seed=21, per_row_a=True, b_axis=1)
    table = [decode_element(code, E2M1) for code in range(E2M1.code_count)]

    def decoded(op, r, kk):
        sign, mag = table[int(op.codes[r, kk])]
        s = decode_block_scale(int(op.scales[r, kk // 16]))
        g = Fraction(float(op.tensor_scale.reshape(-1)[r if op.per_row else 0]))
        return (-1 if sign else 1) * mag * s / g

    d = mxref.matmul(a, b)
    for i in range(3):
        for j in range(2):
            value = sum(decoded(a, i, kk) * decoded(b, j, kk) for kk in range(40))
            assert int(bits(d)[i, j]) == encode_float((int(value < 0), abs(value)), BINARY32)


def test_unit_tensor_scales_reduce_to_the_mx_exact_model():
    # E4M3 bytes that are powers of two equal E8M0 bytes; with G = 1 the NVFP4
    # exact model is the MX one on mxfp4 operands with blocks of 16
    rng = np.random.default_rng(31)
    codes_a = rng.integers(0, 16, (3, 48), dtype=np.uint8)
    codes_b = rng.integers(0, 16, (2, 48), dtype=np.uint8)
    exps_a = rng.integers(-6, 9, (3, 3))  # E4M3 normal powers of two: 2**-6 .. 2**8
    exps_b = rng.integers(-6, 9, (2, 3))
    e4m3 = lambda e: ((e + 7) << 3).astype(np.uint8)  # noqa: E731  (mantissa 0)
    a = MXArray(codes_a, e4m3(exps_a), NV, 1, 16, np.array(1.0, np.float32))
    b = MXArray(codes_b, e4m3(exps_b), NV, 1, 16, np.array(1.0, np.float32))
    fp4 = mxref.get_format("mxfp4")
    a_mx = MXArray(codes_a, (exps_a + 127).astype(np.uint8), fp4, 1, 16)
    b_mx = MXArray(codes_b, (exps_b + 127).astype(np.uint8), fp4, 1, 16)
    c = rng.standard_normal((3, 2)).astype(np.float32)
    assert np.array_equal(bits(mxref.matmul(a, b, c=c)), bits(ref_mx.matmul(a_mx, b_mx, c=c)))


def test_docs_worked_example_matches_the_oracle():
    text = DOCS_GEMM.read_text(encoding="utf-8")
    a = nv([[7, 1] + [0] * 14 + [2] + [0] * 15], [[0x38, 0x01]], 2.0)
    b = nv([[7, 1] + [0] * 14 + [0xA] + [0] * 15], [[0x38, 0x7E]], 3.0)
    assert Fraction(float(ref.matmul(a, b)[0, 0])) == Fraction(12364459, 2**21)
    for accum, dt, width in (("exact", np.float32, 8), ("exact", np.float16, 4),
                             ("fixed_point:8:32", np.float32, 8)):  # fmt: skip
        hexbits = f"0x{int(bits(ref.matmul(a, b, accum, dt))[0, 0]):0{width}X}"
        assert hexbits in text, f"docs/gemm.md lacks {accum} {np.dtype(dt).name}'s {hexbits}"
        assert int(bits(mxref.matmul(a, b, accum=accum, out_dtype=dt))[0, 0]) == int(hexbits, 16)
    # dequantizing to float32 first, then a float32 dot, rounds differently
    naive = (mxref.dequantize(a) @ mxref.dequantize(b).T)[0, 0]
    assert f"0x{int(np.float32(naive).view(np.uint32)):08X}" in text


def test_dot_on_nvfp4_vectors():
    a, b = quantized(1, 1, 40, seed=41, b_axis=1)
    va = MXArray(a.codes[0], a.scales[0], NV, 0, 16, a.tensor_scale)
    vb = MXArray(b.codes[0], b.scales[0], NV, 0, 16, b.tensor_scale)
    for accum in MODELS:
        got = mxref.dot(va, vb, accum=accum)
        assert bits(np.array([got]))[0] == bits(ref.matmul(a, b, accum))[0, 0]


# --- errors --------------------------------------------------------------------------------------


def test_mixing_nvfp4_and_mx_is_refused_naming_both():
    a, b = quantized(2, 2, 32, seed=51, b_axis=0)
    mx_b = mxref.quantize(np.ones((32, 2), np.float32), "mxfp4", axis=0)
    mx_a = mxref.quantize(np.ones((2, 32), np.float32), "mxfp4")
    for x, y in ((a, mx_b), (mx_a, b)):
        with pytest.raises(ValueError, match=r"a is \w+ and b is \w+.*mxf4nvf4"):
            mxref.matmul(x, y)
        with pytest.raises(ValueError, match=r"a is \w+ and b is \w+"):
            ref.matmul(x, y)


def test_mismatched_block_size_and_other_argument_errors():
    x = np.ones((2, 64), np.float32)
    a16 = mxref.quantize(x, "nvfp4")
    b32 = mxref.quantize(x, "nvfp4", block_size=32)
    with pytest.raises(ValueError, match="share a block size"):
        mxref.matmul(a16, b32)
    with pytest.raises(ValueError, match="has K = 64 but b"):
        mxref.matmul(a16, mxref.quantize(np.ones((2, 48), np.float32), "nvfp4"))
    with pytest.raises(ValueError, match="c must have shape"):
        mxref.matmul(a16, a16, c=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="out_dtype"):
        mxref.matmul(a16, a16, out_dtype=np.float64)
    with pytest.raises(TypeError, match="b must be an MXArray"):
        mxref.matmul(a16, np.ones((64, 2)))
