"""Run the MX conformance battery against an implementation, outside pytest.

::

    mxref conform (--backend MODULE:FUNCTION | --command 'SIM --in {in} --out {out}')
                  [--pack MODULE:FUNCTION] [--matmul MODULE:FUNCTION [--accum MODEL]]
                  [--dequantize MODULE:FUNCTION] [--golden DIR | --no-golden]
                  [--deviations FILE] [--level 1|2]
                  [--format LIST] [--scale-rule LIST] [--rounding LIST] [--overflow LIST]
                  [--seed N] [--timeout SECONDS] [--json REPORT] [--force]

The implementation under test ("backend") is either a Python callable with
:func:`mxref.quantize`'s signature (``--backend``), or an external program
that exchanges files (``--command``, protocol below).  Its element codes and
E8M0 scale bytes are compared bit for bit with the exact oracle
(:func:`mxref.ref.array.quantize_array`), never with mxref's own kernels.

The battery
    Checks are grouped by spec area (:data:`AREAS`): scale computation,
    element rounding, saturation, special values, packing, GEMM, decoding.  Every
    check has a stable id, ``<area>.<name>`` (:data:`CHECKS`), and runs over
    many cases (one case is one block of 32 elements, one packed row or one
    small GEMM), for every selected format and policy.  The cases come from
    three sources:

    (a) the golden files (``mxref/golden_vectors/``), through :func:`mxref.golden.verify`
        (only the files of the selected formats, policies and accumulation
        model count; their checks are ``golden.<area>.<file>``);
    (b) structured cases: every power of two and its float32 neighbours as
        amax, the scale rules' significand thresholds, every code, every
        midpoint of adjacent codes and the floats beside it, the overflow
        midpoint, NaN/Inf/zero blocks, signed zeros, float32 subnormals;
    (c) a seeded random battery of hard blocks (forced amax, exact ties,
        narrow-exponent bit patterns), the same for a given ``--seed``.

    ``--level 2`` runs many more cases with the same check ids.

Exit status
    0 when every check passes (a failing check declared as a deviation
    counts as passing), 1 when some check fails, 2 for bad input (a backend
    that cannot be loaded, a command that does not exist, a malformed
    deviations file, an unknown policy...).  A backend that raises, crashes,
    times out or writes no or malformed output *fails* the checks it was
    asked to run; that is a result, not bad input.

Known deviations (``--deviations FILE``)
    A JSON or TOML object mapping check ids (or glob patterns such as
    ``special.*``) to the reason, e.g. ``{"special.nan_block_codes": "our NaN
    blocks keep their element codes"}``; keys starting with ``_`` are
    comments, and nested TOML tables join their keys with dots.  A failing
    check whose id is declared is reported as a *deviation*, with its reason
    and its first failing case, not as a failure and not silently skipped; a
    declared id that does not fail is reported as *declared but not observed*.

``--command`` exchange protocol (:data:`PROTOCOL`)
    For each format and policy the command is run once, as an argument list
    (``shlex.split``, never a shell), with ``{in}`` and ``{out}`` replaced by
    two paths in a fresh temporary directory.  ``{in}`` is an ``.npz`` with

    ``x``
        float32, shape ``(blocks, block_size)``: one block per row.
    ``meta``
        a 0-d string array holding a JSON object: ``protocol``
        (``"mxref-conform-1"``), ``format`` (an mxref format name),
        ``scale_rule``, ``rounding``, ``overflow`` (mxref's policy names),
        ``block_size`` and, with stochastic rounding, ``seed``.

    The command must write ``{out}``, an ``.npz`` with ``codes`` (uint8,
    ``(blocks, block_size)``, one element code per byte in the low bits),
    ``scales`` (uint8, ``(blocks,)``: the E8M0 byte of each row), and
    optionally ``packed`` (uint8, ``(blocks, bytes_per_row)``: each row's codes
    packed as :func:`mxref.pack` does; checked in the packing area), and exit
    with status 0.  A nonzero status, a timeout (``--timeout``, default 120
    s), a missing ``{out}`` or one without those arrays, or arrays of the
    wrong shape fail every case of that run, with the reason and the tail of
    the command's stderr in the report.  ``examples/sim_quantize.py`` is a
    complete simulator implementing the protocol with mxref.

Spec: OCP MX v1.0 sections 5.1-5.4.1 (formats, blocks, E8M0), 6.2 (Dot) and
6.3 (conversion); docs/conformance.md is the user guide, docs/spec_map.md maps
each clause to checks.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import json
import math
import re
import shlex
import subprocess
import tempfile
import tomllib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.formats import DEFAULT_BLOCK_SIZE, FORMATS, ElementFormat, Specials, get_format
from mxref.io import InputError, PathLike, write_new_text
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.array import quantize_array
from mxref.ref.element import decode_element, pow2
from mxref.testing.backend import codes_and_scales

#: Version tag of the ``--command`` exchange files.
PROTOCOL = "mxref-conform-1"

#: Spec areas, in report order: id -> (title, spec clauses).
AREAS: dict[str, tuple[str, str]] = {
    "scale": ("scale computation", "5.4.1, 6.3 step 1"),
    "element": ("element rounding", "5.3, 6.3 step 2"),
    "saturation": ("saturation", "6.3 (clamp to max normal)"),
    "special": ("special values", "5.3.1-5.3.4, 5.4.1; NaN/Inf/zero handling"),
    "packing": ("packing", "5.2 (element widths); layout is mxref.pack's convention"),
    "gemm": ("GEMM", "6.2 (Dot, DotGeneral)"),
    "decode": ("decoding", "5.1 (X * P_i), 5.4.1 (E8M0); golden files only"),
}

DEFAULT_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class CheckInfo:
    """One check of the battery.

    Attributes
    ----------
    id : str
        Stable id, ``<area>.<name>``; what a deviations file names.
    area : str
        A key of :data:`AREAS`.
    title : str
        What the check verifies, in one line.
    spec : str
        The spec clause it tests (or the mxref choice where the spec is silent).
    """

    id: str
    area: str
    title: str
    spec: str


_CHECK_LIST = (
    CheckInfo("scale.pow2_neighbours", "scale",
              "amax = 2**k and its float32 predecessor and successor, every k "
              "(a float log2 picks a scale one too high just below 2**k)", "6.3 step 1"),
    CheckInfo("scale.rule_thresholds", "scale",
              "amax significand at the max-normal and EVEN thresholds and their neighbours",
              "6.3 step 1 (FLOOR); CEIL/EVEN/RCEIL as in docs/semantics.md"),
    CheckInfo("scale.above_max_significand", "scale",
              "amax significand between max normal's and 2", "6.3 step 1"),
    CheckInfo("scale.tiny_blocks", "scale",
              "amax below 2**(emax_elem - 127): byte 0x00 and elements on the 2**-127 grid",
              "5.4.1 (0x00 = 2**-127), 6.3; clamp is mxref's choice"),
    CheckInfo("scale.random_forced_amax", "scale",
              "random blocks with a forced amax (pow2, pred, succ, above max significand)",
              "6.3"),
    CheckInfo("element.exact_codes", "element",
              "every finite code's value times the scale encodes to that code", "5.3, 6.3"),
    CheckInfo("element.midpoints", "element",
              "exact midpoints of adjacent codes (RNE: to the even code)", "6.3 roundTiesToEven"),
    CheckInfo("element.midpoint_neighbours", "element",
              "the float32 just below and just above every midpoint", "6.3"),
    CheckInfo("element.subnormal_inputs", "element",
              "float32 subnormal elements (kept, never flushed)", "6.3; docs/semantics.md 5"),
    CheckInfo("element.random_bits", "element",
              "random float32 bit patterns in a narrow exponent window", "6.3"),
    CheckInfo("element.random_ties", "element",
              "random exact ties of the element grid under a pinned scale", "6.3"),
    CheckInfo("saturation.above_max_normal", "saturation",
              "elements above max normal in their binade clamp to +-max normal", "6.3"),
    CheckInfo("saturation.overflow_midpoint", "saturation",
              "max normal + half a step (E4M3 464) and its neighbours", "6.3"),
    CheckInfo("special.nan_block_scale", "special",
              "a block holding NaN gets scale 0xFF", "5.4.1 (0xFF = NaN)"),
    CheckInfo("special.nan_block_codes", "special",
              "element codes of a NaN block are signed zeros (mxref's choice)",
              "implementation-defined (5.3.2-5.3.4); docs/semantics.md 5"),
    CheckInfo("special.inf_block_scale", "special",
              "a block holding +-Inf gets scale 0xFF", "5.4.1; docs/semantics.md 5"),
    CheckInfo("special.inf_block_codes", "special",
              "element codes of an Inf block are signed zeros (mxref's choice)",
              "implementation-defined; docs/semantics.md 5"),
    CheckInfo("special.zero_block_scale", "special",
              "an all-zero block gets scale 0x00 (mxref's choice)",
              "spec silent; docs/semantics.md 2"),
    CheckInfo("special.zero_block_codes", "special",
              "an all-zero block keeps each zero's sign (MXINT8: 0x00)", "5.3"),
    CheckInfo("special.negative_zero", "special",
              "-0.0 and negative values that round to zero give the -0 code", "5.3, 6.3"),
    CheckInfo("packing.fp4_nibbles", "packing",
              "4-bit codes: element 2j in the low nibble of byte j", "5.2; mxref.pack"),
    CheckInfo("packing.fp6_bits", "packing",
              "6-bit codes: four per three bytes, LSB first", "5.2; mxref.pack"),
    CheckInfo("packing.byte_codes", "packing",
              "8-bit codes: one per byte, unchanged", "5.2; mxref.pack"),
    CheckInfo("gemm.random_blocks", "gemm",
              "random finite codes and ordinary scales", "6.2"),
    CheckInfo("gemm.extreme_scales", "gemm",
              "scales 2**-127 .. 2**127 whose products leave the float32 range", "6.2"),
    CheckInfo("gemm.nan_scale", "gemm",
              "a 0xFF scale makes its row/column NaN", "5.4.1, 6.2"),
    CheckInfo("gemm.special_codes", "gemm",
              "E4M3 NaN and E5M2 Inf/NaN element codes as operands", "5.3.1, 6.2"),
    CheckInfo("gemm.cancellation", "gemm",
              "blocks whose products cancel exactly", "6.2"),
)  # fmt: skip
#: Every check, by id, in report order.
CHECKS: dict[str, CheckInfo] = {c.id: c for c in _CHECK_LIST}
#: golden file areas (mxref.golden) -> the areas here
GOLDEN_AREAS = {
    "scale": "scale",
    "rounding": "element",
    "saturation": "saturation",
    "special": "special",
    "packing": "packing",
    "gemm": "gemm",
    "decode": "decode",
}


# --------------------------------------------------------------------------
# configurations, cases and results
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    """One format and policy combination the backend is run under.

    Attributes
    ----------
    fmt : str
        mxref format name.
    scale_rule, rounding, overflow : str
        mxref policy names.
    block_size : int
    seed : int or None
        Only with ``rounding="stochastic"``.
    """

    fmt: str
    scale_rule: str = ScaleRule.FLOOR.value
    rounding: str = Rounding.RNE.value
    overflow: str = Overflow.SATURATE.value
    block_size: int = DEFAULT_BLOCK_SIZE
    seed: int | None = None

    def label(self) -> str:
        """``"mxfp4 floor/rne/saturate"``."""
        return f"{self.fmt} {self.scale_rule}/{self.rounding}/{self.overflow}"

    def meta(self) -> dict[str, Any]:
        """The ``meta`` object of the ``--command`` protocol."""
        out: dict[str, Any] = {
            "protocol": PROTOCOL,
            "format": self.fmt,
            "scale_rule": self.scale_rule,
            "rounding": self.rounding,
            "overflow": self.overflow,
            "block_size": self.block_size,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a quantize with :func:`mxref.quantize`'s signature."""
        out: dict[str, Any] = {
            "axis": -1,
            "block_size": self.block_size,
            "scale_rule": self.scale_rule,
            "rounding": self.rounding,
            "overflow": self.overflow,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclasses.dataclass(frozen=True)
class CaseFailure:
    """The first failing case of a check, in hex.

    Attributes
    ----------
    check : str
        The check id.
    where : str
        Format, policies, case number and what the case is.
    inputs, expected, got : dict of str to list of str
        Hex words: float32 inputs (``"x"``), scale byte and codes
        (``"scale"``, ``"codes"``), packed bytes, GEMM operands and results.
    differs : list of str
        What differs, e.g. ``["scale", "codes at lanes 0, 7"]``.
    error : str or None
        Why there is no output to compare: the backend raised, crashed,
        timed out or wrote malformed output.
    """

    check: str
    where: str
    inputs: dict[str, list[str]]
    expected: dict[str, list[str]]
    got: dict[str, list[str]]
    differs: list[str]
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one check over all its cases.

    Attributes
    ----------
    id, area, title, spec : str
        As in :class:`CheckInfo`.
    cases, failed : int
        Cases run and cases that failed.
    first_failure : CaseFailure or None
    deviation : str or None
        The declared reason, when the deviations file names this check.
    """

    id: str
    area: str
    title: str
    spec: str
    cases: int
    failed: int
    first_failure: CaseFailure | None
    deviation: str | None = None

    @property
    def status(self) -> str:
        """``"pass"``, ``"fail"`` or ``"deviation"`` (failing, but declared)."""
        if not self.failed:
            return "pass"
        return "deviation" if self.deviation is not None else "fail"


@dataclasses.dataclass(frozen=True)
class AreaSummary:
    """Counts of one spec area.

    Attributes
    ----------
    area, title, spec : str
    checks, passed, failed, deviations : int
        Checks run, and how many passed, failed, or failed as declared.
    cases, failed_cases : int
    first_failure : CaseFailure or None
        The first failing case of the area's first failing check (a
        deviation's when nothing else fails).
    not_run : str or None
        Why the area was not checked at all (e.g. no ``--matmul`` backend).
    """

    area: str
    title: str
    spec: str
    checks: int
    passed: int
    failed: int
    deviations: int
    cases: int
    failed_cases: int
    first_failure: CaseFailure | None
    not_run: str | None


@dataclasses.dataclass(frozen=True)
class ConformReport:
    """Result of :func:`run_conformance`.

    Attributes
    ----------
    backend : str
        What was tested, as given.
    level, seed : int
    selection : dict of str to list of str
        The formats and policies run.
    checks : tuple of CheckResult
        Every check that ran, in :data:`CHECKS` order, then golden checks.
    unobserved : tuple of (str, str, bool)
        Declared deviations that did not occur: (id or pattern, reason,
        whether any check with a matching id ran at all).
    not_run : dict of str to str
        Areas (and ``"golden"``) left out, with the reason.
    golden : str or None
        The golden directory verified, if any.
    """

    backend: str
    level: int
    seed: int
    selection: dict[str, list[str]]
    checks: tuple[CheckResult, ...]
    unobserved: tuple[tuple[str, str, bool], ...]
    not_run: dict[str, str]
    golden: str | None

    @property
    def failures(self) -> list[CheckResult]:
        """Checks that fail and are not declared deviations."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def deviations(self) -> list[CheckResult]:
        """Checks that fail as declared."""
        return [c for c in self.checks if c.status == "deviation"]

    @property
    def passed(self) -> bool:
        """True when no check fails (declared deviations excluded)."""
        return not self.failures

    @property
    def exit_status(self) -> int:
        """0 when :attr:`passed`, else 1: the status of ``mxref conform``."""
        return 0 if self.passed else 1

    def areas(self) -> list[AreaSummary]:
        """Per-area counts (battery and golden checks together), in :data:`AREAS` order.

        Returns
        -------
        list of AreaSummary
        """
        out = []
        titles = dict(AREAS)
        if any(c.area == "golden" for c in self.checks):
            titles["golden"] = ("golden integrity", "golden_vectors/MANIFEST")
        for area, (title, spec) in titles.items():
            mine = [c for c in self.checks if c.area == area]
            bad = [c for c in mine if c.status == "fail"] or [
                c for c in mine if c.status == "deviation"
            ]
            out.append(
                AreaSummary(
                    area=area,
                    title=title,
                    spec=spec,
                    checks=len(mine),
                    passed=sum(c.status == "pass" for c in mine),
                    failed=sum(c.status == "fail" for c in mine),
                    deviations=sum(c.status == "deviation" for c in mine),
                    cases=sum(c.cases for c in mine),
                    failed_cases=sum(c.failed for c in mine),
                    first_failure=bad[0].first_failure if bad else None,
                    not_run=self.not_run.get(area, "no checks") if not mine else None,
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready builtins.

        Returns
        -------
        dict
            Every attribute, ``status`` per check, ``areas`` (see
            :meth:`areas`), ``passed`` and ``exit_status``.
        """
        return {
            "protocol": PROTOCOL,
            "backend": self.backend,
            "level": self.level,
            "seed": self.seed,
            "selection": self.selection,
            "golden": self.golden,
            "areas": [dataclasses.asdict(a) for a in self.areas()],
            "checks": [{**dataclasses.asdict(c), "status": c.status} for c in self.checks],
            "declared_not_observed": [
                {"id": i, "reason": r, "matches_a_check": m} for i, r, m in self.unobserved
            ],
            "not_run": self.not_run,
            "passed": self.passed,
            "exit_status": self.exit_status,
        }

    def to_json(self) -> str:
        """Return :meth:`to_dict` as indented JSON text, ending in a newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


# --------------------------------------------------------------------------
# deviations
# --------------------------------------------------------------------------
_ID_RE = re.compile(r"[A-Za-z0-9_*?\[\]-]+(\.[A-Za-z0-9_*?\[\]-]+)*")


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            _flatten(value, name, out)
        else:
            out[name] = value


def parse_deviations(data: object, source: str = "deviations") -> dict[str, str]:
    """Check and flatten a deviations object (as read from JSON or TOML).

    Parameters
    ----------
    data : object
        A mapping of check id (or glob pattern) to reason.  Keys starting
        with ``_`` are comments; nested mappings join their keys with dots
        (TOML tables).
    source : str
        Named in error messages.

    Returns
    -------
    dict of str to str
        Id or pattern -> reason.

    Raises
    ------
    InputError
        If ``data`` is not a mapping, a reason is not a non-empty string, or
        an id is not made of dotted words (glob characters allowed).
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: must be an object mapping check ids to reasons")
    flat: dict[str, Any] = {}
    _flatten(data, "", flat)
    out = {}
    for key, reason in flat.items():
        if not _ID_RE.fullmatch(key):
            raise InputError(
                f"{source}: {key!r} is not a check id such as 'special.nan_block_codes'"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(f"{source}: deviation {key!r} needs a reason (a non-empty string)")
        out[key] = reason.strip()
    return out


def load_deviations(path: PathLike) -> dict[str, str]:
    """Read a deviations file: JSON, or TOML when its name ends in ``.toml``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to str
        See :func:`parse_deviations`.

    Raises
    ------
    InputError
        The file is missing, unreadable or malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the deviations file ({exc})") from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{p}: not valid {p.suffix.lstrip('.').upper() or 'JSON'}: {exc}"
        ) from None
    return parse_deviations(data, str(p))


def _declared(check_id: str, deviations: Mapping[str, str]) -> str | None:
    for pattern, reason in deviations.items():
        if fnmatch.fnmatchcase(check_id, pattern):
            return reason
    return None


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
    (_rows_exact_codes, (("element.exact_codes", "both"),)),
    (_rows_midpoints, (("element.midpoints", "both"),)),
    (_rows_midpoint_neighbours, (("element.midpoint_neighbours", "both"),)),
    (_rows_subnormal_inputs, (("element.subnormal_inputs", "both"),)),
    (_rows_random_bits, (("element.random_bits", "both"),)),
    (_rows_random_ties, (("element.random_ties", "both"),)),
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
        )
        hit = (codes, scales.reshape(-1))
        if len(_ORACLE_CACHE) >= _ORACLE_CACHE_SIZE:
            _ORACLE_CACHE.clear()
        _ORACLE_CACHE[key] = hit
    return hit


# --------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------
class BackendError(Exception):
    """The backend raised, crashed, timed out or wrote malformed output.

    This fails the cases of that run; it is not bad input.
    """


@dataclasses.dataclass(frozen=True)
class BackendOutput:
    """What a backend returned for a batch of rows, validated.

    Attributes
    ----------
    codes : np.ndarray
        Integer codes, ``(rows, block_size)``.
    scales : np.ndarray
        Integer scale bytes, ``(rows,)``.
    packed : np.ndarray or None
        uint8 ``(rows, bytes_per_row)``, when the backend provides packing.
    """

    codes: np.ndarray
    scales: np.ndarray
    packed: np.ndarray | None = None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


def _validated(codes: Any, scales: Any, packed: Any, shape: tuple[int, ...]) -> BackendOutput:
    codes = np.asarray(codes)
    scales = np.asarray(scales)
    if codes.dtype.kind not in "ui":
        raise BackendError(f"codes must be an integer array; got dtype {codes.dtype}")
    if codes.shape != shape:
        raise BackendError(f"codes have shape {codes.shape}; expected {shape}")
    if scales.dtype.kind not in "ui":
        raise BackendError(f"scales must be an integer array; got dtype {scales.dtype}")
    if scales.size != shape[0]:
        raise BackendError(
            f"scales have shape {scales.shape}; expected ({shape[0]},), one per block"
        )
    if packed is not None:
        packed = np.asarray(packed)
        if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[0] != shape[0]:
            raise BackendError(
                f"packed must be uint8 of shape ({shape[0]}, bytes_per_row); "
                f"got {packed.dtype} {packed.shape}"
            )
    return BackendOutput(codes.astype(np.int64), scales.reshape(-1).astype(np.int64), packed)


class CallableBackend:
    """A Python callable with :func:`mxref.quantize`'s signature.

    It is called as ``quantize(x, fmt_name, axis=-1, block_size=bs,
    scale_rule=..., rounding=..., overflow=...)`` (plus ``seed=`` with
    stochastic rounding) on float32 rows of blocks, and must return an object
    with ``codes`` and ``scales`` (an MXArray) or a ``(codes, scales)`` tuple.

    Parameters
    ----------
    quantize : callable
    name : str, optional
        Shown in the report.
    """

    def __init__(self, quantize: Callable[..., Any], name: str | None = None) -> None:
        self.quantize = quantize
        self.name: str = name or str(getattr(quantize, "__qualname__", repr(quantize)))

    def run(self, x: np.ndarray, config: Config) -> BackendOutput:
        """Quantize rows of blocks under ``config``.

        Raises
        ------
        BackendError
            The callable raised, or returned something malformed.
        """
        try:
            result = self.quantize(x.copy(), config.fmt, **config.kwargs())
        except Exception as exc:  # the backend's own bug: a result, not a crash of ours
            raise BackendError(f"raised {type(exc).__name__}: {_one_line(exc)}") from None
        try:
            codes, scales = codes_and_scales(result)
        except TypeError as exc:
            raise BackendError(str(exc)) from None
        return _validated(codes, scales, None, x.shape)


def _tail(data: bytes, lines: int = 5) -> str:
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return ""
    return "; stderr: " + " | ".join(text.splitlines()[-lines:])[-800:]


class CommandBackend:
    """An external program speaking the ``--command`` protocol (module docstring).

    Parameters
    ----------
    command : str
        Split with :func:`shlex.split`; must contain ``{in}`` and ``{out}``.
    timeout : float
        Seconds per run.

    Raises
    ------
    InputError
        The command is empty, unbalanced or lacks a placeholder.
    """

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise InputError(f"--command {command!r}: {exc}") from None
        if not argv:
            raise InputError("--command is empty")
        for placeholder in ("{in}", "{out}"):
            if not any(placeholder in a for a in argv):
                raise InputError(
                    f"--command must contain {placeholder}, where the {placeholder[1:-1]}put "
                    "file's path goes (e.g. 'sim --in {in} --out {out}')"
                )
        if not timeout > 0:
            raise InputError(f"--timeout must be positive; got {timeout}")
        self.argv = argv
        self.timeout = timeout
        self.name = command

    def run(self, x: np.ndarray, config: Config) -> BackendOutput:
        """Write ``{in}``, run the command, read ``{out}``.

        Raises
        ------
        BackendError
            The command failed, timed out, or wrote no or malformed output.
        InputError
            The program does not exist or cannot be executed.
        """
        with tempfile.TemporaryDirectory(prefix="mxref-conform-") as tmp:
            inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            with inp.open("wb") as f:
                np.savez(
                    f,
                    x=np.ascontiguousarray(x, np.float32),
                    meta=np.array(json.dumps(config.meta())),
                )
            argv = [a.replace("{in}", str(inp)).replace("{out}", str(out)) for a in self.argv]
            try:
                proc = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self.timeout,
                    check=False,
                )
            except FileNotFoundError:
                raise InputError(f"--command: program {argv[0]!r} not found") from None
            except PermissionError:
                raise InputError(f"--command: program {argv[0]!r} cannot be executed") from None
            except subprocess.TimeoutExpired:
                raise BackendError(f"command timed out after {self.timeout:g} s") from None
            if proc.returncode != 0:
                raise BackendError(
                    f"command exited with status {proc.returncode}{_tail(proc.stderr)}"
                )
            if not out.is_file():
                raise BackendError(
                    f"command exited with status 0 but wrote no {{out}} file{_tail(proc.stderr)}"
                )
            try:
                with np.load(out, allow_pickle=False) as z:
                    missing = [k for k in ("codes", "scales") if k not in z.files]
                    if missing:
                        raise BackendError(
                            f"{{out}} has no {' or '.join(repr(m) for m in missing)} array "
                            f"(it has {sorted(z.files)})"
                        )
                    codes, scales = z["codes"], z["scales"]
                    packed = z["packed"] if "packed" in z.files else None
            except BackendError:
                raise
            except Exception as exc:  # whatever a corrupt file makes numpy raise
                raise BackendError(f"{{out}} is not a readable .npz: {_one_line(exc)}") from None
        return _validated(codes, scales, packed, x.shape)


