"""float32 bit patterns and element grids: the vocabulary every case is built from.

Cases are float32 *bit patterns* (Python ints) so that they are the same on
every machine; a value that is not a float32 already is rounded once,
exactly, by the oracle (:func:`mxref.ref.element.encode_float`).

Spec: OCP MX v1.0 section 5.3 (the element grids, Tables 2-6).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.formats import ElementFormat
from mxref.ref.element import BINARY32, apply_sign, decode_element, encode_float, pow2

#: Width of the float32 fraction field.
FRACTION_BITS = 23


#: float32 bit patterns used throughout.
F32_SIGN = 0x80000000


F32_INF = 0x7F800000


F32_QNAN = 0x7FC00000


F32_MAX = 0x7F7FFFFF


F32_MIN_SUBNORMAL = 0x00000001


F32_MIN_NORMAL = 0x00800000


def f32_bits(value: Fraction | int, sign: int = 0) -> int:
    """The float32 bit pattern of an exact value, rounded once (RNE).

    Parameters
    ----------
    value : Fraction or int
        A non-negative magnitude; above the float32 range it becomes Inf.
    sign : int
        0 or 1.
    """
    return encode_float((sign, Fraction(value)), BINARY32)


def f32_pow2(k: int, sign: int = 0) -> int:
    """The float32 bits of ``2**k`` (rounded once if out of range)."""
    return f32_bits(pow2(k), sign)


def f32_value(bits: int) -> Fraction:
    """The exact value of finite float32 bits (a signed Fraction)."""
    sign, mag = decode_element(bits, BINARY32)
    if not isinstance(mag, Fraction):
        raise ValueError(f"float32 {bits:#010x} is not finite")
    return -mag if sign else mag


def next_up(bits: int) -> int:
    """The next float32 away from zero (same sign); a finite pattern is expected."""
    return bits + 1


def next_down(bits: int) -> int:
    """The next float32 toward zero (same sign); nonzero finite patterns only."""
    if bits & ~F32_SIGN == 0:
        raise ValueError("zero has no next value toward zero")
    return bits - 1


def negate(bits: int) -> int:
    """Flip the float32 sign bit."""
    return bits ^ F32_SIGN


def positive_grid(fmt: ElementFormat) -> list[tuple[int, Fraction]]:
    """Every non-negative finite (magnitude code, value) of ``fmt``, ascending.

    Spec: OCP MX v1.0 section 5.3 (Tables 2-6).
    """
    grid = []
    for code in range(fmt.max_code + 1):
        sign, mag = decode_element(code, fmt)
        assert sign == 0
        assert isinstance(mag, Fraction)
        grid.append((code, mag))
    return grid


def adjacent_pairs(fmt: ElementFormat) -> Iterator[tuple[int, Fraction, int, Fraction]]:
    """Every pair of adjacent non-negative codes: (lo_code, lo, hi_code, hi).

    Spec: OCP MX v1.0 section 5.3 (Tables 2-6).
    """
    grid = positive_grid(fmt)
    for (c0, v0), (c1, v1) in zip(grid, grid[1:], strict=False):
        yield c0, v0, c1, v1


def signed_code(sign: int, magnitude_code: int, fmt: ElementFormat) -> int:
    """The full code of a signed magnitude code."""
    return apply_sign(sign, magnitude_code, fmt)


def finite_codes(fmt: ElementFormat) -> list[int]:
    """Every code of ``fmt`` that decodes to a finite value (both signs).

    Spec: OCP MX v1.0 section 5.3 (Tables 2-6).
    """
    return [c for c in range(fmt.code_count) if isinstance(decode_element(c, fmt)[1], Fraction)]


def float32_from_fields(sign: int, biased_exp: int, fraction: int) -> np.float32:
    """The float32 with the given fields."""
    return float32_of((sign << 31) | (biased_exp << 23) | fraction)


def float32_of(bits: int) -> np.float32:
    """The float32 whose bit pattern is ``bits``."""
    return np.array([bits], np.uint32).view(np.float32)[0]


def bits_of(value: float | np.floating[Any]) -> int:
    """The float32 bit pattern of ``value`` (a float64 is rounded once, RNE, by numpy)."""
    return int(np.array([value], np.float32).view(np.uint32)[0])


def midpoints(fmt: ElementFormat) -> list[Fraction]:
    """The midpoint of every pair of adjacent non-negative values of ``fmt``, ascending.

    Spec: OCP MX v1.0 section 6.3 (roundTiesToEven decides at these points).
    """
    return [(lo + hi) / 2 for _, lo, _, hi in adjacent_pairs(fmt)]
