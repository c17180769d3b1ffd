"""Compare two MX-encoded arrays directly: element codes and E8M0 scale bytes, block by block.

A hardware team's dump (``.npz``, packed ``.bin`` with its sidecar, or a raw
dump described on the command line) is compared with the reference's
encoding of the same data, without decoding either to floats first.  Every
difference is reported where it lives: the block (its index in the scale
array), the lane inside the block, the two codes or scale bytes, what they
mean, and what kind of difference it is:

- ``sign flip``: the same magnitude with the other sign;
- ``magnitude``: a different value, with how many codes apart (FP formats'
  magnitude codes are ordered; MXINT8's values are);
- ``NaN code``: two different NaN encodings (E4M3's 0x7F and 0xFF);
- ``same value, scale differs``: two codes that mean the same number under
  their blocks' different scales (``0xE9`` under 2^-10 and ``0xE1`` under
  2^-9 are both -0.0703125): the scale is the difference, not this element;
- for scale bytes, ``scale``: two different powers of two (or NaN, 0xFF).

Spec: OCP MX v1.0 sections 5.1 (a block is one scale X and k elements P_i),
5.3 (element encodings) and 5.4.1 (E8M0).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.float_bits import percent_text
from mxref.formats import ElementFormat
from mxref.io import InputError
from mxref.ref.element import decode_element
from mxref.ref.scale import decode_scale
from mxref.tables import power_of_two_exponent, value_text

__all__ = [
    "CodeMismatch",
    "MXCompareReport",
    "ScaleMismatch",
    "compare_mx",
    "format_mx_report",
]

#: How many mismatches of each kind a report describes, by default.
DEFAULT_SHOW = 10


@dataclass(frozen=True)
class CodeMismatch:
    """One element whose code differs.

    Attributes
    ----------
    block : tuple of int
        The block's index in the scale array.
    lane : int
        The element's position inside its block (0 .. block_size - 1).
    index : tuple of int
        The element's index in the array.
    reference, actual : int
        The two codes.
    reference_value, actual_value : str
        What each code is, times its own block's scale: exactly.
    kind : str
        ``"sign flip"``, ``"magnitude"``, ``"NaN code"`` or ``"same value, scale
        differs"``.
    codes_apart : int or None
        For ``"magnitude"``: how many representable magnitudes lie between
        the two element values (1 = neighbours), ignoring the scale.
    """

    block: tuple[int, ...]
    lane: int
    index: tuple[int, ...]
    reference: int
    actual: int
    reference_value: str
    actual_value: str
    kind: str
    codes_apart: int | None = None


@dataclass(frozen=True)
class ScaleMismatch:
    """One block whose E8M0 scale byte differs.

    Attributes
    ----------
    block : tuple of int
    reference, actual : int
        The two bytes.
    reference_value, actual_value : str
        ``2^e`` or ``NaN``.
    """

    block: tuple[int, ...]
    reference: int
    actual: int
    reference_value: str
    actual_value: str


@dataclass(frozen=True)
class MXCompareReport:
    """What :func:`compare_mx` found.

    Attributes
    ----------
    format : str
    shape : tuple of int
    axis, block_size : int
    blocks : int
        Blocks compared.
    blocks_identical : int
        Blocks whose scale byte and every code agree.
    elements : int
    codes_identical : int
    scale_mismatches : int
    code_mismatches_by_kind : dict
        ``kind -> count``.
    first_scales, first_codes : list
        The first ``show`` of each, in array order.
    """

    format: str
    shape: tuple[int, ...]
    axis: int
    block_size: int
    blocks: int
    blocks_identical: int
    elements: int
    codes_identical: int
    scale_mismatches: int
    code_mismatches_by_kind: dict[str, int] = field(default_factory=dict)
    first_scales: list[ScaleMismatch] = field(default_factory=list)
    first_codes: list[CodeMismatch] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Every scale byte and every code agree."""
        return self.blocks_identical == self.blocks

    @property
    def exit_status(self) -> int:
        """0 when identical, 1 otherwise (the CLI's status)."""
        return 0 if self.identical else 1

    def to_json(self) -> str:
        """The report as JSON (``kind: "mx"``), for tools."""
        data: dict[str, Any] = {"kind": "mx", **asdict(self), "identical": self.identical}
        return json.dumps(data, indent=2) + "\n"