Backend = CallableBackend | CommandBackend


def as_quantize(backend: Backend) -> Callable[..., MXArray]:
    """A callable with :func:`mxref.quantize`'s signature running ``backend``.

    For a :class:`CommandBackend` the input is cut into blocks along ``axis``
    (the last block zero padded, which does not change it), sent as rows and
    put back; only inputs that are exactly float32 can be sent.

    Parameters
    ----------
    backend : CallableBackend or CommandBackend

    Returns
    -------
    callable
        Raises ``ValueError`` when the backend fails.
    """
    if isinstance(backend, CallableBackend):
        return backend.quantize

    def quantize(
        x: Any,
        fmt: str | ElementFormat,
        *,
        axis: int = -1,
        block_size: int = DEFAULT_BLOCK_SIZE,
        scale_rule: str | ScaleRule = ScaleRule.FLOOR,
        rounding: str | Rounding = Rounding.RNE,
        overflow: str | Overflow = Overflow.SATURATE,
        seed: int | None = None,
    ) -> MXArray:
        arr = np.asarray(x)
        f32 = arr.astype(np.float32)
        same = f32.astype(arr.dtype)
        if not np.array_equal(same, arr, equal_nan=True):
            raise ValueError("the --command protocol carries float32 inputs only")
        f = get_format(fmt)
        ax = axis % arr.ndim
        moved = np.moveaxis(f32, ax, -1)
        n = moved.shape[-1]
        nblk = -(-n // block_size)
        padded = np.zeros((*moved.shape[:-1], nblk * block_size), np.float32)
        padded[..., :n] = moved
        config = Config(
            f.name,
            ScaleRule.parse(scale_rule).value,
            Rounding.parse(rounding).value,
            Overflow.parse(overflow).value,
            block_size,
            seed,
        )
        try:
            out = backend.run(padded.reshape(-1, block_size), config)
        except BackendError as exc:
            raise ValueError(str(exc)) from None
        codes = out.codes.reshape(padded.shape)[..., :n]
        scales = out.scales.reshape(*moved.shape[:-1], nblk)
        return MXArray(
            codes=np.ascontiguousarray(np.moveaxis(codes, -1, ax)).astype(np.uint8),
            scales=np.ascontiguousarray(np.moveaxis(scales, -1, ax)).astype(np.uint8),
            fmt=f,
            axis=ax,
            block_size=block_size,
        )

    return quantize


# --------------------------------------------------------------------------
# running checks
# --------------------------------------------------------------------------
class _Tally:
    """Cases and the first failure per check id."""

    def __init__(self) -> None:
        self.cases: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.first: dict[str, CaseFailure] = {}

    def add(self, check: str, failure: Callable[[], CaseFailure] | None) -> None:
        self.cases[check] = self.cases.get(check, 0) + 1
        if failure is not None:
            self.failed[check] = self.failed.get(check, 0) + 1
            if check not in self.first:
                self.first[check] = failure()


def _lanes(bad: np.ndarray) -> str:
    idx = [int(i) for i in np.flatnonzero(bad)]
    shown = ", ".join(str(i) for i in idx[:12])
    return f"codes at lanes {shown}{', ...' if len(idx) > 12 else ''}"


def _run_batch(backend: Backend, batch: _Batch, tally: _Tally) -> bool:
    """Run one configuration's rows; return whether the output had ``packed``."""
    config = batch.config
    exp_codes, exp_scales = oracle_quantize(batch.x, config)
    error = None
    out: BackendOutput | None = None
    try:
        out = backend.run(batch.x, config)
    except BackendError as exc:
        error = str(exc)
    for i, targets in enumerate(batch.checks):
        for check, compare in targets:
            differs = []
            if out is not None:
                if compare in ("both", "scale") and out.scales[i] != exp_scales[i]:
                    differs.append("scale")
                if compare in ("both", "codes"):
                    bad = out.codes[i] != exp_codes[i]
                    if bad.any():
                        differs.append(_lanes(bad))
            if out is not None and not differs:
                tally.add(check, None)
                continue
            tally.add(
                check,
                functools.partial(
                    _quantize_failure,
                    check,
                    compare,
                    batch,
                    i,
                    exp_codes,
                    exp_scales,
                    out,
                    error,
                    differs,
                ),
            )
    if out is not None and out.packed is not None:
        _check_packed_output(batch, out, tally)
        return True
    return False


def _quantize_failure(
    check: str,
    compare: str,
    batch: _Batch,
    i: int,
    exp_codes: np.ndarray,
    exp_scales: np.ndarray,
    out: BackendOutput | None,
    error: str | None,
    differs: list[str],
) -> CaseFailure:
    expected: dict[str, list[str]] = {}
    got: dict[str, list[str]] = {}
    if compare in ("both", "scale"):
        expected["scale"] = _hex8([exp_scales[i]])
        if out is not None:
            got["scale"] = _hex8([out.scales[i]])
    if compare in ("both", "codes"):
        expected["codes"] = _hex8(exp_codes[i])
        if out is not None:
            got["codes"] = _hex8(out.codes[i])
    detail = list(differs) if out is not None else ["no output"]
    if out is not None and compare in ("both", "codes"):
        lanes = np.flatnonzero(out.codes[i] != exp_codes[i])
        if lanes.size:
            j = int(lanes[0])
            v = batch.x[i, j]
            detail.append(
                f"lane {j}: x {_hex32(v)[0]} ({float(v)!r}) expected "
                f"{_hex8([exp_codes[i, j]])[0]}, got {_hex8([out.codes[i, j]])[0]}"
            )
    return CaseFailure(
        check=check,
        where=f"{batch.config.label()}, block {i}: {batch.notes[i]}",
        inputs={"x": _hex32(batch.x[i])},
        expected=expected,
        got=got,
        differs=detail,
        error=error,
    )


_PACK_CHECK = {4: "packing.fp4_nibbles", 6: "packing.fp6_bits", 8: "packing.byte_codes"}


def _packing_check(fmt: ElementFormat) -> str:
    return _PACK_CHECK.get(fmt.bits, "packing.byte_codes")


def _compare_packed(
    check: str,
    where: str,
    codes: np.ndarray,
    expected: np.ndarray,
    got: np.ndarray | None,
    error: str | None,
    tally: _Tally,
) -> None:
    for i in range(codes.shape[0]):
        if got is not None and np.array_equal(got[i], expected[i]):
            tally.add(check, None)
            continue

        def failure(i: int = i) -> CaseFailure:
            diff = ["no output"]
            if got is not None:
                idx = np.flatnonzero(got[i] != expected[i])
                diff = [f"bytes {', '.join(str(int(j)) for j in idx[:12])}"]
            return CaseFailure(
                check=check,
                where=f"{where}, row {i}",
                inputs={"codes": _hex8(codes[i])},
                expected={"packed": _hex8(expected[i])},
                got={} if got is None else {"packed": _hex8(got[i])},
                differs=diff,
                error=error,
            )

        tally.add(check, failure)


def _check_packed_output(batch: _Batch, out: BackendOutput, tally: _Tally) -> None:
    from mxref.packing import pack

    fmt = get_format(batch.config.fmt)
    codes = out.codes
    if codes.min(initial=0) < 0 or codes.max(initial=0) >= fmt.code_count:
        codes = oracle_quantize(batch.x, batch.config)[0].astype(np.int64)
    mx = MXArray(
        codes=codes.astype(np.uint8),
        scales=np.full((codes.shape[0], 1), 127, np.uint8),
        fmt=fmt,
        axis=1,
        block_size=codes.shape[1],
    )
    expected = pack(mx).data
    got: np.ndarray | None = out.packed
    error = None
    if got is not None and got.shape != expected.shape:
        error = f"packed has shape {got.shape}; expected {expected.shape}"
        got = None
    _compare_packed(
        _packing_check(fmt),
        f"{batch.config.label()} packed output",
        codes,
        expected,
        got,
        error,
        tally,
    )


def _run_pack_backend(
    pack_fn: Callable[..., Any],
    formats: Sequence[ElementFormat],
    level: int,
    seed: int,
    tally: _Tally,
) -> None:
    from mxref.packing import pack

    for fmt in formats:
        rng = _rng(seed, "packing", fmt.name)
        rows = 16 if level < 2 else 128
        codes = rng.integers(0, fmt.code_count, (rows, DEFAULT_BLOCK_SIZE)).astype(np.uint8)
        codes[0] = np.arange(DEFAULT_BLOCK_SIZE) % fmt.code_count  # a ramp shows any order error
        mx = MXArray(
            codes=codes,
            scales=np.full((rows, 1), 127, np.uint8),
            fmt=fmt,
            axis=1,
            block_size=DEFAULT_BLOCK_SIZE,
        )
        expected = pack(mx).data
        got: np.ndarray | None = None
        error = None
        try:
            result = pack_fn(mx)
            got = np.asarray(getattr(result, "data", result))
            if got.dtype != np.uint8 or got.shape != expected.shape:
                error = f"packed data is {got.dtype} {got.shape}; expected uint8 {expected.shape}"
                got = None
        except Exception as exc:  # the backend's bug, reported as a failure
            error = f"raised {type(exc).__name__}: {_one_line(exc)}"
        _compare_packed(_packing_check(fmt), f"{fmt.name} pack", codes, expected, got, error, tally)


# --- GEMM -------------------------------------------------------------------
_GEMM_PAIRS_L1 = (
    ("mxfp4", "mxfp4"),
    ("mxfp8_e4m3", "mxfp8_e4m3"),
    ("mxfp8_e5m2", "mxfp8_e4m3"),
    ("mxfp6_e2m3", "mxfp6_e3m2"),
    ("mxint8", "mxint8"),
    ("mxfp4", "mxint8"),
)
_EXTREME_BYTES = np.array([0, 1, 2, 126, 127, 128, 252, 253, 254])


def _finite_codes(
    fmt: ElementFormat, rng: np.random.Generator, shape: tuple[int, ...]
) -> np.ndarray:
    from mxref.ref.element import apply_sign

    mags = rng.integers(0, fmt.max_code + 1, shape)
    signs = rng.integers(0, 2, shape)
    return np.vectorize(lambda s, m: apply_sign(int(s), int(m), fmt), otypes=[np.uint8])(
        signs, mags
    )


def _operands(
    fa: ElementFormat, fb: ElementFormat, kind: str, rng: np.random.Generator
) -> tuple[MXArray, MXArray]:
    """A (m x k, blocked along k) and B (k x n, blocked along axis 0)."""
    bs = DEFAULT_BLOCK_SIZE
    m, n, k = int(rng.integers(1, 4)), int(rng.integers(1, 4)), 3 * bs
    ca, cb = _finite_codes(fa, rng, (m, k)), _finite_codes(fb, rng, (n, k))
    sa = rng.integers(110, 146, (m, 3)).astype(np.uint8)
    sb = rng.integers(110, 146, (n, 3)).astype(np.uint8)
    if kind == "extreme":
        sa = rng.choice(_EXTREME_BYTES, (m, 3)).astype(np.uint8)
        sb = rng.choice(_EXTREME_BYTES, (n, 3)).astype(np.uint8)
    elif kind == "nan_scale":
        sa[rng.integers(m), rng.integers(3)] = 0xFF
        if rng.integers(2):
            sb[rng.integers(n), rng.integers(3)] = 0xFF
    elif kind == "special":
        for codes, fmt in ((ca, fa), (cb, fb)):
            specials = [c for c in (fmt.nan_code, fmt.inf_code) if c is not None]
            for c in specials:
                codes[rng.integers(codes.shape[0]), rng.integers(k)] = c | (
                    fmt.sign_bit * int(rng.integers(2))
                )
    elif kind == "cancel":
        ca[:, bs : 2 * bs] = (
            ca[:, :bs] ^ fa.sign_bit
            if fa.has_negative_zero
            else (-ca[:, :bs].astype(np.int64)) & 0xFF
        )
        cb[:, bs : 2 * bs] = cb[:, :bs]
        sa[:, 1] = sa[:, 0]
        sb[:, 1] = sb[:, 0]
    a = MXArray(codes=ca, scales=sa, fmt=fa, axis=1, block_size=bs)
    b = MXArray(
        codes=np.ascontiguousarray(cb.T),
        scales=np.ascontiguousarray(sb.T),
        fmt=fb,
        axis=0,
        block_size=bs,
    )
    return a, b


_GEMM_KINDS = (
    ("gemm.random_blocks", "random", 2),
    ("gemm.extreme_scales", "extreme", 2),
    ("gemm.nan_scale", "nan_scale", 1),
    ("gemm.special_codes", "special", 1),
    ("gemm.cancellation", "cancel", 1),
)


def _run_matmul_backend(
    matmul_fn: Callable[..., Any],
    accum: str,
    formats: Sequence[ElementFormat],
    level: int,
    seed: int,
    tally: _Tally,
) -> None:
    from mxref.ref import gemm as ref_gemm

    names = {f.name for f in formats}
    pairs = [(a, b) for a in FORMATS for b in FORMATS] if level >= 2 else list(_GEMM_PAIRS_L1)
    pairs = [(a, b) for a, b in pairs if a in names and b in names]
    for fa_name, fb_name in pairs:
        fa, fb = get_format(fa_name), get_format(fb_name)
        for check, kind, count in _GEMM_KINDS:
            if kind == "special" and fa.specials is Specials.NONE and fb.specials is Specials.NONE:
                continue
            rng = _rng(seed, check, fa.name, fb.name)
            for rep in range(count * (4 if level >= 2 else 1)):
                a, b = _operands(fa, fb, kind, rng)
                want = ref_gemm.matmul(a, b, accum=accum)
                where = f"{fa.name} x {fb.name}, accum {accum}, case {rep}"
                got: np.ndarray | None = None
                error = None
                try:
                    got = np.asarray(matmul_fn(a, b, accum=accum))
                    if got.dtype != np.float32 or got.shape != want.shape:
                        error = f"result is {got.dtype} {got.shape}; expected float32 {want.shape}"
                        got = None
                except Exception as exc:  # the backend's bug
                    error = f"raised {type(exc).__name__}: {_one_line(exc)}"
                bad = None if got is None else got.view(np.uint32) != want.view(np.uint32)
                if bad is not None and not bad.any():
                    tally.add(check, None)
                    continue
                tally.add(
                    check,
                    functools.partial(_gemm_failure, check, where, a, b, want, got, bad, error),
                )


def _gemm_failure(
    check: str,
    where: str,
    a: MXArray,
    b: MXArray,
    want: np.ndarray,
    got: np.ndarray | None,
    bad: np.ndarray | None,
    error: str | None,
) -> CaseFailure:
    i, j = (0, 0) if bad is None else (int(v) for v in np.argwhere(bad)[0])
    return CaseFailure(
        check=check,
        where=f"{where}, D[{i}, {j}] ({a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]})",
        inputs={
            "a_codes": _hex8(a.codes[i]),
            "a_scales": _hex8(a.scales[i]),
            "b_codes": _hex8(b.codes[:, j]),
            "b_scales": _hex8(b.scales[:, j]),
        },
        expected={"d": _hex32(want[i, j])},
        got={} if got is None else {"d": _hex32(got[i, j])},
        differs=["no output"] if bad is None else [f"{int(bad.sum())} of {bad.size} elements of D"],
        error=error,
    )


# --- golden files -------------------------------------------------------------
class NotSelected(Exception):
    """Raised to :func:`mxref.golden.verify` for a case outside the run's selection.

    Such cases (another format, policy or accumulation model than selected,
    or a float64 input to a ``--command`` backend) are left out of the counts.
    """


@dataclasses.dataclass(frozen=True)
class _Selection:
    """What a run covers: formats, policies, and the backends' extra operations."""

    formats: frozenset[str]
    scale_rules: frozenset[str]
    roundings: frozenset[str]
    overflows: frozenset[str]
    accum: str | None
    float32_only: bool

    def quantize(self, fmt: Any, rule: Any, rounding: Any, overflow: Any, dtype: Any) -> bool:
        try:
            return (
                get_format(fmt).name in self.formats
                and ScaleRule.parse(rule).value in self.scale_rules
                and Rounding.parse(rounding).value in self.roundings
                and Overflow.parse(overflow).value in self.overflows
                and (not self.float32_only or np.dtype(dtype) == np.float32)
            )
        except (ValueError, TypeError):
            return False

    def gemm(self, fa: str, fb: str, accum: str) -> bool:
        return (
            self.accum is not None
            and fa in self.formats
            and fb in self.formats
            and _same_accum(accum, self.accum)
        )


def _same_accum(a: str, b: str) -> bool:
    from mxref.accum import parse_accum

    try:
        return parse_accum(a) == parse_accum(b)
    except ValueError:
        return False


def _golden_file_name_for(accum: str) -> str:
    return "gemm_" + re.sub(r"[^a-z0-9]+", "_", accum.strip().lower()).strip("_") + ".hex"


_FMT_ALT = "|".join(sorted(FORMATS, key=len, reverse=True))
_ENCODE_FILE = re.compile(
    rf"encode_(?P<fmt>{_FMT_ALT})_(?P<rule>[a-z0-9_]+?)_(?P<rnd>rne|away|zero|stochastic)"
    r"(?P<ieee>_ieee)?\.hex"
)
_FMT_FILE = re.compile(rf"(?:pack|decode)_(?P<fmt>{_FMT_ALT})\.hex")


def _golden_file_selected(name: str, sel: _Selection) -> bool:
    """Whether a golden file's name puts it inside the selection (whole-file choices)."""
    m = _ENCODE_FILE.fullmatch(name)
    if m:
        ovf = "ieee" if m["ieee"] else "saturate"
        return sel.quantize(m["fmt"], m["rule"], m["rnd"], ovf, np.float32)
    m = _FMT_FILE.fullmatch(name)
    if m:
        return m["fmt"] in sel.formats
    if name.startswith("gemm_"):
        return sel.accum is not None and name == _golden_file_name_for(sel.accum)
    return True


def _golden_skips(path: Path, sel: _Selection, has_matmul: bool) -> dict[str, int]:
    """Cases per golden area of a gemm or regressions file that the wrappers will refuse."""
    from mxref.golden import parse_golden

    parsed = parse_golden(path.read_text(encoding="ascii"))
    header = parsed.header
    op = header.get("operation", "")
    skips: dict[str, int] = {}
    for case in parsed.cases:
        params = {**header, **case.params}
        kind = case.op or op.split(":")[0]
        if kind == "gemm":
            if not has_matmul:
                continue  # verify reports these "not provided" without calling anything
            fa, fb = case.inputs[0], case.inputs[1]
            chosen = sel.gemm(fa, fb, params.get("accum", "exact"))
        elif kind == "encode":
            dtype = {"float32": np.float32, "float64": np.float64, "float16": np.float16}.get(
                params.get("input", "float32"), np.float64
            )
            chosen = sel.quantize(
                params.get("format"),
                params.get("scale_rule", "floor"),
                params.get("rounding", "rne"),
                params.get("overflow", "saturate"),
                dtype,
            )
        else:
            chosen = True
        if not chosen:
            skips[case.area] = skips.get(case.area, 0) + 1
    return skips


def _golden_wrappers(
    sel: _Selection,
    quantize: Callable[..., Any],
    pack: Callable[..., Any] | None,
    matmul: Callable[..., Any] | None,
) -> dict[str, Any]:
    def q(
        x: Any,
        fmt: Any,
        *,
        axis: int = -1,
        block_size: int = DEFAULT_BLOCK_SIZE,
        scale_rule: Any = "floor",
        rounding: Any = "rne",
        overflow: Any = "saturate",
        seed: int | None = None,
    ) -> Any:
        if not sel.quantize(fmt, scale_rule, rounding, overflow, np.asarray(x).dtype):
            raise NotSelected("outside the selected formats and policies")
        kw: dict[str, Any] = {
            "axis": axis,
            "block_size": block_size,
            "scale_rule": scale_rule,
            "rounding": rounding,
            "overflow": overflow,
        }
        if seed is not None:
            kw["seed"] = seed
        return quantize(x, fmt, **kw)

    def p(mx: MXArray) -> Any:
        if mx.fmt.name not in sel.formats:
            raise NotSelected("outside the selected formats")
        assert pack is not None
        return pack(mx)

    def mm(
        a: MXArray, b: MXArray, *, accum: Any = "exact", out_dtype: Any = np.float32, c: Any = None
    ) -> Any:
        if not sel.gemm(a.fmt.name, b.fmt.name, str(accum)):
            raise NotSelected("outside the selected formats and accumulation model")
        assert matmul is not None
        return matmul(a, b, accum=accum, out_dtype=out_dtype, c=c)

    return {"quantize": q, "pack": p if pack else None, "matmul": mm if matmul else None}


def _given(failure: CaseFailure) -> CaseFailure:
    return failure


def _golden_failure(check: str, f: Any) -> CaseFailure:
    got = str(f.got)
    error = got[len("raised ") :] if got.startswith("raised ") else None
    return CaseFailure(
        check=check,
        where=f"{f.file}:{f.line} [{f.area}]",
        inputs={"case": str(f.inputs).split()},
        expected={"outputs": str(f.expected).split()},
        got={} if error else {"outputs": got.split()},
        differs=["no output"] if error else ["outputs"],
        error=error,
    )


def _golden_area(
    directory: Path, name: str, garea: str, counts: Any, failed: int, tally: _Tally
) -> CheckInfo:
    """Tally one golden file's cases of one area as check ``golden.<area>.<file>``."""
    area = GOLDEN_AREAS.get(garea, "special")
    check = f"golden.{area}.{name.rsplit('.', 1)[0]}"
    first = counts.first_failure
    if first is not None and "NotSelected" in str(first.got):
        first = None  # an unselected case came first; the real ones are behind it
    for _ in range(counts.passed):
        tally.add(check, None)
    for _ in range(failed):
        if first is None:
            hint = ["see `mxref golden verify` for the failing lines"]
            fallback = CaseFailure(check, f"{directory}/{name}", {}, {}, {}, hint)
            tally.add(check, functools.partial(_given, fallback))
        else:
            tally.add(check, functools.partial(_golden_failure, check, first))
    return CheckInfo(
        check, area, f"golden vectors of {name}", "golden_vectors/ (docs/golden_format.md)"
    )


def _run_golden(
    directory: Path,
    sel: _Selection,
    quantize: Callable[..., Any],
    pack: Callable[..., Any] | None,
    matmul: Callable[..., Any] | None,
    dequantize: Callable[..., Any] | None,
    tally: _Tally,
) -> tuple[list[CheckInfo], str]:
    """Verify the golden files; fold them into ``golden.<area>.<file>`` checks.

    Returns the checks and a one-line account of which files were used.
    """
    from mxref.golden import verify

    report = verify(
        directory, dequantize=dequantize, **_golden_wrappers(sel, quantize, pack, matmul)
    )
    infos: list[CheckInfo] = []
    if report.integrity:
        check = "golden.integrity"
        infos.append(
            CheckInfo(
                check,
                "golden",
                "golden files match their MANIFEST",
                "golden_vectors/MANIFEST (sha256)",
            )
        )
        for problem in report.integrity:
            failure = CaseFailure(
                check, f"{directory}/{problem.file}", {}, {}, {}, [problem.problem]
            )
            tally.add(check, functools.partial(_given, failure))
    used = outside = missing_op = 0
    for fr in report.files:
        if not _golden_file_selected(fr.name, sel):
            outside += 1
            continue
        if fr.passed + fr.failed == 0:
            missing_op += 1  # "not provided": the backend lacks the operation
            continue
        skips = {}
        if fr.name.startswith("gemm_") or fr.operation.startswith("mixed"):
            skips = _golden_skips(directory / fr.name, sel, matmul is not None)
        counted = False
        for garea, counts in sorted(fr.areas.items()):
            failed = max(counts.failed - skips.get(garea, 0), 0)
            if counts.passed + failed:
                infos.append(_golden_area(directory, fr.name, garea, counts, failed, tally))
                counted = True
        used += counted
        outside += not counted
    try:
        shown = directory.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = directory
    account = (
        f"{used} file{'' if used == 1 else 's'} of {shown}/ verified, "
        f"{outside} outside the selection, "
        f"{missing_op} for an operation not given"
        + (f", {len(report.integrity)} integrity problems" if report.integrity else "")
    )
    return infos, account


# --- the runner ----------------------------------------------------------------
def _parse_list(
    values: str | Sequence[str] | None, choices: Sequence[str], everything: Sequence[str], what: str
) -> list[str]:
    """Parse ``"a,b"``, a list, or ``"all"`` (meaning ``everything``)."""
    if values is None:
        return list(everything)
    items = values.split(",") if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower().replace("-", "_")
        if key == "all":
            out.extend(everything)
        elif key in choices:
            out.append(key)
        else:
            raise InputError(
                f"unknown {what} {item!r}; expected 'all' or one of {', '.join(choices)}"
            )
    return list(dict.fromkeys(out))


def run_conformance(
    quantize: Callable[..., Any] | None = None,
    *,
    command: str | None = None,
    pack: Callable[..., Any] | None = None,
    matmul: Callable[..., Any] | None = None,
    accum: str = "exact",
    dequantize: Callable[..., Any] | None = None,
    golden: PathLike | None = None,
    deviations: Mapping[str, str] | None = None,
    level: int = 1,
    formats: str | Sequence[str] | None = None,
    scale_rules: str | Sequence[str] = ("floor",),
    roundings: str | Sequence[str] = ("rne",),
    overflows: str | Sequence[str] = ("saturate",),
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    name: str | None = None,
) -> ConformReport:
    """Run the conformance battery against a backend.

    Parameters
    ----------
    quantize : callable, optional
        The backend, with :func:`mxref.quantize`'s signature (see
        :class:`CallableBackend`).  Exactly one of ``quantize`` and ``command``.
    command : str, optional
        An external program speaking the exchange protocol (module docstring).
    pack : callable, optional
        With :func:`mxref.pack`'s signature (an MXArray in, an object with a
        uint8 ``data`` array out): checked in the packing area.
    matmul : callable, optional
        With :func:`mxref.matmul`'s signature: checked in the GEMM area
        against the exact GEMM oracle under ``accum``.
    accum : str
        The accumulation model the matmul backend implements (``"exact"``,
        ``"block_fp32"``, ``"fixed_point:W:G"``, a profile; docs/gemm.md).
    dequantize : callable, optional
        With :func:`mxref.dequantize`'s signature: checked on the golden
        decode files (the decode area).
    golden : path, optional
        Verify the golden files in this directory too, through
        :func:`mxref.golden.verify`: the files of the selected formats,
        policies and ``accum`` (others are counted as outside the selection).
    deviations : mapping of str to str, optional
        Declared deviations (:func:`load_deviations`).
    level : {1, 2}
        2 runs many more cases under the same check ids.
    formats : str or sequence of str, optional
        Format names, comma-separated or ``"all"`` (the default).
    scale_rules, roundings, overflows : str or sequence of str
        Policies to run under (``"all"``: every scale rule; rne, away and
        zero; saturate and ieee).  Default: the spec's floor/rne/saturate.
    seed : int
        Seeds the random battery (and stochastic rounding, if selected).
    timeout : float
        Seconds per ``command`` run.
    name : str, optional
        The backend's name in the report.

    Returns
    -------
    ConformReport

    Raises
    ------
    InputError
        Bad arguments: both or neither backend, an unknown format or policy,
        a level other than 1 or 2, a program that does not exist.

    Spec: OCP MX v1.0 sections 5 and 6 (see docs/spec_map.md per check).
    """
    if (quantize is None) == (command is None):
        raise InputError("give exactly one backend: a quantize callable (--backend) or --command")
    if level not in (1, 2):
        raise InputError(f"--level must be 1 or 2; got {level}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InputError(f"--seed must be an integer in [0, 2**63); got {seed!r}")
    backend: Backend
    if command is not None:
        backend = CommandBackend(command, timeout)
    else:
        assert quantize is not None
        backend = CallableBackend(quantize, name)
    fmts = [get_format(f) for f in _parse_list(formats, list(FORMATS), list(FORMATS), "format")]
    rules = _parse_list(
        scale_rules, [r.value for r in ScaleRule], [r.value for r in ScaleRule], "scale rule"
    )
    rnds = _parse_list(roundings, [r.value for r in Rounding], ["rne", "away", "zero"], "rounding")
    ovfs = _parse_list(
        overflows, [o.value for o in Overflow], [o.value for o in Overflow], "overflow"
    )
    if matmul is not None:
        from mxref.accum import parse_accum

        parse_accum(accum)  # a bad model is bad input, before anything runs
    declared = dict(deviations or {})

    tally = _Tally()
    had_packed = False
    for fmt in fmts:
        for rule in rules:
            for rnd in rnds:
                for ovf in ovfs:
                    cfg = Config(
                        fmt.name,
                        rule,
                        rnd,
                        ovf,
                        DEFAULT_BLOCK_SIZE,
                        seed if rnd == Rounding.STOCHASTIC.value else None,
                    )
                    had_packed |= _run_batch(backend, build_batch(cfg, level, seed), tally)
    if pack is not None:
        _run_pack_backend(pack, fmts, level, seed, tally)
    if matmul is not None:
        _run_matmul_backend(matmul, accum, fmts, level, seed, tally)
    infos = list(_CHECK_LIST)
    golden_account = None
    if golden is not None:
        sel = _Selection(
            formats=frozenset(f.name for f in fmts),
            scale_rules=frozenset(rules),
            roundings=frozenset(rnds),
            overflows=frozenset(ovfs),
            accum=accum if matmul is not None else None,
            float32_only=command is not None,
        )
        extra, golden_account = _run_golden(
            Path(golden), sel, as_quantize(backend), pack, matmul, dequantize, tally
        )
        infos += extra
    not_run = {
        "packing": "no --pack backend"
        if command is None or had_packed
        else "no --pack backend, and the command's output has no 'packed' array",
        "gemm": "no --matmul backend",
        "decode": "no --dequantize backend" if dequantize is None else "no golden decode files",
    }
    if golden is None:
        not_run["golden"] = "no golden directory given"

    results = []
    for info in infos:
        if info.id not in tally.cases:
            continue
        failed = tally.failed.get(info.id, 0)
        results.append(
            CheckResult(
                id=info.id,
                area=info.area,
                title=info.title,
                spec=info.spec,
                cases=tally.cases[info.id],
                failed=failed,
                first_failure=tally.first.get(info.id),
                deviation=_declared(info.id, declared),
            )
        )
    unobserved = []
    for pattern, reason in declared.items():
        matching = [c for c in results if fnmatch.fnmatchcase(c.id, pattern)]
        if not any(c.status == "deviation" for c in matching):
            unobserved.append((pattern, reason, bool(matching)))
    return ConformReport(
        backend=name or backend.name,
        level=level,
        seed=seed,
        selection={
            "format": [f.name for f in fmts],
            "scale_rule": rules,
            "rounding": rnds,
            "overflow": ovfs,
            "block_size": [str(DEFAULT_BLOCK_SIZE)],
            "accum": [accum] if matmul is not None else [],
        },
        checks=tuple(results),
        unobserved=tuple(unobserved),
        not_run=not_run,
        golden=golden_account,
    )


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def _wrap(label: str, words: list[str], per_line: int) -> list[str]:
    if not words:
        return [f"      {label:<9}-"]
    out = []
    for i in range(0, len(words), per_line):
        head = label if i == 0 else ""
        out.append(f"      {head:<9}{' '.join(words[i : i + per_line])}")
    return out


def format_failure(f: CaseFailure) -> list[str]:
    """Lines describing one failing case, inputs, expected and got in hex.

    Parameters
    ----------
    f : CaseFailure

    Returns
    -------
    list of str
    """
    lines = [f"    {f.where}"]
    for name, words in f.inputs.items():
        lines += _wrap(name, words, 8 if len(words[0]) > 2 else 16)
    for title, part in (("expected", f.expected), ("got", f.got)):
        lines.append(f"    {title}:")
        for name, words in part.items():
            lines += _wrap(name, words, 8 if words and len(words[0]) > 2 else 16)
    if f.error is not None:
        lines.append(f"    error: {f.error}")
    lines.append(f"    differs: {'; '.join(f.differs)}")
    return lines


def format_report(report: ConformReport) -> str:
    """Return a human-readable summary of ``report``, ending in a newline.

    Parameters
    ----------
    report : ConformReport

    Returns
    -------
    str
    """
    r = report
    sel = r.selection
    lines = [
        f"mxref conform: {r.backend}",
        f"level {r.level}, seed {r.seed}; formats {', '.join(sel['format'])}",
        f"policies: scale_rule {','.join(sel['scale_rule'])}; rounding "
        f"{','.join(sel['rounding'])}; overflow {','.join(sel['overflow'])}; block_size 32"
        + (f"; accum {sel['accum'][0]}" if sel["accum"] else ""),
        f"golden: {r.golden or 'not run (' + r.not_run.get('golden', '') + ')'}",
        "",
        f"{'area':<20}{'checks':>7}{'pass':>6}{'fail':>6}{'dev':>5}{'cases':>9}{'failed':>8}",
    ]
    for a in r.areas():
        if a.not_run is not None:
            lines.append(f"{a.title:<20}{'-':>7}  not run: {a.not_run}")
            continue
        lines.append(
            f"{a.title:<20}{a.checks:>7}{a.passed:>6}{a.failed:>6}{a.deviations:>5}"
            f"{a.cases:>9}{a.failed_cases:>8}"
        )
    for c in r.checks:
        if c.status == "pass":
            continue
        head = "FAIL" if c.status == "fail" else "DEVIATION"
        lines.append("")
        lines.append(
            f"{head} {c.id}: {c.failed} of {c.cases} cases differ ({c.title}; spec {c.spec})"
        )
        if c.deviation is not None:
            lines.append(f"  declared: {c.deviation}")
        if c.first_failure is not None:
            lines.append("  first failing case:")
            lines += format_failure(c.first_failure)
    for pattern, reason, matched in r.unobserved:
        lines.append("")
        why = "the check passed" if matched else "no check with this id ran"
        lines.append(f"DECLARED BUT NOT OBSERVED {pattern}: {reason} ({why})")
    lines.append("")
    total = len(r.checks)
    cases = sum(c.cases for c in r.checks)
    dev = len(r.deviations)
    tail = f" ({dev} declared deviation{'s' if dev != 1 else ''} observed)" if dev else ""
    if r.passed:
        lines.append(f"PASS: {total} checks, {cases} cases{tail}")
    else:
        lines.append(f"FAIL: {len(r.failures)} of {total} checks failed{tail}")
    return "\n".join(lines) + "\n"


def write_report_json(path: PathLike, report: ConformReport, *, force: bool = False) -> None:
    """Write ``report`` as JSON (:meth:`ConformReport.to_json`).

    Parameters
    ----------
    path : str or os.PathLike
    report : ConformReport
    force : bool
        Replace an existing file.

    Raises
    ------
    InputError
        ``path`` exists (without ``force``), is a directory, or its directory
        does not exist.
    """
    write_new_text(path, report.to_json(), force=force)
