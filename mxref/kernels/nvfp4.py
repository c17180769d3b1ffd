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

Float32 inputs take a faster route to the same answers.  ``|x| * G`` is
exact in float64, so whether an element reaches code k is whether the
float32 ``|x|`` reaches the smallest float32 that passes that threshold
(:func:`float32_threshold`, found by exact comparisons).  Those thresholds
and the codes' decoded values depend only on ``G`` and the block's scale
byte: a table of them, filled as bytes occur, lets the element loop run on
float32 compares and selects, which the compiler vectorises.

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
def _row_amax_into(x2, out):
    rows, n = x2.shape
    inf = float_bits(x2.dtype.type(np.inf))
    none = inf - inf
    for r in prange(rows):
        xr = x2[r]
        m = none
        # on the bit patterns: an integer max vectorises, a float one (NaN-aware) does not
        for i in range(n):
            v = float_bits(abs(xr[i]))
            m = max(m, v if v < inf else none)  # NaN and Inf do not count
        out[r] = np.float64(bits_float(m, x2.dtype.type(0)))


@njit(cache=True)
def row_amax(x2):
    """The largest finite ``|x|`` of every row of the 2-d ``x2`` (0 for none)."""
    out = np.zeros(x2.shape[0], np.float64)
    _row_amax_into(x2, out)
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
def e4m3_byte_finite(t):
    """:func:`e4m3_byte` without branches (the compiler vectorises a loop of it)."""
    subnormal = np.rint(t * 512.0)
    e = max(np.int64(float_bits(t) >> np.uint64(52)) - 1023, np.int64(-6))
    n = np.rint(t * bits_float(np.uint64(1026 - e) << np.uint64(52), t))
    byte = np.int64(subnormal) if t < 0.015625 else ((e + 7) << 3) + np.int64(n) - 8
    return min(byte, np.int64(E4M3_TOP))


@njit(cache=True, inline="always")
def _nonfinite_block(x, codes, values, write_codes, write_values):
    """A block holding NaN or Inf: zero codes with the inputs' signs, NaN values."""
    for i in range(x.shape[0]):
        negative = sign_bit(x[i])
        if write_codes:
            codes[i] = 8 if negative else 0
        if write_values:
            # copysign: a negated NaN constant may lose its sign when folded
            values[i] = math.copysign(np.nan, -1.0 if negative else 1.0)


@njit(cache=True, inline="always")
def _block(x, codes, values, g, rounding, write_codes, write_values):
    """Quantize one float64 block under the tensor scale ``g``; return its E4M3 byte."""
    n = x.shape[0]
    top = 0.0
    finite = True
    for i in range(n):
        v = abs(x[i])
        finite = finite and v < np.inf
        v = v if v < np.inf else 0.0
        top = v if v > top else top
    if not finite:
        _nonfinite_block(x, codes, values, write_codes, write_values)
        return SCALE_NAN_BYTE
    p, e = exact_product(top, g)
    byte = round_to_grid(p, e, _E2M1_MAX, E4M3_GRID, E4M3_TOP, RNE)
    s = E4M3_GRID[byte]
    for i in range(n):
        xi = x[i]
        negative = sign_bit(xi)
        m = 0
        if s > 0.0:
            p, e = exact_product(abs(xi), g)
            m = round_to_grid(p, e, s, E2M1_GRID, E2M1_TOP, rounding)
        if write_codes:
            codes[i] = (8 | m) if negative else m
        if write_values:
            mag = E2M1_GRID[m] * s / g  # one division, one rounding
            values[i] = -mag if negative else mag
    return byte


