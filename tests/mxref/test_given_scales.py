"""Encoding with given E8M0 scales (``scales=``): kernels, oracle and torch twin, bit for bit.

The numba kernels against the exact oracle (:func:`mxref.ref.array.quantize_array`
with ``scales``), the torch twin against mxref, the round trip through
``dequantize``, equality with plain quantize when the scales are the computed
ones, the argument errors and ``mxref encode --scales``.  Every comparison is
on integer views (signed zeros and NaN payloads included), never with a float
tolerance.

Spec: OCP MX v1.0 sections 5.1 and 6.3.
"""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mxref
import mxref.torch
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import get_preset, preset_names
from mxref.ref.array import dequantize_array, quantize_array
from mxref.ref.block import quantize_block
from mxref.testing.cases import encode_blocks
from mxref.testing.strategies import mx_input
from tests.mxref.conftest import assert_user_error, run

FORMATS = mxref.mx_format_names()
RULES = [r.value for r in ScaleRule]
ROUNDINGS = [r.value for r in Rounding]
OVERFLOWS = [o.value for o in Overflow]
NUMPY_DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TORCH_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.uint8: torch.uint8,
}
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: the MX presets every MX format has (compressed-tensors, which has two, is tested apart)
PRESETS = [n for n in preset_names() if not get_preset(n).formats]


def assert_bits_equal(got: np.ndarray, want: np.ndarray, what: str, inputs=None) -> None:
    """Equal dtype, shape and bits (signed zeros, NaN payloads); else the first mismatch in hex."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    uint = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    g, w = np.ascontiguousarray(got).view(uint), np.ascontiguousarray(want).view(uint)
    bad = np.argwhere(g != w)
    if len(bad):
        idx = tuple(int(i) for i in bad[0])
        where = "" if inputs is None else f"; input {np.asarray(inputs)[idx]!r}"
        raise AssertionError(f"{what}: {len(bad)} of {g.size} differ; first at {idx}: "
                             f"got {int(g[idx]):#x}, want {int(w[idx]):#x}{where}")  # fmt: skip


def finite(x: np.ndarray) -> np.ndarray:
    """``x`` with every NaN and Inf replaced by +0: given scales refuse them."""
    return np.where(np.isfinite(x), x, np.zeros((), x.dtype))


def structured(fmt: str) -> np.ndarray:
    """The finite TestFloat level-1 blocks for ``fmt`` (mxref.testing.cases), one per row:
    powers of two and neighbours, ties, saturation, subnormals, signed zeros."""
    x = np.stack([case.array() for case in encode_blocks(mxref.get_format(fmt), 1)])
    return x[np.isfinite(x).all(axis=1)]


def shifted(scales: np.ndarray, delta: np.ndarray | int) -> np.ndarray:
    """``scales + delta`` kept among the finite E8M0 bytes 0x00..0xFE."""
    return np.clip(scales.astype(np.int64) + delta, 0, 254).astype(np.uint8)


def oracle(x: np.ndarray, fmt: str, scales: np.ndarray, *, axis: int = -1,
           block_size: int = 32, rounding: str = "rne", overflow: str = "saturate",
           seed: int | None = None,
           preset: str | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The exact oracle's ``(codes, scales)`` for ``x`` encoded against ``scales``."""
    p = get_preset(preset or "ocp")
    if preset is not None:
        rounding, overflow = p.rounding.value, p.overflow.value
    return quantize_array(
        x, mxref.get_format(fmt), axis=axis, block_size=block_size,
        rounding=Rounding(rounding), overflow=Overflow(overflow), seed=seed,
        divisor_min_exponent=p.divisor_min_exponent, keep_negative_zero=p.keep_negative_zero,
        scales=scales,
    )  # fmt: skip


