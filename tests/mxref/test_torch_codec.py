"""mxref.torch against mxref, bit for bit, plus its gradient and argument checks.

Every comparison is on integer views of the results (NaN payloads and signed
zeros included), never with a float tolerance.

Spec: OCP MX v1.0 sections 5.1, 5.4.1 and 6.3.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mxref
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import get_preset, preset_names
from mxref.testing.cases import encode_blocks
from mxref.testing.strategies import mx_input
from mxref.torch import encode, quantize_dequantize

FORMATS = mxref.mx_format_names()
RULES = [r.value for r in ScaleRule]
ROUNDINGS = [r.value for r in Rounding]
OVERFLOWS = [o.value for o in Overflow]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.uint8: torch.uint8,
}
HYPOTHESIS = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CUDA = torch.cuda.is_available()

#: the MX presets every MX format has (compressed-tensors, which has two, is tested apart)
PRESETS = [n for n in preset_names() if not get_preset(n).formats]


def assert_same_bits(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Equal dtype, shape and bits; on failure name the first differing element in hex."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    g = got.detach().cpu().contiguous().view(INT_VIEW[got.dtype])
    w = want.detach().cpu().contiguous().view(INT_VIEW[want.dtype])
    bad = (g != w).nonzero()
    if len(bad):
        idx = tuple(bad[0].tolist())
        mask = (1 << (8 * g.element_size())) - 1
        raise AssertionError(
            f"{what}: {len(bad)} of {g.numel()} differ; first at {idx}: "
            f"got {int(g[idx]) & mask:#x}, want {int(w[idx]) & mask:#x}"
        )


def check(x: torch.Tensor, fmt: str, device: str | None = None, **kwargs) -> None:
    """quantize_dequantize and encode on ``device`` equal mxref's on the CPU."""
    context = f"{fmt} {kwargs} {x.dtype} shape={tuple(x.shape)}"
    xd = x if device is None else x.to(device)
    want = mxref.quantize_dequantize(x, fmt, **kwargs)
    got = quantize_dequantize(xd, fmt, **kwargs)
    assert got.device == xd.device, context
    assert_same_bits(got, want, f"values [{context}]")
    mx = mxref.quantize(x, fmt, **kwargs)
    codes, scales = encode(xd, fmt, **kwargs)
    assert codes.device == xd.device, context
    assert scales.device == xd.device, context
    assert_same_bits(codes, torch.from_numpy(mx.codes), f"codes [{context}]")
    assert_same_bits(scales, torch.from_numpy(mx.scales), f"scales [{context}]")


