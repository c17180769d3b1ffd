"""The verdict of a conformance run: every failing case in one of four classes.

A backend can differ from mxref for three reasons, and a hardware team acts
on each differently:

``spec``
    a **spec violation**: OCP MX v1.0 fixes the behaviour and the backend
    does something else.  Each is listed once, by its root cause
    (:mod:`mxref.conformance.root_causes`), with every check it touches and
    the number of failing cases, never once per check.
``impl``
    an **implementation-defined difference**: the spec leaves the choice
    open (docs/semantics.md says where, with the spec text) and the backend
    chose differently from mxref's default, e.g. the codes of a NaN block.
    Not a violation: the run passes with a warning (exit status 3).
``golden``
    a **golden case**: a line of a golden file.  It repeats what the other
    checks test, so it is *explained* when its root cause is one the
    non-golden cases already show; an unexplained golden case counts as a
    violation.
``error``
    the backend raised, crashed or gave no usable output: never a
    difference of choice, never absorbed by a declared deviation.

The class of a failing case comes from one table, :data:`CLASS_TABLE`,
matched on the check id (a glob) and the case's *kind* (:func:`case_kind`:
what differs and what the block holds), first match first.  A check added
later gets its class by adding a row; a check no row names is a spec
violation.

Exit status of ``mxref conform``: :data:`EXIT_PASS` (0), :data:`EXIT_FAIL`
(1: a violation, an unexplained golden case or a backend error),
:data:`EXIT_WARN` (3: only implementation-defined differences); 2 is bad input.

Spec: OCP MX v1.0 sections 5.3-5.4.1 and 6.3; docs/semantics.md sections 2, 5, 8c and 9.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable
from typing import Any

import numpy as np

from mxref.conformance.checks import NV_CHECK_CLASS, NV_CHECKS, SPEC_LIKE
from mxref.conformance.failures import CaseFailure
from mxref.conformance.root_causes import (
    _golden_encode_case,
    _nan_or_inf,
    block_values,
    oracle_codes,
    root_cause,
)
from mxref.formats import FORMATS

SPEC, IMPL, GOLDEN, ERROR = "spec", "impl", "golden", "error"

#: Exit statuses of ``mxref conform`` (2, bad input, is the CLI's).
EXIT_PASS, EXIT_FAIL, EXIT_WARN = 0, 1, 3

_NAN_INF_OPEN = ("semantics.md 5 and 9: the spec leaves NaN/Inf conversion open (5.3.2-5.3.4 "
                 "call NaN conversion implementation-defined)")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ClassRule:
    """One row of :data:`CLASS_TABLE`.

    Attributes
    ----------
    checks : str
        A glob over check ids (``"special.*"``, ``"*"``).
    kind : str
        A :func:`case_kind`, or ``"*"`` for any.
    cls : str
        ``"spec"``, ``"impl"``, ``"golden"`` or ``"error"``.
    choice : str
        For ``impl``: the open choice, as the verdict names it.
    why : str
        The spec text or docs/semantics.md section behind the class.
    """

    checks: str
    kind: str
    cls: str
    choice: str
    why: str


def _nvfp4_rule(check: str, cls: str) -> ClassRule:
    info = NV_CHECKS[check]
    if cls == SPEC_LIKE:
        # what every NVFP4 implementation shares: E2M1 and E4M3 rounded to nearest
        # even and saturating, blocks of 16, the codes' and bytes' meaning
        return ClassRule(check, "*", SPEC, "",
                         "the NVFP4 format as NVIDIA defines it and every implementation "
                         f"shares ({info.spec}); semantics.md 8c")  # fmt: skip
    return ClassRule(check, "*", IMPL, info.title,
                     f"semantics.md 8c: implementations differ here ({info.spec})")  # fmt: skip


#: NVFP4 checks, spec-like or implementation-defined as :data:`NV_CHECK_CLASS` says
#: (no standard fixes NVFP4's tensor scale, its NaN/Inf handling or its zero cases)
_NVFP4_RULES = tuple(_nvfp4_rule(check, cls) for check, cls in NV_CHECK_CLASS.items())

#: check-id glob, case kind -> class; the first matching row wins.
CLASS_TABLE: tuple[ClassRule, ...] = (
    ClassRule("*", "error", ERROR, "", "an exception is never a difference of choice"),
    ClassRule("golden.*", "*", GOLDEN, "", "explained when a non-golden case has its root cause"),
    # NVFP4 (docs/semantics.md 8c): its rows come from the checks' own table
    *_NVFP4_RULES,
    ClassRule("*", "nan_scale", SPEC, "",
              "5.4.1: 0xFF is E8M0's NaN; a finite scale turns the block's NaN into a number "
              "('Infs and NaNs are not clamped')"),
    ClassRule("*", "inf_scale", IMPL, "scale byte of a block holding Inf", _NAN_INF_OPEN),
    ClassRule("*", "nan_inf_codes", IMPL, "element codes of a NaN or Inf block", _NAN_INF_OPEN),
    ClassRule("*", "zero_scale", IMPL, "scale byte of an all-zero block",
              "semantics.md 2 and 9: the spec says nothing on an all-zero block"),
    ClassRule("*", "clamp", IMPL, "scale byte where floor(log2 amax) - emax < -127",
              "semantics.md 9: a shared exponent below E8M0's range is not addressed"),
    ClassRule("*", "zero_sign", IMPL, "sign of a zero code",
              "semantics.md 5 and 9: a -0.0 input is not addressed by the spec"),
    ClassRule("*", "flush", IMPL, "float32 subnormal inputs flushed to zero",
              "semantics.md 5 and 9: subnormal inputs are not addressed (the paper flushes)"),
    ClassRule("*", "*", SPEC, "", "6.3 (the conversion) and 5.3-5.4.1 (the encodings)"),
)  # fmt: skip


def _words(failure: CaseFailure, side: str, name: str) -> list[int]:
    part = failure.expected if side == "expected" else failure.got
    return [int(w, 16) for w in part.get(name, [])]


def _float(word: str) -> float:
    dtype = {4: (np.uint16, np.float16), 8: (np.uint32, np.float32), 16: (np.uint64, np.float64)}
    uint, flt = dtype.get(len(word), (np.uint32, np.float32))
    return float(np.array([int(word, 16)], uint).view(flt)[0])


def case_kind(failure: CaseFailure) -> str:
    """What kind of difference one failing case is (the key :data:`CLASS_TABLE` reads).

    ``error`` (no output), ``nan_scale`` / ``inf_scale`` (the scale byte of a
    block holding NaN / holding Inf but no NaN differs), ``nan_inf_codes``
    (codes of a NaN or Inf block), ``zero_scale`` (the scale byte of a block
    of zeros), ``clamp`` (the scale byte of a block whose exponent
    floor(log2 amax) - emax_elem is below -127), ``zero_sign`` (only zero
    codes of the other sign), ``flush`` (only subnormal inputs given a zero
    code), ``scale`` or ``codes`` otherwise.
    """
    if failure.error:
        return "error"
    encoded = _golden_encode_case(failure)
    case = encoded if encoded is not None else failure
    x = case.inputs.get("x", [])
    want_scale, have_scale = _words(case, "expected", "scale"), _words(case, "got", "scale")
    special = [w for w in x if _nan_or_inf(w)]
    if want_scale != have_scale and have_scale:
        if any(_float(w) != _float(w) for w in special):
            return "nan_scale"
        if special:
            return "inf_scale"
        values = [abs(_float(w)) for w in x]
        if values and max(values) == 0:
            return "zero_scale"
        fmt = FORMATS.get(case.where.split(" ", 1)[0])
        if fmt is not None and want_scale == [0] and values and \
                max(values) < 2.0 ** (fmt.emax - 127):  # fmt: skip
            return "clamp"
        return "scale"
    if special:
        return "nan_inf_codes"
    want, have = _words(case, "expected", "codes"), _words(case, "got", "codes")
    lanes = [j for j, (a, b) in enumerate(zip(want, have, strict=False)) if a != b]
    fmt = FORMATS.get(case.where.split(" ", 1)[0])
    if fmt is None or not lanes:
        return "codes"
    zero = {0, fmt.sign_bit} if fmt.has_negative_zero else {0}
    if all(want[j] in zero and have[j] in zero for j in lanes):
        return "zero_sign"
    if _flushed(case, lanes, have, zero):
        return "flush"
    return "codes"


def _flushed(case: CaseFailure, lanes: list[int], have: list[int], zero: set[int]) -> bool:
    """Whether the codes are exactly the oracle's with the block's subnormal inputs as 0."""
    values = block_values(case)
    scale = _words(case, "got", "scale")
    if values is None or len(scale) != 1 or values.shape[1] != len(have):
        return False
    sub = (np.abs(values) < np.finfo(np.float32).tiny) & (values != 0)
    if not all(sub[0, j] and have[j] in zero for j in lanes):
        return False
    return oracle_codes(case, np.where(sub, 0, values).astype(values.dtype), scale[0]) == have


def classify(check: str, failure: CaseFailure) -> tuple[str, str, str]:
    """``(class, label, root cause)`` of one failing case of ``check``.

    The label is the open choice for an ``impl`` case (:attr:`ClassRule.choice`)
    and the root cause (:func:`root_cause`) otherwise; golden cases are
    matched to the others by root cause.
    """
    rule = rule_for(check, case_kind(failure))
    cause = root_cause(failure)
    if rule.cls == ERROR:  # the reason itself: what to fix
        return ERROR, " ".join(str(failure.error).split())[:160], cause
    return rule.cls, rule.choice if rule.cls == IMPL else cause, cause


def rule_for(check: str, kind: str) -> ClassRule:
    """The first row of :data:`CLASS_TABLE` matching ``check`` and ``kind``."""
    for rule in CLASS_TABLE:
        if fnmatch.fnmatchcase(check, rule.checks) and rule.kind in ("*", kind):
            return rule
    raise AssertionError("CLASS_TABLE ends with a catch-all row")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One entry of the verdict: a root cause or an open choice, and where it shows.

    Attributes
    ----------
    cls : str
        ``"spec"``, ``"impl"``, ``"golden"`` or ``"error"``.
    label : str
        The root cause (or, for ``impl``, the open choice).
    checks : tuple of str
        The checks whose failing cases it accounts for.
    cases : int
        How many failing cases (blocks, golden lines) it accounts for.
    explained_by : str or None
        For a golden finding: the class of the non-golden cases with the same
        root cause (``"spec"`` or ``"impl"``; ``"declared"`` for a declared
        deviation's), None when none has it.
    """

    cls: str
    label: str
    checks: tuple[str, ...]
    cases: int
    explained_by: str | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The findings of a run per class, and the exit status they give."""

    violations: tuple[Finding, ...]
    implementation_defined: tuple[Finding, ...]
    golden: tuple[Finding, ...]
    errors: tuple[Finding, ...]

    @property
    def unexplained(self) -> tuple[Finding, ...]:
        """Golden findings whose root cause no non-golden case shows."""
        return tuple(f for f in self.golden if f.explained_by is None)

    @property
    def exit_status(self) -> int:
        """:data:`EXIT_FAIL`, :data:`EXIT_WARN` or :data:`EXIT_PASS`."""
        if self.violations or self.errors or self.unexplained:
            return EXIT_FAIL
        return EXIT_WARN if self.implementation_defined or self.golden else EXIT_PASS

    def lines(self) -> list[str]:
        """The report's closing section: findings per class, then the verdict line."""
        if not (self.violations or self.implementation_defined or self.golden or self.errors):
            return ["", self.summary()]
        out = ["", "verdict, by class:"]
        for f in self.violations:
            out.append(f"  spec violation: {f.label}: {_where(f)}")
        for f in self.implementation_defined:
            why = rule_reason(f)
            out.append(f"  implementation-defined: {f.label}: {_where(f)} ({why})")
        for f in self.golden:
            how = f"explained ({_CLASS_NAMES.get(f.explained_by or '', 'not explained')})" \
                if f.explained_by else "NOT explained by any other check"  # fmt: skip
            out.append(f"  golden: {f.label}: {_where(f)}; {how}")
        for f in self.errors:
            out.append(f"  backend error: {f.label}: {_where(f)}")
        out += ["", self.summary()]
        return out

    def summary(self) -> str:
        """One line per the issue's form: ``N spec violations; M ...; K golden cases, ...``."""
        n, m = len(self.violations), len(self.implementation_defined)
        k = sum(f.cases for f in self.golden)
        parts = [f"{n} spec violation{'s' if n != 1 else ''}",
                 f"{m} implementation-defined difference{'s' if m != 1 else ''} "
                 "(not violations)"]  # fmt: skip
        if k:
            left = sum(f.cases for f in self.unexplained)
            parts.append(
                f"{k} golden case{'s' if k != 1 else ''}, "
                + ("all explained by the above" if not left else f"{left} not explained")
            )
        if self.errors:
            e = sum(f.cases for f in self.errors)
            parts.append(f"{e} case{'s' if e != 1 else ''} with a backend error")
        head = {EXIT_PASS: "PASS", EXIT_WARN: "PASS WITH WARNING", EXIT_FAIL: "FAIL"}
        return f"VERDICT {head[self.exit_status]} (exit {self.exit_status}): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready builtins."""

        def rows(found: Iterable[Finding]) -> list[dict[str, Any]]:
            return [{**dataclasses.asdict(f), "checks": list(f.checks)} for f in found]

        return {
            "spec_violations": rows(self.violations),
            "implementation_defined": rows(self.implementation_defined),
            "golden": rows(self.golden),
            "errors": rows(self.errors),
            "summary": self.summary(),
            "exit_status": self.exit_status,
        }


