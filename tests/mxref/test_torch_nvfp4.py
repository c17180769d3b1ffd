"""mxref.torch on ``"nvfp4"`` against mxref's numpy codec, bit for bit.

Every comparison is on unsigned-integer views (NaN signs and signed zeros
included), never with a float tolerance.  The numpy codec itself is checked
against the exact oracle in ``test_nvfp4_codec.py`` and ``test_nvfp4_kernel.py``.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mxref
import mxref.torch as mt
from mxref.kernels.nvfp4 import E4M3_GRID
from mxref.torch import nvfp4 as torch_nvfp4

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
ROUNDINGS = ["rne", "away", "zero"]
E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
E2M1_MIDPOINTS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
E4M3 = [float(v) for v in E4M3_GRID]
HYPOTHESIS = settings(max_examples=60, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
CUDA = torch.cuda.is_available()


# --- comparing ---------------------------------------------------------------------------------


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """A numpy array (ml_dtypes bfloat16 included) as a CPU tensor of the same dtype and bits."""
    if x.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(x).view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(x, copy=True))


def bits(a: torch.Tensor | np.ndarray) -> np.ndarray:
    """Unsigned-integer view of a tensor's or an array's values (on the CPU)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().contiguous()
        a = a.view(torch.int16).numpy() if a.dtype == torch.bfloat16 else a.numpy()
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def assert_same_bits(got: torch.Tensor, want: np.ndarray, what: str) -> None:
    """Equal shape, width and bits; on failure name the first differing element in hex."""
    g, w = bits(got), bits(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    assert g.dtype == w.dtype, f"{what}: width {g.dtype} != {w.dtype}"
    bad = np.argwhere(g != w)
    if len(bad):
        idx = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} of {g.size} differ; first at {idx}: "
                             f"got {int(g[idx]):#x}, want {int(w[idx]):#x}")  # fmt: skip


def check(x: np.ndarray, device: str | None = None, **kwargs) -> None:
    """The torch codec's values, codes, bytes and tensor scale equal the numpy codec's."""
    context = f"{x.dtype} shape={x.shape} {kwargs}"
    want_values = mxref.quantize_dequantize(x, "nvfp4", **kwargs)
    want = mxref.quantize(x, "nvfp4", **kwargs)
    t = as_tensor(x) if device is None else as_tensor(x).to(device)
    got = mt.quantize_dequantize(t, "nvfp4", **kwargs)
    assert got.dtype == t.dtype, context
    assert got.device == t.device, context
    assert_same_bits(got, want_values, f"values [{context}]")
    codes, scales, tensor_scale = mt.encode(t, "nvfp4", **kwargs)
    for part in (codes, scales, tensor_scale):
        assert part.device == t.device, context
    assert codes.dtype == scales.dtype == torch.uint8, context
    assert tensor_scale.dtype == torch.float32, context
    assert_same_bits(codes, want.codes, f"codes [{context}]")
    assert_same_bits(scales, want.scales, f"scales [{context}]")
    assert want.tensor_scale is not None
    assert_same_bits(tensor_scale, want.tensor_scale, f"tensor_scale [{context}]")


def every_way(x: np.ndarray, **kwargs) -> None:
    """:func:`check` under every rounding, per tensor and per row, and along axis 0."""
    for rounding in ROUNDINGS:
        check(x, rounding=rounding, **kwargs)
        if "tensor_scale" not in kwargs:
            check(x, rounding=rounding, per_row=True, **kwargs)
    check(np.ascontiguousarray(x.T), axis=0, **kwargs)


# --- structured cases ---------------------------------------------------------------------------


def blocks_of(head: float, values: list[float], width: int = 16) -> list[list[float]]:
    """``values`` in rows of ``width``, each led by ``head`` (the block's amax) and zero-padded."""
    rows = []
    for i in range(0, len(values), width - 1):
        chunk = values[i:i + width - 1]
        rows.append([head, *chunk] + [0.0] * (width - 1 - len(chunk)))
    return rows


