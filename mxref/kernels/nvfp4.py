"""Kernel twin of :mod:`mxref.ref.nvfp4`: NVFP4's two-level scaling, exactly.

The oracle divides exact rationals; here every decision is an exact
comparison in float64 instead:

- a product ``|x| * G`` is held exactly as two float64 values (Dekker's
  product: ``p + e``, ``e`` the rounding error of ``p``), which for a
  float32 input is just ``p``;
- a value ``(p + e) / d`` is rounded onto a grid (E2M1 for the elements,
  with ``d = s_b``; E4M3 for the block scales, with ``d = 6``) by comparing
  ``p + e`` with ``d`` times each candidate and each midpoint.  Those
  products have at most 9 significant bits, so they are exact, and
  :func:`compare` decides ``p + e`` against them exactly;
- a quotient stored as float32 (the tensor scale, a decoded value) is
  rounded by float64 division and then to float32; when the float64
  quotient lands on a float32 midpoint, the double rounding is settled by
  the sign of the exact remainder.

So the kernel and the oracle agree bit for bit, for float32 and float64
inputs alike (``tests/mxref/test_nvfp4_kernel.py``).  Rows are blocked along
their last axis; the codec moves the blocked axis there.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from mxref.formats import NV_SCALE_FORMAT, ElementFormat, get_format
from mxref.kernels.bits import bits_float, float_bits, sign_bit
from mxref.policies import ROUNDING_CODES, Rounding

RNE = ROUNDING_CODES[Rounding.RNE]
AWAY = ROUNDING_CODES[Rounding.AWAY]
ZERO = ROUNDING_CODES[Rounding.ZERO]

E2M1 = get_format("nvfp4", two_level=True)
E4M3 = NV_SCALE_FORMAT
assert E4M3.nan_code is not None
SCALE_NAN_BYTE = E4M3.nan_code  # 0x7F
E2M1_TOP = E2M1.max_code
E4M3_TOP = E4M3.max_code


def _magnitudes(fmt: ElementFormat) -> np.ndarray:
    """Every finite magnitude of ``fmt`` by magnitude code, ascending (the codes are ordered
    as the values): exact in float64, from the format's fields."""
    out = np.empty(fmt.max_code + 1)
    for code in range(fmt.max_code + 1):
        biased, mant = code >> fmt.mbits, code & ((1 << fmt.mbits) - 1)
        significand = mant if biased == 0 else (1 << fmt.mbits) + mant
        out[code] = math.ldexp(significand, max(biased, 1) - fmt.bias - fmt.mbits)
    return out


#: E2M1's magnitudes, 0 to 6; E4M3's, 0 to 448 (bytes 0x00 to 0x7E)
E2M1_GRID = _magnitudes(E2M1)
E4M3_GRID = _magnitudes(E4M3)
_E2M1_MAX = float(E2M1.max_normal)
_RANGE = float(E4M3.max_normal * E2M1.max_normal)  # 448 * 6
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = 2.0**-149
#: float32 rounds values from this one up to Inf: the midpoint of its max and 2**128
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split into 26 + 27 bits
_BIG = 2.0**900  # above it, an operand is scaled before it is split (no overflow)
_BIG_SHIFT = 2.0**-128
_BIG_UNSHIFT = 2.0**128


@njit(cache=True, inline="always")
def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


@njit(cache=True, inline="always")
def exact_product(a, b):
    """``a * b`` exactly, as ``(p, e)``: ``p`` the rounded product, ``e`` its error.

    Exact for any finite float64 ``a`` and ``b`` whose product is normal;
    for the products these kernels compare, that is every one near a
    threshold.
    """
    scale = 1.0
    if abs(a) > _BIG:
        a *= _BIG_SHIFT
        scale = _BIG_UNSHIFT
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p * scale, e * scale


@njit(cache=True, inline="always")
def compare(p, e, c):
    """The sign of ``(p + e) - c``, exactly, for ``|e| <= ulp(p) / 2`` and ``c > 0``."""
    if p > 2.0 * c or p < 0.5 * c:
        return 1 if p > c else -1
    d = p - c  # exact: p and c are within a factor of two (Sterbenz)
    r = d + e  # rounding keeps the sign, and gives 0 only for an exact 0
    if r > 0:
        return 1
    return -1 if r < 0 else 0


@njit(cache=True, inline="always")
def round_to_grid(p, e, d, grid, top, rounding):
    """The magnitude code of ``(p + e) / d`` on ``grid[0..top]``, rounded once, saturating."""
    if compare(p, e, d * grid[top]) >= 0:
        return top
    lo = 0
    hi = top
    while hi - lo > 1:  # the largest code whose value times d is at most p + e
        mid = (lo + hi) >> 1
        if compare(p, e, d * grid[mid]) >= 0:
            lo = mid
        else:
            hi = mid
    if rounding == ZERO:
        return lo
    side = compare(p, e, d * (0.5 * (grid[lo] + grid[lo + 1])))
    if side > 0:
        return lo + 1
    if side < 0:
        return lo
    if rounding == AWAY:
        return lo + 1
    return lo if lo % 2 == 0 else lo + 1


