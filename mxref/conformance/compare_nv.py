"""Compare two NVFP4 arrays directly: the tensor scale, E4M3 block-scale bytes and E2M1 codes.

The NVFP4 twin of :mod:`mxref.conformance.compare_mx`.  An NVFP4 element
decodes to ``code * s_b / G`` (docs/semantics.md section 8c): an E2M1 code, its
block's E4M3 scale ``s_b`` and the float32 tensor scale ``G`` (one per tensor,
or one per row along the blocked axis).  A dump is compared in that order:

- the tensor scale: ``tensor scale differs``, with both values and bits (once
  for a per-tensor scale; by row for per-row scales);
- the block-scale bytes that differ, by block, with their E4M3 values;
- the codes that differ, by block and lane, with the kinds of
  :mod:`~mxref.conformance.compare_mx` (``sign flip``, ``magnitude``), and
  ``same value, scale differs`` where ``code * s_b / G`` is the same number
  on both sides: decided exactly, in integers (:func:`same_value`).

Under an NVFP4 preset (``MXArray.preset``), the tensor scale holds what that
implementation stores, and an element's value is what that implementation's
decoding gives (:func:`mxref.dequantize`, float32 steps): ``same value`` then
compares those float32 values, bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.compare_mx import (
    DEFAULT_SHOW,
    KINDS,
    CodeMismatch,
    _CodeTable,
    _index,
    block_lines,
)
from mxref.formats import ElementFormat
from mxref.io import InputError
from mxref.nv_files import tensor_scale_text
from mxref.ref.element import decode_element
from mxref.tables import value_text

__all__ = [
    "NVCompareReport",
    "NVScaleMismatch",
    "TensorScaleMismatch",
    "compare_nv",
    "format_nv_report",
    "same_value",
]


@dataclass(frozen=True)
class TensorScaleMismatch:
    """The tensor scale, or one row's, that differs.

    Attributes
    ----------
    row : tuple of int or None
        The row's index (``shape`` without the blocked axis); None for a
        per-tensor scale.
    reference, actual : str
        Each value and its float32 bits: ``2.5 (0x40200000)``.
    """

    row: tuple[int, ...] | None
    reference: str
    actual: str


@dataclass(frozen=True)
class NVScaleMismatch:
    """One block whose E4M3 scale byte differs.

    Attributes
    ----------
    block : tuple of int
    reference, actual : int
        The two bytes.
    reference_value, actual_value : str
        Their E4M3 values, exactly (``NaN`` for 0x7F).
    """

    block: tuple[int, ...]
    reference: int
    actual: int
    reference_value: str
    actual_value: str


@dataclass(frozen=True)
class NVCompareReport:
    """What :func:`compare_nv` found.

    Attributes
    ----------
    format, shape, axis, block_size
        As in :class:`~mxref.conformance.compare_mx.MXCompareReport`.
    per_row : bool
        Whether the tensor scale is one per row.
    preset : str or None
    tensor_scales, tensor_scale_mismatches : int
        Tensor scales compared (1, or the rows) and how many differ.
    blocks, blocks_identical : int
        Blocks compared, and those whose scale byte, codes and tensor scale agree.
    elements, codes_identical, scale_mismatches : int
    code_mismatches_by_kind : dict
        ``kind -> count``.
    first_tensor_scales, first_scales, first_codes : list
        The first ``show`` of each, in array order.
    """

    format: str
    shape: tuple[int, ...]
    axis: int
    block_size: int
    per_row: bool
    preset: str | None
    tensor_scales: int
    tensor_scale_mismatches: int
    blocks: int
    blocks_identical: int
    elements: int
    codes_identical: int
    scale_mismatches: int
    code_mismatches_by_kind: dict[str, int] = field(default_factory=dict)
    first_tensor_scales: list[TensorScaleMismatch] = field(default_factory=list)
    first_scales: list[NVScaleMismatch] = field(default_factory=list)
    first_codes: list[CodeMismatch] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """The tensor scale, every scale byte and every code agree."""
        return self.blocks_identical == self.blocks and self.tensor_scale_mismatches == 0

    @property
    def exit_status(self) -> int:
        """0 when identical, 1 otherwise (the CLI's status)."""
        return 0 if self.identical else 1

    def to_json(self) -> str:
        """The report as JSON (``kind: "nvfp4"``), for tools."""
        data: dict[str, Any] = {"kind": "nvfp4", **asdict(self), "identical": self.identical}
        return json.dumps(data, indent=2) + "\n"


# -- exact values: code * s_b / G as integers ------------------------------------------


def _scale_integers(scale_fmt: ElementFormat) -> tuple[np.ndarray, int]:
    """Every E4M3 scale byte's value as ``S * 2^e0``: S per byte (0 for NaN), and e0."""
    values = [decode_element(b, scale_fmt)[1] for b in range(scale_fmt.code_count)]
    finite = [v for v in values if isinstance(v, Fraction)]
    unit = min(v for v in finite if v > 0)  # the smallest subnormal: every value's multiple
    e0 = -(unit.denominator.bit_length() - 1)
    assert unit == Fraction(1, 1 << -e0)
    ints = [int(v / unit) if isinstance(v, Fraction) else 0 for v in values]
    assert all(Fraction(i) * unit == v for i, v in zip(ints, values, strict=True)
               if isinstance(v, Fraction))  # fmt: skip
    return np.array(ints, np.int64), e0


def _float32_parts(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive finite float32 values as ``M * 2^E`` (integer M < 2^24), from the bit fields."""
    bits = np.ascontiguousarray(g, np.float32).view(np.uint32).astype(np.int64)
    biased = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    significand = np.where(biased == 0, frac, frac | (1 << 23))
    exponent = np.where(biased == 0, -149, biased - 150)
    return significand, exponent


def _odd_part(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (non-negative int64 < 2^53) as ``odd * 2^k``; 0 gives (0, 0)."""
    low = n & -n  # the lowest set bit: a power of two, exact as a float64
    _, k = np.frexp(np.where(n == 0, 1, low).astype(np.float64))
    k = k.astype(np.int64) - 1
    return np.where(n == 0, 0, n >> k), np.where(n == 0, 0, k)


def same_value(
    element_twice: tuple[np.ndarray, np.ndarray],
    scale_int: tuple[np.ndarray, np.ndarray],
    g_parts: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Whether ``|code| * s_b / G`` is the same number on both sides, exactly.

    Parameters
    ----------
    element_twice : (ref, act) int64 arrays
        Twice each element magnitude (E2M1 magnitudes are multiples of 1/2:
        0, 1, 2, 3, 4, 6, 8, 12).
    scale_int : (ref, act) int64 arrays
        Each scale byte's value in units of E4M3's smallest subnormal (2^-9);
        the unit is common to both sides, so it cancels.
    g_parts : ((M_ref, E_ref), (M_act, E_act))
        Each tensor scale as ``M * 2^E`` (:func:`_float32_parts`).

    Returns
    -------
    np.ndarray of bool

    Notes
    -----
    ``k_r S_r / (M_r 2^E_r) == k_a S_a / (M_a 2^E_a)`` if and only if
    ``k_r S_r M_a * 2^E_a == k_a S_a M_r * 2^E_r``.  Each product is below
    ``12 * 2^18 * 2^24 < 2^46``, exact in int64; two such numbers times powers
    of two are equal when their odd parts and their total exponents are.
    """
    (m_r, e_r), (m_a, e_a) = g_parts
    left = element_twice[0] * scale_int[0] * m_a
    right = element_twice[1] * scale_int[1] * m_r
    odd_l, k_l = _odd_part(left)
    odd_r, k_r = _odd_part(right)
    both_zero = (left == 0) & (right == 0)
    return both_zero | ((left != 0) & (odd_l == odd_r) & (k_l + e_a == k_r + e_r))


# -- the comparison ------------------------------------------------------------------


def _rows_of(mx: MXArray, where: np.ndarray) -> np.ndarray:
    """The tensor scale of every element selected by ``where`` (per tensor: broadcast)."""
    assert mx.tensor_scale is not None
    g = np.expand_dims(mx.tensor_scale, mx.axis) if mx.per_row else mx.tensor_scale
    return np.broadcast_to(g, mx.shape)[where]


def _element_bytes(mx: MXArray, where: np.ndarray) -> np.ndarray:
    axis, bs, n = mx.axis, mx.block_size, mx.shape[mx.axis]
    per_element = np.take(np.repeat(mx.scales, bs, axis=axis), np.arange(n), axis=axis)
    return per_element[where]


def _check_pair(reference: MXArray, actual: MXArray, show: object) -> None:
    if isinstance(show, bool) or not isinstance(show, int) or show < 0:
        raise InputError(f"show must be an integer >= 0; got {show!r}")
    for name in ("fmt", "shape", "axis", "block_size", "per_row", "preset"):
        ref_value, act_value = getattr(reference, name), getattr(actual, name)
        if ref_value != act_value:
            what = {"fmt": "format", "per_row": "tensor scale (per row)"}.get(name, name)
            raise InputError(f"the two arrays differ in {what}: "
                             f"reference {ref_value}, actual {act_value}")  # fmt: skip
    if not reference.fmt.two_level:
        raise InputError(f"{reference.fmt.name} is an MX format; compare it with compare_mx")


def compare_nv(reference: MXArray, actual: MXArray, *, show: int = DEFAULT_SHOW) -> NVCompareReport:
    """Compare two NVFP4 arrays: tensor scale, block-scale bytes, then codes by block and lane.

    Parameters
    ----------
    reference, actual : MXArray
        NVFP4, of the same shape, axis, block size, tensor-scale kind (per
        tensor or per row) and preset.
    show : int
        How many of each kind of mismatch to describe (>= 0).

    Returns
    -------
    NVCompareReport

    Raises
    ------
    InputError
        The two do not describe the same encoding layout.
    """
    _check_pair(reference, actual, show)
    fmt, axis, bs = reference.fmt, reference.axis, reference.block_size
    assert reference.tensor_scale is not None
    assert actual.tensor_scale is not None
    g_ref, g_act = reference.tensor_scale, actual.tensor_scale
    g_bad = np.asarray(g_ref.view(np.uint32) != g_act.view(np.uint32))
    first_g = [
        TensorScaleMismatch(
            tuple(int(i) for i in idx) if reference.per_row else None,
            tensor_scale_text(g_ref[idx]),
            tensor_scale_text(g_act[idx]),
        )
        for idx in map(tuple, np.argwhere(g_bad)[:show])
    ]
    scale_bad = np.asarray(reference.scales != actual.scales)
    code_bad = np.asarray(reference.codes != actual.codes)
    n = reference.shape[axis]
    padded = np.moveaxis(code_bad, axis, -1)
    padded = np.pad(padded, [(0, 0)] * (padded.ndim - 1) + [(0, -n % bs)])
    per_block = np.asarray(padded.reshape(*padded.shape[:-1], -1, bs).any(axis=-1))
    block_bad = np.moveaxis(per_block, -1, axis) | scale_bad
    # a differing tensor scale changes every block under it
    block_bad |= np.expand_dims(g_bad, axis) if reference.per_row else bool(g_bad)

    scale_fmt = fmt.scale_format
    assert scale_fmt is not None
    first_scales = [
        NVScaleMismatch(
            tuple(int(i) for i in idx),
            int(reference.scales[idx]),
            int(actual.scales[idx]),
            _byte_text(int(reference.scales[idx]), scale_fmt),
            _byte_text(int(actual.scales[idx]), scale_fmt),
        )  # fmt: skip
        for idx in map(tuple, np.argwhere(scale_bad)[:show])
    ]
    kind_ids, apart = _classify(reference, actual, code_bad)
    counts = np.bincount(kind_ids, minlength=len(KINDS))
    kinds = {KINDS[k]: int(c) for k, c in enumerate(counts) if c}
    first_codes = []
    for i, idx in enumerate(map(tuple, np.argwhere(code_bad)[:show])):
        block = tuple(int(j) // bs if d == axis else int(j) for d, j in enumerate(idx))
        first_codes.append(_code_mismatch(reference, actual, idx, block, KINDS[kind_ids[i]],
                                          None if apart[i] < 0 else int(apart[i])))  # fmt: skip
    return NVCompareReport(
        format=fmt.name,
        shape=reference.shape,
        axis=axis,
        block_size=bs,
        per_row=reference.per_row,
        preset=reference.preset,
        tensor_scales=int(g_bad.size),
        tensor_scale_mismatches=int(np.count_nonzero(g_bad)),
        blocks=int(block_bad.size),
        blocks_identical=int(block_bad.size - np.count_nonzero(block_bad)),
        elements=int(code_bad.size),
        codes_identical=int(code_bad.size - np.count_nonzero(code_bad)),
        scale_mismatches=int(np.count_nonzero(scale_bad)),
        code_mismatches_by_kind=kinds,
        first_tensor_scales=first_g,
        first_scales=first_scales,
        first_codes=first_codes,
    )


def _classify(
    reference: MXArray, actual: MXArray, where: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Kind index (into :data:`KINDS`) and codes apart (-1: none) of the differing codes."""
    table = _CodeTable.of(reference.fmt)
    ref, act = reference.codes[where].astype(np.int64), actual.codes[where].astype(np.int64)
    same_magnitude = np.abs(table.signed_rank[ref]) == np.abs(table.signed_rank[act])
    flip = same_magnitude & (table.sign[ref] != table.sign[act])
    if reference.preset is None:
        scale_fmt = reference.fmt.scale_format
        assert scale_fmt is not None
        ints, _ = _scale_integers(scale_fmt)
        b_ref, b_act = _element_bytes(reference, where), _element_bytes(actual, where)
        nan_block = (b_ref == scale_fmt.nan_code) | (b_act == scale_fmt.nan_code)
        twice = (np.abs(table.value) * 2).astype(np.int64)  # E2M1 magnitudes: halves
        equal = same_value(
            (twice[ref], twice[act]),
            (ints[b_ref.astype(np.int64)], ints[b_act.astype(np.int64)]),
            (_float32_parts(_rows_of(reference, where)), _float32_parts(_rows_of(actual, where))),
        )
        same = equal & ~nan_block
    else:
        # the preset's own decoding (float32 steps), its float32 results compared as bits
        dec_ref = np.asarray(_preset_values(reference))[where].view(np.uint32)
        dec_act = np.asarray(_preset_values(actual))[where].view(np.uint32)
        same = dec_ref == dec_act
    same &= table.sign[ref] == table.sign[act]
    kind = np.where(flip, 1, np.where(same, 3, 0))
    apart = np.where(~flip & ~same, np.abs(table.signed_rank[ref] - table.signed_rank[act]), -1)
    return kind, apart


def _preset_values(mx: MXArray) -> np.ndarray:
    from mxref.codec import dequantize

    return np.ascontiguousarray(dequantize(mx, np.float32))


def _byte_text(byte: int, scale_fmt: ElementFormat) -> str:
    sign, magnitude = decode_element(byte, scale_fmt)
    return value_text(sign, magnitude)


def _code_mismatch(
    reference: MXArray,
    actual: MXArray,
    idx: tuple[int, ...],
    block: tuple[int, ...],
    kind: str,
    apart: int | None,
) -> CodeMismatch:
    axis, bs = reference.axis, reference.block_size
    ref_code, act_code = int(reference.codes[idx]), int(actual.codes[idx])
    return CodeMismatch(
        block=block,
        lane=int(idx[axis]) % bs,
        index=tuple(int(i) for i in idx),
        reference=ref_code,
        actual=act_code,
        reference_value=_element_text(reference, ref_code, block, idx),
        actual_value=_element_text(actual, act_code, block, idx),
        kind=kind,
        codes_apart=apart,
    )


def _element_text(mx: MXArray, code: int, block: tuple[int, ...], idx: tuple[int, ...]) -> str:
    """``element x s_b / G``, each exact (G as its shortest float32 decimal)."""
    assert mx.fmt.scale_format is not None
    assert mx.tensor_scale is not None
    sign, magnitude = decode_element(code, mx.fmt)
    row = idx[: mx.axis] + idx[mx.axis + 1 :] if mx.per_row else ()
    g = np.float32(mx.tensor_scale[row])
    return (f"{value_text(sign, magnitude)} x "
            f"{_byte_text(int(mx.scales[block]), mx.fmt.scale_format)} / {g!s}")  # fmt: skip


def format_nv_report(report: NVCompareReport) -> str:
    """The report as text: a summary, then the tensor scale, scale byte and code mismatches."""
    where = "one per row" if report.per_row else "per tensor"
    preset = "" if report.preset is None else f", preset {report.preset}"
    lines = [
        f"format {report.format}, shape {'x'.join(map(str, report.shape))}, blocks of "
        f"{report.block_size} along axis {report.axis}, tensor scale {where}{preset}",
    ]
    if report.per_row:
        lines.append(f"tensor scales differ: {report.tensor_scale_mismatches} / "
                     f"{report.tensor_scales} rows")  # fmt: skip
    for t in report.first_tensor_scales:
        row = "" if t.row is None else f" of row {_index(t.row)}"
        lines.append(f"  tensor scale{row} differs: reference {t.reference}, actual {t.actual}")
    lines += block_lines(report, code_digits=1)
    shown = len(report.first_codes) + len(report.first_scales) + len(report.first_tensor_scales)
    total = (report.scale_mismatches + sum(report.code_mismatches_by_kind.values())
             + report.tensor_scale_mismatches)  # fmt: skip
    if total > shown:
        lines.append(f"  ... {total - shown} more (--show N to list more)")
    lines.append("IDENTICAL" if report.identical else "DIFFERENT")
    return "\n".join(lines) + "\n"
