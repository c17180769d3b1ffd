"""A conformance report as JUnit XML, for the CI systems hardware teams run.

One ``<testsuite>`` per spec area, one ``<testcase>`` per check:

- a failing check is a ``<failure>`` (its message the count and the check's
  title, its text the first failing case as ``mxref conform`` prints it); a
  check in which the backend raised or gave no usable output is an
  ``<error>`` instead;
- a declared deviation passes, with the declared reason and its first case
  in ``<system-out>``;
- a check whose failing cases are all implementation-defined differences
  (:mod:`mxref.conformance.verdict`) passes with a ``WARNING`` in
  ``<system-out>``: the spec leaves the choice open;
- every failing check carries its class as the ``<property>``
  ``mxref.class`` (``spec``, ``impl``, ``golden``, ``error``, ``deviation``),
  and the top ``<testsuites>`` the run's verdict line and exit status;
- an area that did not run is one ``<testcase>`` marked ``<skipped>`` with
  the reason (no ``--matmul`` backend, ...).

The XML is written by :mod:`xml.etree.ElementTree`, so every message is
escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mxref.conformance.report import ConformReport, format_failure
from mxref.io import PathLike, write_new_text


def report_junit_xml(report: ConformReport) -> str:
    """``report`` as a JUnit XML document (one test suite per area, one case per check)."""
    root = ET.Element("testsuites", name=f"mxref conform {report.backend}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    classes = report.check_classes()
    verdict = report.verdict()
    props = ET.SubElement(root, "properties")
    ET.SubElement(props, "property", name="mxref.verdict", value=verdict.summary())
    ET.SubElement(props, "property", name="mxref.exit_status", value=str(verdict.exit_status))
    for area in report.areas():
        suite = ET.SubElement(root, "testsuite", name=f"{area.area}: {area.title}")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        if area.not_run is not None:
            case = ET.SubElement(suite, "testcase", classname=f"mxref.conform.{area.area}",
                                 name=area.area)  # fmt: skip
            ET.SubElement(case, "skipped", message=f"not run: {area.not_run}")
            counts["tests"] += 1
            counts["skipped"] += 1
        for check in (c for c in report.checks if c.area == area.area):
            case = ET.SubElement(suite, "testcase", classname=f"mxref.conform.{area.area}",
                                 name=check.id)  # fmt: skip
            counts["tests"] += 1
            detail = "\n".join(format_failure(check.first_failure)) \
                if check.first_failure is not None else ""  # fmt: skip
            summary = f"{check.failed} of {check.cases} cases differ ({check.title}; " \
                f"spec {check.spec})"  # fmt: skip
            if check.status != "pass":
                cprops = ET.SubElement(case, "properties")
                ET.SubElement(cprops, "property", name="mxref.class", value=classes[check.id])
            if classes[check.id] == "impl":
                out = ET.SubElement(case, "system-out")
                out.text = f"WARNING (implementation-defined, not a violation): {summary}\n{detail}"
            elif check.status == "fail":
                tag = "error" if check.errors else "failure"
                counts["errors" if check.errors else "failures"] += 1
                element = ET.SubElement(case, tag, message=summary, type=tag)
                element.text = detail
            elif check.status == "deviation":
                out = ET.SubElement(case, "system-out")
                out.text = f"DEVIATION: {summary}\ndeclared: {check.deviation}\n{detail}"
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_report_junit(path: PathLike, report: ConformReport, *, force: bool = False) -> None:
    """Write ``report`` as JUnit XML (:func:`report_junit_xml`).

    Raises
    ------
    InputError
        ``path`` exists (without ``force``), is a directory, or its directory
        does not exist.
    """
    write_new_text(path, report_junit_xml(report), force=force)