def neighbours32(v: float) -> list[float]:
    """``v`` (a float32 value) and its float32 neighbours, both signs."""
    v32 = np.float32(v)
    near = [v32, np.nextafter(v32, np.float32(np.inf)), np.nextafter(v32, np.float32(0))]
    return [float(u) for u in near] + [-float(u) for u in near]


def structured_float32() -> np.ndarray:
    """Blocks of 16 whose decisions sit on every boundary, under ``G = 1``.

    The tensor's amax, 2688 = 448 * 6, makes the computed ``G`` 1 too.
    """
    rows: list[list[float]] = [[2688.0, 1.0, -3.0] + [0.0] * 13]
    # every E2M1 midpoint and value times s_b, and their neighbours, in blocks of amax 6 * s_b
    for s in (2.0**-9, 3 * 2.0**-9, 2.0**-6, 0.875, 1.0, 1.125, 1.75, 13.0, 448.0):
        points = [v * s for m in E2M1_MIDPOINTS + E2M1[1:-1] for v in neighbours32(m)]
        rows += blocks_of(6.0 * s, points)
    # block amaxes at and beside every E4M3 midpoint (subnormal scales included)
    for lo, hi in zip(E4M3[:-1], E4M3[1:], strict=True):
        for a in neighbours32(6.0 * 0.5 * (lo + hi))[:3]:
            rows.append([a, -a / 3, a / 7, -a / 11] + [a / 2] * 12)
    # saturated scales (beyond 448) and elements (above 6 * s_b after s_b rounds down)
    for a in (*neighbours32(6.0 * 448)[:3], 6.0 * 464, 6.0 * 500):
        rows.append([a, -a, 0.99 * a] + [1.0] * 13)
    rows.append([7.0, -7.0, 6.75, 6.8, -6.76] + [0.1] * 11)  # s_b = 1.125: 6.75 is 6 * s_b
    # scales rounding to 0 (a tie with 2**-10 goes to 0) and to the smallest subnormal
    for a in neighbours32(6.0 * 2.0**-10)[:3]:
        rows.append([a, -a, a / 2, -0.0] + [a / 4] * 12)
    rows.append([1e-30 * (k + 1) * (-1) ** k for k in range(16)])  # tiny beside 2688
    rows.append([2.0**-149 * k for k in range(16)])  # float32 subnormals
    rows.append([0.0] * 16)
    rows.append([-0.0] * 16)
    rows.append([-0.0, 0.0] * 8)
    nan_rows = [[math.nan, 1.0, -2.0, -0.0] + [0.5] * 12, [math.inf] + [-1.0] * 15,
                [-math.inf, 0.0] + [3.0] * 14, [math.nan] * 16]  # fmt: skip
    rows += nan_rows
    x = np.array(rows, np.float32)
    negative_nan = np.array([0xFFC00000], np.uint32).view(np.float32)[0]
    x[-1, ::2] = negative_nan  # NaNs of both signs
    return x


def test_structured_float32_under_a_computed_and_a_given_tensor_scale():
    x = structured_float32()
    every_way(x)
    every_way(x, tensor_scale=np.float32(1.0))
    # the same blocks strided along a middle axis
    check(np.ascontiguousarray(x.reshape(-1, 4, 4).transpose(0, 2, 1)), axis=1)


