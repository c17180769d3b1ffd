"""mxref.matmul against the exact GEMM oracle, bit for bit, plus its properties.

Operands are drawn as raw codes and raw E8M0 bytes, so every code (NaN and
Inf codes of E4M3/E5M2 included), NaN scales and the extreme scales 2**-127
and 2**127 (whose products leave the float32 range) all occur.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
"""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mxref
from mxref.ref import gemm as ref_gemm
from mxref.ref.element import BINARY32, encode_float
from spec_tests.assertions import assert_bits_equal

FORMATS = mxref.mx_format_names()
PAIRS = list(itertools.product(FORMATS, FORMATS))
SCALE_BYTES = st.one_of(
    st.sampled_from([0, 1, 126, 127, 128, 253, 254]),
    st.integers(110, 145),
    st.integers(0, 254),
    st.just(255),
)


def operand(draw, fmt, rows, k, bs, nan_scales):
    """An MXArray of raw codes and scale bytes, rows x k blocked along k."""
    finite = st.integers(0, fmt.code_count - 1)
    codes = draw(arrays(np.uint8, (rows, k), elements=finite))
    nblk = -(-k // bs)
    scale_bytes = SCALE_BYTES if nan_scales else SCALE_BYTES.filter(lambda b: b != 255)
    scales = draw(arrays(np.uint8, (rows, nblk), elements=scale_bytes))
    return mxref.MXArray(codes=codes, scales=scales, fmt=fmt, axis=1, block_size=bs)


@st.composite
def gemm_case(draw, fa, fb):
    bs = draw(st.sampled_from([32, 32, 8, 16]))
    m, n = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = draw(st.integers(1, 3 * bs + 5))
    nan_scales = draw(st.booleans())
    a = operand(draw, mxref.get_format(fa), m, k, bs, nan_scales)
    b = operand(draw, mxref.get_format(fb), n, k, bs, nan_scales)
    if draw(st.booleans()):  # the K x N layout blocked along axis 0
        b = mxref.MXArray(codes=b.codes.T.copy(), scales=b.scales.T.copy(), fmt=b.fmt, axis=0,
                          block_size=bs)  # fmt: skip
    c = None
    if draw(st.booleans()):
        bits = draw(arrays(np.uint32, (m, n), elements=st.integers(0, 2**32 - 1)))
        c = bits.view(np.float32)
    return a, b, c


ACCUMS = st.one_of(
    st.sampled_from(["exact", "block_fp32", "block_fp32:ftz", "b200-f8f6f4", "hopper-fp8"]),
    st.builds(
        lambda w, g, r: f"fixed_point:{w}:{g}:{r}",
        st.integers(2, 56),
        st.sampled_from([32, 64, 128]),
        st.sampled_from(["truncate", "rne"]),
    ),
)


@pytest.mark.parametrize(("fa", "fb"), PAIRS)
@given(data=st.data())
def test_matmul_equals_oracle(fa, fb, data):
    a, b, c = data.draw(gemm_case(fa, fb), label="operands")
    accum = data.draw(ACCUMS, label="accum")
    out_dtype = data.draw(st.sampled_from([np.float32, np.float32, np.float16, ml_dtypes.bfloat16]))
    got = mxref.matmul(a, b, accum=accum, out_dtype=out_dtype, c=c)
    want = ref_gemm.matmul(a, b, accum=accum, out_dtype=out_dtype, c=c)
    assert_bits_equal(got, want, f"{fa} x {fb} {accum} -> {np.dtype(out_dtype).name}")


def gaussian_operands(fa, fb, m, n, k, seed, spread=0):
    """Quantized Gaussian operands; ``spread`` widens the per-block scales."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)) * np.exp2(rng.integers(-spread, spread + 1, (m, k)))
    y = rng.standard_normal((k, n)) * np.exp2(rng.integers(-spread, spread + 1, (k, n)))
    return mxref.quantize(x.astype(np.float32), fa), mxref.quantize(
        y.astype(np.float32), fb, axis=0
    )


@pytest.mark.parametrize(("fa", "fb"), [("mxfp4", "mxfp4"), ("mxfp8_e4m3", "mxfp8_e4m3"),
                                        ("mxfp8_e4m3", "mxfp4"), ("mxint8", "mxfp6_e3m2"),
                                        ("mxfp8_e5m2", "mxfp8_e5m2")])  # fmt: skip
@pytest.mark.parametrize("accum", ["exact", "block_fp32"])
@pytest.mark.parametrize("spread", [0, 40])
def test_fast_paths_equal_oracle_on_larger_shapes(fa, fb, accum, spread, monkeypatch):
    """The BLAS paths (forced on for these small shapes), with and without wide scale spreads."""
    monkeypatch.setattr(mxref.gemm, "_BLAS_MIN_WORK", 0)
    a, b = gaussian_operands(fa, fb, 6, 5, 200, seed=spread + 1, spread=spread)
    c = np.random.default_rng(9).standard_normal((6, 5)).astype(np.float32)
    for cc in (None, c):
        got = mxref.matmul(a, b, accum=accum, c=cc)
        assert_bits_equal(got, ref_gemm.matmul(a, b, accum=accum, c=cc), f"{fa} x {fb} {accum}")


@pytest.mark.parametrize(("fa", "fb"), PAIRS[::5])
def test_exact_does_not_depend_on_block_order(fa, fb):
    a, b = gaussian_operands(fa, fb, 4, 3, 128, seed=3, spread=20)
    perm = np.random.default_rng(4).permutation(4)
    lanes = (perm[:, None] * 32 + np.arange(32)[None, :]).ravel()
    a2 = mxref.MXArray(codes=a.codes[:, lanes], scales=a.scales[:, perm], fmt=a.fmt, axis=1,
                       block_size=32)  # fmt: skip
    b2 = mxref.MXArray(codes=b.codes[lanes, :], scales=b.scales[perm, :], fmt=b.fmt, axis=0,
                       block_size=32)  # fmt: skip
    first = mxref.matmul(a, b)
    assert_bits_equal(mxref.matmul(a2, b2), first, "permuted blocks")


FP32_EXACT_PAIRS = [("mxfp4", "mxfp4"), ("mxfp4", "mxfp6_e2m3"), ("mxfp6_e2m3", "mxfp6_e2m3"),
                    ("mxfp4", "mxfp6_e3m2"), ("mxfp6_e3m2", "mxfp6_e3m2"), ("mxint8", "mxint8"),
                    ("mxfp4", "mxint8")]  # fmt: skip


@pytest.mark.parametrize(("fa", "fb"), FP32_EXACT_PAIRS)
def test_block_fp32_is_a_plain_per_block_float32_dot(fa, fb):
    """Where a block's sum is exact in float32, block_fp32 is the textbook loop."""
    a, b = gaussian_operands(fa, fb, 5, 4, 160, seed=11, spread=3)
    pa = mxref.dequantize(mxref.MXArray(codes=a.codes, scales=np.full_like(a.scales, 127),
                                        fmt=a.fmt, axis=1, block_size=32))  # fmt: skip
    pb = mxref.dequantize(mxref.MXArray(codes=b.codes, scales=np.full_like(b.scales, 127),
                                        fmt=b.fmt, axis=0, block_size=32))  # fmt: skip
    xa = np.ldexp(np.float32(1), a.scales.astype(np.int32) - 127)
    xb = np.ldexp(np.float32(1), b.scales.astype(np.int32) - 127)
    acc = np.zeros((5, 4), np.float32)
    for blk in range(5):
        s = np.zeros((5, 4), np.float32)
        for k in range(32 * blk, 32 * blk + 32):
            s += pa[:, k, None] * pb[None, k, :]  # exact: these sums fit float32
        acc += s * (xa[:, blk, None] * xb[None, blk, :])
    assert_bits_equal(mxref.matmul(a, b, accum="block_fp32"), acc, f"{fa} x {fb}")


@pytest.mark.parametrize(("fa", "fb"), [p for p in PAIRS if "mxfp8_e5m2" not in p])
def test_wide_fixed_point_equals_block_fp32(fa, fb):
    """With 56 kept bits nothing is lost inside a 32-lane group of these pairs."""
    a, b = gaussian_operands(fa, fb, 3, 4, 96, seed=5, spread=2)
    assert_bits_equal(
        mxref.matmul(a, b, accum="fixed_point:56:32"),
        mxref.matmul(a, b, accum="block_fp32"),
        f"{fa} x {fb}",
    )


def test_nan_scale_reaches_exactly_its_row_and_column():
    a, b = gaussian_operands("mxfp8_e4m3", "mxfp4", 4, 3, 64, seed=1)
    a.scales[2, 1] = 0xFF
    b.scales[0, 2] = 0xFF
    for accum in ("exact", "block_fp32", "fixed_point:25:32"):
        d = mxref.matmul(a, b, accum=accum)
        nan = np.isnan(d)
        assert nan[2].all()
        assert nan[:, 2].all()
        assert nan.sum() == 3 + 4 - 1


def test_cancelling_blocks_and_extreme_scales():
    """A block at 2**127 * 2**127 cancelled by its negative: exact keeps the rest."""
    fmt = mxref.get_format("mxfp8_e4m3")
    one, minus_one = 0x38, 0xB8
    codes_a = np.array([[one] * 32 + [minus_one] * 32 + [one] * 32], np.uint8)
    codes_b = np.full((1, 96), one, np.uint8)
    a = mxref.MXArray(codes=codes_a, scales=np.array([[254, 254, 127]], np.uint8), fmt=fmt,
                      axis=1, block_size=32)  # fmt: skip
    b = mxref.MXArray(codes=codes_b, scales=np.array([[254, 254, 127]], np.uint8), fmt=fmt,
                      axis=1, block_size=32)  # fmt: skip
    assert mxref.matmul(a, b, accum="exact")[0, 0] == 32.0
    assert mxref.matmul(a, b, accum="block_fp32")[0, 0] == np.inf
    assert_bits_equal(mxref.matmul(a, b, accum="fixed_point:25:32"),
                      ref_gemm.matmul(a, b, accum="fixed_point:25:32"), "fixed")  # fmt: skip


@pytest.mark.parametrize(("fa", "fb"), [("mxfp4", "mxfp4"), ("mxfp8_e5m2", "mxfp8_e4m3")])
def test_dot_is_the_spec_dot_of_one_block_pair(fa, fb):
    """mxref.dot of one block each is X_A X_B sum P_A P_B, rounded once to float32."""
    rng = np.random.default_rng(21)
    x = mxref.quantize(rng.standard_normal(32).astype(np.float32), fa)
    y = mxref.quantize(rng.standard_normal(32).astype(np.float32) * 1e3, fb)
    exact = ref_gemm.block_dot(
        x.codes.tolist(), int(x.scales[0]), y.codes.tolist(), int(y.scales[0]), x.fmt, y.fmt
    )
    bits = encode_float(ref_gemm.ext_to_value(exact), BINARY32)  # one exact rounding
    assert np.float32(mxref.dot(x, y)).view(np.uint32) == bits
    with pytest.raises(ValueError, match="a_block must be a 1-D MXArray"):
        mxref.dot(mxref.quantize(np.ones((2, 32), np.float32), fa), y)
