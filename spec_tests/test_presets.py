"""Vendor presets against the real libraries that install here, bit for bit.

- ``torchao``: torchao 0.18's ``to_mx`` (FLOOR), codes and scales;
- ``quark`` (EVEN): torchao's EVEN mode computes Quark's rule, on blocks whose
  scale is not 0x00 (torchao divides those by 2**-126, Quark does not);
- ``microxcaling``: its scale is ``floor(torch.log2(amax))`` in float32,
  computed here with torch itself; elements round ties away from zero;
- ``triton`` and ``cublas``: no library here, so an independent numpy
  transcription of their documented bit formulas;
- ``ocp``: element casts agree with ml_dtypes (see test_ml_dtypes_crosscheck).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mxref
from mxref.presets import PRESETS, Family, Preset, get_preset, preset_names
from spec_tests.third_party import BY_ID

torch = pytest.importorskip("torch")
mx_tensor = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
config = pytest.importorskip("torchao.prototype.mx_formats.config")

TORCHAO_DTYPES = {
    "mxfp4": torch.float4_e2m1fn_x2,
    "mxfp6_e2m3": "fp6_e2m3",
    "mxfp6_e3m2": "fp6_e3m2",
    "mxfp8_e4m3": torch.float8_e4m3fn,
    "mxfp8_e5m2": torch.float8_e5m2,
}


#: torchao 0.18 divides 0x00 blocks by 2**-126 (spec_tests/third_party.py); the
#: ``torchao`` preset reproduces it, and a torchao without it should match ``ocp``.
TORCHAO_CLAMPS = BY_ID["torchao-divisor-clamped-at-2^-126"].applies()


@st.composite
def finite_blocks(draw, rows_max=4):
    """float32 blocks of 32 with per-block magnitudes from 2**-149 to 2**120."""
    rows = draw(st.integers(1, rows_max))
    mags = draw(arrays(np.int32, (rows, 1), elements=st.integers(-149, 120)))
    body = draw(arrays(np.float32, (rows, 32), elements=st.floats(-2, 2, width=32)))
    x = (body.astype(np.float64) * np.exp2(mags.astype(np.float64))).astype(np.float32)
    return np.where(np.isfinite(x), x, np.float32(0))


def torchao_codes(x: np.ndarray, name: str, mode) -> tuple[np.ndarray, np.ndarray]:
    """torchao's (codes, scales) for x, codes unpacked to one per element."""
    scale, data = mx_tensor.to_mx(torch.from_numpy(x), TORCHAO_DTYPES[name], 32, mode)
    scales = scale.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    raw = data.view(torch.uint8).numpy().reshape(x.shape[0], -1)
    if name == "mxfp4":  # two per byte, element 2i in the low nibble
        codes = np.empty(x.shape, np.uint8)
        codes[:, 0::2], codes[:, 1::2] = raw & 0xF, raw >> 4
        return codes, scales
    return raw, scales


@pytest.mark.parametrize("name", list(TORCHAO_DTYPES))
@given(x=finite_blocks())
def test_torchao_preset_equals_torchao_to_mx(name, x):
    got = mxref.quantize(x, name, preset="torchao" if TORCHAO_CLAMPS else "ocp")
    codes, scales = torchao_codes(x, name, config.ScaleCalculationMode.FLOOR)
    assert np.array_equal(got.scales, scales)
    assert np.array_equal(got.codes, codes)


@pytest.mark.parametrize("name", list(TORCHAO_DTYPES))
@given(x=finite_blocks())
def test_quark_preset_equals_torchao_even_away_from_the_clamp(name, x):
    codes, scales = torchao_codes(x, name, config.ScaleCalculationMode.EVEN)
    got = mxref.quantize(x, name, preset="quark")
    assert np.array_equal(got.scales, scales)
    normal = scales[:, 0] > 0  # torchao 0.18 divides 0x00 blocks by 2**-126; Quark by 2**-127
    assert np.array_equal(got.codes[normal], codes[normal])
    # with torchao's divisor clamp added (where it has one), EVEN matches torchao everywhere
    even_clamped = Preset("even-torchao", mxref.ScaleRule.EVEN, mxref.Rounding.RNE,
                          mxref.Overflow.SATURATE,
                          divisor_min_exponent=-126 if TORCHAO_CLAMPS else -127)  # fmt: skip
    assert np.array_equal(mxref.quantize(x, name, preset=even_clamped).codes, codes)


@pytest.mark.parametrize("name", mxref.mx_format_names())
@given(x=finite_blocks())
def test_microxcaling_scale_is_torch_float32_log2(name, x):
    fmt = mxref.get_format(name)
    amax = torch.from_numpy(np.abs(x).max(axis=1))
    with np.errstate(divide="ignore"):
        e = torch.floor(torch.log2(amax)).numpy().astype(np.float64) - fmt.emax
    want = np.where(amax.numpy() == 0, 0, np.clip(e, -127, 127) + 127).astype(np.uint8)
    assert np.array_equal(mxref.quantize(x, name, preset="microxcaling").scales[:, 0], want)


