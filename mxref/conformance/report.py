"""What a conformance run found: failures, per-check and per-area results.

The report, and its text and JSON forms.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np

from mxref.conformance.checks import AREAS, NVFP4_AREA, PROTOCOL
from mxref.conformance.failures import CaseFailure
from mxref.conformance.root_causes import group_by_cause
from mxref.conformance.verdict import EXIT_FAIL, GOLDEN, IMPL, Verdict, build_verdict, classify
from mxref.io import PathLike, write_new_text


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
    errors : int
        Failed cases in which the backend raised, crashed, timed out or gave
        malformed output.  Such a check fails even when it is declared: an
        exception is never a deviation.
    classes : tuple of (str, str, str, int)
        The failing cases per ``(class, label, root cause)``, with their
        count (:func:`mxref.conformance.verdict.classify`): the verdict reads
        these.
    """

    id: str
    area: str
    title: str
    spec: str
    cases: int
    failed: int
    first_failure: CaseFailure | None
    deviation: str | None = None
    errors: int = 0
    classes: tuple[tuple[str, str, str, int], ...] = ()

    @property
    def status(self) -> str:
        """``"pass"``, ``"fail"`` or ``"deviation"`` (failing, but declared, and no case
        an error of the backend)."""
        if not self.failed:
            return "pass"
        return "deviation" if self.deviation is not None and not self.errors else "fail"


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
    not_claimed : tuple of str
        What the backend does not claim to implement and was therefore not
        tested, one line per kind (``"rounding: away, zero"``); empty when it
        claims everything (:mod:`mxref.conformance.claims`).
    """

    backend: str
    level: int
    seed: int
    selection: dict[str, list[str]]
    checks: tuple[CheckResult, ...]
    unobserved: tuple[tuple[str, str, bool], ...]
    not_run: dict[str, str]
    golden: str | None
    not_claimed: tuple[str, ...] = ()

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
        """True when no case is a spec violation, an unexplained golden case or an error
        (declared deviations excluded): the run passes, perhaps with a warning."""
        return self.exit_status != EXIT_FAIL

    @property
    def exit_status(self) -> int:
        """The status of ``mxref conform``: 0 pass, 3 pass with a warning (only
        implementation-defined differences), 1 fail (:class:`Verdict`)."""
        return self.verdict().exit_status

    def check_classes(self) -> dict[str, str]:
        """Each check's class in the verdict: ``pass``, ``deviation`` (declared),
        ``error``, ``impl`` (every failing case an implementation-defined
        difference, or a golden case explained by one), ``golden`` (golden cases
        all explained by spec violations) or ``spec``."""
        verdict = self.verdict()
        why = {f.label: f.explained_by for f in verdict.golden}
        out = {}
        for c in self.checks:
            kinds = {cls for cls, _, _, _ in c.classes}
            golden = {why.get(label) for cls, label, _, _ in c.classes if cls == GOLDEN}
            if c.status in ("pass", "deviation"):
                out[c.id] = c.status
            elif c.errors:
                out[c.id] = "error"
            elif kinds == {IMPL} or (kinds == {GOLDEN} and golden <= {IMPL, "declared"}):
                out[c.id] = IMPL
            elif kinds == {GOLDEN} and None not in golden:
                out[c.id] = GOLDEN
            else:
                out[c.id] = "spec"
        return out

    def verdict(self) -> Verdict:
        """Every failing case in its class: spec violations by root cause, open
        choices, golden cases (explained or not) and backend errors."""
        return build_verdict((c.id, c.status, c.classes) for c in self.checks
                             if c.status != "pass")  # fmt: skip

    def areas(self) -> list[AreaSummary]:
        """Per-area counts (battery and golden checks together), in :data:`AREAS` order.

        Returns
        -------
        list of AreaSummary
        """
        out = []
        titles = dict(AREAS)
        if any(c.area == "nvfp4" for c in self.checks):
            titles["nvfp4"] = NVFP4_AREA
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

    def root_causes(self) -> list[tuple[str, list[str]]]:
        """The checks that fail or deviate, grouped by the root cause of their first
        difference (:mod:`mxref.conformance.root_causes`), the largest group first."""
        return group_by_cause([(c.id, c.first_failure) for c in self.checks
                               if c.status != "pass" and c.first_failure is not None])  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready builtins.

        Returns
        -------
        dict
            Every attribute, ``status`` per check, ``areas`` (see
            :meth:`areas`), ``root_causes`` (see :meth:`root_causes`),
            ``passed`` and ``exit_status``.
        """
        classes = self.check_classes()
        return {
            "protocol": PROTOCOL,
            "backend": self.backend,
            "level": self.level,
            "seed": self.seed,
            "selection": self.selection,
            "golden": self.golden,
            "areas": [dataclasses.asdict(a) for a in self.areas()],
            "checks": [
                {**dataclasses.asdict(c), "status": c.status, "class": classes[c.id]}
                for c in self.checks
            ],
            "declared_not_observed": [
                {"id": i, "reason": r, "matches_a_check": m} for i, r, m in self.unobserved
            ],
            "not_run": self.not_run,
            "not_claimed": list(self.not_claimed),
            "root_causes": [{"cause": cause, "checks": checks}
                            for cause, checks in self.root_causes()],  # fmt: skip
            "verdict": self.verdict().to_dict(),
            "passed": self.passed,
            "exit_status": self.exit_status,
        }

    def to_json(self) -> str:
        """Return :meth:`to_dict` as indented JSON text, ending in a newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


# --------------------------------------------------------------------------
# running checks
# --------------------------------------------------------------------------
class _Tally:
    """Cases and the first failure per check id."""

    def __init__(self) -> None:
        self.cases: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.first: dict[str, CaseFailure] = {}
        self.first_error: dict[str, CaseFailure] = {}
        self.classes: dict[str, dict[tuple[str, str, str], int]] = {}

    def add(self, check: str, failure: Callable[[], CaseFailure] | None,
            error: bool = False) -> None:  # fmt: skip
        """Count a case of ``check``: passed (``failure`` None) or failed, and whether it
        failed because the backend raised or gave no usable output (``error``)."""
        self.cases[check] = self.cases.get(check, 0) + 1
        if failure is None:
            return
        self.failed[check] = self.failed.get(check, 0) + 1
        if error:
            self.errors[check] = self.errors.get(check, 0) + 1
        # every failing case is described once, and classified (the verdict counts them)
        described = failure()
        counts = self.classes.setdefault(check, {})
        key = classify(check, described)
        counts[key] = counts.get(key, 0) + 1
        self.first.setdefault(check, described)
        if error:
            self.first_error.setdefault(check, described)

    def classes_of(self, check: str) -> tuple[tuple[str, str, str, int], ...]:
        """``check``'s failing cases counted per (class, label, root cause)."""
        return tuple((*key, n) for key, n in self.classes.get(check, {}).items())