def compare_mx(reference: MXArray, actual: MXArray, *, show: int = DEFAULT_SHOW) -> MXCompareReport:
    """Compare two MX arrays code by code and scale byte by scale byte.

    Parameters
    ----------
    reference, actual : MXArray
        The same format, shape, axis and block size (else an error says
        which differs).
    show : int
        How many code and scale mismatches to describe (>= 0).

    Returns
    -------
    MXCompareReport

    Raises
    ------
    InputError
        The two do not describe the same encoding layout.

    Spec: OCP MX v1.0 sections 5.1, 5.3 and 5.4.1.
    """
    if isinstance(show, bool) or not isinstance(show, int) or show < 0:
        raise InputError(f"show must be an integer >= 0; got {show!r}")
    if reference.fmt.two_level or actual.fmt.two_level:
        # E4M3 scale bytes and a tensor scale: mxref.conformance.compare_nv
        raise InputError("NVFP4 arrays are compared by compare_nv, not compare_mx")
    for name in ("fmt", "shape", "axis", "block_size"):
        ref_value, act_value = getattr(reference, name), getattr(actual, name)
        if ref_value != act_value:
            raise InputError(f"the two arrays differ in {name.replace('fmt', 'format')}: "
                             f"reference {ref_value}, actual {act_value}")  # fmt: skip
    fmt, axis, bs = reference.fmt, reference.axis, reference.block_size
    scale_bad = np.asarray(reference.scales != actual.scales)
    code_bad = np.asarray(reference.codes != actual.codes)
    # a block is bad if its scale or any of its codes differs: fold the codes'
    # mask onto the scale grid by padding the blocked axis to whole blocks
    n = reference.shape[axis]
    padded = np.moveaxis(code_bad, axis, -1)
    padded = np.pad(padded, [(0, 0)] * (padded.ndim - 1) + [(0, -n % bs)])
    per_block = np.asarray(padded.reshape(*padded.shape[:-1], -1, bs).any(axis=-1))
    block_bad = np.moveaxis(per_block, -1, axis) | scale_bad

    first_scales = [
        ScaleMismatch(tuple(int(i) for i in idx), int(reference.scales[idx]),
                      int(actual.scales[idx]), _scale_text(int(reference.scales[idx])),
                      _scale_text(int(actual.scales[idx])))  # fmt: skip
        for idx in map(tuple, np.argwhere(scale_bad)[:show])
    ]
    # classify every differing code at once, from per-code tables: a dump may
    # differ in millions of elements; only the first ``show`` are described
    table = _CodeTable.of(fmt)
    kind_ids, apart = table.classify(reference.codes[code_bad], actual.codes[code_bad],
                                     _element_scales(reference, code_bad),
                                     _element_scales(actual, code_bad))  # fmt: skip
    counts = np.bincount(kind_ids, minlength=len(KINDS))
    kinds = {KINDS[k]: int(n) for k, n in enumerate(counts) if n}
    first_codes = []
    for i, idx in enumerate(map(tuple, np.argwhere(code_bad)[:show])):
        block = tuple(int(j) // bs if d == axis else int(j) for d, j in enumerate(idx))
        first_codes.append(_code_mismatch(reference, actual, idx, block, KINDS[kind_ids[i]],
                                          None if apart[i] < 0 else int(apart[i])))  # fmt: skip
    return MXCompareReport(
        format=fmt.name,
        shape=reference.shape,
        axis=axis,
        block_size=bs,
        blocks=int(block_bad.size),
        blocks_identical=int(block_bad.size - np.count_nonzero(block_bad)),
        elements=int(code_bad.size),
        codes_identical=int(code_bad.size - np.count_nonzero(code_bad)),
        scale_mismatches=int(np.count_nonzero(scale_bad)),
        code_mismatches_by_kind=kinds,
        first_scales=first_scales,
        first_codes=first_codes,
    )


def _scale_text(byte: int) -> str:
    scale = decode_scale(byte)
    if scale is None:
        return "NaN"
    exponent = power_of_two_exponent(scale)
    return f"2^{exponent}"


#: The kinds of code difference, in the order :meth:`_CodeTable.classify` numbers them.
KINDS = ("magnitude", "sign flip", "NaN code", "same value, scale differs")


@dataclass(frozen=True)
class _CodeTable:
    """Per code of one format: sign, signed rank among the finite values, finite, NaN."""

    sign: np.ndarray
    signed_rank: np.ndarray
    finite: np.ndarray
    nan: np.ndarray
    value: np.ndarray  # float64, exact (NaN for non-finite codes)

    @staticmethod
    def of(fmt: ElementFormat) -> _CodeTable:
        decoded = [decode_element(code, fmt) for code in range(fmt.code_count)]
        finite = [isinstance(m, Fraction) for _, m in decoded]
        magnitudes = sorted({m for _, m in decoded if isinstance(m, Fraction)})
        ranks = {m: r for r, m in enumerate(magnitudes)}
        sign = np.array([s for s, _ in decoded], np.int64)
        rank = np.array([ranks[m] if isinstance(m, Fraction) else 0 for _, m in decoded])
        # element values are short (at most 57344 x 2^-9): exact in float64
        value = np.array([(-1.0 if sg else 1.0) * float(m) if isinstance(m, Fraction)
                          else np.nan for sg, m in decoded])  # fmt: skip
        return _CodeTable(sign, np.where(sign == 1, -rank, rank), np.array(finite),
                          np.array([m != m for _, m in decoded]), value)  # fmt: skip

    def classify(self, ref: np.ndarray, act: np.ndarray, ref_scale: np.ndarray,
                 act_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Kind index (into :data:`KINDS`) and codes apart (-1: none) of differing code pairs,
        given each element's E8M0 scale byte on either side."""
        ref, act = ref.astype(np.int64), act.astype(np.int64)
        both_finite = self.finite[ref] & self.finite[act]
        same_magnitude = np.abs(self.signed_rank[ref]) == np.abs(self.signed_rank[act])
        flip = both_finite & same_magnitude & (self.sign[ref] != self.sign[act])
        nan_pair = self.nan[ref] & self.nan[act]
        # the same number under the two blocks' scales (powers of two: exact products)
        with np.errstate(invalid="ignore"):
            ref_value = self.value[ref] * _scale_values(ref_scale)
            act_value = self.value[act] * _scale_values(act_scale)
        same_value = both_finite & (self.sign[ref] == self.sign[act]) & (ref_value == act_value)
        kind = np.where(nan_pair, 2, np.where(flip, 1, np.where(same_value, 3, 0)))
        apart = np.where(both_finite & ~flip & ~same_value,
                         np.abs(self.signed_rank[ref] - self.signed_rank[act]), -1)  # fmt: skip
        return kind, apart


def _scale_values(scale_bytes: np.ndarray) -> np.ndarray:
    """E8M0 bytes as float64 powers of two (NaN for 0xFF)."""
    exponents = scale_bytes.astype(np.int64) - 127
    return np.where(scale_bytes == 0xFF, np.nan, np.ldexp(1.0, exponents))


def _element_scales(mx: MXArray, where: np.ndarray) -> np.ndarray:
    """The scale byte of every element selected by the mask ``where``."""
    axis, bs, n = mx.axis, mx.block_size, mx.shape[mx.axis]
    per_element = np.repeat(mx.scales, bs, axis=axis)
    per_element = np.take(per_element, np.arange(n), axis=axis)  # a short last block
    return per_element[where]


def _code_mismatch(
    reference: MXArray,
    actual: MXArray,
    idx: tuple[int, ...],
    block: tuple[int, ...],
    kind: str,
    apart: int | None,
) -> CodeMismatch:
    fmt, axis, bs = reference.fmt, reference.axis, reference.block_size
    ref_code, act_code = int(reference.codes[idx]), int(actual.codes[idx])
    ref_sign, ref_mag = decode_element(ref_code, fmt)
    act_sign, act_mag = decode_element(act_code, fmt)
    return CodeMismatch(
        block=block,
        lane=int(idx[axis]) % bs,
        index=tuple(int(i) for i in idx),
        reference=ref_code,
        actual=act_code,
        reference_value=_element_text(ref_sign, ref_mag, int(reference.scales[block])),
        actual_value=_element_text(act_sign, act_mag, int(actual.scales[block])),
        kind=kind,
        codes_apart=apart,
    )


def _element_text(sign: int, magnitude: Fraction | float, scale_byte: int) -> str:
    element = value_text(sign, magnitude)
    return f"{element} x {_scale_text(scale_byte)}"


def format_mx_report(report: MXCompareReport) -> str:
    """The report as text: a summary, then the first scale and code mismatches."""
    lines = [
        f"format {report.format}, shape {'x'.join(map(str, report.shape))}, blocks of "
        f"{report.block_size} along axis {report.axis}",
        *block_lines(report, code_digits=2),
    ]
    shown = len(report.first_codes) + len(report.first_scales)
    total = report.scale_mismatches + sum(report.code_mismatches_by_kind.values())
    if total > shown:
        lines.append(f"  ... {total - shown} more (--show N to list more)")
    lines.append("IDENTICAL" if report.identical else "DIFFERENT")
    return "\n".join(lines) + "\n"


def block_lines(report: Any, code_digits: int) -> list[str]:
    """The block, code and scale-byte lines of a report (MX or NVFP4: the same fields),
    then its first scale and code mismatches; codes in ``code_digits`` hex digits."""
    digits = len(str(report.block_size - 1))
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(report.code_mismatches_by_kind.items()))
    lines = [
        f"blocks identical:   {report.blocks_identical} / {report.blocks} "
        f"({percent_text(report.blocks_identical, report.blocks)})",
        f"codes identical:    {report.codes_identical} / {report.elements} "
        f"({percent_text(report.codes_identical, report.elements)})"
        + (f"; differing: {kinds}" if kinds else ""),
        f"scale bytes differ: {report.scale_mismatches}",
    ]
    for s in report.first_scales:
        lines.append(
            f"  scale of block {_index(s.block)}: reference 0x{s.reference:02X} "
            f"({s.reference_value}), actual 0x{s.actual:02X} ({s.actual_value})"
        )
    for c in report.first_codes:
        detail = c.kind
        if c.codes_apart is not None:
            detail += f", {c.codes_apart} code{'' if c.codes_apart == 1 else 's'} apart"
        lines.append(
            f"  block {_index(c.block)} lane {c.lane:>{digits}} (element {_index(c.index)}): "
            f"reference 0x{c.reference:0{code_digits}X} ({c.reference_value}), "
            f"actual 0x{c.actual:0{code_digits}X} ({c.actual_value}): {detail}"
        )
    return lines


def _index(idx: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, idx)) + ")"