def test_microxcaling_just_below_a_power_of_two():
    """1023.99994 in E4M3: the spec gives 896; microxcaling's float32 log2 gives 1024."""
    x = np.array([np.nextafter(np.float32(1024), np.float32(0))], np.float32)
    spec = mxref.quantize_dequantize(x, "mxfp8_e4m3")
    quirk = mxref.quantize_dequantize(x, "mxfp8_e4m3", preset="microxcaling")
    assert spec.tolist() == [896.0]
    assert quirk.tolist() == [1024.0]


def test_microxcaling_rounds_ties_away_and_drops_negative_zero():
    x = np.array([6.0, 0.25, 2.5, -0.0, -5.0], np.float32)
    out = mxref.quantize_dequantize(x, "mxfp4", preset="microxcaling")
    assert out.tolist() == [6.0, 0.5, 3.0, 0.0, -6.0]
    assert not np.signbit(out[3])


@pytest.mark.parametrize("name", mxref.mx_format_names())
@given(x=finite_blocks())
def test_triton_scale_is_its_round_up_bit_formula(name, x):
    fmt = mxref.get_format(name)
    amax = np.abs(x).max(axis=1).astype(np.float64)
    q = (amax / float(fmt.max_normal)).astype(np.float32)  # the float32 quotient
    bits = (q.view(np.uint32).astype(np.uint64) + 0x7FFFFF) & 0x7F800000
    want = (bits >> 23).astype(np.uint8)  # the byte is the float32 exponent field
    assert np.array_equal(mxref.quantize(x, name, preset="triton").scales[:, 0], want)


@pytest.mark.parametrize("name", mxref.mx_format_names())
@given(x=finite_blocks())
def test_cublas_scale_is_rceil(name, x):
    """ceil(log2(amax / max)): FLOOR + 1 exactly when amax's significand exceeds max's."""
    fmt = mxref.get_format(name)
    amax = np.abs(x).max(axis=1).astype(np.float64)
    mant, exp = np.frexp(amax)  # amax = mant * 2**exp, mant in [0.5, 1)
    sig, e = mant * 2, exp - 1
    max_sig = float(fmt.max_normal) / 2.0**fmt.emax
    want = np.clip(e - fmt.emax + (sig > max_sig), -127, 127) + 127
    want = np.where(amax == 0, 0, want).astype(np.uint8)
    assert np.array_equal(mxref.quantize(x, name, preset="cublas").scales[:, 0], want)


def test_preset_and_explicit_policies_do_not_mix():
    with pytest.raises(ValueError, match="preset fixes scale_rule"):
        mxref.quantize(np.ones(32, np.float32), "mxfp4", preset="cublas", scale_rule="floor")
    with pytest.raises(ValueError, match="preset must be one of"):
        mxref.quantize(np.ones(32, np.float32), "mxfp4", preset="nvidia")
    assert preset_names() == ["ocp", "microxcaling", "torchao", "cublas", "quark", "triton",
                              "compressed-tensors"]  # fmt: skip
    assert preset_names(Family.NVFP4) == ["torchao", "transformer-engine"]
    assert all(p.source for p in PRESETS.values())


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "mxint8"])
def test_microxcaling_scale_at_every_power_of_two_neighbour(name):
    """pred/at/succ of 2**k for every float32 k, against torch's float32 log2."""
    fmt = mxref.get_format(name)
    pows = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    amax = np.concatenate([np.nextafter(pows, np.float32(0)), pows,
                           np.nextafter(pows, np.float32(np.inf))])  # fmt: skip
    amax = amax[np.isfinite(amax) & (amax > 0)]
    x = np.zeros((amax.size, 32), np.float32)
    x[:, 0] = amax
    e = torch.floor(torch.log2(torch.from_numpy(amax))).numpy().astype(np.int64) - fmt.emax
    want = (np.clip(e, -127, 127) + 127).astype(np.uint8)
    got = mxref.quantize(x, name, preset="microxcaling").scales[:, 0]
    assert np.array_equal(got, want)
    # and it differs from the spec's exact floor just below most powers of two
    assert (got != mxref.quantize(x, name).scales[:, 0]).sum() > 200


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("name", mxref.mx_format_names())
@given(x=finite_blocks(rows_max=3), signs=st.integers(0, 2**32 - 1))
def test_preset_kernels_equal_the_oracle(preset, name, x, signs):
    """Every preset's quirks are in the oracle too: codes and scales agree exactly."""
    from mxref.ref.array import quantize_array

    x = x.copy()
    x[:, 5] = np.where((signs >> np.arange(x.shape[0])) & 1, -0.0, 0.0)  # signed zeros
    p = get_preset(preset)
    fmt = mxref.get_format(name)
    if p.formats and name not in p.formats:
        with pytest.raises(ValueError, match="preset: .* has no"):
            mxref.quantize(x, fmt, preset=preset)
        return
    got = mxref.quantize(x, fmt, preset=preset)
    codes, scales = quantize_array(
        x, fmt, scale_rule=p.scale_rule, rounding=p.rounding, overflow=p.overflow,
        divisor_min_exponent=p.divisor_min_exponent, keep_negative_zero=p.keep_negative_zero,
        overflow_input_emax=127 if p.scale_overflow_nan else None,
    )  # fmt: skip
    assert np.array_equal(got.scales, scales)
    assert np.array_equal(got.codes, codes)