def test_structured_half_inputs():
    x = structured_float32()
    with np.errstate(over="ignore"):
        for dtype in (np.float16, ml_dtypes.bfloat16):
            for rounding in ROUNDINGS:
                check(x.astype(dtype), rounding=rounding)
            check(x.astype(dtype), per_row=True)
            check(x.astype(dtype), tensor_scale=np.float32(1.0))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_outputs_are_rounded_once(dtype):
    """Tensor scales under which ``code * s_b / G`` rounds differently through float32.

    torch's own float64 cast to float16/bfloat16 goes through float32; found
    here are quotients where that double rounding is wrong.
    """
    rng = np.random.default_rng(11)
    g = (rng.random(1 << 20) + 1.0).astype(np.float32).astype(np.float64)
    rows, scales = [], []
    for v in E2M1[1:]:
        q = v / g  # s_b = 1
        twice = q.astype(np.float32).astype(dtype)
        for gi in g[q.astype(dtype) != twice][:6]:
            x = [6.0 / gi, v / gi, -v / gi, 0.5 * v / gi] + [0.0] * 12
            rows.append(np.array(x).astype(dtype))
            scales.append(np.float32(gi))
    assert len(rows) > 12
    for x, tensor_scale in zip(rows, scales, strict=True):
        check(x.reshape(1, 16), tensor_scale=tensor_scale)


def test_structured_float64_beyond_float32s_range():
    """The same blocks scaled far beyond float32's range either way (G clamps there)."""
    x = structured_float32().astype(np.float64)
    for scale in (2.0**300, 2.0**-300, 2.0**-1000):
        every_way(x * scale)


def dekker_blocks(g: float) -> np.ndarray:
    """float64 blocks whose products with ``g`` lie within a few ulps of E2M1/E4M3 thresholds.

    ``x * g`` is not exact in float64 here: only the exact product decides.
    """
    rows = []
    for s in (2.0**-9, 0.875, 1.125, 13.0, 448.0):
        points = []
        for m in E2M1_MIDPOINTS + E2M1[1:-1]:
            v = m * s / g
            points += [float(u) for u in (v, *np.nextafter(v, [np.inf, 0.0]),
                                          np.nextafter(np.nextafter(v, np.inf), np.inf))]
        rows += blocks_of(6.0 * s / g, points + [-p for p in points])
    for lo, hi in zip(E4M3[:-1:5], E4M3[1::5], strict=True):
        a = 6.0 * 0.5 * (lo + hi) / g
        for u in (a, *np.nextafter(a, [np.inf, 0.0])):
            rows.append([float(u), -float(u) / 3] + [float(u) / 5] * 14)
    return np.array(rows, np.float64)


@pytest.mark.parametrize("g", [float(np.float32(1 / 3)), float(np.float32(0.1)), 2.0**-140,
                               float(np.float32(7e37))])  # fmt: skip
def test_float64_products_are_decided_exactly(g):
    x = dekker_blocks(g)
    for rounding in ROUNDINGS:
        check(x, rounding=rounding, tensor_scale=np.float32(g))
    check(np.ascontiguousarray(x.T), axis=0, block_size=8, tensor_scale=np.float32(g))


def test_float64_extremes():
    """Huge operands (split after scaling), products beyond float64's range, subnormals."""
    rng = np.random.default_rng(5)
    exps = rng.choice([-1074, -1060, -1022, -300, -150, -3, 0, 5, 200, 901, 1000, 1023],
                      size=(6, 48))  # fmt: skip
    x = np.ldexp(rng.random((6, 48)) + 0.5, exps) * rng.choice([-1.0, 1.0], size=(6, 48))
    x[0, :4] = [5e-324, -0.0, 1.7e308, -1.7e308]
    for tensor_scale in (None, np.float32(1e30), np.float32(2.0**-149)):
        kwargs = {} if tensor_scale is None else {"tensor_scale": tensor_scale}
        check(x, **kwargs)
        check(x, block_size=5, rounding="away", **kwargs)
    check(x, per_row=True)


