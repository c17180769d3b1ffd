"""NVFP4 cases: small tensors at the places where NVFP4 implementations go wrong.

NVFP4's tensor scale ``G`` depends on the whole tensor (or row), so an
NVFP4 case is a whole 2-D tensor, not a block: :class:`NVCase`.  Most cases
*anchor* ``G``: one block holds ``2688 * 2**k`` (448 * 6, E4M3's max times
E2M1's), the tensor's largest magnitude, so ``G = 2**-k`` exactly under any
formula for it, and the other blocks probe the block scale and the elements
without depending on how an implementation rounds ``G``.  The
``nvfp4.tensor_scale`` cases do the opposite: amaxes where the exact
``RN32(2688 / amax)`` and torchao's ``1 / RN32(amax / 2688)`` differ.

The consumers: ``mxref conform`` (each case feeds the check it names), the
golden files (each case's area grades it there) and the pytest battery.

Spec: none for NVFP4 (docs/semantics.md section 8c); the element grid is
OCP MX v1.0 section 5.3's E2M1, the block scale OFP8's E4M3.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mxref.formats import get_format
from mxref.ref.element import pow2
from mxref.ref.nvfp4 import NV_BLOCK_SIZE, tensor_scale
from mxref.testing.cases.blocks import check_level
from mxref.testing.cases.checked import case_rng
from mxref.testing.cases.float32 import (
    F32_INF,
    F32_MAX,
    F32_MIN_SUBNORMAL,
    F32_QNAN,
    F32_SIGN,
    f32_bits,
    f32_value,
    midpoints,
    next_down,
    next_up,
    positive_grid,
)

__all__ = ["NV_ANCHOR", "NVCase", "nv_cases", "nv_pack_cases"]

_E2M1 = get_format("mxfp4")
_E4M3 = get_format("mxfp8_e4m3")

#: 448 * 6: a tensor whose amax is ``NV_ANCHOR * 2**k`` has the tensor scale ``2**-k``.
NV_ANCHOR = _E4M3.max_normal * _E2M1.max_normal

_F32_MAX_VALUE = f32_value(F32_MAX)

#: Test blocks per row after the anchor block.
_PER_ROW = 8


@dataclass(frozen=True)
class NVCase:
    """One NVFP4 tensor and what it exercises.

    Attributes
    ----------
    rows : tuple of tuple of int
        The tensor, float32 bit patterns, blocked along each row (16 per block).
    check : str
        The ``mxref conform`` check it feeds (``nvfp4.<name>``).
    area : str
        The spec area that grades it in the golden files.
    note : str
        What the tensor is for.
    per_row : bool
        One tensor scale per row instead of one for the tensor.
    given : int or None
        float32 bits of a given (calibrated) tensor scale to encode against,
        or None to compute it from the tensor.
    """

    rows: tuple[tuple[int, ...], ...]
    check: str
    area: str
    note: str
    per_row: bool = False
    given: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return len(self.rows), len(self.rows[0])

    def array(self) -> np.ndarray:
        """The tensor as float32."""
        return np.array(self.rows, np.uint32).view(np.float32)


def _v(value: Fraction, k: int = 0, sign: int = 0) -> int:
    return f32_bits(value * pow2(k), sign)


def _body(rng: np.random.Generator, amax_bits: int, lanes: int) -> list[int]:
    """``lanes`` float32 values of magnitude at most ``amax_bits``' value, random signs."""
    amax = float(f32_value(amax_bits))
    vals = (amax * rng.uniform(-1.0, 1.0, lanes)).astype(np.float32)
    return [int(b) for b in vals.view(np.uint32)]


def _block(rng: np.random.Generator, lead: Sequence[int]) -> list[int]:
    """A block: ``lead`` lanes first, the rest random below the first finite one's magnitude."""
    finite = [b & ~F32_SIGN for b in lead if b & F32_INF != F32_INF]
    return list(lead) + _body(rng, finite[0], NV_BLOCK_SIZE - len(lead))


def _anchored(blocks: Sequence[Sequence[int]], k: int, check: str, area: str,
              note: str) -> Iterator[NVCase]:  # fmt: skip
    """Tensors of one row: the anchor block (G = 2**-k), then up to 8 test blocks each."""
    anchor = [_v(NV_ANCHOR, k)] + [0] * (NV_BLOCK_SIZE - 1)
    for start in range(0, len(blocks), _PER_ROW):
        chunk = blocks[start : start + _PER_ROW]
        row = anchor + [b for block in chunk for b in block]
        yield NVCase((tuple(row),), check, area,
                     f"{note}, G = 2**{-k}, blocks {start}..{start + len(chunk) - 1} after the "
                     "anchor block")  # fmt: skip


