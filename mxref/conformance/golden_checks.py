"""The golden files inside ``mxref conform``: which ones a selection covers.

Their failures become the run's checks.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.checks import AREAS, CheckInfo
from mxref.conformance.golden import parse_golden, verify
from mxref.conformance.report import CaseFailure, _Tally
from mxref.conformance.selection import NotSelected, _Selection
from mxref.formats import DEFAULT_BLOCK_SIZE, FORMATS, get_format


def _golden_file_name_for(accum: str) -> str:
    return "gemm_" + re.sub(r"[^a-z0-9]+", "_", accum.strip().lower()).strip("_") + ".hex"


_FMT_ALT = "|".join(sorted(FORMATS, key=len, reverse=True))


_ENCODE_FILE = re.compile(
    rf"encode_(?P<fmt>{_FMT_ALT})_(?P<rule>[a-z0-9_]+?)_(?P<rnd>rne|away|zero|stochastic)"
    r"(?P<ieee>_ieee)?\.hex"
)


_FMT_FILE = re.compile(rf"(?:pack|decode)_(?P<fmt>{_FMT_ALT})\.hex")


_NV_ENCODE_FILE = re.compile(r"encode_nvfp4_(?P<rnd>rne|away|zero)(?:_per_row|_given)?\.hex")


def _golden_file_selected(name: str, sel: _Selection) -> bool:
    """Whether a golden file's name puts it inside the selection (whole-file choices)."""
    m = _NV_ENCODE_FILE.fullmatch(name)
    if m:
        return "nvfp4" in sel.formats and m["rnd"] in sel.roundings
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
        **nvfp4: Any,
    ) -> Any:
        if get_format(fmt, two_level=True).two_level:  # per_row, tensor_scale: no MX policies
            if not sel.quantize_nv(rounding):
                raise NotSelected("outside the selected formats and roundings")
            return quantize(x, fmt, axis=axis, block_size=block_size, rounding=rounding, **nvfp4)
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

    def p(mx: MXArray, **layout: Any) -> Any:
        if mx.fmt.name not in sel.formats:
            raise NotSelected("outside the selected formats")
        assert pack is not None
        return pack(mx, **layout)

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


def _golden_failure(check: str, f: CaseFailure) -> CaseFailure:
    """A golden case's failure, under the conform check it counts for."""
    return dataclasses.replace(f, check=check)


def _golden_area(
    directory: Path, name: str, garea: str, counts: Any, failed: int, tally: _Tally
) -> CheckInfo:
    """Tally one golden file's cases of one area as check ``golden.<area>.<file>``."""
    area = garea if garea in AREAS else "special"
    check = f"golden.{area}.{name.rsplit('.', 1)[0]}"
    # unselected cases (NotSelected) are not the backend's; each other failure is traced
    cases = [f for f in counts.failures if not (f.error or "").startswith("NotSelected")]
    for _ in range(counts.passed):
        tally.add(check, None)
    for i in range(failed):
        if i >= len(cases):
            hint = ["see `mxref golden verify` for the failing lines"]
            fallback = CaseFailure(check, f"{directory}/{name}", {}, {}, {}, hint)
            tally.add(check, functools.partial(_given, fallback))
        else:
            tally.add(check, functools.partial(_golden_failure, check, cases[i]),
                      error=cases[i].error is not None)  # fmt: skip
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
