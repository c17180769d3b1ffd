"""The NVFP4 presets: kernels against the oracle bit for bit, and torchao's against torchao."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mxref
from mxref.ref import nvfp4 as oracle

BLOCK = 16


def _exact(v: np.floating) -> tuple[int, Fraction]:
    return int(np.signbit(v)), Fraction(float(abs(v)))


def oracle_preset(
    x: np.ndarray, preset: str
) -> tuple[np.float32, np.ndarray, np.ndarray, np.ndarray]:
    """Tensor scale, bytes, codes and float32 value bits of a 2-d float32 ``x``, by the oracle."""
    amax = Fraction(float(np.abs(x).max()))
    torchao = preset == "torchao"
    t = oracle.torchao_tensor_scale(amax) if torchao else amax
    quantize = oracle.torchao_quantize_nv_block if torchao else oracle.te_quantize_nv_block
    decode = oracle.torchao_dequantize_nv_block if torchao else oracle.te_dequantize_nv_block
    nblk = -(-x.shape[1] // BLOCK)
    scales = np.zeros((x.shape[0], nblk), np.uint8)
    codes = np.zeros(x.shape, np.uint8)
    bits = np.zeros(x.shape, np.uint32)
    for r, row in enumerate(x):
        for b in range(nblk):
            block = row[b * BLOCK : (b + 1) * BLOCK]
            byte, cs = quantize([_exact(v) for v in block], t)
            scales[r, b] = byte
            codes[r, b * BLOCK : b * BLOCK + len(cs)] = cs
            bits[r, b * BLOCK : b * BLOCK + len(cs)] = decode(byte, cs, t)
    return np.float32(float(t)), scales, codes, bits


def torchao_refuses(x: np.ndarray) -> bool:
    """Where torchao's largest factor (1 / t) / 2**-6 overflows float32 (or t is 0)."""
    t = np.float32(np.abs(x).max()) / np.float32(2688)
    with np.errstate(divide="ignore", over="ignore"):
        return not np.isfinite((np.float32(1) / t) / np.float32(2.0**-6))


def check_against_oracle(x: np.ndarray, preset: str) -> None:
    if preset == "torchao" and torchao_refuses(x):
        with pytest.raises(ValueError, match="Inf in float32"):
            mxref.quantize(x, "nvfp4", preset=preset)
        return
    with np.errstate(over="ignore"):
        te_overflows = not np.isfinite(np.float32(448) * np.abs(x).max())
    if preset == "transformer-engine" and te_overflows:
        with pytest.raises(ValueError, match="Inf in"):
            mxref.quantize(x, "nvfp4", preset=preset)
        return
    mx = mxref.quantize(x, "nvfp4", preset=preset)
    t, scales, codes, bits = oracle_preset(x, preset)
    assert mx.tensor_scale.view(np.uint32) == t.view(np.uint32)
    assert np.array_equal(mx.scales, scales)
    assert np.array_equal(mx.codes, codes)
    assert np.array_equal(mxref.dequantize(mx).view(np.uint32), bits)
    assert np.array_equal(mxref.quantize_dequantize(x, "nvfp4", preset=preset).view(np.uint32),
                          bits)  # fmt: skip


def corners() -> list[np.ndarray]:
    """Structured corner tensors: scale floors, ties, extremes, a zero-scale block."""
    out = []
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 48)) * np.exp2(rng.integers(-20, 20, (3, 1)))).astype(np.float32)
    x[0, :16] *= np.float32(1e-6)  # a block tiny beside the tensor: E4M3_EPS / zero scale
    x[1, 16:32] = 0.0
    x[2, 0] = -0.0
    x[2, 16:24] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -6.0]
    out.append(x)
    for amax in (2.0**-126, 1e-38, 3.0e38, np.finfo(np.float32).max, 2.0**-100, 2688.0):
        y = np.linspace(-1, 1, 32, dtype=np.float32).reshape(1, 32) * np.float32(amax)
        y[0, 3] = np.float32(amax)
        out.append(y)
    return out


@pytest.mark.parametrize("preset", ["torchao", "transformer-engine"])
def test_preset_kernels_equal_the_oracle_on_corners(preset):
    for x in corners():
        check_against_oracle(x, preset)


floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("preset", ["torchao", "transformer-engine"])
@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 40)),
                   elements=floats32), shift=st.integers(-60, 60))  # fmt: skip
def test_preset_kernels_equal_the_oracle(preset, x, shift):
    wide = x.astype(np.float64) * 2.0**shift
    if np.all(np.abs(wide) <= np.finfo(np.float32).max):
        x = wide.astype(np.float32)  # exact or rounded: any float32 input will do
    check_against_oracle(x, preset)


def test_presets_belong_to_their_family():
    x = np.ones((1, 32), np.float32)
    with pytest.raises(ValueError, match="preset: 'microxcaling' is an MX preset; nvfp4 takes"):
        mxref.quantize(x, "nvfp4", preset="microxcaling")
    with pytest.raises(ValueError, match="preset: 'transformer-engine' is an NVFP4 preset"):
        mxref.quantize(x, "mxfp4", preset="transformer-engine")
    with pytest.raises(ValueError, match="preset fixes rounding"):
        mxref.quantize(x, "nvfp4", preset="torchao", rounding="rne")
    with pytest.raises(TypeError, match="float64"):
        mxref.quantize(x.astype(np.float64), "nvfp4", preset="torchao")
    with pytest.raises(ValueError, match="finite inputs"):
        mxref.quantize(np.full((1, 16), np.inf, np.float32), "nvfp4", preset="transformer-engine")
    # the MX torchao preset is still the MX one
    assert mxref.quantize(x, "mxfp4", preset="torchao").tensor_scale is None