def _ks(level: int) -> list[int]:
    """Anchor exponents: G = 1 first (a failure reads plainly), then far scales."""
    return [0, -40, 60] if level >= 2 else [0, -40]


def _e4m3_values() -> list[Fraction]:
    return [v for _, v in positive_grid(_E4M3)]


def _tensor_scale_cases(level: int, rng: np.random.Generator) -> Iterator[NVCase]:
    check, area = "nvfp4.tensor_scale", "scale"
    amaxes: list[tuple[int, str]] = []
    wanted = 12 if level < 2 else 64
    while len(amaxes) < wanted:
        bits = int(rng.integers(0x3F000000 - (20 << 23), 0x3F000000 + (20 << 23)))
        amax = np.float32(np.array([bits], np.uint32).view(np.float32)[0])
        # a float32 quotient and its reciprocal: torchao's decode scale inverted
        inverted = np.float32(1) / (amax / np.float32(2688))
        exact = tensor_scale(f32_value(bits))
        if f32_value(int(np.array([inverted]).view(np.uint32)[0])) != exact:
            amaxes.append((bits, "RN32(2688 / amax) differs from 1 / RN32(amax / 2688)"))
    for k in (0, -13, 21):
        a = _v(NV_ANCHOR, k)
        amaxes += [(a, f"amax 2688 * 2**{k}"), (next_up(a), "amax just above 2688 * 2**k"),
                   (next_down(a), "amax just below 2688 * 2**k")]  # fmt: skip
    tiny = f32_bits(NV_ANCHOR / _F32_MAX_VALUE)
    amaxes += [(F32_MIN_SUBNORMAL, "amax the smallest subnormal: G clamps to float32's max"),
               (next_down(tiny), "amax just below 2688 / float32 max: G clamps"),
               (next_up(tiny), "amax just above 2688 / float32 max"),
               (F32_MAX, "amax float32's max"), (_v(Fraction(1)), "amax 1")]  # fmt: skip
    for bits, note in amaxes:
        rows = (tuple(_block(rng, [bits]) + _block(rng, [bits & ~0x3FF])),
                tuple(_block(rng, [next_down(bits) if bits > 1 else bits]) + [0] * 16))
        yield NVCase(rows, check, area, note)
    # rows of very different amax under one tensor scale: the tensor's amax, not a row's
    for scale in (Fraction(1, 1000), Fraction(7, 3)):
        big = _v(Fraction(2688) * scale * 37)
        small = _v(Fraction(3) * scale)
        rows = (tuple(_block(rng, [small]) * 2), tuple(_block(rng, [big]) + _block(rng, [small])))
        yield NVCase(rows, check, area, "per tensor: rows of very different amax")


def _block_scale_cases(level: int, rng: np.random.Generator) -> Iterator[NVCase]:
    grid = _e4m3_values()
    normal = [(a + b) / 2 for a, b in zip(grid, grid[1:], strict=False) if a >= _E4M3.min_normal]
    sub = [(a + b) / 2 for a, b in zip(grid, grid[1:], strict=False) if a < _E4M3.min_normal]
    for k in _ks(level):
        blocks = []
        for m in normal if level >= 2 else normal[::3] + normal[-4:]:
            amax = _v(m * 6, k)
            blocks += [_block(rng, [amax]), _block(rng, [next_up(amax)]),
                       _block(rng, [next_down(amax)])]  # fmt: skip
        yield from _anchored(blocks, k, "nvfp4.block_scale_rounding", "scale",
                             "block amax / 6 * G on an E4M3 midpoint and beside it")  # fmt: skip
        blocks = []
        for m in sub:
            amax = _v(m * 6, k)
            blocks += [_block(rng, [amax]), _block(rng, [next_up(amax)]),
                       _block(rng, [next_down(amax)])]  # fmt: skip
        low = _v(_E4M3.min_subnormal * 3, k)  # 6 * half the smallest subnormal: a tie to 0
        blocks += [_block(rng, [low]), _block(rng, [next_up(low)]), _block(rng, [next_down(low)]),
                   _block(rng, [_v(Fraction(1, 10**6), k)])]  # fmt: skip
        yield from _anchored(blocks, k, "nvfp4.block_scale_subnormal", "scale",
                             "subnormal E4M3 block scales, and tiny blocks beside large ones")


