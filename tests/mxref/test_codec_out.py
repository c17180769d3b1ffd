"""quantize_dequantize(..., out=...): the same bits, written where the caller says."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import mxref


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("axis", [-1, 0])
def test_out_and_in_place_equal_the_fresh_result(dtype, axis):
    x = (np.random.default_rng(0).standard_normal((40, 70)) * 50).astype(dtype)
    want = mxref.quantize_dequantize(x, "mxfp8_e4m3", axis=axis)
    out = np.full_like(x, 7)
    got = mxref.quantize_dequantize(x, "mxfp8_e4m3", axis=axis, out=out)
    assert got is out
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
    y = x.copy()
    assert mxref.quantize_dequantize(y, "mxfp8_e4m3", axis=axis, out=y) is y
    assert np.array_equal(y.view(np.uint8), want.view(np.uint8))


def test_out_errors():
    x = np.ones((8, 64), np.float32)
    with pytest.raises(ValueError, match="shape"):
        mxref.quantize_dequantize(x, "mxfp4", out=np.empty((8, 32), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        mxref.quantize_dequantize(x, "mxfp4", out=np.empty((8, 64), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        mxref.quantize_dequantize(x, "mxfp4", out=np.empty((64, 8), np.float32).T)
    with pytest.raises(ValueError, match="overlap"):
        mxref.quantize_dequantize(x[1:], "mxfp4", out=x[:-1])
    with pytest.raises(TypeError, match="numpy array"):
        mxref.quantize_dequantize(x, "mxfp4", out=[0.0])
    with pytest.raises(TypeError, match="numpy array inputs"):
        mxref.quantize_dequantize(x.tolist(), "mxfp4", out=np.empty((8, 64)))
