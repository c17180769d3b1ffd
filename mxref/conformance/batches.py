"""The structured and seeded random quantize cases of ``mxref conform``.

With the exact oracle's answers for them.

Spec: OCP MX v1.0 section 6.3 (the conversion the cases probe).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.conformance.checks import Config
from mxref.formats import ElementFormat, get_format
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import get_preset
from mxref.ref.array import quantize_array
from mxref.ref.element import decode_element, pow2


# --------------------------------------------------------------------------
# hex helpers
# --------------------------------------------------------------------------
def _hex32(x: np.ndarray) -> list[str]:
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).ravel()
    return [f"{int(b):08x}" for b in bits]


def _hex8(a: Any) -> list[str]:
    return [f"{int(b):02x}" for b in np.asarray(a).ravel()]


_SIGNS = np.array([-1.0, 1.0], np.float32)


def _f32(bits: int) -> np.float32:
    return np.array([bits], np.uint32).view(np.float32)[0]


def _pow2_f32(k: int) -> np.float32:
    with np.errstate(over="ignore"):  # 2**128 is +Inf, whose predecessor is the float32 max
        return np.float32(np.ldexp(1.0, k))


def _next_up(v: float | np.floating[Any]) -> np.float32:
    return np.nextafter(np.float32(v), np.float32(np.inf))


def _next_down(v: float | np.floating[Any]) -> np.float32:
    return np.nextafter(np.float32(v), np.float32(-np.inf))


def _rng(seed: int, *parts: object) -> np.random.Generator:
    key = zlib.crc32(":".join(str(p) for p in parts).encode())
    return np.random.default_rng([seed, key])


@functools.cache
def _grid(name: str) -> tuple[Fraction, ...]:
    """Every non-negative finite magnitude of a format, ascending (by code)."""
    fmt = get_format(name)
    mags = []
    for code in range(fmt.max_code + 1):
        mag = decode_element(code, fmt)[1]
        assert isinstance(mag, Fraction)
        mags.append(mag)
    return tuple(mags)


def _midpoints(name: str) -> list[Fraction]:
    g = _grid(name)
    return [(a + b) / 2 for a, b in zip(g, g[1:], strict=False)]


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


# --------------------------------------------------------------------------
# structured and random blocks (numpy, seeded)
# --------------------------------------------------------------------------
Rows = Iterator[tuple[str, np.ndarray]]


def _body(rng: np.random.Generator, amax: float, bs: int) -> np.ndarray:
    """A block of magnitudes at most ``amax``, with ``+-amax`` at one lane."""
    row = (amax * rng.uniform(-1.0, 1.0, bs)).astype(np.float32)
    row[rng.integers(bs)] = np.float32(amax) * np.float32(rng.choice([-1.0, 1.0]))
    return row


def _anchored(fmt: ElementFormat, k: int, lanes: Sequence[np.float32], bs: int) -> Rows:
    """Rows with lane 0 = max_normal * 2**k (pins the scale) and ``lanes`` after it."""
    anchor = np.float32(float(fmt.max_normal * pow2(k)))
    per = bs - 1
    for i in range(0, len(lanes), per):
        chunk = list(lanes[i : i + per])
        row = np.zeros(bs, np.float32)
        row[0] = anchor
        row[1 : 1 + len(chunk)] = chunk
        yield f"scale pinned to 2**{k}, lanes {i}..{i + len(chunk) - 1}", row


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
        amax = _f32(((k + 127) << 23) | frac)
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
        ("2**-149", _f32(1)),
        ("2**-127", _pow2_f32(-127)),
    ]
    for name, amax in edge:
        yield f"amax = {name}", _body(rng, float(amax), bs)
    max_bits = int(limit.view(np.uint32))
    for _ in range(24 if level < 2 else 200):
        amax = _f32(int(rng.integers(1, max_bits)))
        row = _body(rng, float(amax), bs)
        sub = rng.integers(0, int(amax.view(np.uint32)) + 1, bs // 4).astype(np.uint32)
        row[: bs // 4] = sub.view(np.float32) * rng.choice(_SIGNS, bs // 4)
        row[rng.integers(bs)] = amax
        yield f"tiny amax = {float(amax)!r} (bits {int(amax.view(np.uint32)):08x})", row


def _hard_value(fmt: ElementFormat, amax: np.float32, rng: np.random.Generator) -> np.float32:
    kind = int(rng.integers(7))
    a = float(amax)
    if kind == 0:  # a bit pattern below amax
        return _f32(
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
        return _f32(int(rng.integers(0, top + 1)) | int(rng.integers(2)) << 31)
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
    return kind, _f32(((k + 127) << 23) | int(rng.integers(lo, 2**23)))


def _rows_random_forced(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for i in range(32 if level < 2 else 320):
        kind, amax = _forced_amax(fmt, rng)
        row = np.array([_hard_value(fmt, amax, rng) for _ in range(bs)], np.float32)
        row[rng.integers(bs)] = amax * np.float32(rng.choice([-1.0, 1.0]))
        yield f"random block {i}: {kind} amax {int(amax.view(np.uint32)):08x}", row


def _rows_exact_codes(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for k in _pinned_exponents(fmt, level):
        lanes = [np.float32(s * float(m * pow2(k))) for m in _grid(fmt.name) for s in (1.0, -1.0)]
        yield from _anchored(fmt, k, lanes, bs)


def _rows_midpoints(fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator) -> Rows:
    for k in _pinned_exponents(fmt, level):
        mids = [float(m * pow2(k)) for m in _midpoints(fmt.name)]
        yield from _anchored(fmt, k, [np.float32(s * m) for m in mids for s in (1.0, -1.0)], bs)


def _rows_midpoint_neighbours(
    fmt: ElementFormat, bs: int, level: int, rng: np.random.Generator
) -> Rows:
    for k in _pinned_exponents(fmt, level):
        lanes = []
        for m in _midpoints(fmt.name):
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
    mids = _midpoints(fmt.name)
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
        lanes += [_f32(hi), -_f32(lo)]
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
    return _f32(sign | 0x7F800000 | int(rng.integers(1, 1 << 23)))


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


#: (builder, the checks its rows feed, with what each compares)
_QUANTIZE_BUILDERS: tuple[tuple[Callable[..., Rows], tuple[tuple[str, str], ...]], ...] = (
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


@dataclasses.dataclass(frozen=True)
class _Batch:
    """All quantize rows of one configuration."""

    config: Config
    x: np.ndarray  # (rows, block_size) float32
    notes: list[str]
    checks: list[tuple[tuple[str, str], ...]]


def build_batch(config: Config, level: int = 1, seed: int = 0) -> _Batch:
    """Every structured and random block for one configuration.

    Parameters
    ----------
    config : Config
    level : {1, 2}
    seed : int
        Seeds the random battery; the structured part does not depend on it.

    Returns
    -------
    _Batch
        ``x`` (rows x block_size, float32), a note per row and the checks it feeds.
    """
    fmt = get_format(config.fmt)
    rows, notes, checks = [], [], []
    for builder, targets in _QUANTIZE_BUILDERS:
        rng = _rng(seed, builder.__name__, fmt.name)
        for note, row in builder(fmt, config.block_size, level, rng):
            rows.append(row)
            notes.append(note)
            checks.append(targets)
    x = np.stack(rows).astype(np.float32) if rows else np.zeros((0, config.block_size), np.float32)
    return _Batch(config, x, notes, checks)


_ORACLE_CACHE: dict[tuple[Config, bytes], tuple[np.ndarray, np.ndarray]] = {}


_ORACLE_CACHE_SIZE = 256


def oracle_quantize(x: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The exact oracle's codes and scales for rows of blocks (cached).

    Parameters
    ----------
    x : np.ndarray
        float32, ``(rows, block_size)``.
    config : Config

    Returns
    -------
    (np.ndarray, np.ndarray)
        uint8 codes ``(rows, block_size)`` and scale bytes ``(rows,)``.

    Spec: OCP MX v1.0 section 6.3, through :func:`mxref.ref.array.quantize_array`.
    """
    key = (
        config,
        hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest() + str(x.shape).encode(),
    )
    hit = _ORACLE_CACHE.get(key)
    if hit is None:
        codes, scales = quantize_array(
            x,
            get_format(config.fmt),
            axis=-1,
            block_size=config.block_size,
            scale_rule=ScaleRule.parse(config.scale_rule),
            rounding=Rounding.parse(config.rounding),
            overflow=Overflow.parse(config.overflow),
            seed=config.seed,
            **_preset_quirks(config.preset),
        )
        hit = (codes, scales.reshape(-1))
        if len(_ORACLE_CACHE) >= _ORACLE_CACHE_SIZE:
            _ORACLE_CACHE.clear()
        _ORACLE_CACHE[key] = hit
    return hit


def _preset_quirks(preset: str | None) -> dict[str, Any]:
    """The oracle's arguments for what a preset does beyond its three policies."""
    if preset is None:
        return {}
    chosen = get_preset(preset)
    return {"divisor_min_exponent": chosen.divisor_min_exponent,
            "keep_negative_zero": chosen.keep_negative_zero}  # fmt: skip