@njit(cache=True)
def float32_threshold(c, g, strict):
    """The smallest float32 ``a >= 0`` with ``a * g >= c`` (``> c`` when ``strict``).

    ``c > 0`` is exact in float64 and ``g`` is a positive float32: every
    product ``a * g`` is then exact in float64 (24 + 24 bits, far inside its
    range), so the answer is found by exact comparisons around the rounded
    quotient.  Inf when no finite float32 qualifies.
    """
    q = c / g
    a = np.float32(q) if q < 4.0e38 else np.float32(np.inf)
    bits = float_bits(a)
    # at most a step or two from the rounded quotient; Inf * g qualifies always
    while np.float64(bits_float(bits, a)) * g < c or (
        strict and np.float64(bits_float(bits, a)) * g == c
    ):
        bits = np.uint32(bits + np.uint32(1))
    while bits > 0:
        below = np.float64(bits_float(np.uint32(bits - np.uint32(1)), a)) * g
        if below > c or (below == c and not strict):
            bits = np.uint32(bits - np.uint32(1))
        else:
            break
    return bits_float(bits, a)


@njit(cache=True)
def _fill_levels(levels, byte, g, rounding):
    """Row ``byte`` of a float32 block's decision table under ``g``.

    ``levels[byte, 0:7]``: the smallest float32 ``|x|`` that reaches each
    magnitude code 1 to 7 (``|x| * g`` against ``s`` times a midpoint, or a
    grid value under ZERO, as :func:`round_to_grid` decides); Inf when the
    scale is 0.  ``levels[byte, 8:16]``: each code's decoded float32
    magnitude, ``code * s * (1 / g)`` (see :func:`_float32_elements`).
    """
    s = E4M3_GRID[byte]
    inverse = 1.0 / g
    for k in range(1, E2M1_TOP + 1):
        if s == 0.0:
            levels[byte, k - 1] = np.inf
            continue
        if rounding == ZERO:
            c = E2M1_GRID[k] * s
            strict = False
        else:
            c = 0.5 * (E2M1_GRID[k - 1] + E2M1_GRID[k]) * s  # exact: at most 8 bits
            # a tie goes up to an even code (RNE), or always (AWAY)
            strict = rounding == RNE and k % 2 == 1
        levels[byte, k - 1] = float32_threshold(c, g, strict)
    for k in range(E2M1_TOP + 1):
        levels[byte, 8 + k] = np.float32(E2M1_GRID[k] * s * inverse)
    levels[byte, 7] = 1.0  # marks the row as filled


@njit(cache=True, inline="always")
def _float32_elements(x, codes, values, lv, s, g, write_codes, write_values):
    """The elements of a finite float32 block ``x`` from its decision row ``lv``.

    Float32 compares and selects only, so the loop vectorises.  Exact: a
    float32 ``|x|`` reaches code k exactly when it is at least ``lv[k-1]``
    (:func:`float32_threshold`), and ``lv[8 + k]`` is code k's value.  The
    value ``code * s * (1 / g)`` is two float64 roundings of ``code * s /
    g`` that give its float32 rounding, for the exact quotient is never a
    float32 midpoint (``code * s`` has at most 7 bits, a midpoint times
    ``g`` at least 25) and lies 2**-50 or more from one, relatively.
    float64 values (of float32 inputs) are ``code * s / g``, one rounding.
    """
    t1, t2, t3, t4, t5, t6, t7 = lv[0], lv[1], lv[2], lv[3], lv[4], lv[5], lv[6]
    v0, v1, v2, v3, v4, v5, v6, v7 = lv[8], lv[9], lv[10], lv[11], lv[12], lv[13], lv[14], lv[15]
    for i in range(x.shape[0]):
        xi = x[i]
        a = abs(xi)
        if write_codes or (write_values and values.itemsize == 8):
            m = ((a >= t1) + (a >= t2) + (a >= t3) + (a >= t4) + (a >= t5) + (a >= t6)
                 + (a >= t7))  # fmt: skip
            if write_codes:
                codes[i] = (8 | m) if sign_bit(xi) else m
            if write_values:
                values[i] = math.copysign(E2M1_GRID[m] * s / g, xi)
        elif write_values:
            mag = v7 if a >= t7 else (v6 if a >= t6 else (v5 if a >= t5 else (
                v4 if a >= t4 else (v3 if a >= t3 else (v2 if a >= t2 else (
                    v1 if a >= t1 else v0))))))
            values[i] = np.float32(math.copysign(mag, xi))