def test_tensor_scales_whose_float64_quotient_is_a_float32_midpoint():
    """``2688 / amax`` rounds in float64 onto a float32 midpoint: the remainder's sign decides."""
    found = 0
    for j in range(1, 400, 2):
        midpoint = (1.0 + j * 2.0**-24) * 2.0**5
        amax = 2688.0 / midpoint
        for a in (amax, *np.nextafter(amax, [np.inf, 0.0])):
            if 2688.0 / a == midpoint and a * midpoint != 2688.0:
                found += 1
                x = np.array([[a, -a / 2] + [0.25] * 30, [1.0] * 32], np.float64)
                check(x)
                check(x, per_row=True)
    assert found > 20


def test_float32_subnormal_tensors():
    x = np.array([[2.0**-149 * k * (-1) ** k for k in range(32)],
                  [2.0**-126 - 2.0**-149 * k for k in range(32)]], np.float32)  # fmt: skip
    every_way(x)
    check(x.astype(np.float64) * 2.0**-100, per_row=True)


# --- random inputs ------------------------------------------------------------------------------


@HYPOTHESIS
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 40)),
                  elements=st.floats(width=32)),
       st.booleans(), st.sampled_from(ROUNDINGS), st.sampled_from([-1, 0]))  # fmt: skip
def test_random_float32(x, per_row, rounding, axis):
    check(x, per_row=per_row, rounding=rounding, axis=axis)


@HYPOTHESIS
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 40)),
                  elements=st.floats()),
       st.booleans(), st.sampled_from(ROUNDINGS), st.sampled_from([-1, 0]))  # fmt: skip
def test_random_float64(x, per_row, rounding, axis):
    check(x, per_row=per_row, rounding=rounding, axis=axis)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 40)),
                  elements=st.floats(width=32)),
       st.sampled_from([np.float16, ml_dtypes.bfloat16]), st.booleans())  # fmt: skip
def test_random_half_inputs(x, dtype, per_row):
    with np.errstate(over="ignore"):
        check(x.astype(dtype), per_row=per_row)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "axis"), [((3, 40), -1), ((40, 3), 0), ((2, 33, 3), 1)])
@pytest.mark.parametrize("per_row", [False, True])
def test_every_dtype_layout_and_rounding(dtype, shape, axis, per_row):
    rng = np.random.default_rng(len(shape) * 10 + axis + 5 * per_row)
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-12, 12, shape))).astype(dtype)
    x.reshape(-1)[::17] = 0.0
    for rounding in ROUNDINGS:
        check(x, axis=axis, per_row=per_row, rounding=rounding)
    check(x, axis=axis, per_row=per_row, block_size=7)


def test_a_given_tensor_scale_in_every_form():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 40)).astype(np.float32)
    for g in (np.float32(1000.0), 0.5, np.float32(2.0**-149), np.finfo(np.float32).max):
        check(x, tensor_scale=g)
    per_row = (rng.random((4, 40)) * 100).astype(np.float32)  # shape without axis 1
    check(x, axis=1, per_row=True, tensor_scale=per_row)
    want = mxref.quantize_dequantize(x, "nvfp4", axis=1, per_row=True, tensor_scale=per_row)
    as_torch = torch.from_numpy(per_row).to(torch.float64)  # a tensor scale given as a tensor
    got = mt.quantize_dequantize(torch.from_numpy(x), "nvfp4", axis=1, per_row=True,
                                 tensor_scale=as_torch)  # fmt: skip
    assert_same_bits(got, want, "tensor_scale as a torch tensor")


def test_empty_inputs():
    for shape, axis in (((0, 16), -1), ((3, 0), -1), ((3, 0), 0), ((2, 0, 3), 1)):
        x = np.zeros(shape, np.float32)
        for per_row in (False, True):
            check(x, axis=axis, per_row=per_row)


