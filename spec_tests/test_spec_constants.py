"""The spec's literal numbers, written out once, against the derived limits.

Spec: OCP MX v1.0 Table 1 (formats), section 5.3 (element encodings),
section 5.4.1 / Table 7 (E8M0).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import mxref
from mxref.ref.scale import decode_scale

# (format, bits, emax, max normal, min normal, min subnormal) -- spec Tables 1-6
SPEC_TABLE = [
    ("mxfp8_e5m2", 8, 15, Fraction(57344), Fraction(1, 2**14), Fraction(1, 2**16)),
    ("mxfp8_e4m3", 8, 8, Fraction(448), Fraction(1, 2**6), Fraction(1, 2**9)),
    ("mxfp6_e3m2", 6, 4, Fraction(28), Fraction(1, 4), Fraction(1, 16)),
    ("mxfp6_e2m3", 6, 2, Fraction(15, 2), Fraction(1), Fraction(1, 8)),
    ("mxfp4", 4, 2, Fraction(6), Fraction(1), Fraction(1, 2)),
    ("mxint8", 8, 0, Fraction(127, 64), Fraction(1), Fraction(1, 64)),
]


@pytest.mark.parametrize(("name", "bits", "emax", "vmax", "vmin", "vsub"), SPEC_TABLE)
def test_format_limits_match_spec(name, bits, emax, vmax, vmin, vsub):
    fmt = mxref.get_format(name)
    assert fmt.bits == bits
    assert fmt.emax == emax
    assert fmt.max_normal == vmax
    assert fmt.min_normal == vmin
    assert fmt.min_subnormal == vsub


@pytest.mark.parametrize(("name", "bits", "emax", "vmax", "vmin", "vsub"), SPEC_TABLE)
def test_max_normal_decodes_from_its_code(name, bits, emax, vmax, vmin, vsub):
    fmt = mxref.get_format(name)
    mx = mxref.MXArray(
        codes=np.array([fmt.max_code], np.uint8),
        scales=np.array([127], np.uint8),
        fmt=fmt,
        axis=0,
        block_size=32,
    )
    assert mxref.dequantize(mx, np.float64)[0] == float(vmax)


def test_mxfp4_code_values():
    fmt = mxref.get_format("mxfp4")
    codes = np.arange(16, dtype=np.uint8)
    unit = np.array([127], np.uint8)
    mx = mxref.MXArray(codes=codes, scales=unit, fmt=fmt, axis=0, block_size=32)
    got = mxref.dequantize(mx)
    want = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
    assert np.array_equal(got.view(np.uint32), np.concatenate([want, -want]).view(np.uint32))


def test_special_codes():
    e4m3, e5m2 = mxref.get_format("mxfp8_e4m3"), mxref.get_format("mxfp8_e5m2")
    assert e4m3.nan_code == 0x7F
    assert e4m3.inf_code is None
    assert e4m3.max_code == 0x7E
    assert e5m2.inf_code == 0x7C
    assert e5m2.max_code == 0x7B
    for name in ("mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxint8"):
        fmt = mxref.get_format(name)
        assert fmt.nan_code is None
        assert fmt.inf_code is None
        assert fmt.overflow_code is None


def test_e8m0_constants():
    assert decode_scale(0x00) == Fraction(1, 2**127)
    assert decode_scale(0x7F) == 1
    assert decode_scale(0xFE) == 2**127
    assert decode_scale(0xFF) is None
    fmt = mxref.get_format("mxfp8_e4m3")
    one = 0x38  # E4M3 1.0
    mx = mxref.MXArray(
        codes=np.full(3, one, np.uint8),
        scales=np.array([0x00, 0xFE, 0xFF], np.uint8),
        fmt=fmt,
        axis=0,
        block_size=1,
    )
    got = mxref.dequantize(mx)
    # 2**-127 is the float32 subnormal with bits 0x00400000, not 0.0
    assert got.view(np.uint32)[0] == 0x00400000
    assert got[1] == np.float32(2.0**127)
    assert math.isnan(got[2])


def test_mxint8_most_negative_code_decodes_to_minus_two():
    fmt = mxref.get_format("mxint8")
    mx = mxref.MXArray(
        codes=np.array([0x80, 0x81, 0x7F, 0xFF], np.uint8),
        scales=np.array([127], np.uint8),
        fmt=fmt,
        axis=0,
        block_size=32,
    )
    assert mxref.dequantize(mx, np.float64).tolist() == [-2.0, -127 / 64, 127 / 64, -1 / 64]


def test_unknown_format_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match="unknown format 'mxfp5'.*mxfp4"):
        mxref.get_format("mxfp5")
