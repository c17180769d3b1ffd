"""The TestFloat-style structured set: the golden files' blocks and packing rows.

Cases come from structure, not only from randomness (Berkeley TestFloat):
boundary exponents crossed with significand bit patterns (walking ones, runs
of ones, single-zero holes), the midpoints of every pair of adjacent codes
with the floats just inside them, the neighbours of powers of two as a
block's amax, amax above the max-normal significand, and the corner cases a
conformance suite must cover (signed zeros, all-zero and tiny blocks, float32
subnormals, NaN and Inf, the MXINT8 asymmetric end).  A few seeded random
blocks are mixed in, from a counter-based generator so that they never
depend on a library's random stream.

Two levels, as in TestFloat: level 1 is the everyday set; level 2 is a
superset with every position, scale and exponent.

Everything is built from float32 *bit patterns* (Python ints), and every
value that is not a float32 already is rounded once, exactly, by the oracle
(:func:`mxref.ref.element.encode_float`), so the cases are the same on every
machine.  :mod:`mxref.conformance.golden` turns these cases into the golden files; tests
and users may call the generators directly.

Spec: OCP MX v1.0 sections 5 (encodings) and 6.3 (conversion).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mxref.formats import DEFAULT_BLOCK_SIZE, ElementFormat
from mxref.ref.element import pow2
from mxref.ref.stochastic import random_u32
from mxref.testing.cases.blocks import BlockCase, blocks_of, check_level
from mxref.testing.cases.float32 import (
    F32_INF,
    F32_MAX,
    F32_MIN_NORMAL,
    F32_MIN_SUBNORMAL,
    F32_QNAN,
    F32_SIGN,
    FRACTION_BITS,
    adjacent_pairs,
    f32_bits,
    f32_pow2,
    f32_value,
    float32_from_fields,
    negate,
    next_down,
    next_up,
)


def significand_patterns(level: int) -> list[int]:
    """23-bit fraction patterns: zero, all ones, walking ones, runs and holes.

    Parameters
    ----------
    level : int
        1 keeps every fourth position of each pattern family; 2 keeps every position.

    Returns
    -------
    list of int
        Sorted, distinct fraction fields.
    """
    check_level(level)
    full = (1 << FRACTION_BITS) - 1
    step = 1 if level >= 2 else 4
    pats = {0, full, 1, full - 1, 1 << (FRACTION_BITS - 1)}
    for i in range(0, FRACTION_BITS, step):
        pats.add(1 << i)  # walking one
        pats.add(full ^ (1 << i))  # single-zero hole
        pats.add(full >> i)  # run of trailing ones
        pats.add((full << i) & full)  # run of leading ones
    return sorted(pats)


def boundary_values(level: int) -> np.ndarray:
    """float32 values at boundary exponents x significand patterns, both signs.

    Exponents cover the fp32 subnormals and extremes and the band where MX
    element grids live (|x| from 2**-20 to 2**20 around a unit scale).

    Spec: OCP MX v1.0 section 6.3 (inputs are float32 values).
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


def body(k: int, lanes: int = DEFAULT_BLOCK_SIZE - 1) -> list[int]:
    """A fixed block body below ``2**k``: patterned magnitudes in ``[2**(k-12), 2**k)``.

    Lane ``i`` holds ``(-1)**i * 2**(k - 1 - i % 12) * (1 + m_i / 8)`` with a
    varying 3-bit significand ``m_i``, rounded once to float32 (so far below
    the float32 range the body becomes subnormal or zero, as a real block would).
    """
    out = []
    for i in range(lanes):
        mag = pow2(k - 1 - i % 12) * (1 + Fraction((5 * i + 3) % 8, 8))
        out.append(f32_bits(mag, i % 2))
    return out


def amax_block(amax: int, area: str, note: str) -> BlockCase:
    """A block whose lane 0 is ``amax`` (float32 bits) over :func:`body`.

    The body lies below ``2**floor(log2 |amax|)``, so lane 0 is the block's amax.
    """
    k = _binade(amax)
    return BlockCase((amax, *body(k)), area, note)