_CLASS_NAMES = {SPEC: "by a spec violation", IMPL: "by an implementation-defined difference",
                "declared": "by a declared deviation"}  # fmt: skip


def rule_reason(finding: Finding) -> str:
    """The :attr:`ClassRule.why` of an ``impl`` finding's choice."""
    return next((r.why for r in CLASS_TABLE if r.cls == IMPL and r.choice == finding.label), "")


def _where(f: Finding) -> str:
    shown = ", ".join(f.checks[:8]) + (f", and {len(f.checks) - 8} more" if len(f.checks) > 8
                                       else "")  # fmt: skip
    unit = "case" if all(c.startswith("golden.") for c in f.checks) else "block"
    return f"{f.cases} {unit}{'s' if f.cases != 1 else ''} in {shown}"


def build_verdict(
    classes: Iterable[tuple[str, str, Iterable[tuple[str, str, str, int]]]],
) -> Verdict:
    """The verdict of a run.

    Parameters
    ----------
    classes : iterable of (check id, status, ((class, label, root cause, cases), ...))
        Every failing or deviating check, with its failing cases counted per
        :func:`classify` triple; the cases of a ``"deviation"`` (declared)
        check only explain golden cases.

    Returns
    -------
    Verdict
    """
    found: dict[tuple[str, str], tuple[list[str], int]] = {}
    shown: dict[str, str] = {}  # root cause -> the class that shows it outside golden files
    for check, status, counts in classes:
        for cls, label, cause, n in counts:
            if cls in (GOLDEN, ERROR):
                pass
            elif status == "deviation":
                shown.setdefault(cause, "declared")
            elif shown.get(cause) != SPEC:
                shown[cause] = cls
            if status == "deviation":
                continue
            checks, total = found.get((cls, label), ([], 0))
            if check not in checks:
                checks.append(check)
            found[(cls, label)] = (checks, total + n)

    def of(cls: str) -> tuple[Finding, ...]:
        rows = [Finding(cls, label, tuple(checks), n, shown.get(label) if cls == GOLDEN else None)
                for (c, label), (checks, n) in found.items() if c == cls]  # fmt: skip
        return tuple(sorted(rows, key=lambda f: (-f.cases, f.label)))

    return Verdict(of(SPEC), of(IMPL), of(GOLDEN), of(ERROR))