@njit(cache=True, inline="always")
def _float32_block_top(xb):
    """The largest ``|x|`` of a float32 block, and whether it holds NaN or Inf."""
    top = np.float32(0)
    nonfinite = 0
    for i in range(xb.shape[0]):
        a = abs(xb[i])
        nonfinite += not (a < np.inf)
        top = a if a > top else top
    return top, nonfinite > 0


@njit(cache=True, inline="always")
def _larger(a, b):
    return a if a > b else b


@njit(cache=True, inline="always")
def _top(xb):
    """The largest ``|x|`` of a finite float32 block."""
    top = np.float32(0)
    for i in range(xb.shape[0]):
        a = abs(xb[i])
        top = a if a > top else top
    return top


@njit(cache=True, inline="always")
def _top16(v):
    """:func:`_top` of 16 lanes as a tree of lane-wise maxima, which vectorises (a
    running maximum of floats does not, without fastmath)."""
    m0, m1 = _larger(abs(v[0]), abs(v[8])), _larger(abs(v[1]), abs(v[9]))
    m2, m3 = _larger(abs(v[2]), abs(v[10])), _larger(abs(v[3]), abs(v[11]))
    m4, m5 = _larger(abs(v[4]), abs(v[12])), _larger(abs(v[5]), abs(v[13]))
    m6, m7 = _larger(abs(v[6]), abs(v[14])), _larger(abs(v[7]), abs(v[15]))
    m0, m1, m2, m3 = _larger(m0, m4), _larger(m1, m5), _larger(m2, m6), _larger(m3, m7)
    return _larger(_larger(m0, m2), _larger(m1, m3))


@njit(cache=True, inline="always")
def _finite_row(xr):
    """Whether a float32 row holds no NaN and no Inf (a reduction that vectorises)."""
    bad = 0
    for i in range(xr.shape[0]):
        a = abs(xr[i])
        bad += (a != a) + (a == np.inf)
    return bad == 0


@njit(cache=True, inline="always")
def _float32_row_any(xr, cr, vr, br, levels, gr, block_size, rounding, write_codes,
                     write_values):  # fmt: skip
    """One float32 row, any blocks: NaN and Inf, a short last block, float64 values."""
    n = xr.shape[0]
    for b in range(br.shape[0]):
        lo = b * block_size
        hi = min(n, lo + block_size)
        top, nonfinite = _float32_block_top(xr[lo:hi])
        if nonfinite:
            _nonfinite_block(xr[lo:hi], cr[lo:hi], vr[lo:hi], write_codes, write_values)
            br[b] = SCALE_NAN_BYTE
            continue
        # amax * g is exact in float64 (24 + 24 bits)
        byte = e4m3_byte(np.float64(top) * gr / _E2M1_MAX)
        br[b] = byte
        if levels[byte, 7] == 0.0:
            _fill_levels(levels, byte, gr, rounding)
        _float32_elements(xr[lo:hi], cr[lo:hi], vr[lo:hi], levels[byte], E4M3_GRID[byte], gr,
                          write_codes, write_values)  # fmt: skip