def _given_cases(rng: np.random.Generator) -> Iterator[NVCase]:
    """Tensors encoded against a given tensor scale, which the tensor exceeds."""
    one = _v(Fraction(1))
    amaxes = [Fraction(448 * 6), Fraction(456 * 6), Fraction(464 * 6), Fraction(480 * 6),
              Fraction(6000), Fraction(10**30)]  # fmt: skip
    for given in (one, _v(Fraction(1, 2))):
        g = f32_value(given)
        blocks = []
        for a in amaxes:
            bits = f32_bits(a / g)
            blocks += [_block(rng, [bits]), _block(rng, [next_up(bits)])]
        row = [b for block in blocks for b in block]
        yield NVCase((tuple(row),), "nvfp4.block_scale_saturation", "saturation",
                     f"given G {float(g)}: block amax / 6 * G at and above 448 (464 is the "
                     "overflow tie)", given=given)  # fmt: skip
        lanes = [f32_bits(Fraction(6 * 448) / g)] + [
            f32_bits(Fraction(m * 448, 4) / g, s) for m in (25, 26, 27, 28, 30, 31, 33, 40)
            for s in (0, 1)][:15]  # fmt: skip
        yield NVCase((tuple(lanes) * 2,), "nvfp4.element_saturation", "saturation",
                     f"given G {float(g)}: elements above 6 under a saturated block scale",
                     given=given)  # fmt: skip
    big = _v(Fraction(2688))
    lanes = [big] + [_v(Fraction(2688 * j, 16), 0, j % 2) for j in range(1, 16)]
    yield NVCase((tuple(lanes),), "nvfp4.element_saturation", "saturation",
                 "given G 4 above the tensor's own: scale 448, every element beyond 6",
                 given=_v(Fraction(4)))  # fmt: skip


def _element_cases(level: int, rng: np.random.Generator) -> Iterator[NVCase]:
    mids = midpoints(_E2M1)
    grid = _e4m3_values()[1:]
    scales = grid if level >= 2 else [grid[0], grid[2], grid[9], grid[40], grid[56], grid[57],
                                      grid[70], grid[-1]]  # fmt: skip
    for k in _ks(level):
        blocks = []
        for s in scales:
            lead = _v(6 * s, k)
            ties = [_v(m * s, k, sign) for m in mids for sign in (0, 1)]
            blocks.append([lead, *ties, _v(s / 2, k, 1)])
            blocks.append([lead] + [next_up(t) for t in ties] + [_v(s, k)])
            blocks.append([lead] + [next_down(t) for t in ties] + [_v(s * 3, k, 1)])
        yield from _anchored(blocks, k, "nvfp4.element_rounding", "rounding",
                             "E2M1 midpoints times an exact block scale, and beside them")
    # a block scale that rounds down: x * G / s lands above 6, where E2M1 saturates
    blocks = []
    near = [Fraction(v, 8) for v in (50, 49, 48, 44, 40, 36, 30)]  # 6.25 .. 3.75
    for m in (Fraction(17, 16), Fraction(37, 32)):
        lead = _v(6 * m)
        lanes = [_v(v, 0, sign) for v in near for sign in (0, 1)]
        blocks.append([lead, *lanes, lead | F32_SIGN])
    yield from _anchored(blocks, 0, "nvfp4.element_saturation", "saturation",
                         "a block scale rounded down puts its amax above 6")


def _zero_cases(rng: np.random.Generator) -> Iterator[NVCase]:
    neg = F32_SIGN
    yield NVCase(((0,) * 16,), "nvfp4.zero_tensor", "special", "an all-zero tensor")
    yield NVCase(((0, neg) * 16, (neg,) * 32), "nvfp4.zero_tensor", "special",
                 "an all-zero tensor of signed zeros")
    yield NVCase(((neg, 0, 0, neg, 0) * 4,), "nvfp4.zero_tensor", "special",
                 "an all-zero tensor with a short last block")
    yield NVCase(((neg,) * 16, (0,) * 16), "nvfp4.zero_tensor", "special",
                 "an all-zero tensor, one tensor scale per row", per_row=True)
    blocks = [[0] * 16, [neg] * 16, [0, neg] * 8, [neg] + [0] * 15]
    yield from _anchored(blocks, 0, "nvfp4.zero_block", "special",
                         "all-zero blocks beside nonzero ones")
    yield from _anchored(blocks, -40, "nvfp4.zero_block", "special",
                         "all-zero blocks beside nonzero ones")
    one = Fraction(1)
    quarter = _v(one / 4, 0, 1)
    lanes = [_v(6 * one), neg, _v(one / 8, 0, 1), quarter, next_down(quarter),
             F32_SIGN | F32_MIN_SUBNORMAL, neg, _v(one / 4), 0]  # fmt: skip
    lanes += [neg] * (16 - len(lanes))
    yield from _anchored([lanes], 0, "nvfp4.negative_zero", "special",
                         "-0.0 and negative values that round to zero")
    yield from _anchored([lanes], 17, "nvfp4.negative_zero", "special",
                         "-0.0 and negative values that round to zero")


