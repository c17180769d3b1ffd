"""Rounding at every midpoint of adjacent codes, at several scales.

For each pair of adjacent codes ``lo < hi`` the midpoint must go to the even
code under RNE (to ``hi`` under ties-away, to ``lo`` toward zero), and the
float just inside the midpoint on each side must go to that side's code.  A
lane holding ``max_normal * X`` pins the block scale to ``X`` under FLOOR.

Spec: OCP MX v1.0 section 6.3 (roundTiesToEven; clamp to max normal).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import mxref
from mxref.ref.element import pow2
from mxref.testing.cases import adjacent_pairs, signed_code

FORMATS = mxref.mx_format_names()
LANES = 31  # test lanes per block; lane 0 holds the scale anchor


def scale_exponents(fmt: mxref.ElementFormat) -> list[int]:
    """Unit scale, the E8M0 extremes the float32 range allows, and two in between."""
    return [0, -127, -100, 50, 126 - fmt.emax]


def expected_for(rounding: str, lo: int, hi: int, where: str) -> int | None:
    """The code for an input at ``where`` in (lo, hi) under ``rounding`` (None: either)."""
    if rounding == "stochastic":
        return None
    if where == "below":
        return lo
    if where == "above":
        return lo if rounding == "zero" else hi
    return {"rne": lo if lo % 2 == 0 else hi, "away": hi, "zero": lo}[rounding]


def build_blocks(fmt, dtype, rounding):
    """Blocks of (value, allowed codes); returns x, expected, allowed-mask, anchor lanes."""
    values, wanted = [], []
    for k in scale_exponents(fmt):
        scale = pow2(k)
        anchor = float(fmt.max_normal * scale)
        cases = []
        for lo, vlo, hi, vhi in adjacent_pairs(fmt):
            mid = float((vlo + vhi) / 2 * scale)
            below = np.nextafter(dtype(mid), dtype(-np.inf))
            above = np.nextafter(dtype(mid), dtype(np.inf))
            for sign in (0, 1):
                s = -1 if sign else 1
                for where, v in (("mid", dtype(mid)), ("below", below), ("above", above)):
                    e = expected_for(rounding, lo, hi, where)
                    allowed = (
                        (signed_code(sign, lo, fmt), signed_code(sign, hi, fmt))
                        if e is None
                        else (signed_code(sign, e, fmt),) * 2
                    )
                    cases.append((dtype(s * v), allowed))
        for i in range(0, len(cases), LANES):
            chunk = cases[i : i + LANES]
            chunk += [(dtype(0.0), (0, 0))] * (LANES - len(chunk))
            values.append([dtype(anchor)] + [v for v, _ in chunk])
            wanted.append([(fmt.max_code, fmt.max_code)] + [a for _, a in chunk])
    x = np.array(values, dtype)
    allowed = np.array(wanted, np.int64)  # (..., 2)
    return x, allowed


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("rounding", ["rne", "away", "zero", "stochastic"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_midpoints_and_their_neighbours(name, rounding, dtype, mx_encode):
    fmt = mxref.get_format(name)
    x, allowed = build_blocks(fmt, dtype, rounding)
    seed = 12345 if rounding == "stochastic" else None
    got_codes, got_scales = mx_encode(x, fmt, rounding=rounding, seed=seed)
    codes = got_codes.astype(np.int64)
    ok = (codes == allowed[..., 0]) | (codes == allowed[..., 1])
    bad = np.argwhere(~ok)
    assert not bad.size, (
        f"{len(bad)} wrong; first {tuple(bad[0])}: input {x[tuple(bad[0])]!r} -> "
        f"{codes[tuple(bad[0])]:#x}, allowed {[hex(c) for c in allowed[tuple(bad[0])]]}"
    )
    # the anchor pins every block's scale to the intended X (the test's premise)
    anchors = [127 + k for k in scale_exponents(fmt)]
    assert set(np.unique(got_scales).tolist()) == set(anchors)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("overflow", ["saturate", "ieee"])
def test_rounding_above_max_normal(name, overflow, mx_encode):
    """Midpoint between max normal and the next (unrepresentable) step, under RNE."""
    fmt = mxref.get_format(name)
    step = pow2(fmt.emax - fmt.mbits)
    mid = fmt.max_normal + step / 2
    x = np.array(
        [float(fmt.max_normal), float(mid), np.nextafter(float(mid), -np.inf),
         np.nextafter(float(mid), np.inf), float(fmt.max_normal + step * 3 / 4)],
        np.float64,
    )  # fmt: skip
    codes, scales = mx_encode(x, fmt, overflow=overflow)
    assert scales[0] == 127
    top = fmt.max_code
    over = fmt.overflow_code if overflow == "ieee" and fmt.overflow_code is not None else top
    # at the tie RNE picks the even neighbour: max normal if its code is even
    at_mid = top if top % 2 == 0 else over
    assert codes.tolist() == [top, at_mid, top, over, over]


def test_known_ties_in_mxfp4(mx_encode):
    """0.25, 0.75, 2.5 and 5.0 are ties in E2M1 (notes section 5, case 3)."""
    x = np.array([6.0, 0.25, 0.75, 2.5, 5.0], np.float32)
    rne, _ = mx_encode(x, "mxfp4")
    away, _ = mx_encode(x, "mxfp4", rounding="away")
    assert rne.tolist() == [0x7, 0x0, 0x2, 0x4, 0x6]  # 6, 0, 1, 2, 4
    assert away.tolist() == [0x7, 0x1, 0x2, 0x5, 0x7]  # 6, 0.5, 1, 3, 6


def test_e4m3_overflow_boundary_464(mx_encode):
    """464 is the tie between 448 and 480: RNE keeps 448; anything above overflows."""
    x = np.array([448.0, 464.0, np.nextafter(np.float32(464), np.float32(500)), 480.0], np.float32)
    sat, _ = mx_encode(x, "mxfp8_e4m3")
    ieee, _ = mx_encode(x, "mxfp8_e4m3", overflow="ieee")
    assert sat.tolist() == [0x7E, 0x7E, 0x7E, 0x7E]
    assert ieee.tolist() == [0x7E, 0x7E, 0x7F, 0x7F]
    assert Fraction(448) == mxref.get_format("mxfp8_e4m3").max_normal