def as_dtype(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A float32 numpy array as a torch tensor of ``dtype`` (rounded once, overflow to Inf)."""
    return torch.from_numpy(x).to(dtype)


def structured(fmt: str) -> np.ndarray:
    """TestFloat level-1 blocks for ``fmt``: powers of two and neighbours, ties, saturation,
    subnormals, NaN/Inf blocks, signed zeros (mxref.testing.cases)."""
    blocks = encode_blocks(mxref.get_format(fmt), 1)
    return np.stack([case.array() for case in blocks])


# --- hypothesis -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rule", RULES)
@HYPOTHESIS
@given(data=st.data())
def test_hypothesis_matches_mxref(fmt, rule, data):
    x = data.draw(mx_input(fmt), label="x")
    rounding = data.draw(st.sampled_from(ROUNDINGS), label="rounding")
    overflow = data.draw(st.sampled_from(OVERFLOWS), label="overflow")
    block_size = data.draw(st.sampled_from([32, 32, 1, 7, 33]), label="block_size")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    seed = data.draw(st.integers(0, 2**64 - 1), label="seed") if rounding == "stochastic" else None
    t = as_dtype(x, dtype)
    if data.draw(st.booleans(), label="3-d"):
        # a middle axis with inner > 1: blocks are strided in memory
        t = t.reshape(t.shape[0], 1, t.shape[1]).expand(-1, 3, -1).transpose(1, 2).contiguous()
        axis = 1
    else:
        axis = data.draw(st.sampled_from([-1, 0]), label="axis")
    check(t, fmt, axis=axis, block_size=block_size, scale_rule=rule, rounding=rounding,
          overflow=overflow, seed=seed)  # fmt: skip


# --- structured cases -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_structured_blocks_every_policy(fmt):
    """Every scale rule x rounding x overflow on the structured blocks, float32 and float64."""
    x32 = torch.from_numpy(structured(fmt))
    for rule, rounding, overflow in itertools.product(RULES, ROUNDINGS, OVERFLOWS):
        seed = 12345 if rounding == "stochastic" else None
        kwargs = {"scale_rule": rule, "rounding": rounding, "overflow": overflow, "seed": seed}
        check(x32, fmt, **kwargs)
        # float64 holds the same values; the E8M0 clamp and the clamp of |x| / X differ there
        check(x32.double() * 2.0**300, fmt, **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_structured_blocks_every_preset(fmt, preset):
    """The presets' quirks too: microxcaling's +0 for -0, torchao's 2**-126 divisor."""
    x = torch.from_numpy(structured(fmt))
    check(x, fmt, preset=preset)
    check(x.T.contiguous(), fmt, preset=preset, axis=0, block_size=13)
    check(x.to(torch.bfloat16), fmt, preset=preset)


def test_presets_change_results():
    """The quirks are live: a wrong preset mapping would make these equal."""
    x = torch.zeros(32)
    x[0], x[1] = -0.0, 1.5 * 2.0**-137  # amax gives the scale byte 0x00
    assert encode(x, "mxfp4")[0][0] == 0x8  # -0 keeps its code
    assert encode(x, "mxfp4", preset="microxcaling")[0][0] == 0x0  # -0 becomes +0
    # divided by 2**-127, 1.5 * 2**-10 rounds to E4M3's 2**-9; divided by 2**-126 it rounds to 0
    assert quantize_dequantize(x, "mxfp8_e4m3")[1] == 2.0**-136
    assert quantize_dequantize(x, "mxfp8_e4m3", preset="torchao")[1] == 0.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_structured_blocks_half_inputs_and_layouts(fmt):
    """float16/bfloat16 inputs, a non-last axis and a short last block."""
    x = structured(fmt)
    for dtype in (torch.float16, torch.bfloat16):
        check(as_dtype(x, dtype), fmt, overflow="ieee")
    t = torch.from_numpy(x)
    check(t.T, fmt, axis=0, block_size=32)  # non-contiguous input
    check(t, fmt, axis=0, block_size=5, rounding="stochastic", seed=7)
    check(t.reshape(-1, 8, 4), fmt, axis=1, block_size=3, rounding="away")


# --- targeted properties --------------------------------------------------------------------


def test_float64_is_rounded_once_not_through_float32():
    """0.25 + 2**-40 is above the E2M1 tie at 0.25: one rounding gives 0.5, two give 0."""
    x = torch.tensor([6.0, 0.25 + 2.0**-40, 5.0 + 2.0**-30], dtype=torch.float64)
    got = quantize_dequantize(x, "mxfp4")
    assert got.dtype == torch.float64
    assert got.tolist() == [6.0, 0.5, 6.0]
    assert encode(x, "mxfp4")[0].tolist() == [0x7, 0x1, 0x7]
    assert quantize_dequantize(x.float(), "mxfp4").tolist() == [6.0, 0.0, 4.0]
    check(x, "mxfp4")


@pytest.mark.parametrize("rule", RULES)
def test_float64_extremes(rule):
    """float64 subnormal amaxes (normalised from their bits) and amaxes near 2**1023, whose
    E8M0 exponent clamps at 127 and leaves |x| / X far above the element range."""
    rng = np.random.default_rng(4)
    exps = rng.choice([-1074, -1060, -1030, -140, -3, 0, 5, 1000, 1023], size=(6, 40))
    x = np.ldexp(rng.random((6, 40)) + 0.5, exps) * rng.choice([-1.0, 1.0], size=(6, 40))
    x[0, :3] = [5e-324, -0.0, 0.0]
    t = torch.from_numpy(x)
    for rounding, overflow in itertools.product(ROUNDINGS, OVERFLOWS):
        seed = 1 if rounding == "stochastic" else None
        for fmt in FORMATS:
            check(t, fmt, scale_rule=rule, rounding=rounding, overflow=overflow, seed=seed,
                  block_size=8)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_round_once_and_keep_dtype(dtype):
    """Results are exactly the float32 result rounded once, in the input's dtype."""
    x = (torch.randn(8, 64, generator=torch.Generator().manual_seed(1)) * 30).to(dtype)
    got = quantize_dequantize(x, "mxint8")
    assert got.dtype == dtype
    assert torch.equal(got, quantize_dequantize(x.float(), "mxint8").to(dtype))
    check(x, "mxint8")


def test_axis0_with_short_last_block():
    x = torch.randn(70, 3, generator=torch.Generator().manual_seed(2))
    codes, scales = encode(x, "mxfp6_e2m3", axis=0)
    assert codes.shape == (70, 3)
    assert scales.shape == (3, 3)
    # the short block holds rows 64..69 only: scaling it alone gives the same bits
    tail = quantize_dequantize(x[64:], "mxfp6_e2m3", axis=0)
    assert torch.equal(quantize_dequantize(x, "mxfp6_e2m3", axis=0)[64:], tail)
    check(x, "mxfp6_e2m3", axis=0)
    check(x, "mxfp6_e2m3", axis=-2, block_size=9, rounding="stochastic", seed=3)


def test_stochastic_reproduces_and_equals_mxref():
    x = torch.randn(16, 96, generator=torch.Generator().manual_seed(3))
    a = quantize_dequantize(x, "mxfp4", rounding="stochastic", seed=2**64 - 1)
    b = quantize_dequantize(x, "mxfp4", rounding="stochastic", seed=2**64 - 1)
    c = quantize_dequantize(x, "mxfp4", rounding="stochastic", seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for seed in (0, 5, 2**63, 2**64 - 1):
        check(x, "mxfp4", rounding="stochastic", seed=seed)
        check(x.double(), "mxfp8_e5m2", axis=0, block_size=10, rounding="stochastic", seed=seed)


def test_nan_and_inf_blocks():
    x = torch.tensor([[1.0, -float("nan"), -0.0, -2.0], [float("inf"), 0.5, -1.0, 0.0],
                      [1.0, 2.0, -3.0, 0.0]])  # fmt: skip
    for fmt in FORMATS:
        got = quantize_dequantize(x, fmt)
        assert torch.isnan(got[:2]).all()
        assert not torch.isnan(got[2]).any()
        assert encode(x, fmt)[1][:2].tolist() == [[0xFF], [0xFF]]
        check(x, fmt)
        check(x.to(torch.bfloat16), fmt)
        check(x.half(), fmt)


# --- gradient --------------------------------------------------------------------------------


def test_gradient_is_straight_through_and_zero_where_saturated():
    """mxfp4 FLOOR: amax 7.5 gives X = 2**(2 - 2) = 1 and 7.5, 6.5 and -7 saturate to +-6."""
    block = [7.5, 6.5, -7.0, 6.0, -6.0, 1.0, 0.3, -2.9] + [0.1] * 24
    x = torch.tensor([block, [1.0] * 31 + [float("nan")]], requires_grad=True)
    y = quantize_dequantize(x, "mxfp4")
    assert y[0, :5].tolist() == [6.0, 6.0, -6.0, 6.0, -6.0]
    y.sum().backward()
    expected = torch.ones(2, 32)
    expected[0, :3] = 0.0  # saturated: |x| / X > 6
    expected[1] = 0.0  # NaN block
    assert x.grad is not None
    assert torch.equal(x.grad, expected)


def test_gradient_flows_with_other_dtypes_and_axes():
    """CEIL never saturates: every gradient passes, through float64 and a short block on axis 0."""
    x = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)
    y = quantize_dequantize(x, "mxfp8_e4m3", axis=0, scale_rule="ceil")
    (y * 3).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.full_like(x, 3.0))
    assert not quantize_dequantize(x.detach(), "mxfp4").requires_grad


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [quantize_dequantize, encode])
@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        (np.ones(32, np.float32), {}, TypeError, "x must be a torch.Tensor"),
        (torch.ones(32, dtype=torch.int32), {}, TypeError, "x must be a float16"),
        (torch.tensor(1.0), {}, ValueError, "x must have at least one dimension"),
        (torch.ones(32), {"fmt": "fp4"}, ValueError, "unknown format"),
        (torch.ones(32), {"preset": "ocp", "rounding": "rne"}, ValueError, "preset fixes rounding"),
        (torch.ones(32), {"preset": "nvidia"}, ValueError, "preset must be one of"),
        (torch.ones(32), {"rounding": "stochastic"}, ValueError, "needs seed"),
        (torch.ones(32), {"seed": 1}, ValueError, "seed is only used"),
        (torch.ones(32), {"scale_rule": "round"}, ValueError, "scale_rule must be one of"),
        (torch.ones(32), {"overflow": "wrap"}, ValueError, "overflow must be one of"),
        (torch.ones(32), {"axis": 1}, ValueError, "axis 1 is out of range"),
        (torch.ones(32), {"block_size": 0}, ValueError, "block_size must be >= 1"),
    ],
)
def test_errors_name_the_argument(fn, x, kwargs, error, match):
    kwargs = {"fmt": "mxfp4", **kwargs}
    with pytest.raises(error, match=match):
        fn(x, **kwargs)


