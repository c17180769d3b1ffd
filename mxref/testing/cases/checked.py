"""Per-check quantize blocks, each tagged with the named checks it feeds.

Where :mod:`mxref.testing.cases.structured` grades blocks by spec area (the
golden files), these blocks each feed one or two named checks
(:data:`mxref.conformance.checks.CHECKS`): ``mxref conform`` runs them, and
the pytest battery (``spec_tests/test_checked_blocks.py``) runs them on the
backend under test.  They work at any block size, and most of them draw
from a seeded numpy generator keyed by the seed, the group and the format,
so a group's blocks do not move when another group changes.

Spec: OCP MX v1.0 section 6.3 (the conversion the blocks probe).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.formats import DEFAULT_BLOCK_SIZE, ElementFormat
from mxref.ref.element import pow2
from mxref.testing.cases.blocks import BlockCase, check_level, cut_rows
from mxref.testing.cases.float32 import (
    F32_INF,
    bits_of,
    f32_bits,
    f32_pow2,
    float32_of,
    midpoints,
    next_down,
    next_up,
    positive_grid,
)

#: A group's blocks: (what the block is for, float32 row).
Rows = Iterator[tuple[str, np.ndarray]]


_SIGNS = np.array([-1.0, 1.0], np.float32)


def case_rng(seed: int, *parts: object) -> np.random.Generator:
    """A numpy generator keyed by ``seed`` and ``parts`` (a group's name, a format's name)."""
    key = zlib.crc32(":".join(str(p) for p in parts).encode())
    return np.random.default_rng([seed, key])


def _pow2_f32(k: int) -> np.float32:
    return float32_of(f32_pow2(k))  # 2**128 rounds to +Inf, whose predecessor is the float32 max


def _next_up(v: float | np.floating[Any]) -> np.float32:
    """The float32 after a positive ``v`` (+Inf's successor is a NaN, which callers drop)."""
    return float32_of(next_up(bits_of(v)))


def _next_down(v: float | np.floating[Any]) -> np.float32:
    """The float32 before a positive ``v``."""
    return float32_of(next_down(bits_of(v)))


def _grid(fmt: ElementFormat) -> list[Fraction]:
    return [value for _, value in positive_grid(fmt)]


def _max_sig(fmt: ElementFormat) -> Fraction:
    return fmt.max_normal / pow2(fmt.emax)


def _pinned_exponents(fmt: ElementFormat, level: int) -> list[int]:
    """Scale exponents where every midpoint times 2**k is exactly a float32."""
    lo = max(-127, -148 - fmt.emin + fmt.mbits)
    hi = 127 - fmt.emax
    ks = {0, lo, lo + 27, 50, hi}
    if level >= 2:
        ks.update(range(lo, hi + 1, 9))
    # 2**0 first: a failure there reads plainly (inputs are the element values)
    return sorted((k for k in ks if lo <= k <= hi), key=lambda k: (k != 0, k))


def _body(rng: np.random.Generator, amax: float, bs: int) -> np.ndarray:
    """A block of magnitudes at most ``amax``, with ``+-amax`` at one lane."""
    row = (amax * rng.uniform(-1.0, 1.0, bs)).astype(np.float32)
    row[rng.integers(bs)] = np.float32(amax) * np.float32(rng.choice([-1.0, 1.0]))
    return row


def _anchored(fmt: ElementFormat, k: int, lanes: Sequence[np.float32], bs: int) -> Rows:
    """Rows with lane 0 = max_normal * 2**k (pins the scale) and ``lanes`` after it."""
    bits = np.asarray(lanes, np.float32).view(np.uint32).tolist()
    anchor = f32_bits(fmt.max_normal * pow2(k))
    for start, count, row in cut_rows(bits, bs, anchor):
        label = f"scale pinned to 2**{k}, lanes {start}..{start + count - 1}"
        yield label, np.array(row, np.uint32).view(np.float32)


def _rows_pow2_neighbours(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    ks = set(range(-149, 128)) if level >= 2 else set(range(-149, 128, 4))
    ks.update(range(fmt.emax - 130, fmt.emax - 123))  # around the low clamp
    ks.update((-1, 0, 1, 2, 10, 125, 126, 127))
    for k in sorted(ks):
        p = _pow2_f32(k)
        for name, amax in (("pred", _next_down(p)), ("", p), ("succ", _next_up(p))):
            if np.isfinite(amax) and amax > 0:
                label = f"{name}(2**{k})" if name else f"2**{k}"
                yield f"amax = {label}", _body(rng, float(amax), bs)


def _thresholds(fmt: ElementFormat) -> list[tuple[str, Fraction]]:
    return [
        ("max-normal significand", _max_sig(fmt)),
        ("EVEN threshold", 2 - pow2(-fmt.mbits - 1)),
        ("2", Fraction(2)),
    ]


def _rows_rule_thresholds(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    ks = [-126, fmt.emax - 128, -20, 0, 1, 40, 127]
    if level >= 2:
        ks += list(range(-126, 128, 11))
    for k in sorted(set(ks)):
        for name, sig in _thresholds(fmt):
            v = np.float32(float(sig * pow2(k))) if sig < 2 else _pow2_f32(k + 1)
            for side, amax in (("pred ", _next_down(v)), ("", v), ("succ ", _next_up(v))):
                if sig == 2 and side != "pred ":
                    continue
                if np.isfinite(amax) and amax > 0:
                    yield f"amax = {side}{name} * 2**{k}", _body(rng, float(amax), bs)


def _rows_above_max_sig(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    lo = int(math.floor((_max_sig(fmt) - 1) * 2**23)) + 1
    for _ in range(16 if level < 2 else 160):
        k = int(rng.integers(-126, 128))
        frac = int(rng.integers(lo, 2**23))
        amax = float32_of(((k + 127) << 23) | frac)
        yield (
            f"amax = {float(amax)!r} (bits {int(amax.view(np.uint32)):08x})",
            _body(rng, float(amax), bs),
        )


def _rows_tiny(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    limit = _pow2_f32(fmt.emax - 127)  # amax below this clamps the scale to 2**-127
    edge = [
        ("2**(emax-127)", limit),
        ("pred 2**(emax-127)", _next_down(limit)),
        ("succ 2**(emax-127)", _next_up(limit)),
        ("2**(emax-126)", _pow2_f32(fmt.emax - 126)),
        ("2**-149", float32_of(1)),
        ("2**-127", _pow2_f32(-127)),
    ]
    for name, amax in edge:
        yield f"amax = {name}", _body(rng, float(amax), bs)
    max_bits = int(limit.view(np.uint32))
    for _ in range(24 if level < 2 else 200):
        amax = float32_of(int(rng.integers(1, max_bits)))
        row = _body(rng, float(amax), bs)
        sub = rng.integers(0, int(amax.view(np.uint32)) + 1, bs // 4).astype(np.uint32)
        row[: bs // 4] = sub.view(np.float32) * rng.choice(_SIGNS, bs // 4)
        row[rng.integers(bs)] = amax
        yield f"tiny amax = {float(amax)!r} (bits {int(amax.view(np.uint32)):08x})", row


def _hard_value(fmt: ElementFormat, amax: np.float32, rng: np.random.Generator) -> np.float32:
    kind = int(rng.integers(7))
    a = float(amax)
    if kind == 0:  # a bit pattern below amax
        return float32_of(
            int(rng.integers(0, int(amax.view(np.uint32)) + 1)) | int(rng.integers(2)) << 31
        )
    if kind == 1:
        return np.float32(a * rng.uniform(-1, 1))
    if kind == 2:  # a tie at some binade
        q = float(fmt.min_subnormal) * (int(rng.integers(1, 2 * fmt.code_count)) + 0.5)
        v = np.float32(q * 2.0 ** int(rng.integers(-130, 120)))
        return v * np.float32(rng.choice([-1.0, 1.0])) if abs(v) <= a else np.float32(0)
    if kind == 3:
        return np.float32(rng.choice([0.0, -0.0]))
    if kind == 4:  # a float32 subnormal, at most amax
        top = min((1 << 23) - 1, int(amax.view(np.uint32)))
        return float32_of(int(rng.integers(0, top + 1)) | int(rng.integers(2)) << 31)
    if kind == 5:
        return np.float32(rng.choice([a, -a]))
    return np.float32(a * 2.0 ** -int(rng.integers(1, 41)))


def _forced_amax(fmt: ElementFormat, rng: np.random.Generator) -> tuple[str, np.float32]:
    kind = ("pow2", "pred_pow2", "succ_pow2", "above_max_significand", "pattern")[rng.integers(5)]
    if kind == "pow2":
        return kind, _pow2_f32(int(rng.integers(-149, 128)))
    if kind == "pred_pow2":
        return kind, _next_down(_pow2_f32(int(rng.integers(-148, 128))))
    if kind == "succ_pow2":
        return kind, _next_up(_pow2_f32(int(rng.integers(-149, 128))))
    k = int(rng.integers(-126, 128))
    lo = int(math.floor((_max_sig(fmt) - 1) * 2**23)) + 1 if kind != "pattern" else 0
    return kind, float32_of(((k + 127) << 23) | int(rng.integers(lo, 2**23)))


def _rows_random_forced(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for i in range(32 if level < 2 else 320):
        kind, amax = _forced_amax(fmt, rng)
        row = np.array([_hard_value(fmt, amax, rng) for _ in range(bs)], np.float32)
        row[rng.integers(bs)] = amax * np.float32(rng.choice([-1.0, 1.0]))
        yield f"random block {i}: {kind} amax {int(amax.view(np.uint32)):08x}", row


def _rows_exact_codes(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for k in _pinned_exponents(fmt, level):
        lanes = [np.float32(s * float(m * pow2(k))) for m in _grid(fmt) for s in (1.0, -1.0)]
        yield from _anchored(fmt, k, lanes, bs)


def _rows_midpoints(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for k in _pinned_exponents(fmt, level):
        mids = [float(m * pow2(k)) for m in midpoints(fmt)]
        yield from _anchored(fmt, k, [np.float32(s * m) for m in mids for s in (1.0, -1.0)], bs)


def _rows_midpoint_neighbours(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    for k in _pinned_exponents(fmt, level):
        lanes = []
        for m in midpoints(fmt):
            v = float(m * pow2(k))
            for s in (1.0, -1.0):
                lanes += [np.float32(s) * _next_down(v), np.float32(s) * _next_up(v)]
        yield from _anchored(fmt, k, lanes, bs)


def _rows_subnormal_inputs(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    for i in range(12 if level < 2 else 96):
        k = 0 if i % 4 == 0 else int(rng.integers(-127, -117))
        bits = rng.integers(1, 1 << 23, bs - 1).astype(np.uint32)
        bits |= rng.integers(0, 2, bs - 1).astype(np.uint32) << np.uint32(31)
        for label, row in _anchored(fmt, k, list(bits.view(np.float32)), bs):
            yield f"float32 subnormal lanes, {label}", row


def _rows_random_bits(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for i in range(32 if level < 2 else 320):
        top = int(rng.integers(1, 255))
        exps = rng.integers(max(top - 12, 0), top + 1, bs)
        exps[rng.integers(bs)] = top
        bits = (exps.astype(np.uint32) << np.uint32(23)) | rng.integers(0, 1 << 23, bs).astype(
            np.uint32
        )
        bits |= rng.integers(0, 2, bs).astype(np.uint32) << np.uint32(31)
        yield f"random bits {i}, exponent field {top - 12}..{top}", bits.view(np.float32).copy()


def _rows_random_ties(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    ks = _pinned_exponents(fmt, 2)
    mids = midpoints(fmt)
    for i in range(24 if level < 2 else 240):
        k = int(rng.integers(ks[0], ks[-1] + 1))
        lanes = []
        for _ in range(bs - 1):
            if rng.integers(8) == 0:
                lanes.append(np.float32(rng.choice([0.0, -0.0])))
            else:
                m = mids[int(rng.integers(len(mids)))]
                lanes.append(np.float32(rng.choice([1.0, -1.0]) * float(m * pow2(k))))
        for label, row in _anchored(fmt, k, lanes, bs):
            yield f"random ties {i}, {label}", row


def _rows_above_max_normal(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    ks = [0, -127, -60, 40, 127 - fmt.emax - 1]
    if level >= 2:
        ks += [int(k) for k in rng.integers(-127, 127 - fmt.emax, 12)]
    for k in ks:
        lo = int(_next_up(float(fmt.max_normal * pow2(k))).view(np.uint32))
        hi = int(_next_down(float(pow2(fmt.emax + 1 + k))).view(np.uint32))
        bits = rng.integers(lo, hi + 1, bs - 2).astype(np.uint32)
        lanes = list(bits.view(np.float32) * rng.choice(_SIGNS, bs - 2))
        lanes += [float32_of(hi), -float32_of(lo)]
        for label, row in _anchored(fmt, k, lanes, bs):
            yield f"above max normal, {label}", row


def _rows_overflow_midpoint(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    step = pow2(fmt.emax - fmt.mbits)
    for k in _pinned_exponents(fmt, level):
        if fmt.emax + 1 + k > 127:
            continue
        tie = float((fmt.max_normal + step / 2) * pow2(k))
        lanes = []
        for v in (np.float32(tie), _next_down(tie), _next_up(tie)):
            lanes += [v, -v]
        yield from ((f"overflow midpoint, {lab}", r) for lab, r in _anchored(fmt, k, lanes, bs))


def _nan(rng: np.random.Generator) -> np.float32:
    sign = int(rng.integers(2)) << 31
    return float32_of(sign | F32_INF | int(rng.integers(1, 1 << 23)))


def _rows_nan(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    yield "all NaN", np.array([_nan(rng) for _ in range(bs)], np.float32)
    for i in range(12 if level < 2 else 96):
        _, amax = _forced_amax(fmt, rng)
        row = _body(rng, float(amax), bs)
        lanes = [0, bs - 1] if i == 0 else rng.integers(0, bs, int(rng.integers(1, 4)))
        for j in lanes:
            row[j] = _nan(rng)
        yield f"NaN at lanes {sorted(int(j) for j in set(lanes))}", row


def _rows_inf(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    yield "+Inf among zeros", np.where(np.arange(bs) == 3, np.inf, 0.0).astype(np.float32)
    yield "-Inf among zeros", np.where(np.arange(bs) == 5, -np.inf, -0.0).astype(np.float32)
    for _ in range(12 if level < 2 else 96):
        _, amax = _forced_amax(fmt, rng)
        row = _body(rng, float(amax), bs)
        lanes = sorted({int(j) for j in rng.integers(0, bs, int(rng.integers(1, 3)))})
        for j in lanes:
            row[j] = np.float32(rng.choice([np.inf, -np.inf]))
        yield f"Inf at lanes {lanes}", row


def _rows_zero(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    yield "all +0", np.zeros(bs, np.float32)
    yield "all -0", np.full(bs, -0.0, np.float32)
    for i in range(4 if level < 2 else 32):
        yield (
            f"mixed signed zeros {i}",
            np.where(rng.integers(0, 2, bs) == 1, -0.0, 0.0).astype(np.float32),
        )


def _rows_negative_zero(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for k in _pinned_exponents(fmt, level):
        tiny = fmt.min_subnormal * pow2(k)
        half = float(tiny / 2)  # a tie with zero: RNE keeps zero, with the sign
        lanes = [
            np.float32(-0.0),
            np.float32(0.0),
            np.float32(-half),
            _next_down(half) * -1,
            np.float32(-float(tiny / 4)),
            np.float32(half),
        ]
        for label, row in _anchored(fmt, k, lanes * 5, bs):
            yield f"signed zeros and values rounding to zero, {label}", row


#: Each group of blocks and the checks its blocks feed, with what each compares.
CHECKED_GROUPS: tuple[tuple[Callable[..., Rows], tuple[tuple[str, str], ...]], ...] = (
    (_rows_pow2_neighbours, (("scale.pow2_neighbours", "both"),)),
    (_rows_rule_thresholds, (("scale.rule_thresholds", "both"),)),
    (_rows_above_max_sig, (("scale.above_max_significand", "both"),)),
    (_rows_tiny, (("scale.tiny_blocks", "both"),)),
    (_rows_random_forced, (("scale.random_forced_amax", "both"),)),
    (_rows_exact_codes, (("rounding.exact_codes", "both"),)),
    (_rows_midpoints, (("rounding.midpoints", "both"),)),
    (_rows_midpoint_neighbours, (("rounding.midpoint_neighbours", "both"),)),
    (_rows_subnormal_inputs, (("rounding.subnormal_inputs", "both"),)),
    (_rows_random_bits, (("rounding.random_bits", "both"),)),
    (_rows_random_ties, (("rounding.random_ties", "both"),)),
    (_rows_above_max_normal, (("saturation.above_max_normal", "both"),)),
    (_rows_overflow_midpoint, (("saturation.overflow_midpoint", "both"),)),
    (_rows_nan, (("special.nan_block_scale", "scale"), ("special.nan_block_codes", "codes"))),
    (_rows_inf, (("special.inf_block_scale", "scale"), ("special.inf_block_codes", "codes"))),
    (_rows_zero, (("special.zero_block_scale", "scale"), ("special.zero_block_codes", "codes"))),
    (_rows_negative_zero, (("special.negative_zero", "both"),)),
)


def checked_blocks(
    fmt: ElementFormat, block_size: int = DEFAULT_BLOCK_SIZE, level: int = 1, seed: int = 0
) -> list[BlockCase]:
    """Every per-check block for ``fmt``, in the order of :data:`CHECKED_GROUPS`.

    Parameters
    ----------
    fmt : ElementFormat
    block_size : int
        Lanes per block (at least 2: lane 0 often anchors the scale).
    level : {1, 2}
        Level 2 has about ten times the random blocks and more scales.
    seed : int
        Seeds the random blocks; the structured ones do not depend on it.

    Returns
    -------
    list of BlockCase
        ``block_size`` lanes each, with ``checks`` set and ``area`` the checks' area.

    Spec: OCP MX v1.0 section 6.3.
    """
    check_level(level)
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2; got {block_size!r}")
    out = []
    for builder, checks in CHECKED_GROUPS:
        area = checks[0][0].split(".")[0]
        rng = case_rng(seed, builder.__name__, fmt.name)
        for note, row in builder(fmt, block_size, level, rng):
            lanes = tuple(np.ascontiguousarray(row, np.float32).view(np.uint32).tolist())
            out.append(BlockCase(lanes, area, note, checks))
    return out