def _special_cases(rng: np.random.Generator) -> Iterator[NVCase]:
    check, area = "nvfp4.special_values", "special"
    nan, neg_nan = F32_QNAN, F32_QNAN | F32_SIGN
    payload = 0x7F800123
    specials = [nan, neg_nan, payload, F32_INF, F32_INF | F32_SIGN]
    blocks = []
    for s in specials:
        block = _block(rng, [_v(Fraction(300))])
        block[5] = s
        blocks.append(block)
    yield from _anchored(blocks, 0, check, area, "a NaN, -NaN, NaN payload, +Inf, -Inf block")
    # Inf is larger than the tensor's finite amax: G comes from the finite values
    row = _block(rng, [F32_INF | F32_SIGN, _v(Fraction(5))]) + _block(rng, [_v(Fraction(3))])
    yield NVCase((tuple(row),), check, area, "-Inf beside finite blocks: G from the finite amax")
    yield NVCase(((nan,) * 16, (neg_nan,) * 8 + (F32_INF,) * 8), check, area,
                 "a tensor of NaN and Inf only: no finite amax")
    rows = (tuple(_block(rng, [_v(Fraction(7))]) * 2),
            tuple(_block(rng, [nan, _v(Fraction(50))]) + _block(rng, [_v(Fraction(9))])))
    yield NVCase(rows, check, area, "per row: a NaN row beside a finite one", per_row=True)


def _per_row_cases(level: int, rng: np.random.Generator) -> Iterator[NVCase]:
    for t in range(6 if level < 2 else 24):
        rows = []
        for r in range(4):
            exp = int(rng.integers(-30, 30)) + 6 * r
            bits = f32_bits(Fraction(int(rng.integers(1 << 23, 1 << 24)), 1 << 23) * pow2(exp))
            rows.append(tuple(_block(rng, [bits]) + _block(rng, [bits - 12345])))
        if t == 1:
            rows[2] = (0,) * 32  # a zero row: G = 1 there
        yield NVCase(tuple(rows), "nvfp4.per_row", "scale",
                     "per row: rows of very different amax", per_row=True)


def nv_cases(level: int = 1, seed: int = 0) -> list[NVCase]:
    """Every NVFP4 quantize case: a 2-D tensor each, with the check it feeds.

    Parameters
    ----------
    level : {1, 2}
        2 adds the other anchor exponents, every E4M3 midpoint and more
        random amaxes.
    seed : int
        Seeds the random lanes and amaxes; the structure does not depend on it.

    Returns
    -------
    list of NVCase
        Deterministic for ``(level, seed)``.
    """
    check_level(level)
    rng = case_rng(seed, "nvfp4")
    out: list[NVCase] = []
    out += _tensor_scale_cases(level, rng)
    out += _block_scale_cases(level, rng)
    out += _given_cases(rng)
    out += _element_cases(level, rng)
    out += _zero_cases(rng)
    out += _special_cases(rng)
    out += _per_row_cases(level, rng)
    return out


@dataclass(frozen=True)
class NVPackCase:
    """Codes, E4M3 bytes and a tensor scale to pack: a ``(rows, cols)`` NVFP4 array."""

    codes: np.ndarray
    scales: np.ndarray
    tensor_scale: np.ndarray
    note: str


def nv_pack_cases(seed: int = 0, level: int = 1) -> list[NVPackCase]:
    """NVFP4 arrays whose shapes cross the 128x4 tiles of NVIDIA's blocked scale layout.

    Parameters
    ----------
    seed : int
    level : {1, 2}

    Returns
    -------
    list of NVPackCase
        Codes (uint8, every E2M1 code), scale bytes (uint8, 0x00..0x7F) and
        a 0-d float32 tensor scale.
    """
    check_level(level)
    rng = case_rng(seed, "nvfp4 packing")
    shapes = [(1, 16), (3, 48), (33, 80), (129, 80), (130, 144)]
    if level >= 2:
        shapes += [(256, 64), (257, 272)]
    out = []
    for rows, cols in shapes:
        codes = rng.integers(0, 16, (rows, cols)).astype(np.uint8)
        codes[0, : min(cols, 16)] = np.arange(min(cols, 16))  # a ramp shows a nibble swap
        nb = -(-cols // NV_BLOCK_SIZE)
        scales = rng.integers(0, 0x80, (rows, nb)).astype(np.uint8)
        # a ramp of distinct bytes shows where a misplaced one went
        scales.reshape(-1)[: min(scales.size, 128)] = np.arange(min(scales.size, 128))
        out.append(NVPackCase(codes, scales, np.array(1.5, np.float32), f"{rows} x {cols}"))
    return out