def _binade(bits: int) -> int:
    """floor(log2 |value|) of nonzero finite float32 bits."""
    mag = abs(f32_value(bits))
    k = mag.numerator.bit_length() - mag.denominator.bit_length()
    while pow2(k) > mag:
        k -= 1
    while pow2(k + 1) <= mag:
        k += 1
    return k


def power_of_two_exponents(fmt: ElementFormat, level: int) -> list[int]:
    """Exponents ``k`` whose ``2**k`` neighbours serve as amax.

    Level 1: the float32 and E8M0 extremes, the scale-clamp boundary
    ``-127 + emax`` and the band around 1; level 2: every ``k`` in [-149, 127].

    Spec: OCP MX v1.0 section 6.3, step 1.
    """
    check_level(level)
    if level == 2:
        return list(range(-149, 128))
    e = fmt.emax
    ks = {-149, -148, -136, -127, -126, -125, -128 + e, -127 + e, -126 + e}
    ks |= {-2, -1, 0, 1, 2, e, e + 1, 10, 126 - e, 127 - e, 100, 126, 127}
    return sorted(k for k in ks if -149 <= k <= 127)


def power_of_two_blocks(fmt: ElementFormat, level: int) -> list[BlockCase]:
    """amax = pred(2**k), 2**k and succ(2**k) over a fixed body (area ``scale``).

    pred(2**k) is where a float ``log2`` overshoots (microxcaling's Python
    path gives k, the spec floor(log2) gives k-1).  Level 2 adds, for every
    other ``k``, pred(2**k) alone (the case that breaks).

    Spec: OCP MX v1.0 section 6.3, step 1.
    """
    out = []
    for k in power_of_two_exponents(fmt, 1):
        p = f32_pow2(k)
        if k > -149:
            out.append(amax_block(next_down(p), "scale", f"amax pred(2^{k})"))
        out.append(amax_block(p, "scale", f"amax 2^{k}"))
        out.append(amax_block(next_up(p), "scale", f"amax succ(2^{k})"))
    out.append(amax_block(F32_MAX, "scale", "amax = float32 max = pred(2^128)"))
    if level == 2:
        for k in power_of_two_exponents(fmt, 2):
            if k > -149:
                out.append(amax_block(next_down(f32_pow2(k)), "scale", f"amax pred(2^{k})"))
    return out


def saturation_amaxes(fmt: ElementFormat) -> list[tuple[Fraction, str]]:
    """Magnitudes at and above max normal, relative to a unit scale.

    max normal, its float32 successor, the overflow tie ``max + ulp/2`` (E4M3
    464), the midpoint between max normal and ``2**(emax+1)`` (E2M1 7, E4M3
    480, E5M2 61440: amax significand above max normal's), and ``2**(emax+1)``.

    Spec: OCP MX v1.0 section 6.3 (clamp to max normal).
    """
    top = fmt.max_normal
    ulp = pow2(fmt.emax - fmt.mbits)
    return [
        (top, "max normal"),
        (top + ulp / 2, "overflow tie max + ulp/2"),
        ((top + pow2(fmt.emax + 1)) / 2, "amax significand above max normal's"),
        (pow2(fmt.emax + 1), "2^(emax+1)"),
    ]