def test_quantize_returns_mxrefs_mxarray():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 2, 35)) * 100).astype(np.float32)
    x[0, 0, 3] = np.nan
    for kwargs in ({}, {"per_row": True, "axis": 0}, {"tensor_scale": 3.0, "rounding": "zero"},
                   {"block_size": 8, "axis": 2}):  # fmt: skip
        want = mxref.quantize(x, "nvfp4", **kwargs)
        for source in (x, torch.from_numpy(x)):
            got = mt.quantize(source, "nvfp4", **kwargs)
            assert isinstance(got, mxref.MXArray)
            assert (got.fmt, got.axis, got.block_size) == (want.fmt, want.axis, want.block_size)
            assert_same_bits(torch.from_numpy(got.codes), want.codes, f"codes {kwargs}")
            assert_same_bits(torch.from_numpy(got.scales), want.scales, f"scales {kwargs}")
            assert got.tensor_scale is not None
            assert got.tensor_scale.dtype == np.float32
            assert np.array_equal(bits(got.tensor_scale), bits(want.tensor_scale))
    bf16 = x.astype(ml_dtypes.bfloat16)
    got = mt.quantize(bf16, "nvfp4")
    want = mxref.quantize(bf16, "nvfp4")
    assert np.array_equal(got.codes, want.codes)
    assert np.array_equal(got.scales, want.scales)


# --- gradient -----------------------------------------------------------------------------------


