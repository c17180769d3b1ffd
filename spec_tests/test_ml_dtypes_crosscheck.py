"""Cross-checks against ml_dtypes casts where they agree, and the known deviations.

ml_dtypes is not an oracle here (notes, mx-semantics section 3.2): its E4M3
cast does not saturate and its E8M0 cast rounds to nearest; before 0.7 it
also rounded float64 through float32.  Those deviations are recorded per
version in :mod:`spec_tests.third_party` and asserted by
``test_third_party_deviations``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import mxref

ELEMENT_DTYPES = {
    "mxfp4": ml_dtypes.float4_e2m1fn,
    "mxfp6_e2m3": ml_dtypes.float6_e2m3fn,
    "mxfp6_e3m2": ml_dtypes.float6_e3m2fn,
    "mxfp8_e4m3": ml_dtypes.float8_e4m3fn,
    "mxfp8_e5m2": ml_dtypes.float8_e5m2,
}


@pytest.mark.parametrize("name", list(ELEMENT_DTYPES))
def test_in_range_elements_match_ml_dtypes_casts(name, mx_encode):
    """With the scale pinned to 1, in-range elements are plain RNE casts."""
    fmt = mxref.get_format(name)
    rng = np.random.default_rng(7)
    vmax = float(fmt.max_normal)
    body = rng.uniform(-vmax, vmax, (4096, 31)) * np.exp2(rng.integers(-12, 1, (4096, 31)))
    x = np.concatenate([np.full((4096, 1), vmax), body], axis=1).astype(np.float32)
    codes, scales = mx_encode(x, fmt)
    assert (scales == 127).all()
    cast = x.astype(ELEMENT_DTYPES[name]).view(np.uint8)
    assert np.array_equal(codes, cast)


def test_e4m3_saturates_and_ieee_overflow_gives_nan(mx_encode):
    """The spec side of the ml_dtypes E4M3 deviation, on the backend under test."""
    x = np.array([448.0, 480.0], np.float32)
    assert mx_encode(x, "mxfp8_e4m3")[0].tolist() == [0x7E, 0x7E]  # spec: clamp
    assert mx_encode(x, "mxfp8_e4m3", overflow="ieee")[0].tolist() == [0x7E, 0x7F]


def test_e8m0_scale_floors_where_casts_round(mx_encode):
    # amax 3 in E2M1: FLOOR gives 2**(1-2), where an E8M0 cast of 3 would round up to 4
    assert mx_encode(np.array([3.0], np.float32), "mxfp4")[1][0] == 127 + 1 - 2


def test_float64_input_rounds_once(mx_encode):
    anchored = np.array([6.0, 0.25 + 2.0**-40], np.float64)
    assert mx_encode(anchored, "mxfp4")[0][1] == 0x1  # one rounding: 0.5, not the tie 0.25