def test_empty_input():
    x = torch.empty(0, 32)
    assert quantize_dequantize(x, "mxfp4").shape == (0, 32)
    codes, scales = encode(x, "mxfp4")
    assert codes.shape == (0, 32)
    assert scales.shape == (0, 1)


# --- CUDA -----------------------------------------------------------------------------------


@pytest.mark.skipif(not CUDA, reason="no CUDA device: the CPU tests cover the same code")
@pytest.mark.parametrize("fmt", FORMATS)
def test_cuda_matches_mxref(fmt):
    x = torch.from_numpy(structured(fmt))
    for rule, rounding, overflow in itertools.product(RULES, ROUNDINGS, OVERFLOWS):
        seed = 99 if rounding == "stochastic" else None
        kwargs = {"scale_rule": rule, "rounding": rounding, "overflow": overflow, "seed": seed}
        check(x, fmt, device="cuda", **kwargs)
        check(x.double(), fmt, device="cuda", axis=0, block_size=20, **kwargs)
    for dtype in (torch.float16, torch.bfloat16):
        check(x.to(dtype), fmt, device="cuda", overflow="ieee")
    for preset in PRESETS:
        check(x, fmt, device="cuda", preset=preset)


@pytest.mark.skipif(not CUDA, reason="no CUDA device: the CPU tests cover the same code")
@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(data=st.data())
def test_cuda_hypothesis_matches_mxref(data):
    fmt = data.draw(st.sampled_from(FORMATS))
    x = data.draw(mx_input(fmt), label="x")
    rounding = data.draw(st.sampled_from(ROUNDINGS))
    seed = data.draw(st.integers(0, 2**64 - 1)) if rounding == "stochastic" else None
    check(as_dtype(x, data.draw(st.sampled_from(DTYPES))), fmt, device="cuda",
          scale_rule=data.draw(st.sampled_from(RULES)), rounding=rounding,
          overflow=data.draw(st.sampled_from(OVERFLOWS)), seed=seed,
          block_size=data.draw(st.sampled_from([32, 7])))  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_negative_nan_in_a_short_float16_block_keeps_its_sign(dtype):
    # torch's scalar float16 -> float32 cast turns -NaN into +NaN; a NaN block's values
    # carry their inputs' signs (found by mx_input's negative NaNs)
    x = np.zeros((3, 5), np.float32)
    x[1, 3] = np.copysign(np.nan, -1.0)
    check(torch.from_numpy(x).to(dtype), "mxfp6_e3m2", block_size=32, scale_rule="even")
