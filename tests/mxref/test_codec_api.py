"""The public codec API: argument checking, input kinds, shapes and special blocks."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import mxref


def test_unknown_format_rounding_rule_and_overflow_name_the_argument():
    x = np.ones(32, np.float32)
    with pytest.raises(ValueError, match="unknown format"):
        mxref.quantize(x, "fp4")
    with pytest.raises(ValueError, match="scale_rule must be one of"):
        mxref.quantize(x, "mxfp4", scale_rule="round")
    with pytest.raises(ValueError, match="rounding must be one of"):
        mxref.quantize(x, "mxfp4", rounding="nearest")
    with pytest.raises(ValueError, match="overflow must be one of"):
        mxref.quantize(x, "mxfp4", overflow="wrap")


def test_policies_accept_enums_and_strings_alike():
    x = np.linspace(-7, 7, 64, dtype=np.float32)
    a = mxref.quantize(x, "mxfp4", scale_rule=mxref.ScaleRule.RCEIL, rounding=mxref.Rounding.AWAY)
    b = mxref.quantize(x, "mxfp4", scale_rule="RCEIL", rounding="away")
    assert np.array_equal(a.codes, b.codes)
    assert np.array_equal(a.scales, b.scales)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"axis": 2}, ValueError, "axis 2 is out of range"),
        ({"axis": 1.0}, TypeError, "axis must be an int"),
        ({"block_size": 0}, ValueError, "block_size must be >= 1"),
        ({"block_size": True}, TypeError, "block_size must be an int"),
        ({"seed": 3}, ValueError, "seed is only used with rounding='stochastic'"),
        ({"rounding": "stochastic"}, ValueError, "needs seed"),
        ({"rounding": "stochastic", "seed": -1}, ValueError, "seed must be in"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mxref.quantize(np.ones((2, 32), np.float32), "mxfp4", **kwargs)


@pytest.mark.parametrize("bad", [np.arange(32), np.ones(32, np.complex64), [1, 2, 3], "abc"])
def test_non_float_inputs_are_rejected(bad):
    with pytest.raises(TypeError, match="x must"):
        mxref.quantize(bad, "mxfp4")


def test_scalar_input_is_rejected():
    with pytest.raises(ValueError, match="at least one dimension"):
        mxref.quantize(np.float32(1.0), "mxfp4")


def test_shapes_and_partial_last_block_equal_zero_padding():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 45)).astype(np.float32)
    mx = mxref.quantize(x, "mxfp8_e4m3")
    assert mx.codes.shape == (3, 45)
    assert mx.scales.shape == (3, 2)
    padded = mxref.quantize(np.pad(x, ((0, 0), (0, 19))), "mxfp8_e4m3")
    assert np.array_equal(padded.codes[:, :45], mx.codes)
    assert np.array_equal(padded.scales, mx.scales)
    # blocking along axis 0 equals blocking the transpose along its last axis
    t = mxref.quantize(x, "mxfp8_e4m3", axis=0)
    tt = mxref.quantize(np.ascontiguousarray(x.T), "mxfp8_e4m3")
    assert np.array_equal(t.codes, tt.codes.T)
    assert np.array_equal(t.scales, tt.scales.T)


def test_empty_input():
    mx = mxref.quantize(np.zeros((0, 64), np.float32), "mxfp4")
    assert mx.codes.shape == (0, 64)
    assert mx.scales.shape == (0, 2)
    assert mxref.dequantize(mx).shape == (0, 64)


def test_special_blocks_and_signed_zero():
    x = np.zeros((4, 32), np.float32)
    x[0, 0] = np.nan
    x[1, 5] = -np.inf
    x[2, 3] = -0.0
    x[3] = 1.0
    x[3, 7] = -0.0
    mx = mxref.quantize(x, "mxfp4")
    assert mx.scales[:, 0].tolist() == [0xFF, 0xFF, 0x00, 127 - 2]  # amax 1: 2**(0 - emax)
    out = mxref.dequantize(mx)
    assert np.isnan(out[:2]).all()
    assert mx.codes[2, 3] == 0x8  # -0 keeps its sign
    assert np.signbit(out[2, 3])
    assert mx.codes[3, 7] == 0x8
    assert mx.codes[1, 5] == 0x8  # elements of a special block are signed zeros
    # two's complement has no -0
    assert mxref.quantize(x, "mxint8").codes[2, 3] == 0


def test_fp32_subnormals_are_honoured():
    x = np.array([1e-40, 3e-41], np.float32)
    mx = mxref.quantize(x, "mxfp8_e4m3")
    assert mx.scales[0] == 0  # 2**-127
    out = mxref.dequantize(mx, np.float64)
    assert (out > 0).all()


def test_mxint8_never_produces_0x80():
    x = np.array([-1.9921875, -1.99, 1.0], np.float32)
    mx = mxref.quantize(x, "mxint8")
    assert 0x80 not in mx.codes.tolist()
    assert mx.codes[0] == 0x81


def test_float16_and_bfloat16_inputs_widen_exactly():
    x = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    for dtype in (np.float16, ml_dtypes.bfloat16):
        narrow = x.astype(dtype)
        a = mxref.quantize(narrow, "mxfp6_e2m3")
        b = mxref.quantize(narrow.astype(np.float32), "mxfp6_e2m3")
        assert np.array_equal(a.codes, b.codes)
        fused = mxref.quantize_dequantize(narrow, "mxfp6_e2m3")
        assert fused.dtype == np.dtype(dtype)


def test_torch_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        t = x.to(dtype)
        mx = mxref.quantize(t, "mxfp4")
        ref = mxref.quantize(t.float().numpy().astype(np.float64), "mxfp4")
        assert np.array_equal(mx.codes, ref.codes)
        fq = mxref.quantize_dequantize(t, "mxfp4")
        assert isinstance(fq, torch.Tensor)
        assert fq.dtype == dtype
    with pytest.raises(TypeError, match="x must be"):
        mxref.quantize(torch.arange(32), "mxfp4")


def test_mxarray_validates_its_fields():
    fmt = mxref.get_format("mxfp4")
    codes = np.zeros((2, 64), np.uint8)
    with pytest.raises(ValueError, match="MXArray.scales has shape"):
        mxref.MXArray(
            codes=codes, scales=np.zeros((2, 3), np.uint8), fmt=fmt, axis=-1, block_size=32
        )
    with pytest.raises(ValueError, match="not a 4-bit mxfp4 code"):
        mxref.MXArray(
            codes=codes + 16, scales=np.zeros((2, 2), np.uint8), fmt=fmt, axis=-1, block_size=32
        )
    with pytest.raises(TypeError, match="MXArray.codes must be a uint8"):
        mxref.MXArray(
            codes=codes.astype(np.int8), scales=np.zeros((2, 2), np.uint8), fmt=fmt, axis=-1,
            block_size=32,
        )  # fmt: skip


def test_dequantize_rejects_unknown_dtypes():
    mx = mxref.quantize(np.ones(32, np.float32), "mxfp4")
    with pytest.raises(ValueError, match="dtype must be"):
        mxref.dequantize(mx, np.int32)