@njit(cache=True, inline="always")
def _float32_rows(x2, codes2, values2, bytes2, g, block_size, rounding, write_codes,
                  write_values):  # fmt: skip
    """Float32 rows: each chunk of rows keeps a decision table while ``G`` stays put.

    A row of whole, finite blocks (almost every row) takes two loops that
    the compiler vectorises: the block maxima and scales, then the elements
    by compares and selects against the table (:func:`_float32_elements`
    says why that is exact).
    """
    rows, n = x2.shape
    nblk = bytes2.shape[1]
    whole = n % block_size == 0 and values2.itemsize != 8
    chunks = min(rows, 256)
    for c in prange(chunks):
        levels = np.zeros((E4M3_TOP + 1, 16), np.float32)
        tops = np.empty(nblk, np.float64)
        current = -1.0
        for r in range(c * rows // chunks, (c + 1) * rows // chunks):
            gr = g[r]
            if gr != current:  # a per-row G: forget the rows decided under another
                levels[:, 7] = 0.0
                current = gr
            xr = x2[r]
            br = bytes2[r]
            if not (whole and _finite_row(xr)):
                _float32_row_any(xr, codes2[r], values2[r], br, levels, gr, block_size,
                                 rounding, write_codes, write_values)  # fmt: skip
                continue
            xb = xr.reshape((nblk, block_size))
            for b in range(nblk):
                top = _top16(xb[b]) if block_size == 16 else _top(xb[b])
                tops[b] = np.float64(top) * gr / _E2M1_MAX
            for b in range(nblk):  # branch-free: vectorises
                br[b] = e4m3_byte_finite(tops[b])
            for b in range(nblk):
                if levels[br[b], 7] == 0.0:
                    _fill_levels(levels, br[b], gr, rounding)
            if write_values:
                vb = values2[r].reshape((nblk, block_size))
                for b in range(nblk):
                    lv = levels[br[b]]
                    t1, t2, t3, t4, t5, t6, t7 = lv[0], lv[1], lv[2], lv[3], lv[4], lv[5], lv[6]
                    v0, v1, v2, v3 = lv[8], lv[9], lv[10], lv[11]
                    v4, v5, v6, v7 = lv[12], lv[13], lv[14], lv[15]
                    for i in range(block_size):
                        x = xb[b, i]
                        a = abs(x)
                        mag = v7 if a >= t7 else (v6 if a >= t6 else (v5 if a >= t5 else (
                            v4 if a >= t4 else (v3 if a >= t3 else (v2 if a >= t2 else (
                                v1 if a >= t1 else v0))))))  # fmt: skip
                        # the sign of x, a zero's included, without leaving float32 lanes
                        vb[b, i] = mag if x > 0 else (-mag if x < 0 else x)
            if write_codes:
                cb = codes2[r].reshape((nblk, block_size))
                for b in range(nblk):
                    lv = levels[br[b]]
                    t1, t2, t3, t4, t5, t6, t7 = lv[0], lv[1], lv[2], lv[3], lv[4], lv[5], lv[6]
                    for i in range(block_size):
                        x = xb[b, i]
                        a = abs(x)
                        m = ((a >= t1) + (a >= t2) + (a >= t3) + (a >= t4) + (a >= t5)
                             + (a >= t6) + (a >= t7))  # fmt: skip
                        cb[b, i] = (8 | m) if sign_bit(x) else m


@njit(cache=True, inline="always")
def _pass(x2, codes2, values2, bytes2, g, block_size, rounding, write_codes, write_values):
    if x2.itemsize == 4:
        _float32_rows(x2, codes2, values2, bytes2, g, block_size, rounding, write_codes,
                      write_values)  # fmt: skip
        return
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
    decodes (rounded once: no such quotient is a float32 midpoint or near one),
    looked up in a table of every code's value per scale byte, filled as bytes
    occur and kept while ``G`` stays put; float64 by one division.
    """
    rows, n = codes2.shape
    nblk = bytes2.shape[1]
    chunks = min(rows, 256)
    for c in prange(chunks):
        table = np.zeros((SCALE_NAN_BYTE + 1, 16), out2.dtype)
        filled = np.zeros(SCALE_NAN_BYTE + 1, np.bool_)
        current = -1.0
        for r in range(c * rows // chunks, (c + 1) * rows // chunks):
            gr = g[r]
            if gr != current:
                filled[:] = False
                current = gr
            inverse = 1.0 / gr
            for b in range(nblk):
                byte = min(bytes2[r, b], SCALE_NAN_BYTE)  # 0xFF is a NaN scale too
                if not filled[byte]:
                    s = E4M3_GRID[byte] if byte < SCALE_NAN_BYTE else 0.0
                    for code in range(16):
                        if byte == SCALE_NAN_BYTE:
                            table[byte, code] = math.copysign(np.nan, -1.0 if code >= 8 else 1.0)
                            continue
                        a = E2M1_GRID[code & 7] * s  # exact
                        mag = a * inverse if out2.itemsize == 4 else a / gr
                        table[byte, code] = -mag if code >= 8 else mag
                    filled[byte] = True
                values = table[byte]
                for i in range(b * block_size, min(n, (b + 1) * block_size)):
                    out2[r, i] = values[codes2[r, i] & 15]