def test_gradient_is_straight_through_and_zero_where_saturated_or_nan():
    """G = 1: amax 7 gives s_b = RNE(7 / 6) = 1.125, so |x| > 6.75 saturates."""
    saturating = [7.0, -7.0, 6.8, -6.76, 6.75, -6.75, 1.0, 0.3] + [0.1] * 8
    nan_block = [1.0] * 15 + [math.nan]
    underflowing = [2.0**-12] * 16  # s_b rounds to 0: rounding, not saturation
    x = torch.tensor([saturating, nan_block, underflowing], requires_grad=True)
    y = mt.quantize_dequantize(x, "nvfp4", tensor_scale=1.0)
    assert y[0, :6].tolist() == [6.75, -6.75, 6.75, -6.75, 6.75, -6.75]
    assert torch.isnan(y[1]).all()
    assert (y[2] == 0).all()
    (y * 2).sum().backward()
    expected = torch.full((3, 16), 2.0)
    expected[0, :4] = 0.0
    expected[1] = 0.0
    assert x.grad is not None
    assert torch.equal(x.grad, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gradient_mask_is_exactly_the_unsaturated_finite_elements(dtype):
    rng = np.random.default_rng(8)
    x32 = (rng.standard_normal((6, 48)) * np.exp2(rng.integers(-4, 4, (6, 48)))).astype(np.float32)
    x32[2, 5] = np.inf
    x = torch.from_numpy(x32).to(dtype).requires_grad_()
    g = np.float32(40.0)  # big enough that blocks saturate their scales and elements
    y = mt.quantize_dequantize(x, "nvfp4", axis=0, block_size=16, tensor_scale=g)
    y.backward(torch.ones_like(y))
    mx = mxref.quantize(as_float(x.detach()), "nvfp4", axis=0, tensor_scale=g)
    s_b = np.array(E4M3 + [math.nan])[np.repeat(mx.scales, 16, axis=0)[:6]]
    magnitude = np.abs(x.detach().double().numpy()) * float(g)  # exact for these inputs
    passes = ((magnitude <= 6.0 * s_b) | (s_b == 0)) & ~np.isnan(s_b)
    assert x.grad is not None
    assert np.array_equal(x.grad.double().numpy(), passes.astype(np.float64))
    assert (~passes).sum() > 6  # saturation and the Inf block are both there


def as_float(t: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array mxref takes: bfloat16 through ml_dtypes."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def test_no_grad_and_encode_are_not_differentiable():
    x = torch.randn(2, 32, requires_grad=True)
    assert not mt.quantize_dequantize(x.detach(), "nvfp4").requires_grad
    assert all(not part.requires_grad for part in mt.encode(x, "nvfp4"))


# --- arguments ----------------------------------------------------------------------------------


def test_the_nvfp4_presets_are_numpy_only():
    x = torch.ones((2, 32))
    for fn in (mt.quantize_dequantize, mt.encode, mt.quantize, torch_nvfp4.encode):
        with pytest.raises(ValueError, match="preset: 'torchao' for nvfp4 runs in mxref.quantize"):
            fn(x, "nvfp4", preset="torchao")


@pytest.mark.parametrize("kwargs", [
    {"scale_rule": "floor"},
    {"rounding": "stochastic", "seed": 1},
    {"seed": 1},
    {"preset": "quark"},
    {"scales": np.zeros((2, 2), np.uint8)},
    {"tensor_scale": [1.0, 2.0]},
    {"tensor_scale": 0.0},
    {"tensor_scale": 0.1},
    {"tensor_scale": "big"},
    {"per_row": 1},
    {"per_row": True, "tensor_scale": 2.0},
    {"rounding": "up"},
    {"overflow": "wrap"},
    {"axis": 2},
    {"block_size": 0},
])  # fmt: skip
def test_refusals_are_the_numpy_codecs(kwargs):
    x = np.ones((2, 32), np.float32)
    with pytest.raises((ValueError, TypeError)) as numpy_error:
        mxref.quantize(x, "nvfp4", **kwargs)
    for fn in (mt.quantize_dequantize, mt.encode, mt.quantize, torch_nvfp4.encode):
        with pytest.raises(type(numpy_error.value)) as torch_error:
            fn(torch.from_numpy(x), "nvfp4", **kwargs)
        assert str(torch_error.value) == str(numpy_error.value), fn


def test_mx_formats_refuse_the_tensor_scale_arguments():
    x = torch.ones(2, 32)
    for fn in (mt.quantize_dequantize, mt.encode, mt.quantize):
        with pytest.raises(ValueError, match="per_row: mxfp4 has no tensor scale"):
            fn(x, "mxfp4", per_row=True)
        with pytest.raises(ValueError, match="tensor_scale: mxfp8_e4m3 has no tensor scale"):
            fn(x, "mxfp8_e4m3", tensor_scale=1.0)
    with pytest.raises(ValueError, match="fmt: mxfp4 is an MX format"):
        torch_nvfp4.quantize_dequantize(x, "mxfp4")
    assert len(mt.encode(x, "mxfp4")) == 2
    assert mt.encode(x, "mxfp4")[1].shape == (2, 1)  # MX blocks stay 32 by default
    assert mt.encode(x, "nvfp4")[1].shape == (2, 2)


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        mt.quantize_dequantize(np.ones(16, np.float32), "nvfp4")
    with pytest.raises(TypeError, match="x must be a float16"):
        mt.encode(torch.ones(16, dtype=torch.int32), "nvfp4")
    with pytest.raises(ValueError, match="x must have at least one dimension"):
        mt.encode(torch.tensor(1.0), "nvfp4")


# --- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not CUDA, reason="no CUDA device: the CPU tests cover the same code")
def test_cuda_matches_mxref():
    x = structured_float32()
    for rounding in ROUNDINGS:
        check(x, device="cuda", rounding=rounding)
        check(x, device="cuda", rounding=rounding, per_row=True, axis=0)
    check(x, device="cuda", tensor_scale=np.float32(1.0))
    with np.errstate(over="ignore"):
        for dtype in (np.float16, ml_dtypes.bfloat16):
            check(x.astype(dtype), device="cuda")
    check(x.astype(np.float64) * 2.0**300, device="cuda")
    for g in (float(np.float32(1 / 3)), float(np.float32(7e37))):
        check(dekker_blocks(g), device="cuda", tensor_scale=np.float32(g))
    given = torch.tensor(3.0, device="cuda")
    got = mt.quantize_dequantize(torch.from_numpy(x).cuda(), "nvfp4", tensor_scale=given)
    assert_same_bits(got, mxref.quantize_dequantize(x, "nvfp4", tensor_scale=3.0), "given")