def check_against_oracle(x: np.ndarray, fmt: str, scales: np.ndarray, **kwargs) -> None:
    """quantize and quantize_dequantize with ``scales`` equal the oracle, bit for bit."""
    context = f"{fmt} {kwargs} {x.dtype} shape={x.shape}"
    codes, want_scales = oracle(x, fmt, scales, **kwargs)
    assert_bits_equal(want_scales, scales, f"oracle scales [{context}]")
    mx = mxref.quantize(x, fmt, scales=scales, **kwargs)
    assert_bits_equal(mx.scales, scales, f"scales [{context}]")
    assert_bits_equal(mx.codes, codes, f"codes [{context}]", inputs=x)
    axis, block_size = kwargs.get("axis", -1), kwargs.get("block_size", 32)
    decoded = dequantize_array(codes, scales, mxref.get_format(fmt), axis, block_size, x.dtype)
    fused = mxref.quantize_dequantize(x, fmt, scales=scales, **kwargs)
    assert_bits_equal(fused, decoded, f"fused [{context}]", inputs=x)


def assert_same_bits(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Equal dtype, shape and bits; on failure name the first differing element in hex."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    g = got.detach().cpu().contiguous().view(TORCH_INT_VIEW[got.dtype])
    w = want.detach().cpu().contiguous().view(TORCH_INT_VIEW[want.dtype])
    bad = (g != w).nonzero()
    if len(bad):
        idx = tuple(bad[0].tolist())
        raise AssertionError(f"{what}: {len(bad)} of {g.numel()} differ; first at {idx}: "
                             f"got {int(g[idx]):#x}, want {int(w[idx]):#x}")  # fmt: skip


def check_torch(t: torch.Tensor, fmt: str, scales: np.ndarray, **kwargs) -> None:
    """The torch twin with given scales equals mxref: codes, scales and fake-quant bits."""
    context = f"{fmt} {kwargs} {t.dtype} shape={tuple(t.shape)}"
    given_t = torch.from_numpy(scales)
    mx = mxref.quantize(t, fmt, scales=scales, **kwargs)
    codes, got_scales = mxref.torch.encode(t, fmt, scales=given_t, **kwargs)
    assert_same_bits(codes, torch.from_numpy(mx.codes), f"codes [{context}]")
    assert_same_bits(got_scales, given_t, f"scales [{context}]")
    want = mxref.quantize_dequantize(t, fmt, scales=scales, **kwargs)
    got = mxref.torch.quantize_dequantize(t, fmt, scales=given_t, **kwargs)
    assert_same_bits(got, want, f"values [{context}]")


def draw_scales(data: st.DataObject, x: np.ndarray, fmt: str, axis: int, block_size: int,
                preset: str | None) -> np.ndarray:  # fmt: skip
    """The computed scales, the computed ones shifted per block by -4..+4, or any finite bytes."""
    rule = None if preset else data.draw(st.sampled_from(RULES), label="rule")
    base = mxref.quantize(x, fmt, axis=axis, block_size=block_size, scale_rule=rule,
                          preset=preset).scales  # fmt: skip
    kind = data.draw(st.sampled_from(["computed", "shifted", "smaller", "any"]), label="scales")
    if kind == "computed":
        return base
    if kind == "any":
        return data.draw(arrays(np.uint8, base.shape, elements=st.integers(0, 254)), label="s")
    lo, hi = (-4, 4) if kind == "shifted" else (-4, -1)
    return shifted(base, data.draw(arrays(np.int64, base.shape, elements=st.integers(lo, hi))))


# --- kernels against the oracle -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@HYPOTHESIS
@given(data=st.data())
def test_hypothesis_kernels_equal_oracle(fmt, data):
    """Every rounding, overflow and preset, block sizes with short last blocks, axis 0
    (strided) and -1, float32/float64/float16/bfloat16 inputs."""
    x = data.draw(mx_input(fmt), label="x")
    dtype = data.draw(st.sampled_from(NUMPY_DTYPES), label="dtype")
    with np.errstate(over="ignore"):
        x = finite(finite(x).astype(dtype))
    block_size = data.draw(st.sampled_from([32, 32, 1, 7, 33]), label="block_size")
    axis = data.draw(st.sampled_from([-1, 0]), label="axis")
    preset = data.draw(st.sampled_from([None, None, *PRESETS]), label="preset")
    kwargs: dict = {"axis": axis, "block_size": block_size, "preset": preset}
    if preset is None:
        kwargs["rounding"] = data.draw(st.sampled_from(ROUNDINGS), label="rounding")
        kwargs["overflow"] = data.draw(st.sampled_from(OVERFLOWS), label="overflow")
    if (kwargs.get("rounding") or get_preset(preset or "ocp").rounding) == "stochastic":
        kwargs["seed"] = data.draw(st.integers(0, 2**64 - 1), label="seed")
    scales = draw_scales(data, x, fmt, axis, block_size, preset)
    check_against_oracle(x, fmt, scales, **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_structured_blocks_every_policy(fmt):
    """TestFloat level-1 blocks against the oracle, for every rounding and overflow, with the
    computed FLOOR scales moved by -3..+3 per block (saturation and underflow both)."""
    x = structured(fmt)
    base = mxref.quantize(x, fmt).scales
    delta = np.random.default_rng(7).integers(-3, 4, size=base.shape)
    for rounding, overflow in itertools.product(ROUNDINGS, OVERFLOWS):
        seed = 2026 if rounding == "stochastic" else None
        check_against_oracle(x, fmt, shifted(base, delta), rounding=rounding, overflow=overflow,
                             seed=seed)  # fmt: skip
    check_against_oracle(x, fmt, shifted(base, -1))  # every block one binade too small
    # float64 beyond float32's range, where the scale clamps at 0xFE, and a strided layout
    big = x.astype(np.float64) * 2.0**300
    check_against_oracle(big, fmt, shifted(mxref.quantize(big, fmt).scales, delta))
    xt = np.ascontiguousarray(x.T)
    scales_t = shifted(mxref.quantize(xt, fmt, axis=0, block_size=13).scales, -2)
    check_against_oracle(xt, fmt, scales_t, axis=0, block_size=13, rounding="away")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_structured_blocks_every_preset(fmt, preset):
    """The presets' quirks apply to given scales too: torchao's 2**-126 divisor for a 0x00
    byte, microxcaling's +0 for -0."""
    x = structured(fmt)
    scales = shifted(mxref.quantize(x, fmt, preset=preset).scales, -1)
    scales[::5] = 0  # a 0x00 byte: torchao divides by 2**-126 there
    check_against_oracle(x, fmt, scales, preset=preset)


def test_every_byte_against_the_oracle():
    """One block encoded against each of the 255 finite bytes, in every format."""
    x = np.tile(structured("mxfp8_e4m3")[:1], (255, 1)) * np.float32(2.0**-60)
    scales = np.arange(255, dtype=np.uint8)[:, None]
    for fmt in FORMATS:
        check_against_oracle(x, fmt, scales)
        check_against_oracle(x.astype(np.float64) * 2.0**200, fmt, scales, rounding="zero")


# --- the torch twin -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@settings(HYPOTHESIS, max_examples=10)
@given(data=st.data())
def test_torch_twin_hypothesis(fmt, data):
    x = data.draw(mx_input(fmt), label="x")
    dtype = data.draw(st.sampled_from(TORCH_DTYPES), label="dtype")
    t = torch.from_numpy(finite(x)).to(dtype)
    t = torch.where(torch.isfinite(t), t, 0.0)
    if data.draw(st.booleans(), label="3-d"):
        # a middle axis with inner > 1: blocks are strided in memory
        t = t.reshape(t.shape[0], 1, t.shape[1]).expand(-1, 3, -1).transpose(1, 2).contiguous()
        axis = 1
    else:
        axis = data.draw(st.sampled_from([-1, 0]), label="axis")
    block_size = data.draw(st.sampled_from([32, 32, 1, 7, 33]), label="block_size")
    preset = data.draw(st.sampled_from([None, None, *PRESETS]), label="preset")
    kwargs: dict = {"axis": axis, "block_size": block_size, "preset": preset}
    if preset is None:
        kwargs["rounding"] = data.draw(st.sampled_from(ROUNDINGS), label="rounding")
        kwargs["overflow"] = data.draw(st.sampled_from(OVERFLOWS), label="overflow")
    if (kwargs.get("rounding") or get_preset(preset or "ocp").rounding) == "stochastic":
        kwargs["seed"] = data.draw(st.integers(0, 2**64 - 1), label="seed")
    base = mxref.quantize(t, fmt, axis=axis, block_size=block_size, preset=preset).scales
    delta = data.draw(arrays(np.int64, base.shape, elements=st.integers(-4, 4)), label="delta")
    check_torch(t, fmt, shifted(base, delta), **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_twin_structured(fmt):
    """Every rounding and overflow, every preset, half inputs, float64 and a short block."""
    x = torch.from_numpy(structured(fmt))
    base = mxref.quantize(x, fmt).scales
    delta = np.random.default_rng(3).integers(-3, 4, size=base.shape)
    scales = shifted(base, delta)
    for rounding, overflow in itertools.product(ROUNDINGS, OVERFLOWS):
        seed = 12345 if rounding == "stochastic" else None
        check_torch(x, fmt, scales, rounding=rounding, overflow=overflow, seed=seed)
        check_torch(x.double() * 2.0**300, fmt, scales, rounding=rounding, overflow=overflow,
                    seed=seed)  # fmt: skip
    for preset in PRESETS:
        check_torch(x, fmt, scales, preset=preset)
    for dtype in (torch.float16, torch.bfloat16):
        half = x.to(dtype)  # float16 overflows to Inf: given scales refuse it
        check_torch(torch.where(torch.isfinite(half), half, 0.0), fmt, scales, overflow="ieee")
    xt = x.T.contiguous()
    check_torch(xt, fmt, shifted(mxref.quantize(xt, fmt, axis=0, block_size=13).scales, -2),
                axis=0, block_size=13, rounding="stochastic", seed=5)  # fmt: skip


def test_torch_quantize_backend_takes_numpy_scales():
    x = structured("mxfp6_e3m2")
    scales = shifted(mxref.quantize(x, "mxfp6_e3m2").scales, -2)
    got = mxref.torch.quantize(x, "mxfp6_e3m2", scales=scales)
    want = mxref.quantize(x, "mxfp6_e3m2", scales=scales)
    assert_bits_equal(got.codes, want.codes, "codes")
    assert_bits_equal(got.scales, scales, "scales")


def test_torch_gradient_is_zero_where_a_given_scale_saturates():
    """mxfp4, X = 2**-1 given: 3.5 / X = 7 and -3.2 / X = -6.4 saturate to +-6 (gradient 0);
    -2.9 / X = -5.8 rounds to -6 but is not above max normal, so its gradient passes."""
    x = torch.tensor([[3.5, 1.0, -3.2, 0.1, -2.9] + [0.0] * 27], requires_grad=True)
    y = mxref.torch.quantize_dequantize(x, "mxfp4", scales=torch.tensor([[126]], dtype=torch.uint8))
    assert y[0, :5].tolist() == [3.0, 1.0, -3.0, 0.0, -3.0]
    y.sum().backward()
    assert x.grad is not None
    assert x.grad[0, :5].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CPU tests cover it")
@pytest.mark.parametrize("fmt", FORMATS)
def test_torch_twin_on_cuda(fmt):
    x = torch.from_numpy(structured(fmt))
    scales = shifted(mxref.quantize(x, fmt).scales, -1)
    for rounding in ROUNDINGS:
        seed = 99 if rounding == "stochastic" else None
        kwargs = {"rounding": rounding, "seed": seed}
        want = mxref.quantize_dequantize(x, fmt, scales=scales, **kwargs)
        got = mxref.torch.quantize_dequantize(x.cuda(), fmt, scales=torch.from_numpy(scales).cuda(),
                                              **kwargs)  # fmt: skip
        assert_same_bits(got.cpu(), want, f"values {fmt} {rounding}")
        codes, _ = mxref.torch.encode(x.cuda(), fmt, scales=torch.from_numpy(scales).cuda(),
                                      **kwargs)  # fmt: skip
        want_codes = mxref.quantize(x, fmt, scales=scales, **kwargs).codes
        assert_same_bits(codes.cpu(), torch.from_numpy(want_codes), f"codes {fmt} {rounding}")


# --- properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_computed_scales_give_plain_quantize(fmt):
    """Scales equal to the computed ones give plain quantize's codes and values, bit for bit,
    under every scale rule, rounding, overflow and preset."""
    x = structured(fmt)
    xt = np.ascontiguousarray(x.T)
    for rule, rounding, overflow in itertools.product(RULES, ROUNDINGS, OVERFLOWS):
        seed = 77 if rounding == "stochastic" else None
        policy = {"rounding": rounding, "overflow": overflow, "seed": seed}
        for arr, layout in ((x, {}), (xt, {"axis": 0, "block_size": 13})):
            plain = mxref.quantize(arr, fmt, scale_rule=rule, **policy, **layout)
            again = mxref.quantize(arr, fmt, scales=plain.scales, **policy, **layout)
            assert_bits_equal(again.codes, plain.codes, f"codes {rule} {policy} {layout}")
            assert_bits_equal(again.scales, plain.scales, f"scales {rule} {policy} {layout}")
            fused = mxref.quantize_dequantize(arr, fmt, scale_rule=rule, **policy, **layout)
            fused_given = mxref.quantize_dequantize(arr, fmt, scales=plain.scales, **policy,
                                                    **layout)  # fmt: skip
            assert_bits_equal(fused_given, fused, f"fused {rule} {policy} {layout}")
    for preset in PRESETS:
        plain = mxref.quantize(x, fmt, preset=preset)
        again = mxref.quantize(x, fmt, preset=preset, scales=plain.scales)
        assert_bits_equal(again.codes, plain.codes, f"codes preset={preset}")


@pytest.mark.parametrize("fmt", FORMATS)
@HYPOTHESIS
@given(data=st.data())
def test_round_trip_through_dequantize(fmt, data):
    """``quantize(dequantize(q, float64), scales=q.scales)`` gives q's codes (-0 included),
    whatever the scale rule and rounding; smaller scales (forced saturation) still match the
    oracle."""
    x = finite(data.draw(mx_input(fmt), label="x"))
    rule = data.draw(st.sampled_from(RULES), label="rule")
    rounding = data.draw(st.sampled_from(ROUNDINGS), label="rounding")
    seed = data.draw(st.integers(0, 2**64 - 1), label="seed") if rounding == "stochastic" else None
    q = mxref.quantize(x, fmt, scale_rule=rule)
    d = mxref.dequantize(q, np.float64)
    again = mxref.quantize(d, fmt, scales=q.scales, rounding=rounding, seed=seed)
    assert_bits_equal(again.codes, q.codes, f"codes {fmt} {rule} {rounding}", inputs=d)
    smaller = shifted(q.scales, -data.draw(st.integers(1, 3), label="k"))
    check_against_oracle(d, fmt, smaller, rounding=rounding, seed=seed)


def test_smaller_scales_saturate_and_larger_ones_underflow():
    x = np.array([[6.0, -4.0, 1.0, -0.5]], np.float32)
    assert mxref.quantize(x, "mxfp4").scales.tolist() == [[127]]
    got = mxref.quantize_dequantize(x, "mxfp4", scales=np.array([[126]], np.uint8))
    assert got.tolist() == [[3.0, -3.0, 1.0, -0.5]]  # X = 1/2: 6 and -4 saturate at +-6 * X
    got = mxref.quantize_dequantize(x, "mxfp4", scales=np.array([[132]], np.uint8))
    assert got.tolist() == [[0.0, -0.0, 0.0, -0.0]]  # X = 32: 6 / X < 0.25, all round to +-0
    # ieee overflow with given scales: E5M2 has Inf, E4M3 NaN beyond max normal
    zero = np.array([[0]], np.uint8)
    assert np.isinf(mxref.quantize_dequantize(x, "mxfp8_e5m2", overflow="ieee", scales=zero)).all()
    assert np.isnan(mxref.quantize_dequantize(x, "mxfp8_e4m3", overflow="ieee", scales=zero)).all()


def test_given_scales_are_copied_and_out_may_be_x():
    x = structured("mxfp8_e4m3")
    scales = shifted(mxref.quantize(x, "mxfp8_e4m3").scales, -1)
    mx = mxref.quantize(x, "mxfp8_e4m3", scales=scales)
    assert not np.shares_memory(mx.scales, scales)
    want = mxref.quantize_dequantize(x, "mxfp8_e4m3", scales=scales)
    y = x.copy()
    assert mxref.quantize_dequantize(y, "mxfp8_e4m3", scales=scales, out=y) is y
    assert_bits_equal(y, want, "in place")
    # a non-contiguous scales array is read in its own index order
    xt = np.ascontiguousarray(x.T)
    st_ = np.asfortranarray(mxref.quantize(xt, "mxfp8_e4m3", axis=0).scales)
    assert_bits_equal(mxref.quantize(xt, "mxfp8_e4m3", axis=0, scales=st_).scales,
                      np.ascontiguousarray(st_), "fortran scales")  # fmt: skip


def test_empty_input_with_scales():
    x = np.empty((0, 64), np.float32)
    mx = mxref.quantize(x, "mxfp4", scales=np.empty((0, 2), np.uint8))
    assert mx.codes.shape == (0, 64)
    assert mx.scales.shape == (0, 2)
    codes, scales = mxref.torch.encode(torch.from_numpy(x), "mxfp4",
                                       scales=torch.empty((0, 2), dtype=torch.uint8))  # fmt: skip
    assert codes.shape == (0, 64)
    assert scales.shape == (0, 2)


# --- errors ----------------------------------------------------------------------------------


def test_oracle_refuses_a_nan_byte_and_nonfinite_values():
    fmt = mxref.get_format("mxfp4")
    with pytest.raises(ValueError, match="scale_byte must be an E8M0 byte"):
        quantize_block([(0, Fraction(1))], fmt, scale_byte=0xFF)
    with pytest.raises(ValueError, match="values must be finite"):
        quantize_block([(0, float("inf"))], fmt, scale_byte=127)
    with pytest.raises(ValueError, match="scales must have shape"):
        quantize_array(np.ones((2, 32), np.float32), fmt, scales=np.zeros((2, 2), np.uint8))


NUMPY_ERRORS = [
    ({"scales": np.ones((2, 2), np.int8)}, TypeError,
     "scales must be a uint8 numpy array; got dtype int8"),
    ({"scales": [[127, 127], [127, 127]]}, TypeError,
     "scales must be a uint8 numpy array; got list"),
    ({"scales": torch.full((2, 2), 127, dtype=torch.uint8)}, TypeError, "got Tensor"),
    ({"scales": np.full((2, 1), 127, np.uint8)}, ValueError,
     r"scales must have shape \(2, 2\) \(x of shape \(2, 64\) in blocks of 32 along axis 1\); "
     r"got \(2, 1\)"),
    ({"scales": np.full((2, 2), 127, np.uint8), "axis": 0}, ValueError,
     r"scales must have shape \(1, 64\)"),
    ({"scales": np.array([[127, 127], [127, 255]], np.uint8)}, ValueError,
     r"scales holds 0xFF \(the NaN scale\) at block \(1, 1\)"),
    ({"scales": np.full((2, 2), 127, np.uint8), "scale_rule": "floor"}, ValueError,
     "scale_rule has no effect with scales=; drop one"),
    ({"scales": np.full((2, 2), 127, np.uint8), "preset": "cublas", "scale_rule": "floor"},
     ValueError, "scale_rule has no effect with scales="),
]  # fmt: skip


@pytest.mark.parametrize("fn", [mxref.quantize, mxref.quantize_dequantize])
@pytest.mark.parametrize(("kwargs", "error", "match"), NUMPY_ERRORS)
def test_bad_scales_name_the_argument(fn, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(np.ones((2, 64), np.float32), "mxfp4", **kwargs)


@pytest.mark.parametrize("fn", [mxref.quantize, mxref.quantize_dequantize])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nonfinite_input_is_refused_and_out_untouched(fn, bad):
    x = np.ones((2, 64), np.float32)
    x[1, 40] = bad
    y = x.copy()
    kwargs = {"out": y} if fn is mxref.quantize_dequantize else {}
    with pytest.raises(ValueError, match=r"x holds (nan|-inf) at \(1, 40\); with scales= every"):
        fn(y, "mxfp4", scales=np.full((2, 2), 127, np.uint8), **kwargs)
    assert_bits_equal(y, x, "out after a refusal")


TORCH_ERRORS = [
    ({"scales": np.full((2, 2), 127, np.uint8)}, TypeError,
     "scales must be a uint8 torch.Tensor; got ndarray"),
    ({"scales": torch.full((2, 2), 127, dtype=torch.int32)}, TypeError,
     "got torch dtype torch.int32"),
    ({"scales": torch.full((2, 2), 127, dtype=torch.uint8, device="meta")}, ValueError,
     "scales must be on x's device cpu; got meta"),
    ({"scales": torch.full((2, 3), 127, dtype=torch.uint8)}, ValueError,
     r"scales must have shape \(2, 2\)"),
    ({"scales": torch.tensor([[255, 127], [127, 127]], dtype=torch.uint8)}, ValueError,
     r"scales holds 0xFF \(the NaN scale\) at block \(0, 0\)"),
    ({"scales": torch.full((2, 2), 127, dtype=torch.uint8), "scale_rule": "ceil"}, ValueError,
     "scale_rule has no effect with scales=; drop one"),
]  # fmt: skip


@pytest.mark.parametrize("fn", [mxref.torch.encode, mxref.torch.quantize_dequantize])
@pytest.mark.parametrize(("kwargs", "error", "match"), TORCH_ERRORS)
def test_torch_bad_scales_name_the_argument(fn, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(torch.ones(2, 64), "mxfp4", **kwargs)


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_nonfinite_input_is_refused(dtype):
    x = torch.ones(2, 64, dtype=dtype)
    x[0, 3] = float("nan")
    for fn in (mxref.torch.encode, mxref.torch.quantize_dequantize):
        with pytest.raises(ValueError, match=r"x holds nan at \(0, 3\); with scales= every"):
            fn(x, "mxfp4", scales=torch.full((2, 2), 127, dtype=torch.uint8))


# --- mxref encode --scales ----------------------------------------------------------------------


def sample(shape: tuple[int, ...] = (4, 80), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::37] *= 1000.0
    return x


@pytest.mark.parametrize("source", ["s.npz", "s.bin", "s.json"])
def test_cli_scales_equal_the_api(capsys, tmp_path, source):
    x = sample()
    np.save(tmp_path / "x.npy", x)
    rc, _, err = run(capsys, "encode", "--format", "mxfp8_e4m3", "--scale-rule", "rceil",
                     "--axis", "0", "--block-size", "3", tmp_path / "x.npy",
                     tmp_path / source.replace(".json", ".bin"))  # fmt: skip
    assert rc == 0, err
    # the weights change (as GPTQ changes them); the scales stay
    y = x * np.float32(1.7)
    np.save(tmp_path / "y.npy", y)
    rc, _, err = run(capsys, "encode", "--format", "mxfp8_e4m3", "--rounding", "away",
                     "--axis", "0", "--block-size", "3", "--scales", tmp_path / source,
                     tmp_path / "y.npy", tmp_path / "y.npz")  # fmt: skip
    assert rc == 0, err
    scales = mxref.quantize(x, "mxfp8_e4m3", scale_rule="rceil", axis=0, block_size=3).scales
    want = mxref.quantize(y, "mxfp8_e4m3", rounding="away", axis=0, block_size=3, scales=scales)
    with np.load(tmp_path / "y.npz", allow_pickle=False) as z:
        assert_bits_equal(z["codes"], want.codes, "codes")
        assert_bits_equal(z["scales"], scales, "scales")
        # OUT records the rule that chose its scales: the scales file's
        assert (str(z["scale_rule"]), str(z["rounding"])) == ("rceil", "away")


def test_cli_scales_with_a_preset_and_packed_output(capsys, tmp_path):
    x = sample((3, 64))
    np.save(tmp_path / "x.npy", x)
    scales = shifted(mxref.quantize(x, "mxfp4").scales, -1)
    mxref.save(tmp_path / "t.npz", mxref.MXArray(np.zeros(x.shape, np.uint8), scales,
                                                 mxref.get_format("mxfp4"), 1, 32))  # fmt: skip
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", "--preset", "torchao", "--scales",
                     tmp_path / "t.npz", tmp_path / "x.npy", tmp_path / "o.bin")  # fmt: skip
    assert rc == 0, err
    got = mxref.load(tmp_path / "o.bin")
    want = mxref.quantize(x, "mxfp4", preset="torchao", scales=scales)
    assert_bits_equal(got.codes, want.codes, "codes")
    assert_bits_equal(got.scales, scales, "scales")
    assert json.loads((tmp_path / "o.json").read_text())["scale_rule"] == "floor"


@pytest.mark.parametrize(
    ("extra", "x_shape", "needles"),
    [
        ([], (4, 32), ["s.npz: field 'shape' is (4, 64), but IN has shape (4, 32)"]),
        (["--axis", "0"], (4, 64), ["s.npz: field 'axis' is 1, but --axis 0 blocks axis 0"]),
        (["--block-size", "16"], (4, 64),
         ["s.npz: field 'block_size' is 32, but --block-size is 16"]),
        (["--format", "mxfp8_e4m3"], (4, 64),
         ["s.npz: field 'format' is mxfp4, but --format is mxfp8_e4m3"]),
        (["--scale-rule", "floor"], (4, 64),
         ["--scale-rule has no effect with --scales; drop one"]),
    ],
)  # fmt: skip
def test_cli_mismatched_scales_are_one_line_errors(capsys, tmp_path, extra, x_shape, needles):
    mxref.save(tmp_path / "s.npz", mxref.quantize(sample((4, 64)), "mxfp4"))
    np.save(tmp_path / "in.npy", sample(x_shape, seed=1))
    args = ["--format", "mxfp4", *extra] if "--format" not in extra else extra
    rc, _, err = run(capsys, "encode", *args, "--scales", tmp_path / "s.npz", tmp_path / "in.npy",
                     tmp_path / "out.npz")  # fmt: skip
    assert_user_error(rc, err, *needles)
    assert not (tmp_path / "out.npz").exists()


def test_cli_nan_scale_and_nonfinite_input_are_one_line_errors(capsys, tmp_path):
    x = sample((2, 64))
    np.save(tmp_path / "x.npy", x)
    nan_scales = mxref.quantize(np.where(np.arange(64) == 5, np.nan, x), "mxfp4")
    mxref.save(tmp_path / "nan.npz", nan_scales)
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", "--scales", tmp_path / "nan.npz",
                     tmp_path / "x.npy", tmp_path / "o.npz")  # fmt: skip
    assert_user_error(rc, err, "nan.npz: its scales hold 0xFF (the NaN scale) at block (0, 0)")
    mxref.save(tmp_path / "s.npz", mxref.quantize(x, "mxfp4"))
    x[1, 7] = np.inf
    np.save(tmp_path / "inf.npy", x)
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", "--scales", tmp_path / "s.npz",
                     tmp_path / "inf.npy", tmp_path / "o.npz")  # fmt: skip
    assert_user_error(rc, err, "inf.npy: holds inf at (1, 7); --scales needs finite inputs")
    rc, _, err = run(capsys, "encode", "--format", "mxfp4", "--scales", tmp_path / "none.npz",
                     tmp_path / "x.npy", tmp_path / "o.npz")  # fmt: skip
    assert_user_error(rc, err, "none.npz")


def test_cli_help_shows_the_scales_example(capsys):
    rc, out, _ = run(capsys, "encode", "--help")
    assert rc == 0
    assert "--scales FILE" in out
    assert "mxref encode --format mxfp4 --scales w_gptq.npz" in out
