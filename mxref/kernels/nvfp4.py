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
byte: a table of them (filled whole first when one ``G`` covers many
blocks, else as bytes occur) lets the element loop run on float32 compares
and selects, which the compiler vectorises.  The pass that finds the
tensor's amax (:func:`row_stats`) also keeps every block's maximum, so the
quantizing pass reads each row once more and derives its scale bytes from
those maxima.

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


@njit(cache=True, inline="always")
def _finite_amax_bits(xr):
    """The bit pattern of the largest finite ``|x|`` of the row ``xr`` (0 for none).

    On the bit patterns: an integer max vectorises, a float one (NaN-aware)
    does not.
    """
    inf = float_bits(xr.dtype.type(np.inf))
    none = inf - inf
    m = none
    for i in range(xr.shape[0]):
        v = float_bits(abs(xr[i]))
        m = max(m, v if v < inf else none)  # NaN and Inf do not count
    return m


@njit(cache=True)
def _row_finite_amax(x2, r):
    return np.float64(bits_float(_finite_amax_bits(x2[r]), x2.dtype.type(0)))


@njit(cache=True)
def _block_tops(x2, r, tops2, halves):
    """The ``|x|`` bit pattern of each block's largest element of float32 row ``r``,
    into ``tops2[r]`` (whole blocks of a power-of-two size); return the largest finite
    ``|x|`` of the row.

    Halving: each pass over ``halves`` (scratch of half the row) keeps the
    larger of every pair, so ``log2(block_size)`` passes leave one per block.
    Integer maxima of bit patterns order finite floats as their values, put
    NaN and Inf above them all, and vectorise, which a running float maximum
    per block does not.
    """
    magnitude = np.uint32(0x7FFFFFFF)
    half = x2.shape[1] // 2
    # the first pass in groups of 32 pairs, a literal trip count: it streams from
    # memory at about twice the speed of one loop over the whole row
    for q in range(half // 32):
        for k in range(32):
            a = float_bits(x2[r, 64 * q + 2 * k]) & magnitude
            b = float_bits(x2[r, 64 * q + 2 * k + 1]) & magnitude
            halves[32 * q + k] = a if a > b else b
    for j in range(half // 32 * 32, half):
        a, b = float_bits(x2[r, 2 * j]) & magnitude, float_bits(x2[r, 2 * j + 1]) & magnitude
        halves[j] = a if a > b else b
    nblk = tops2.shape[1]
    while half > nblk:
        half //= 2
        for j in range(half):
            a, b = halves[2 * j], halves[2 * j + 1]
            halves[j] = a if a > b else b
    inf = float_bits(np.float32(np.inf))
    top = np.uint32(0)
    for b in range(nblk):
        tops2[r, b] = halves[b]
        top = max(top, halves[b])
    if top >= inf:  # a block holds NaN or Inf: its finite elements count all the same
        return _row_finite_amax(x2, r)
    return np.float64(bits_float(top, np.float32(0)))


@njit(cache=True, parallel=True)
def _row_stats_into(x2, amax, tops2):
    # no views of the arrays in this loop (the helpers make theirs): see _float32_rows
    rows, n = x2.shape
    chunks = min(rows, 64)
    for c in prange(chunks):
        halves = np.empty(n // 2 if tops2.shape[1] else 0, np.uint32)
        for r in range(c * rows // chunks, (c + 1) * rows // chunks):
            if tops2.shape[1]:
                amax[r] = _block_tops(x2, r, tops2, halves)
            else:
                amax[r] = _row_finite_amax(x2, r)


@njit(cache=True)
def row_stats(x2, block_size, need_amax):
    """The largest finite ``|x|`` of every row of the 2-d ``x2`` (0 for none), and the
    block maxima that :func:`quantize_rows` and :func:`fake_quantize_rows` take.

    The maxima are the ``|x|`` bit patterns of each block's largest element,
    ``(rows, n // block_size)`` uint32, for float32 rows of whole blocks of a
    power-of-two size (at least 2); otherwise none, shape ``(rows, 0)``, and
    the rows take the general path.  One pass over ``x2`` gives both; with
    neither maxima to keep nor ``need_amax`` (a given tensor scale), there is
    no pass and the amax are 0.
    """
    rows, n = x2.shape
    halving = (x2.itemsize == 4 and block_size >= 2 and block_size & (block_size - 1) == 0
               and n % block_size == 0 and n > 0)  # fmt: skip
    amax = np.zeros(rows, np.float64)
    tops2 = np.empty((rows, n // block_size if halving else 0), np.uint32)  # all written
    if halving or need_amax:
        _row_stats_into(x2, amax, tops2)
    return amax, tops2


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
    magnitude, ``code * s * (1 / g)`` (see :func:`_float32_magnitude`).
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


#: a call with more blocks than this, all under one ``G``, fills every row of
#: the decision table first (about 30 us); a smaller one fills rows as bytes occur
_WHOLE_TABLE_BLOCKS = 4 * (E4M3_TOP + 1)


@njit(cache=True)
def _shared_table(g, rounding, blocks):
    """The whole decision table when every row has the same ``G`` and ``blocks`` is
    large enough to pay for it; else an empty one (rows are filled as bytes occur)."""
    if blocks <= _WHOLE_TABLE_BLOCKS or g.shape[0] == 0 or not np.all(g == g[0]):
        return np.zeros((0, 16), np.float32)
    levels = np.zeros((E4M3_TOP + 1, 16), np.float32)
    for byte in range(E4M3_TOP + 1):
        _fill_levels(levels, byte, g[0], rounding)
    return levels


@njit(cache=True, inline="always")
def _float32_code(a, t):
    """The magnitude code of a finite float32 ``a = |x|`` from its block's thresholds ``t``.

    Exact: ``a`` reaches code k exactly when it is at least ``t[k-1]``
    (:func:`float32_threshold`).  Compares only, so a loop of it vectorises.
    """
    return ((a >= t[0]) + (a >= t[1]) + (a >= t[2]) + (a >= t[3]) + (a >= t[4]) + (a >= t[5])
            + (a >= t[6]))  # fmt: skip


@njit(cache=True, inline="always")
def _float32_magnitude(a, t, v):
    """The decoded float32 magnitude of ``a = |x|``: ``v[k]`` for its code k (``t`` as for
    :func:`_float32_code`).

    The thresholds rise with k, so each select may overwrite the last: seven
    independent compares, which vectorise better than a nested choice.
    ``v[k] = code * s * (1 / g)`` is two float64 roundings of ``code * s / g``
    that give its float32 rounding, for the exact quotient is never a float32
    midpoint (``code * s`` has at most 7 bits, a midpoint times ``g`` at
    least 25) and lies 2**-50 or more from one, relatively.
    """
    mag = v[0]
    mag = v[1] if a >= t[0] else mag
    mag = v[2] if a >= t[1] else mag
    mag = v[3] if a >= t[2] else mag
    mag = v[4] if a >= t[3] else mag
    mag = v[5] if a >= t[4] else mag
    mag = v[6] if a >= t[5] else mag
    return v[7] if a >= t[6] else mag


@njit(cache=True, inline="always")
def _thresholds(levels, byte):
    return (levels[byte, 0], levels[byte, 1], levels[byte, 2], levels[byte, 3], levels[byte, 4],
            levels[byte, 5], levels[byte, 6])  # fmt: skip


@njit(cache=True, inline="always")
def _decoded(levels, byte):
    return (levels[byte, 8], levels[byte, 9], levels[byte, 10], levels[byte, 11],
            levels[byte, 12], levels[byte, 13], levels[byte, 14], levels[byte, 15])  # fmt: skip


@njit(cache=True, inline="always")
def _float32_block(x2, codes2, values2, r, lo, size, levels, byte, g, write_codes,
                   write_values):  # fmt: skip
    """The ``size`` elements of float32 row ``r`` from ``lo``, a finite block under scale
    byte ``byte``, decided against its row of the table ``levels`` (under ``g``).

    float64 values (of float32 inputs) are ``code * s / g``, one rounding.
    """
    t = _thresholds(levels, byte)
    if write_values and values2.itemsize == 8:
        s = E4M3_GRID[byte]
        for k in range(size):
            x = x2[r, lo + k]
            values2[r, lo + k] = math.copysign(E2M1_GRID[_float32_code(abs(x), t)] * s / g, x)
    elif write_values:
        v = _decoded(levels, byte)
        for k in range(size):
            x = x2[r, lo + k]
            values2[r, lo + k] = math.copysign(_float32_magnitude(abs(x), t, v), x)
    if write_codes:
        for k in range(size):
            x = x2[r, lo + k]
            m = _float32_code(abs(x), t)
            codes2[r, lo + k] = (8 | m) if sign_bit(x) else m


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


@njit(cache=True)
def _float32_row_any(x2, codes2, values2, bytes2, r, levels, gr, block_size, rounding,
                     write_codes, write_values):  # fmt: skip
    """Float32 row ``r``, any blocks: NaN and Inf, a short last block, float64 values."""
    xr, cr, vr, br = x2[r], codes2[r], values2[r], bytes2[r]
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
        _float32_block(x2, codes2, values2, r, lo, hi - lo, levels, byte, gr, write_codes,
                       write_values)  # fmt: skip


@njit(cache=True)
def _row_bytes(tops2, bytes2, r, g):
    """The E4M3 bytes of row ``r`` from its block maxima (:func:`row_stats`) under ``g``,
    into ``bytes2[r]``; False, with nothing written, when the row holds NaN or Inf."""
    inf = float_bits(np.float32(np.inf))
    for b in range(tops2.shape[1]):
        if tops2[r, b] >= inf:
            return False
    for b in range(tops2.shape[1]):
        # amax * g is exact in float64 (24 + 24 bits); branch-free, so it vectorises
        top = np.float64(bits_float(tops2[r, b], np.float32(0)))
        bytes2[r, b] = e4m3_byte_finite(top * g / _E2M1_MAX)
    return True


@njit(cache=True, inline="always")
def _float32_rows(x2, codes2, values2, bytes2, tops2, g, block_size, rounding, write_codes,
                  write_values):  # fmt: skip
    """Float32 rows, in chunks; each chunk keeps a copy of the decision table.

    A row with block maxima (``tops2``, from :func:`row_stats`) and neither
    NaN nor Inf (almost every row) takes its scale bytes from
    :func:`_row_bytes` and then its elements by compares and selects against
    the table (:func:`_float32_code`, :func:`_float32_magnitude`), which the
    compiler vectorises, a block of 16 to a vector.  Other rows, and float64
    values, go through :func:`_float32_row_any`.

    The loop body indexes the arrays directly and makes no views of them:
    numba then marks them as not aliasing each other, and the compiler
    vectorises without a runtime overlap check and its scalar twin.  That
    holds for ``values2`` being ``x2`` too (``out=x``): every element is read
    before its own write, which depends on what was read, and nothing reads
    it again.
    """
    rows, n = x2.shape
    nblk = bytes2.shape[1]
    fast = tops2.shape[1] == nblk and values2.itemsize != 8
    shared = _shared_table(g, rounding, rows * nblk)
    lazy = shared.shape[0] == 0  # rows of the table are filled as bytes occur
    chunks = min(rows, 64)
    for c in prange(chunks):
        levels = np.zeros((E4M3_TOP + 1, 16), np.float32)
        for byte in range(shared.shape[0]):
            for j in range(16):
                levels[byte, j] = shared[byte, j]
        current = -1.0
        for r in range(c * rows // chunks, (c + 1) * rows // chunks):
            gr = g[r]
            if gr != current and lazy:  # a new G: forget the old rows
                for byte in range(E4M3_TOP + 1):
                    levels[byte, 7] = 0.0
                current = gr
            if not (fast and _row_bytes(tops2, bytes2, r, gr)):
                _float32_row_any(x2, codes2, values2, bytes2, r, levels, gr, block_size,
                                 rounding, write_codes, write_values)  # fmt: skip
                continue
            if lazy:
                for b in range(nblk):
                    if levels[bytes2[r, b], 7] == 0.0:
                        _fill_levels(levels, bytes2[r, b], gr, rounding)
            # a rule for this loop, as the arrays are taken as not aliasing and out=x runs in
            # place: no element of x2 is read after values2's element at its index is written
            if block_size == 16:  # a literal size: one vector per block
                for b in range(nblk):
                    _float32_block(x2, codes2, values2, r, 16 * b, 16, levels, bytes2[r, b], gr,
                                   write_codes, write_values)  # fmt: skip
            else:
                for b in range(nblk):
                    _float32_block(x2, codes2, values2, r, block_size * b, block_size, levels,
                                   bytes2[r, b], gr, write_codes, write_values)  # fmt: skip


@njit(cache=True, inline="always")
def _pass(x2, codes2, values2, bytes2, tops2, g, block_size, rounding, write_codes,
          write_values):  # fmt: skip
    if x2.itemsize == 4:
        _float32_rows(x2, codes2, values2, bytes2, tops2, g, block_size, rounding, write_codes,
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
def quantize_rows(x2, codes2, bytes2, tops2, g, block_size, rounding):
    """E2M1 codes and E4M3 bytes of the rows of ``x2``, row ``r`` under ``g[r]``.

    ``tops2``: the block maxima of :func:`row_stats` (or none, shape
    ``(rows, 0)``: every row then takes the general path, to the same codes).
    """
    values2 = np.empty((x2.shape[0], 0), x2.dtype)
    _pass(x2, codes2, values2, bytes2, tops2, g, block_size, rounding, True, False)


@njit(cache=True, parallel=True)
def fake_quantize_rows(x2, values2, bytes2, tops2, g, block_size, rounding):
    """The decoded values (``values2``'s dtype) and E4M3 bytes of the rows of ``x2``
    (``tops2`` as for :func:`quantize_rows`)."""
    codes2 = np.empty((x2.shape[0], 0), np.uint8)
    _pass(x2, codes2, values2, bytes2, tops2, g, block_size, rounding, False, True)


@njit(cache=True)
def _fill_decoded(table, byte, g):
    """Row ``byte`` of the decoding table under ``g``: each magnitude code's value in
    ``table``'s dtype (NaN for the NaN scale); ``table[byte, 8]`` marks it filled."""
    inverse = 1.0 / g
    for m in range(E2M1_TOP + 1):
        if byte == SCALE_NAN_BYTE:
            table[byte, m] = np.nan
            continue
        a = E2M1_GRID[m] * E4M3_GRID[byte]  # exact
        table[byte, m] = a * inverse if table.itemsize == 4 else a / g
    table[byte, 8] = 1.0


@njit(cache=True, inline="always")
def _decode_block(codes2, out2, r, lo, size, table, byte):
    """``size`` codes of row ``r`` from ``lo`` decoded under scale byte ``byte``: selects
    on the magnitude code (they vectorise, a table lookup does not), then the sign."""
    v0, v1, v2, v3 = table[byte, 0], table[byte, 1], table[byte, 2], table[byte, 3]
    v4, v5, v6, v7 = table[byte, 4], table[byte, 5], table[byte, 6], table[byte, 7]
    unit = out2.dtype.type(1.0)
    for k in range(size):
        c = codes2[r, lo + k]
        m = c & 7
        mag = v0
        mag = v1 if m >= 1 else mag
        mag = v2 if m >= 2 else mag
        mag = v3 if m >= 3 else mag
        mag = v4 if m >= 4 else mag
        mag = v5 if m >= 5 else mag
        mag = v6 if m >= 6 else mag
        mag = v7 if m >= 7 else mag
        # copysign, not negation: it sets the sign of a NaN too
        out2[r, lo + k] = math.copysign(mag, -unit if c & 8 else unit)


@njit(cache=True, parallel=True)
def dequantize_rows(codes2, bytes2, g, block_size, out2):
    """``RN(code * s_b / G)`` into ``out2`` (float32 or float64), NaN for a 0x7F block.

    float32 through ``code * s_b * (1 / G)`` in float64, as :func:`_float32_magnitude`
    decodes (rounded once: no such quotient is a float32 midpoint or near one),
    float64 by one division: a table of every magnitude code's value per scale
    byte, filled as bytes occur and kept while ``G`` stays put.  Like the
    quantizing loop, the loop body indexes the arrays directly (no views), so
    the compiler vectorises it without an overlap check.
    """
    rows, n = codes2.shape
    nblk = bytes2.shape[1]
    chunks = min(rows, 64)
    for c in prange(chunks):
        table = np.zeros((SCALE_NAN_BYTE + 1, 9), out2.dtype)
        current = -1.0
        for r in range(c * rows // chunks, (c + 1) * rows // chunks):
            gr = g[r]
            if gr != current:  # a new G: forget the old rows
                for byte in range(SCALE_NAN_BYTE + 1):
                    table[byte, 8] = 0.0
                current = gr
            for b in range(nblk):
                byte = min(bytes2[r, b], SCALE_NAN_BYTE)  # 0x80 and above: NaN scales too
                if table[byte, 8] == 0.0:
                    _fill_decoded(table, byte, gr)
            if block_size == 16 and n % 16 == 0:  # a literal size: one vector per block
                for b in range(nblk):
                    _decode_block(codes2, out2, r, 16 * b, 16, table,
                                  min(bytes2[r, b], SCALE_NAN_BYTE))  # fmt: skip
            else:
                for b in range(nblk):
                    lo = b * block_size
                    _decode_block(codes2, out2, r, lo, min(block_size, n - lo), table,
                                  min(bytes2[r, b], SCALE_NAN_BYTE))  # fmt: skip
