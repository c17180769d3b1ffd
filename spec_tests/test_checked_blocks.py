"""``mxref conform``'s per-check blocks on the quantize under test, against the exact oracle.

The blocks are :func:`mxref.testing.cases.checked_blocks`, the ones the
conform runner sends, so the pytest battery and ``mxref conform`` test the
same inputs.  A mismatch is reported by the check the block feeds (the ids
of ``docs/conformance.md``), its note and the first differing lane.

Spec: OCP MX v1.0 section 6.3.
"""

from __future__ import annotations

import numpy as np
import pytest

import mxref
from mxref.conformance.checks import CHECKS
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.array import quantize_array
from mxref.testing.cases import BlockCase, checked_blocks
from spec_tests.conftest import Encoder

FORMATS = mxref.mx_format_names()
RULES = [r.value for r in ScaleRule]
SHOWN = 3  # failing blocks described in a failure message
QUANTIZE_AREAS = ("scale", "rounding", "saturation", "special")


def _describe(block: BlockCase, checks: list[str], got: np.ndarray, want: np.ndarray,
              got_scale: int, want_scale: int) -> str:  # fmt: skip
    lanes = np.flatnonzero(got != want)
    where = (f"lane {lanes[0]}: input {block.inputs[lanes[0]]:#010x} -> code "
             f"{got[lanes[0]]:#04x}, oracle {want[lanes[0]]:#04x}" if lanes.size
             else "codes equal")  # fmt: skip
    return (f"{', '.join(checks)} ({block.note}): scale {got_scale:#04x}, oracle "
            f"{want_scale:#04x}; {where}")  # fmt: skip


def check_blocks(name: str, encode, *, block_size: int = 32, rule: str = "floor",
                 rounding: str = "rne", overflow: str = "saturate") -> None:  # fmt: skip
    """Every checked block of ``name`` through ``encode`` equals the oracle, per check."""
    fmt = mxref.get_format(name)
    blocks = checked_blocks(fmt, block_size, level=1, seed=0)
    x = np.array([b.inputs for b in blocks], np.uint32).view(np.float32)
    seed = 2026 if rounding == "stochastic" else None
    policy = {"scale_rule": rule, "rounding": rounding, "overflow": overflow, "seed": seed}
    got_codes, got_scales = encode(x, fmt, block_size=block_size, **policy)
    codes, scales = quantize_array(
        x, fmt, axis=-1, block_size=block_size, scale_rule=ScaleRule(rule),
        rounding=Rounding(rounding), overflow=Overflow(overflow), seed=seed,
    )  # fmt: skip
    got_scales, scales = got_scales.reshape(-1), scales.reshape(-1)
    bad_codes = (got_codes != codes).any(axis=1)
    bad_scale = got_scales != scales
    failures = []
    for i in np.flatnonzero(bad_codes | bad_scale):
        block = blocks[i]
        failed = [check for check, compares in block.checks
                  if (compares in ("codes", "both") and bad_codes[i])
                  or (compares in ("scale", "both") and bad_scale[i])]  # fmt: skip
        if failed:
            failures.append(_describe(block, failed, got_codes[i], codes[i],
                                      int(got_scales[i]), int(scales[i])))  # fmt: skip
    context = f"{name} {rule}/{rounding}/{overflow} block {block_size}"
    assert not failures, (
        f"[{context}] {len(failures)} of {len(blocks)} blocks differ from the oracle; first: "
        + " | ".join(failures[:SHOWN])
    )


def test_every_group_sends_blocks_of_the_asked_size() -> None:
    """The premise: every quantize check of conform gets blocks, all ``block_size`` wide."""
    for block_size in (32, 8):
        blocks = checked_blocks(mxref.get_format("mxfp4"), block_size)
        assert {len(b.inputs) for b in blocks} == {block_size}
        fed = {check for b in blocks for check, _ in b.checks}
        quantize_checks = {c.id for c in CHECKS.values() if c.area in QUANTIZE_AREAS}
        assert fed == quantize_checks
        assert all(CHECKS[check].area == b.area for b in blocks for check, _ in b.checks)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("rule", RULES)
def test_checked_blocks_under_each_scale_rule(name, rule, mx_encode):
    check_blocks(name, mx_encode, rule=rule)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("rounding", ["away", "zero", "stochastic"])
def test_checked_blocks_under_each_rounding(name, rounding, mx_encode):
    check_blocks(name, mx_encode, rounding=rounding)


@pytest.mark.parametrize("name", FORMATS)
def test_checked_blocks_with_ieee_overflow(name, mx_encode):
    check_blocks(name, mx_encode, overflow="ieee")


@pytest.mark.parametrize("name", FORMATS)
def test_checked_blocks_of_eight_lanes(name, mx_encode):
    check_blocks(name, mx_encode, block_size=8)


def test_a_wrong_backend_is_reported_by_check() -> None:
    """A backend that rounds ties away fails, and the message names the midpoint check."""

    def ties_away(x, fmt, **policy):
        return mxref.quantize(x, fmt, **{**policy, "rounding": "away"})

    with pytest.raises(AssertionError, match=r"rounding\.midpoints \(scale pinned to 2\*\*0"):
        check_blocks("mxfp4", Encoder(ties_away))
