"""Every code of every format, under every E8M0 byte, against the oracle.

Spec: OCP MX v1.0 sections 5.1 (X * P_i), 5.3 (element encodings), 5.4.1 (E8M0).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import mxref
from mxref.ref.array import dequantize_array
from spec_tests.assertions import assert_bits_equal

FORMATS = mxref.mx_format_names()


def every_code_under_every_scale(fmt: mxref.ElementFormat) -> mxref.MXArray:
    """block_size 1: element i*ncodes + c is code c under scale byte i."""
    n = fmt.code_count
    codes = np.tile(np.arange(n, dtype=np.uint8), 256)
    scales = np.repeat(np.arange(256, dtype=np.uint8), n)
    return mxref.MXArray(codes=codes, scales=scales, fmt=fmt, axis=0, block_size=1)


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
def test_decode_every_code_every_scale(name, dtype):
    fmt = mxref.get_format(name)
    mx = every_code_under_every_scale(fmt)
    got = mxref.dequantize(mx, dtype)
    want = dequantize_array(mx.codes, mx.scales, fmt, axis=0, block_size=1, dtype=dtype)
    assert_bits_equal(got, want, f"{name} decode to {np.dtype(dtype).name}")