@njit(cache=True, inline="always")
def float32_quotient(a, b):
    """``a / b`` rounded once to float32 (as a float64), for finite ``a, b > 0``.

    Beyond float32's range it is Inf, as a float32 division gives.
    """
    q = a / b
    if q >= _FLOAT32_MAX:
        p, e = exact_product(_FLOAT32_OVERFLOW, b)
        return np.inf if compare(p, e, a) <= 0 else _FLOAT32_MAX
    f = np.float32(q)
    r = np.float64(f)
    if r == q:
        return r
    bits = float_bits(f)
    other = np.float64(bits_float(bits + np.uint32(1) if r < q else bits - np.uint32(1), f))
    if q - r != other - q:  # q is no float32 midpoint: rounding it again is rounding once
        return r
    p, e = exact_product(q, b)
    side = compare(p, e, a)  # the sign of q * b - a, that is of q - a / b
    if side == 0:
        return r  # an exact tie: f is already the even neighbour
    below = min(r, other)
    above = max(r, other)
    return below if side > 0 else above


@njit(cache=True)
def tensor_scale(amax):
    """``G = RN32(448 * 6 / amax)`` kept within float32's range; 1 for ``amax == 0``."""
    if amax == 0.0:
        return 1.0
    q = _RANGE / amax
    if q >= _FLOAT32_MAX:
        return _FLOAT32_MAX
    if q <= _FLOAT32_TINY:
        return _FLOAT32_TINY
    return float32_quotient(_RANGE, amax)


@njit(cache=True, parallel=True)
def row_amax(x2):
    """The largest finite ``|x|`` of every row of the 2-d ``x2`` (0 for none)."""
    rows, n = x2.shape
    out = np.zeros(rows, np.float64)
    zero = x2.dtype.type(0)
    inf = x2.dtype.type(np.inf)
    for r in prange(rows):
        m = zero
        for i in range(n):
            v = abs(x2[r, i])
            v = v if v < inf else zero  # NaN and Inf do not count
            m = v if v > m else m
        out[r] = np.float64(m)
    return out


@njit(cache=True, inline="always")
def e4m3_byte(t):
    """The E4M3 byte of ``t >= 0`` rounded once to nearest even, saturating at 448.

    Exact for a ``t`` that is the float64 quotient ``p / 6`` of an exact
    ``p`` of at most 48 bits: such a quotient never lands on an E4M3
    midpoint unless the exact one does, so rounding it is rounding once.
    """
    if t >= 448.0:
        return E4M3_TOP
    if t < 0.015625:  # 2**-6: subnormal scales, in steps of 2**-9 (0x08 is 2**-6 itself)
        return np.int64(np.rint(t * 512.0))
    e = np.int64(float_bits(t) >> np.uint64(52)) - 1023
    n = np.int64(np.rint(t * bits_float(np.uint64(1026 - e) << np.uint64(52), t)))
    return ((e + 7) << 3) + n - 8


@njit(cache=True, inline="always")
def _block(x, codes, values, g, rounding, write_codes, write_values):
    """Quantize one block under the tensor scale ``g``; return its E4M3 byte."""
    n = x.shape[0]
    zero = x.dtype.type(0)
    inf = x.dtype.type(np.inf)
    top = zero
    finite = True
    for i in range(n):
        v = abs(x[i])
        finite = finite and v < inf
        v = v if v < inf else zero
        top = v if v > top else top
    amax = np.float64(top)
    if not finite:
        for i in range(n):
            negative = sign_bit(x[i])
            if write_codes:
                codes[i] = 8 if negative else 0
            if write_values:
                # copysign: a negated NaN constant may lose its sign when folded
                values[i] = math.copysign(np.nan, -1.0 if negative else 1.0)
        return SCALE_NAN_BYTE
    if x.itemsize == 4:  # amax * g is exact in float64 (24 + 24 bits)
        byte = e4m3_byte(amax * g / _E2M1_MAX)
    else:
        p, e = exact_product(amax, g)
        byte = round_to_grid(p, e, _E2M1_MAX, E4M3_GRID, E4M3_TOP, RNE)
    s = E4M3_GRID[byte]
    if x.itemsize == 4 and s > 0.0:
        _float32_elements(x, codes, values, g, s, rounding, write_codes, write_values)
        return byte
    for i in range(n):
        xi = np.float64(x[i])
        negative = sign_bit(x[i])
        m = 0
        if s > 0.0:
            p, e = exact_product(abs(xi), g)
            m = round_to_grid(p, e, s, E2M1_GRID, E2M1_TOP, rounding)
        if write_codes:
            codes[i] = (8 | m) if negative else m
        if write_values:
            a = E2M1_GRID[m] * s  # exact
            # float64 values: one division, one rounding; float32 ones as everywhere else
            # (a * (1 / g), see _float32_elements)
            mag = a / g if values.itemsize == 8 else a * (1.0 / g)
            values[i] = -mag if negative else mag
    return byte