def _lanes(bad: np.ndarray) -> str:
    idx = [int(i) for i in np.flatnonzero(bad)]
    shown = ", ".join(str(i) for i in idx[:12])
    return f"codes at lanes {shown}{', ...' if len(idx) > 12 else ''}"


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
        f"{','.join(sel['rounding'])}; overflow {','.join(sel['overflow'])}; block_size "
        f"{','.join(sel.get('block_size') or ['32'])}"
        + (f"; accum {sel['accum'][0]}" if sel["accum"] else ""),
        f"golden: {r.golden or 'not run (' + r.not_run.get('golden', '') + ')'}",
        *(f"not claimed, not tested: {line}" for line in r.not_claimed),
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
    lines += _causes(r)
    verdict = r.verdict()
    classes = r.check_classes()
    for c in r.checks:
        if c.status == "pass":
            continue
        head = _HEADS[classes[c.id]]
        lines.append("")
        lines.append(
            f"{head} {c.id}: {c.failed} of {c.cases} cases differ ({c.title}; spec {c.spec})"
        )
        if c.errors:
            lines.append(f"  the backend raised or gave no usable output in {c.errors} of them"
                         + ("; an error is never a deviation, though this check is declared"
                            if c.deviation is not None else ""))  # fmt: skip
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
    if not r.failures:
        lines.append(f"PASS: {total} checks, {cases} cases{tail}")
    else:
        lines.append(f"{len(r.failures)} of {total} checks differ{tail}")
    lines += verdict.lines()
    return "\n".join(lines) + "\n"


#: how a failing check is headed in the text report, by its class
_HEADS = {"spec": "FAIL", "error": "FAIL", "deviation": "DEVIATION",
          GOLDEN: "FAIL (golden, explained)", IMPL: "WARNING, implementation-defined:"}  # fmt: skip


def _causes(report: ConformReport) -> list[str]:
    """The failing and deviating checks grouped by the root cause of their first difference."""
    causes = report.root_causes()
    if not causes:
        return []
    lines = ["", "root causes (the first difference of each check that fails or deviates):"]
    for cause, checks in causes:
        shown = ", ".join(checks[:6]) + (f", and {len(checks) - 6} more" if len(checks) > 6 else "")
        lines.append(f"  {cause}: {len(checks)} check{'s' if len(checks) != 1 else ''} "
                     f"({shown})")  # fmt: skip
    return lines


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