def saturation_blocks(fmt: ElementFormat, level: int) -> list[BlockCase]:
    """Blocks whose amax sits at or above max normal * X (area ``saturation``).

    Each amax comes with its float32 neighbours; the body holds ``-amax`` too
    so that negative saturation is seen.  Scales: 2**0, the largest the
    float32 range allows, 2**-127 (level 1) and 2**-100, 2**50 (level 2).

    Spec: OCP MX v1.0 section 6.3 ("clamped to the max normal, preserving the sign").
    """
    check_level(level)
    scales = [0, 126 - fmt.emax, -127] + ([-100, 50] if level == 2 else [])
    out = []
    for s in scales:
        for mag, what in saturation_amaxes(fmt):
            bits = f32_bits(mag * pow2(s))
            if bits >= F32_INF:
                continue
            neighbours = [bits] if level == 1 and s != 0 else [next_down(bits), bits, next_up(bits)]
            for b in neighbours:
                if b >= F32_INF:
                    continue
                lanes = (b, negate(b), *body(_binade(b), DEFAULT_BLOCK_SIZE - 2))
                out.append(BlockCase(lanes, "saturation", f"{what} at scale 2^{s}"))
    return out


def midpoint_scale_exponents(fmt: ElementFormat, level: int) -> list[int]:
    """Scale exponents for the midpoint blocks.

    The unit scale, the E8M0 extremes the float32 range allows (level 1);
    two scales in between too (level 2).
    """
    check_level(level)
    return [0, -127, 126 - fmt.emax] + ([-100, 50] if level == 2 else [])


def midpoint_values(fmt: ElementFormat, scale_exp: int, positions: Iterable[str]) -> list[int]:
    """The midpoint of every pair of adjacent codes times ``2**scale_exp``, both signs.

    Parameters
    ----------
    fmt : ElementFormat
    scale_exp : int
        The block scale the values are meant for.
    positions : iterable of {"mid", "below", "above"}
        The midpoint itself and the float32 just below or above it.

    Returns
    -------
    list of int
        float32 bits.  Midpoints have at most ``mbits + 2`` significant bits,
        so they are float32 values exactly for every scale in the E8M0 range.

    Spec: OCP MX v1.0 section 6.3 (roundTiesToEven).
    """
    wanted = list(positions)
    out: list[int] = []
    for _, lo, _, hi in adjacent_pairs(fmt):
        mid = f32_bits((lo + hi) / 2 * pow2(scale_exp))
        assert f32_value(mid) == (lo + hi) / 2 * pow2(scale_exp), "midpoint must be exact"
        by_pos = {"mid": mid, "below": next_down(mid), "above": next_up(mid)}
        for sign in (0, 1):
            out.extend(by_pos[p] ^ (F32_SIGN if sign else 0) for p in wanted)
    return out


def midpoint_blocks(fmt: ElementFormat, level: int) -> list[BlockCase]:
    """Midpoints of adjacent codes and the floats just inside them (area ``rounding``).

    Lane 0 holds ``max_normal * X``, which pins the block scale to ``X`` under
    FLOOR, EVEN and RCEIL.  Level 1: all three positions at the unit scale,
    midpoints alone at the extreme scales; level 2: all positions everywhere.

    Spec: OCP MX v1.0 section 6.3 (roundTiesToEven required).
    """
    out = []
    for s in midpoint_scale_exponents(fmt, level):
        full = level == 2 or s == 0
        positions = ("mid", "below", "above") if full else ("mid",)
        anchor = f32_bits(fmt.max_normal * pow2(s))
        values = midpoint_values(fmt, s, positions)
        out += blocks_of(values, "rounding", f"midpoints of adjacent codes at scale 2^{s}", anchor)
    return out


def boundary_anchor_exponents(fmt: ElementFormat, level: int) -> list[int]:
    """Block exponents ``E`` for :func:`boundary_blocks`."""
    check_level(level)
    return [0] if level == 1 else [0, -131, 127]


