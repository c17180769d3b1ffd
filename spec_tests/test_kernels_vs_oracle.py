"""The numba kernels against the exact oracle, bit for bit.

Every format x scale rule, with hypothesis choosing rounding, overflow,
block size, axis and input dtype; plus structured TestFloat-style blocks and
every pred/succ power of two as amax.

Spec: OCP MX v1.0 sections 5.1 and 6.3.
"""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mxref
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.array import dequantize_array, quantize_array
from mxref.testing.cases import boundary_values
from mxref.testing.strategies import mx_input
from spec_tests.assertions import assert_bits_equal

FORMATS = mxref.mx_format_names()
RULES = [r.value for r in ScaleRule]
ROUNDINGS = [r.value for r in Rounding]
OVERFLOWS = [o.value for o in Overflow]


def check_against_oracle(x, fmt, encode, *, axis=-1, block_size=32, rule="floor",
                         rounding="rne", overflow="saturate", seed=None):  # fmt: skip
    """The quantize under test (``encode``, the mx_encode fixture) equals the oracle.

    Without --mx-backend, mxref's dequantize and quantize_dequantize are
    checked too; a backend is checked on its codes and scales only.
    """
    policy = {"scale_rule": rule, "rounding": rounding, "overflow": overflow, "seed": seed}
    got_codes, got_scales = encode(x, fmt, axis=axis, block_size=block_size, **policy)
    codes, scales = quantize_array(
        x, fmt, axis=axis, block_size=block_size, scale_rule=ScaleRule(rule),
        rounding=Rounding(rounding), overflow=Overflow(overflow), seed=seed,
    )  # fmt: skip
    context = f"{fmt.name} {rule} {rounding} {overflow} axis={axis} bs={block_size} {x.dtype}"
    assert_bits_equal(got_scales, scales, f"scales [{context}]")
    assert_bits_equal(got_codes, codes, f"codes [{context}]", inputs=x)
    if not encode.is_mxref:
        return
    mx = mxref.quantize(x, fmt, axis=axis, block_size=block_size, **policy)
    decoded = mxref.dequantize(mx)
    assert_bits_equal(decoded, dequantize_array(codes, scales, fmt, axis, block_size),
                      f"decode [{context}]")  # fmt: skip
    fused = mxref.quantize_dequantize(x, fmt, axis=axis, block_size=block_size, **policy)
    assert_bits_equal(fused, mxref.dequantize(mx, x.dtype), f"fused [{context}]", inputs=x)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("rule", RULES)
@given(data=st.data())
def test_hypothesis_blocks(name, rule, data, mx_encode):
    fmt = mxref.get_format(name)
    x = data.draw(mx_input(fmt), label="x")
    # only what the backend claims (all of it for mxref)
    rounding = data.draw(st.sampled_from(mx_encode.claimed("roundings", ROUNDINGS)),
                         label="rounding")  # fmt: skip
    overflow = data.draw(st.sampled_from(mx_encode.claimed("overflows", OVERFLOWS)),
                         label="overflow")  # fmt: skip
    block_size = data.draw(st.sampled_from([32, 32, 1, 7, 33]), label="block_size")
    axis = data.draw(st.sampled_from([-1, 0]), label="axis")
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16, ml_dtypes.bfloat16]))
    seed = data.draw(st.integers(0, 2**64 - 1)) if rounding == "stochastic" else None
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    check_against_oracle(x, fmt, mx_encode, axis=axis, block_size=block_size, rule=rule,
                         rounding=rounding, overflow=overflow, seed=seed)  # fmt: skip


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("rule", RULES)
def test_structured_boundary_blocks(name, rule, mx_encode):
    """TestFloat level 1: boundary exponents x significand patterns, shuffled into blocks."""
    fmt = mxref.get_format(name)
    values = boundary_values(level=1)
    rng = np.random.default_rng(2026)
    x = rng.permutation(values)[: (values.size // 32) * 32].reshape(-1, 32)
    roundings, overflows = (mx_encode.claimed("roundings", ROUNDINGS),
                            mx_encode.claimed("overflows", OVERFLOWS))  # fmt: skip
    for rounding, overflow in itertools.product(roundings, overflows):
        seed = 99 if rounding == "stochastic" else None
        check_against_oracle(x, fmt, mx_encode, rule=rule, rounding=rounding, overflow=overflow,
                             seed=seed)  # fmt: skip


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("rule", RULES)
def test_every_power_of_two_neighbour_as_amax(name, rule, mx_encode):
    """amax = pred(2**k), 2**k, succ(2**k) for every float32 k, with a fixed block body."""
    fmt = mxref.get_format(name)
    pows = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    amaxes = np.concatenate([np.nextafter(pows, np.float32(0)), pows,
                             np.nextafter(pows, np.float32(np.inf))])  # fmt: skip
    amaxes = amaxes[np.isfinite(amaxes) & (amaxes > 0)]
    body = np.array([0.7, -0.3, 0.51, -0.99, 0.25, 1e-3, -0.0, 0.5], np.float32)
    x = np.concatenate([amaxes[:, None], amaxes[:, None] * body[None, :]], axis=1)
    check_against_oracle(x.astype(np.float32), fmt, mx_encode, rule=rule)
    check_against_oracle(x.astype(np.float64), fmt, mx_encode, rule=rule, rounding="away")


def test_float64_is_rounded_once_not_through_float32(mx_encode):
    """0.25 + 2**-40 is above the E2M1 tie at 0.25: one rounding gives 0.5, two give 0."""
    x = np.array([6.0, 0.25 + 2.0**-40, 5.0 + 2.0**-30], np.float64)
    codes, _ = mx_encode(x, "mxfp4")
    assert codes.tolist() == [0x7, 0x1, 0x7]  # 6.0, 0.5, 6.0
    # through float32 the two inputs collapse onto the ties and go to even
    codes32, _ = mx_encode(x.astype(np.float32), "mxfp4")
    assert codes32.tolist() == [0x7, 0x0, 0x6]  # 6.0, 0.0, 4.0
