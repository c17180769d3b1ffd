"""TestFloat-style structured cases for MX conformance tests.

Cases come from structure, not only randomness (Berkeley TestFloat): boundary
exponents crossed with significand bit patterns (walking ones, runs of ones,
single-zero holes), and the midpoints of every pair of adjacent codes with
the floats just inside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from mxref.formats import ElementFormat
from mxref.ref.element import apply_sign, decode_element

FRACTION_BITS = 23


def significand_patterns(level: int) -> list[int]:
    """23-bit fraction patterns: zero, all ones, walking ones, runs and holes.

    Level 1 keeps a representative subset; level 2 keeps every position.
    """
    full = (1 << FRACTION_BITS) - 1
    step = 1 if level >= 2 else 4
    pats = {0, full, 1, full - 1, 1 << (FRACTION_BITS - 1)}
    for i in range(0, FRACTION_BITS, step):
        pats.add(1 << i)  # walking one
        pats.add(full ^ (1 << i))  # single-zero hole
        pats.add(full >> i)  # run of trailing ones
        pats.add((full << i) & full)  # run of leading ones
    return sorted(pats)


def float32_from_fields(sign: int, biased_exp: int, fraction: int) -> np.float32:
    """The float32 with the given fields."""
    bits = (sign << 31) | (biased_exp << 23) | fraction
    return np.array([bits], np.uint32).view(np.float32)[0]


def boundary_values(level: int) -> np.ndarray:
    """float32 values at boundary exponents x significand patterns, both signs.

    Exponents cover the fp32 subnormals and extremes and the band where MX
    element grids live (|x| from 2**-20 to 2**20 around a unit scale).
    """
    biased = {0, 1, 2, 126, 127, 128, 253, 254}
    biased.update(range(127 - 20, 127 + 21, 1 if level >= 2 else 3))
    out = [
        float32_from_fields(s, e, f)
        for e in sorted(biased)
        for f in significand_patterns(level)
        for s in (0, 1)
        if not (e == 0 and f == 0 and s == 1)
    ]
    return np.array(out, np.float32)


def positive_grid(fmt: ElementFormat) -> list[tuple[int, Fraction]]:
    """Every non-negative finite (magnitude code, value) of ``fmt``, ascending."""
    grid = []
    for code in range(fmt.max_code + 1):
        sign, mag = decode_element(code, fmt)
        assert sign == 0
        assert isinstance(mag, Fraction)
        grid.append((code, mag))
    return grid


def adjacent_pairs(fmt: ElementFormat) -> Iterator[tuple[int, Fraction, int, Fraction]]:
    """Every pair of adjacent non-negative codes: (lo_code, lo, hi_code, hi)."""
    grid = positive_grid(fmt)
    for (c0, v0), (c1, v1) in zip(grid, grid[1:], strict=False):
        yield c0, v0, c1, v1


def signed_code(sign: int, magnitude_code: int, fmt: ElementFormat) -> int:
    """The full code of a signed magnitude code."""
    return apply_sign(sign, magnitude_code, fmt)