def boundary_blocks(fmt: ElementFormat, level: int) -> list[BlockCase]:
    """Significand patterns at every exponent of the element grid (area ``rounding``).

    For a block exponent ``E``, lane 0 is the anchor ``pred(2**(E+1))`` and
    the other lanes hold ``2**(E-d) * (1 + p / 2**23)`` for every pattern
    ``p`` of :func:`significand_patterns` and every ``d`` from 0 to two
    binades below the element's smallest subnormal, with alternating signs.
    These are TestFloat's boundary exponents x significand patterns, placed
    where the element grid lives; level 2 uses every pattern position and
    also puts them at the float32 extremes (E = -131, 127).

    Spec: OCP MX v1.0 section 6.3.
    """
    span = fmt.emax - fmt.emin + fmt.mbits + 2
    out = []
    for e in boundary_anchor_exponents(fmt, level):
        values = []
        i = 0
        for d in range(span + 1):
            for p in significand_patterns(level):
                mag = pow2(e - d) * (1 + Fraction(p, 1 << FRACTION_BITS))
                values.append(f32_bits(mag, i % 2))
                i += 1
        values = list(dict.fromkeys(values))  # far below float32 several round to the same
        anchor = next_down(f32_pow2(e + 1))
        out += blocks_of(values, "rounding", f"significand patterns below 2^{e + 1}", anchor)
    return out


def corner_blocks(fmt: ElementFormat) -> list[BlockCase]:
    """The corner cases of research note mx-semantics section 5, for any format.

    The values are the same for every format (they are the cases named for
    one format or another); what each format does with them is the oracle's.

    - amax 1023.99994 (pred(1024)): FLOOR gives 2**1 in E4M3, not 2**2;
    - amax 7 (E2M1), 480 (E4M3), 61440 (E5M2): above max normal's significand;
    - E2M1 ties 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0 under a 6.0 anchor;
    - 464 and nextup(464), 470 (E4M3 overflow tie and beyond);
    - MXINT8 -1.9921875 (-> 0x81, never 0x80) and the 2**-7 tie;
    - float32 max (RCEIL needs 2**128: the scale saturates to 2**127).

    Spec: OCP MX v1.0 section 6.3.
    """
    del fmt  # the same inputs for every format
    out = [
        amax_block(0x447FFFFF, "scale", "amax 1023.99994 = pred(1024)"),
        amax_block(f32_bits(Fraction(7)), "saturation", "amax 7 (E2M1 above max significand)"),
        amax_block(f32_bits(Fraction(480)), "saturation", "amax 480 (E4M3)"),
        amax_block(f32_bits(Fraction(61440)), "saturation", "amax 61440 (E5M2)"),
        amax_block(f32_bits(Fraction(464)), "saturation", "amax 464 (E4M3 overflow tie)"),
        amax_block(next_up(f32_bits(Fraction(464))), "saturation", "amax nextup(464)"),
        amax_block(f32_bits(Fraction(470)), "saturation", "amax 470"),
        amax_block(f32_bits(Fraction(61439)), "saturation", "amax 61439"),
    ]
    ties = [Fraction(n, 4) for n in (1, 3, 5, 7, 10, 14, 20)]  # 0.25 0.75 1.25 1.75 2.5 3.5 5
    lanes = [f32_bits(Fraction(6))] + [f32_bits(t, s) for s in (0, 1) for t in ties]
    out += blocks_of(lanes, "rounding", "E2M1 ties 0.25 0.75 2.5 5.0 under a 6.0 anchor")
    quantum = Fraction(1, 64)
    int8 = [
        f32_bits(Fraction(255, 128), 1),  # -1.9921875: tie between 127 and 128 quanta
        f32_bits(Fraction(255, 128)),
        f32_bits(quantum / 2),  # 2**-7: tie between 0 and one quantum
        f32_bits(quantum / 2, 1),
        f32_bits(quantum * 3 / 2),
        f32_bits(quantum * 3 / 2, 1),
        f32_bits(Fraction(127, 64), 1),  # -1.984375: 0x81 exactly
    ]
    out += blocks_of(int8, "saturation", "MXINT8 -1.9921875 and the 2^-7 tie")
    out.append(amax_block(F32_MAX, "saturation", "float32 max: RCEIL needs 2^128"))
    return out


