"""MX conformance: the battery ``mxref conform`` runs, its cases, backends and reports.

:mod:`mxref.conformance.runner` describes the battery, the ``--command``
protocol and the deviations file; docs/conformance.md is the user guide.
"""

from __future__ import annotations

from mxref.conformance.backends import (
    Backend,
    BackendError,
    BackendOutput,
    CallableBackend,
    CommandBackend,
    as_quantize,
)
from mxref.conformance.batches import build_batch, oracle_quantize
from mxref.conformance.checks import (
    AREAS,
    CHECKS,
    DEFAULT_TIMEOUT,
    PROTOCOL,
    CheckInfo,
    Config,
)
from mxref.conformance.deviations import load_deviations, parse_deviations
from mxref.conformance.failures import CaseFailure
from mxref.conformance.report import (
    AreaSummary,
    CheckResult,
    ConformReport,
    format_failure,
    format_report,
    write_report_json,
)
from mxref.conformance.runner import run_conformance
from mxref.conformance.selection import NotSelected

__all__ = [
    "AREAS",
    "AreaSummary",
    "Backend",
    "BackendError",
    "BackendOutput",
    "CHECKS",
    "CallableBackend",
    "CaseFailure",
    "CheckInfo",
    "CheckResult",
    "CommandBackend",
    "Config",
    "ConformReport",
    "DEFAULT_TIMEOUT",
    "NotSelected",
    "PROTOCOL",
    "as_quantize",
    "build_batch",
    "format_failure",
    "format_report",
    "load_deviations",
    "oracle_quantize",
    "parse_deviations",
    "run_conformance",
    "write_report_json",
]