def test_preset_arrays_keep_their_preset_through_packing():
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(2, 32)
    for preset in ("torchao", "transformer-engine"):
        mx = mxref.quantize(x, "nvfp4", preset=preset)
        again = mxref.unpack(mxref.pack(mx))
        assert again.preset == preset
        assert np.array_equal(mxref.dequantize(again), mxref.dequantize(mx))
    with pytest.raises(ValueError, match="MXArray.preset"):
        mxref.MXArray(mx.codes, mx.scales, mx.fmt, mx.axis, mx.block_size, mx.tensor_scale,
                      preset="quark")  # fmt: skip


def test_transformer_engine_zero_tensor_and_zero_scale_blocks():
    mx = mxref.quantize(np.zeros((1, 32), np.float32), "nvfp4", preset="transformer-engine")
    assert float(mx.tensor_scale) == 0.0
    assert not mx.codes.any()
    assert not mx.scales.any()
    # a block whose E4M3 scale is 0 multiplies by FLT_MAX: nonzero elements saturate to 6
    x = np.zeros((1, 32), np.float32)
    x[0, 0], x[0, 16] = 1.0, 1e-6
    mx = mxref.quantize(x, "nvfp4", preset="transformer-engine")
    assert mx.scales[0, 1] == 0
    assert mx.codes[0, 16] == 7
    assert mxref.dequantize(mx)[0, 16] == 0.0


# -- torchao itself --------------------------------------------------------------------

torch = pytest.importorskip("torch")
nvfp4_tensor = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
from torchao.prototype.mx_formats.kernels import unpack_uint4  # noqa: E402


def torchao_result(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torchao 0.18's NVFP4Tensor of ``x``: per_tensor_scale, bytes, codes, float32 values."""
    xt = torch.from_numpy(x)
    t = nvfp4_tensor.per_tensor_amax_to_scale(xt.abs().max())
    scales, packed = nvfp4_tensor.nvfp4_quantize(xt, BLOCK, t)
    codes = unpack_uint4(packed).view(x.shape).numpy()
    values = nvfp4_tensor.NVFP4Tensor.to_nvfp4(xt, per_tensor_scale=t).dequantize(torch.float32)
    return t.numpy(), scales.view(torch.uint8).numpy(), codes, values.numpy()


def adversarial() -> list[np.ndarray]:
    out = [x for x in corners() if x.shape[1] % BLOCK == 0]
    rng = np.random.default_rng(11)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((4, 64)) * np.exp2(rng.integers(-30, 30, (4, 1)))
        out.append(x.astype(np.float32))
    # E2M1 midpoints after torchao's reciprocal: values at k * s / G for every threshold k
    mid = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0] * 2, np.float32) * np.float32(448)
    out.append(np.stack([mid, -mid, mid * np.float32(1.0000001), mid * np.float32(0.9999999)]))
    # heavy-tailed, real-looking rows
    out.append((rng.standard_t(2, (8, 128)) * 0.02).astype(np.float32))
    return out


@pytest.mark.parametrize("case", range(len(adversarial())))
def test_the_torchao_preset_is_torchaos_nvfp4tensor(case):
    x = adversarial()[case]
    if torchao_refuses(x):
        return  # test_the_torchao_preset_refuses_where_torchao_breaks
    t, scales, codes, values = torchao_result(x)
    mx = mxref.quantize(x, "nvfp4", preset="torchao")
    assert mx.tensor_scale.view(np.uint32) == t.view(np.uint32)  # the decode scale, as stored
    assert np.array_equal(mx.scales, scales)
    assert np.array_equal(mx.codes, codes)
    assert np.array_equal(mxref.dequantize(mx).view(np.uint32), values.view(np.uint32))
    assert np.array_equal(mxref.quantize_dequantize(x, "nvfp4", preset="torchao").view(np.uint32),
                          values.view(np.uint32))  # fmt: skip
    # and encoding against torchao's stored scale (tensor_scale=) gives the same bytes
    again = mxref.quantize(x, "nvfp4", preset="torchao", tensor_scale=t)
    assert np.array_equal(again.codes, codes)


def test_the_torchao_preset_refuses_where_torchao_breaks():
    tiny = np.zeros((1, 16), np.float32)
    tiny[0, 0] = 1e-38  # 1 / t is Inf: torchao's zeros become NaN codes
    for x in (np.zeros((1, 16), np.float32), np.full((1, 16), 1e-44, np.float32), tiny):
        _, _, _, values = torchao_result(x)
        # torchao's result is no encoding of x: NaN values, zeros decoded nonzero, or
        # nonzero inputs all lost
        assert np.isnan(values).any() or bool((values[x == 0] != 0).any()) \
            or (x.any() and not values.any())  # fmt: skip
        with pytest.raises(ValueError, match="Inf in float32"):
            mxref.quantize(x, "nvfp4", preset="torchao")
    # just above the limit (t = 2**-120) it works and agrees with torchao
    x = np.zeros((1, 16), np.float32)
    x[0, :2] = [np.float32(2688.0 * 2.0**-120), 1.0e-40]
    t, scales, codes, values = torchao_result(x)
    mx = mxref.quantize(x, "nvfp4", preset="torchao")
    assert mx.tensor_scale.view(np.uint32) == t.view(np.uint32)
    assert np.array_equal(mx.scales, scales)
    assert np.array_equal(mx.codes, codes)
    assert np.array_equal(mxref.dequantize(mx).view(np.uint32), values.view(np.uint32))