def special_blocks(fmt: ElementFormat) -> list[BlockCase]:
    """Signed zeros, all-zero blocks, NaN and Inf (area ``special``).

    Spec: OCP MX v1.0 sections 5.1 and 6.3 are silent on NaN/Inf inputs and
    all-zero blocks; the oracle's choice (scale 0xFF, resp. 0x00) is recorded.
    """
    del fmt
    one, six = f32_bits(Fraction(1)), f32_bits(Fraction(6))
    neg_zero = F32_SIGN
    normal = body(3)
    cases = [
        ((0,) * 32, "all +0"),
        ((neg_zero,) * 32, "all -0"),
        (tuple(neg_zero if i % 2 else 0 for i in range(32)), "alternating +0 and -0"),
        (
            (
                six,
                neg_zero,
                f32_bits(Fraction(1, 64), 1),
                f32_bits(Fraction(1, 1 << 20), 1),
                *normal[:28],
            ),
            "-0.0 and negatives rounding to -0 under 6.0",
        ),
        ((F32_QNAN, *normal), "quiet NaN in lane 0"),
        ((*normal, negate(F32_QNAN)), "negative quiet NaN in lane 31"),
        ((one, 0x7FA00001, *normal[:30]), "signalling NaN with payload"),
        ((0xFFC00123, neg_zero, *normal[:30]), "negative NaN with payload, -0"),
        ((F32_INF, *normal), "+Inf"),
        ((negate(F32_INF), *normal), "-Inf"),
        ((F32_INF, negate(F32_INF), *normal[:30]), "+Inf and -Inf"),
        ((F32_INF, F32_QNAN, *normal[:30]), "Inf and NaN"),
        ((F32_MAX, F32_INF, *normal[:30]), "float32 max and Inf"),
        ((F32_QNAN,) * 32, "all NaN"),
    ]
    return [BlockCase(tuple(lanes), "special", note) for lanes, note in cases]


def tiny_blocks(fmt: ElementFormat, level: int) -> list[BlockCase]:
    """Blocks with amax below ``2**(-127 + emax)`` and float32 subnormal inputs (area ``scale``).

    Their shared exponent is below -127, so the scale clamps to 0x00 (2**-127)
    and the elements round on the 2**-127 grid.

    Spec: OCP MX v1.0 section 6.3 (silent below -127; clamping is the oracle's choice).
    """
    check_level(level)
    limit = -127 + fmt.emax
    out = [
        amax_block(next_down(f32_pow2(limit)), "scale", "amax pred(2^(-127+emax))"),
        amax_block(f32_bits(pow2(limit) * 3 / 4), "scale", "amax 0.75 * 2^(-127+emax)"),
        amax_block(f32_pow2(limit - 5), "scale", "amax 2^(-132+emax)"),
        amax_block(next_down(F32_MIN_NORMAL), "scale", "amax largest float32 subnormal"),
        BlockCase((F32_MIN_SUBNORMAL,) + (0,) * 31, "scale", "amax smallest float32 subnormal"),
        BlockCase((0x000116C2, 0x00005397, *[0] * 30), "scale", "subnormals 1e-40, 3e-41"),
    ]
    walking = [1 << i for i in range(FRACTION_BITS)] + [F32_MIN_NORMAL - 1]
    signed = [b ^ (F32_SIGN if i % 3 == 1 else 0) for i, b in enumerate(walking)]
    out += blocks_of(signed, "scale", "float32 subnormals: walking ones")
    holes = [
        (F32_MIN_NORMAL - 1) ^ (1 << i) for i in range(0, FRACTION_BITS, 1 if level == 2 else 3)
    ]
    out += blocks_of(holes, "scale", "float32 subnormals: single-zero holes", F32_MIN_NORMAL)
    return out


