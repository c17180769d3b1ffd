"""mxref.testing.strategies: each strategy produces what its docstring promises."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxref
from mxref.ref.array import exact_values
from mxref.ref.element import decode_element, pow2
from mxref.testing import strategies as mxst

FORMATS = mxref.mx_format_names()
# the meta tests run a fixed, small number of examples under any profile
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
META = settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=SLOW_OK)


def exact(v: float) -> Fraction:
    """The exact value of a finite float32."""
    sign, mag = exact_values(np.array([v], np.float32))[0]
    assert isinstance(mag, Fraction)
    return -mag if sign else mag


def magnitude_code(code: int, fmt: mxref.ElementFormat) -> int:
    """The magnitude part of a code (its index on the non-negative grid)."""
    if not fmt.has_negative_zero:  # two's complement (MXINT8)
        return abs(code - 256 if code >= 128 else code)
    return code & (fmt.sign_bit - 1)


def is_pow2(v: float) -> bool:
    m, _ = np.frexp(np.float64(v))
    return v > 0 and m == 0.5


@META
@given(bits=mxst.float32_bits(), finite=mxst.float32_values(finite=True, subnormal=False))
def test_float32_bits_and_values(bits, finite):
    assert 0 <= bits < 2**32
    assert mxst.f32(bits).view(np.uint32) == bits
    assert finite.dtype == np.float32
    assert np.isfinite(finite)
    assert finite == 0 or abs(finite) >= np.finfo(np.float32).tiny


def test_float32_bits_reach_nan_inf_and_subnormals():
    seen = set()

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(mxst.float32_values())
    def collect(v):
        a = float(v)
        if np.isnan(a):
            seen.add("nan")
        elif np.isinf(a):
            seen.add("inf")
        elif 0 < abs(a) < np.finfo(np.float32).tiny:
            seen.add("subnormal")

    collect()
    assert seen == {"nan", "inf", "subnormal"}


@pytest.mark.parametrize("kind", mxst.AMAX_KINDS)
@pytest.mark.parametrize("name", FORMATS)
def test_forced_amax_blocks_have_that_amax(name, kind):
    fmt = mxref.get_format(name)

    @META
    @given(mxst.forced_amax_blocks(name, kind=kind))
    def check(block):
        x, amax = block.x, block.amax
        assert x.dtype == np.float32
        assert x.shape == (32,)
        assert np.isfinite(x).all()
        assert float(np.float32(amax)) == amax
        assert np.max(np.abs(x)) == np.float32(amax)
        assert abs(x[block.lane]) == np.float32(amax)
        assert block.kind == kind
        with np.errstate(over="ignore"):  # float32's max has Inf above it
            up = float(np.nextafter(np.float32(amax), np.float32(np.inf)))
        down = float(np.nextafter(np.float32(amax), np.float32(0)))
        if kind == "pow2":
            assert is_pow2(amax)
        elif kind == "pred_pow2":
            assert is_pow2(up)
            assert not is_pow2(amax)
        elif kind == "succ_pow2":
            assert is_pow2(down)
        elif kind == "above_max_significand":
            sig = exact(amax) / pow2(int(np.frexp(amax)[1]) - 1)
            assert mxst.max_normal_significand(fmt) < sig < 2

    check()


def test_pred_pow2_is_the_float_log2_trap():
    """The predecessor of 2**k whose float32 log2 rounds up to k (microxcaling's bug)."""
    trapped = 0

    @META
    @given(mxst.forced_amax("mxfp8_e4m3", kind="pred_pow2"))
    def check(amax):
        nonlocal trapped
        assert float(np.floor(np.log2(np.float32(amax)))) >= np.frexp(amax)[1] - 1
        trapped += float(np.floor(np.log2(np.float32(amax)))) == np.frexp(amax)[1]

    check()
    assert trapped > 0


@pytest.mark.parametrize("name", FORMATS)
def test_tie_blocks_hit_exact_midpoints_under_the_blocks_scale(name):
    fmt = mxref.get_format(name)
    grid = []
    for code in range(fmt.max_code + 1):
        mag = decode_element(code, fmt)[1]
        assert isinstance(mag, Fraction)
        grid.append(mag)
    mids = {(a + b) / 2 for a, b in zip(grid, grid[1:], strict=False)}

    @META
    @given(mxst.tie_blocks(name))
    def check(block):
        x, k = block.x, block.scale_exponent
        mx = mxref.quantize(x, name)
        assert mx.scales[0] == 127 + k  # the anchor pins the scale (FLOOR)
        for rule in ("even", "rceil"):
            assert mxref.quantize(x, name, scale_rule=rule).scales[0] == 127 + k
        scale = pow2(k)
        for j in range(1, x.size):
            v = exact(float(x[j])) / scale
            if j in block.tie_lanes:
                assert abs(v) in mids
            else:
                assert v == 0
        # RNE takes every tie to the even magnitude code, ties-away to the upper one
        away = mxref.quantize(x, name, rounding="away")
        for j in block.tie_lanes:
            lo = max(m for m, g in enumerate(grid) if g < abs(exact(float(x[j]))) / scale)
            assert magnitude_code(int(mx.codes[j]), fmt) == (lo if lo % 2 == 0 else lo + 1)
            assert magnitude_code(int(away.codes[j]), fmt) == lo + 1

    check()


def test_tie_blocks_reject_a_scale_outside_the_exact_range():
    with pytest.raises(ValueError, match="scale_exponent must be in"):
        mxst.tie_blocks("mxfp4", scale_exponent=200)


@pytest.mark.parametrize("name", FORMATS)
def test_special_blocks_hold_nan_or_inf(name):
    kinds = set()

    @META
    @given(mxst.special_blocks(name))
    def check(x):
        assert x.dtype == np.float32
        assert x.shape == (32,)
        assert not np.isfinite(x).all()
        kinds.update("nan" if np.isnan(v) else "inf" for v in x if not np.isfinite(v))
        assert mxref.quantize(x, name).scales[0] == 0xFF

    check()
    assert kinds == {"nan", "inf"}


@pytest.mark.parametrize("name", [*FORMATS, None])
def test_mx_arrays_are_valid_and_cover_every_code_and_byte(name):
    codes, scales = set(), set()

    @settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=SLOW_OK)
    @given(mxst.mx_arrays(name))
    def check(mx):
        assert isinstance(mx, mxref.MXArray)
        if name is not None:
            assert mx.fmt.name == name
        assert mx.codes.dtype == np.uint8
        assert int(mx.codes.max()) < mx.fmt.code_count
        codes.update(mx.codes.ravel().tolist())
        scales.update(mx.scales.ravel().tolist())
        assert mxref.dequantize(mx, np.float64).shape == mx.shape

    check()
    assert {0x00, 0x7F, 0xFE, 0xFF} <= scales
    if name is not None:
        fmt = mxref.get_format(name)
        assert len(codes) > fmt.code_count // 4


@META
@given(data=st.data())
def test_mx_input_blocks_are_hard(data):
    name = data.draw(st.sampled_from(FORMATS))
    x = data.draw(mxst.mx_input(name))
    assert x.dtype == np.float32
    assert x.ndim == 2
    assert x.shape[1] <= 70


def test_mx_input_draws_nans_of_both_signs():
    # a NaN-sign bug must meet a negative NaN within a test's examples
    from hypothesis import Phase, find

    for sign in (True, False):
        found = find(mxst.mx_input("mxfp4", max_rows=1, max_len=8),
                     lambda x, sign=sign: bool((np.isnan(x) & (np.signbit(x) == sign)).any()),
                     settings=settings(max_examples=300, database=None,
                                       phases=[Phase.generate]))  # fmt: skip
        assert np.isnan(found).any()


def test_the_mxref_profile_has_no_deadline_and_warm_up_runs_every_codec_function():
    assert settings.get_profile(mxst.PROFILE).deadline is None
    mxst.warm_up(["mxfp4", "nvfp4"])  # MX and two-level formats alike


def test_every_public_strategy_is_exported():
    for name in mxst.__all__:
        assert hasattr(mxst, name)
    assert callable(mxst.formats)