@njit(cache=True, inline="always")
def _float32_elements(x, codes, values, g, s, rounding, write_codes, write_values):
    """The elements of a float32 block whose scale ``s`` is not 0: the fast, exact path.

    ``|x| * g`` is exact in float64 (24 + 24 bits), and so is ``s`` times
    every E2M1 value and midpoint (at most 7 bits): a code is the number of
    thresholds the product passes, a tie settled by the rounding, with no
    branch on the data.  A decoded value ``code * s / g`` rounds once to
    float32 through float64: its float64 quotient cannot land on a float32
    midpoint unless the exact one does (``a`` and ``g`` have at most 31 bits
    together), so no double rounding.
    """
    t1, t2, t3, t4 = 0.25 * s, 0.75 * s, 1.25 * s, 1.75 * s
    t5, t6, t7 = 2.5 * s, 3.5 * s, 5.0 * s
    z1, z2, z3, z4, z5, z6, z7 = 0.5 * s, s, 1.5 * s, 2.0 * s, 3.0 * s, 4.0 * s, 6.0 * s
    away = 1 if rounding == AWAY else 0
    # float32 values: v * s * (1 / g), two float64 roundings, rounds to the float32 of
    # v * s / g, for the exact quotient is never a float32 midpoint (v * s has at most 7
    # bits, a midpoint times g at least 25) and lies 2**-50 or more from one, relatively
    inverse = 1.0 / g
    for i in range(x.shape[0]):
        p = abs(np.float64(x[i])) * g
        if rounding == ZERO:
            m = ((p >= z1) + (p >= z2) + (p >= z3) + (p >= z4) + (p >= z5) + (p >= z6)
                 + (p >= z7))  # fmt: skip
        else:
            # above the midpoint t_k of codes k - 1 and k: code k; on it, the even code
            # (k for t2, t4, t6; k - 1 for t1, t3, t5, t7) or, under AWAY, code k
            m = ((p > t1) + (p > t2) + (p > t3) + (p > t4) + (p > t5) + (p > t6) + (p > t7)
                 + (p == t2) + (p == t4) + (p == t6)
                 + away * ((p == t1) + (p == t3) + (p == t5) + (p == t7)))  # fmt: skip
        negative = sign_bit(x[i])
        if write_codes:
            codes[i] = (8 | m) if negative else m
        if write_values:
            mag = E2M1_GRID[m] * s * inverse if values.itemsize == 4 else E2M1_GRID[m] * s / g
            values[i] = -mag if negative else mag


@njit(cache=True, inline="always")
def _pass(x2, codes2, values2, bytes2, g, block_size, rounding, write_codes, write_values):
    rows, n = x2.shape
    nblk = bytes2.shape[1]
    for k in prange(rows * nblk):
        r = k // nblk
        b = k - r * nblk
        lo = b * block_size
        hi = min(n, lo + block_size)
        bytes2[r, b] = _block(x2[r, lo:hi], codes2[r, lo:hi], values2[r, lo:hi], g[r],
                              rounding, write_codes, write_values)  # fmt: skip


@njit(cache=True, parallel=True)
def quantize_rows(x2, codes2, bytes2, g, block_size, rounding):
    """E2M1 codes and E4M3 bytes of the rows of ``x2``, row ``r`` under ``g[r]``."""
    values2 = np.empty((x2.shape[0], 0), x2.dtype)
    _pass(x2, codes2, values2, bytes2, g, block_size, rounding, True, False)


@njit(cache=True, parallel=True)
def fake_quantize_rows(x2, values2, bytes2, g, block_size, rounding):
    """The decoded values (``values2``'s dtype) and E4M3 bytes of the rows of ``x2``."""
    codes2 = np.empty((x2.shape[0], 0), np.uint8)
    _pass(x2, codes2, values2, bytes2, g, block_size, rounding, False, True)


@njit(cache=True, parallel=True)
def dequantize_rows(codes2, bytes2, g, block_size, out2):
    """``RN(code * s_b / G)`` into ``out2`` (float32 or float64), NaN for a 0x7F block.

    float32 through ``code * s_b * (1 / G)`` in float64, as :func:`_float32_elements`
    decodes (rounded once: no such quotient is a float32 midpoint or near one);
    float64 by one division.
    """
    rows, n = codes2.shape
    nblk = bytes2.shape[1]
    for k in prange(rows * nblk):
        r = k // nblk
        b = k - r * nblk
        byte = bytes2[r, b]
        gr = g[r]
        inverse = 1.0 / gr
        s = E4M3_GRID[byte] if byte < SCALE_NAN_BYTE else 0.0
        for i in range(b * block_size, min(n, (b + 1) * block_size)):
            code = codes2[r, i]
            negative = code >= 8
            if byte >= SCALE_NAN_BYTE:
                out2[r, i] = math.copysign(np.nan, -1.0 if negative else 1.0)
                continue
            a = E2M1_GRID[code & 7] * s  # exact
            mag = a * inverse if out2.itemsize == 4 else a / gr
            out2[r, i] = -mag if negative else mag