def random_blocks(fmt: ElementFormat, count: int, seed: int) -> list[BlockCase]:
    """Seeded weighted-random blocks (area ``rounding``), TestFloat style.

    Each block draws a binade near the unit scale, then lanes within 12
    binades below it with random signs and fractions; one lane in eight is a
    random float32 pattern of any kind.  The draws come from
    :func:`mxref.ref.stochastic.random_u32`, so they are the same everywhere.

    Spec: OCP MX v1.0 section 6.3.
    """
    del fmt
    out = []
    counter = 0

    def draw() -> int:
        nonlocal counter
        counter += 1
        return random_u32(seed, counter)

    for b in range(count):
        top = 127 + (draw() % 41) - 20
        lanes = []
        for _ in range(DEFAULT_BLOCK_SIZE):
            r = draw()
            if r % 8 == 0:
                lanes.append(draw())
                continue
            exp = max(top - (draw() % 13), 0)
            lanes.append(((r >> 31) << 31) | (exp << 23) | (draw() & 0x7FFFFF))
        out.append(BlockCase(tuple(lanes), "rounding", f"seeded random block {b}"))
    return out


def encode_blocks(fmt: ElementFormat, level: int, seed: int = 0) -> list[BlockCase]:
    """Every structured block for ``fmt`` at ``level``, duplicates removed, in a fixed order.

    Level 2 is a superset of level 1.

    Parameters
    ----------
    fmt : ElementFormat
    level : {1, 2}
    seed : int
        Seed of the random blocks (4 at level 1, 16 at level 2).

    Returns
    -------
    list of BlockCase
        Blocks of :data:`~mxref.formats.DEFAULT_BLOCK_SIZE` float32 inputs.

    Spec: OCP MX v1.0 sections 5 and 6.3.
    """
    check_level(level)
    groups = []
    for lvl in range(1, level + 1):
        groups += [
            corner_blocks(fmt),
            power_of_two_blocks(fmt, lvl),
            saturation_blocks(fmt, lvl),
            midpoint_blocks(fmt, lvl),
            boundary_blocks(fmt, lvl),
            special_blocks(fmt),
            tiny_blocks(fmt, lvl),
            random_blocks(fmt, 4 if lvl == 1 else 16, seed),
        ]
    seen: set[tuple[int, ...]] = set()
    out = []
    for group in groups:
        for case in group:
            if case.inputs not in seen:
                seen.add(case.inputs)
                out.append(case)
    return out


@dataclass(frozen=True)
class CodeRow:
    """A row of element codes to pack, and what it is for."""

    codes: tuple[int, ...]
    note: str


def pack_rows(fmt: ElementFormat, seed: int = 0) -> list[CodeRow]:
    """Code rows that exercise a packer: every code, walking ones, lengths 1..33.

    Rows of every length from 1 to 33 (partial groups and partial bytes), 64
    and 96; every code in order; each bit of each lane alone (walking ones);
    all ones; alternating zero and all ones; seeded random rows.

    Spec: OCP MX v1.0 section 5.2 (element widths); packing itself is mxref's convention.
    """
    bits = fmt.bits
    top = fmt.code_count - 1
    rows = [CodeRow(tuple(range(fmt.code_count)), "every code in order")]
    for n in [*range(1, 34), 64, 96]:
        rows.append(CodeRow(tuple((7 * i + n) % fmt.code_count for i in range(n)), f"length {n}"))
    for lane in range(4):
        for b in range(bits):
            codes = [0] * 4
            codes[lane] = 1 << b
            rows.append(CodeRow(tuple(codes), f"walking one: lane {lane} bit {b}"))
    rows.append(CodeRow((top,) * 8, "all ones"))
    rows.append(CodeRow(tuple(top if i % 2 else 0 for i in range(8)), "alternating 0 / all ones"))
    rows.append(CodeRow(tuple(0 if i % 2 else top for i in range(7)), "alternating all ones / 0"))
    for r in range(4):
        n = 32 + 5 * r
        rows.append(
            CodeRow(
                tuple(random_u32(seed, 100 * r + i) % fmt.code_count for i in range(n)),
                f"seeded random row {r}",
            )
        )
    return rows
