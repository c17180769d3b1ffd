"""Verifying golden files and running an implementation on every case, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.codec import quantize as mxref_quantize
from mxref.conformance.claims import Claims
from mxref.conformance.failures import CaseFailure
from mxref.conformance.golden.format import (
    _HOST_BY_NAME,
    BLOCK_SIZE,
    E8M0_PROBE,
    GENERATOR,
    MANIFEST,
    MAX_LISTED,
    UNLISTED,
    GoldenCase,
    GoldenFile,
    _code_digits,
    _hex,
    _split,
    parse_golden,
)
from mxref.conformance.golden.manifest import read_manifest
from mxref.conformance.golden.nvfp4 import run_decode_nv, run_encode_nv, run_pack_nv
from mxref.conformance.golden.oracle import _OUT_FORMATS
from mxref.formats import get_format
from mxref.io import InputError
from mxref.ref.array import HOST_FORMATS
from mxref.testing.backend import backend_output
from mxref.testing.cases import AREAS


@dataclass
class AreaCount:
    """Cases of one area: passed, failed, not run (the backend lacks the operation).

    Attributes
    ----------
    area : str
        One of :data:`AREAS`.
    passed, failed, not_provided : int
    first_failure : CaseFailure or None
        The first failing case of this area.
    failures : list of CaseFailure
        Every failing case of this area, in file order (``mxref conform``
        traces each to its root cause).
    """

    area: str
    passed: int = 0
    failed: int = 0
    not_provided: int = 0
    first_failure: CaseFailure | None = None
    failures: list[CaseFailure] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict."""
        first = None if self.first_failure is None else self.first_failure.to_dict()
        return {
            "passed": self.passed,
            "failed": self.failed,
            "not_provided": self.not_provided,
            "first_failure": first,
        }


@dataclass
class FileResult:
    """The verification of one golden file.

    ``status`` is ``"pass"``, ``"fail"``, ``"error"`` (the backend raised or
    returned something unusable; ``error`` says what), ``"not provided"``
    (the backend has no such operation) or ``"partial"`` (some cases passed,
    the others not provided).
    """

    name: str
    operation: str
    status: str = "pass"
    passed: int = 0
    failed: int = 0
    not_provided: int = 0
    areas: dict[str, AreaCount] = field(default_factory=dict)
    first_failure: CaseFailure | None = None
    error: str | None = None
    note: str | None = None

    def count(self, area: str, outcome: str, failure: CaseFailure | None = None) -> None:
        """Record one case's outcome (``passed``, ``failed`` or ``not_provided``)."""
        counts = self.areas.setdefault(area, AreaCount(area))
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        setattr(self, outcome, getattr(self, outcome) + 1)
        if failure is not None:
            counts.failures.append(failure)
            if counts.first_failure is None:
                counts.first_failure = failure
            if self.first_failure is None:
                self.first_failure = failure

    def finish(self) -> None:
        """Set ``status`` from the counts."""
        if self.error is not None:
            self.status = "error"
        elif self.failed:
            self.status = "fail"
        elif self.not_provided and not self.passed:
            self.status = "not provided"
        elif self.not_provided:
            self.status = "partial"
        else:
            self.status = "pass"

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict."""
        return {
            "name": self.name,
            "operation": self.operation,
            "status": self.status,
            "passed": self.passed,
            "failed": self.failed,
            "not_provided": self.not_provided,
            "areas": {a: c.to_dict() for a, c in sorted(self.areas.items())},
            "first_failure": None if self.first_failure is None else self.first_failure.to_dict(),
            "error": self.error,
            "note": self.note,
        }


@dataclass(frozen=True)
class IntegrityProblem:
    """A file that does not match the MANIFEST (``missing``, ``extra``, ``modified``, ...)."""

    file: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        """As a plain dict."""
        return {"file": self.file, "problem": self.problem}


@dataclass
class VerifyReport:
    """The result of :func:`verify`.

    Attributes
    ----------
    directory : str
    generator : str or None
        From the MANIFEST.
    seed : int or None
        From the MANIFEST.
    integrity : list of IntegrityProblem
        Files missing, extra, modified or of another generator; their cases
        were not used.
    files : list of FileResult
        One per verified file.
    backend : str
        What was verified (for the report).

    Spec: OCP MX v1.0 sections 5.1, 6.2 and 6.3 (the areas the cases exercise).
    """

    directory: str
    generator: str | None = None
    seed: int | None = None
    integrity: list[IntegrityProblem] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    backend: str = ""

    @property
    def ok(self) -> bool:
        """True when every file matched the MANIFEST and no case failed.

        Cases the backend could not run ("not provided") do not fail; see
        :attr:`complete`.
        """
        return not self.integrity and all(f.status not in ("fail", "error") for f in self.files)

    @property
    def complete(self) -> bool:
        """True when :attr:`ok` and every case was run (nothing "not provided")."""
        return self.ok and all(f.not_provided == 0 for f in self.files)

    @property
    def areas(self) -> list[AreaCount]:
        """Pass, fail and not-provided counts per area over all files, in :data:`AREAS` order.

        Only areas with cases are listed; each carries its first failing case.
        """
        total = {a: AreaCount(a) for a in AREAS}
        for f in self.files:
            for area, c in f.areas.items():
                t = total.setdefault(area, AreaCount(area))
                t.passed += c.passed
                t.failed += c.failed
                t.not_provided += c.not_provided
                if t.first_failure is None:
                    t.first_failure = c.first_failure
        return [c for c in total.values() if c.passed or c.failed or c.not_provided]

    def area(self, name: str) -> AreaCount:
        """The counts of one area (zeros if it has no cases)."""
        for c in self.areas:
            if c.area == name:
                return c
        return AreaCount(name)

    @property
    def failed_areas(self) -> list[str]:
        """Areas with at least one failing case."""
        return [c.area for c in self.areas if c.failed]

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-serialisable data."""
        return {
            "ok": self.ok,
            "complete": self.complete,
            "directory": self.directory,
            "backend": self.backend,
            "generator": self.generator,
            "seed": self.seed,
            "integrity": [p.to_dict() for p in self.integrity],
            "areas": {c.area: c.to_dict() for c in self.areas},
            "files": [f.to_dict() for f in self.files],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def summary(self, more: str = "all of them are in to_dict()") -> str:
        """A text summary: integrity, per-area counts, failing files and their first case.

        Parameters
        ----------
        more : str
            Where the failing files beyond the first :data:`MAX_LISTED` are
            listed (the command line points to its ``--json`` report).
        """
        lines = [
            f"golden verify: {self.directory} ({self.generator or 'no generator'}, "
            f"seed {self.seed}){' against ' + self.backend if self.backend else ''}"
        ]
        if self.integrity:
            lines.append(f"integrity: {len(self.integrity)} problem(s); those files were not used:")
            lines += [f"  {p.file}: {p.problem}" for p in self.integrity]
        else:
            lines.append(f"integrity: {len(self.files)} files match the MANIFEST")
        lines.append(f"  {'area':<11}{'passed':>8}{'failed':>8}{'not provided':>14}")
        for c in self.areas:
            lines.append(f"  {c.area:<11}{c.passed:>8}{c.failed:>8}{c.not_provided:>14}")
        by_status: dict[str, int] = {}
        for f in self.files:
            by_status[f.status] = by_status.get(f.status, 0) + 1
        lines.append("files: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())))
        shown = 0
        for f in self.files:
            if f.status in ("fail", "error"):
                shown += 1
                if shown > MAX_LISTED:
                    continue
                total = f.passed + f.failed
                head = f"FAIL {f.name}: {f.failed} of {total} cases failed"
                if f.error:
                    head = f"ERROR {f.name}: {f.error}"
                lines.append(head)
                if f.first_failure is not None:
                    lines.append("  first: " + f.first_failure.text().replace("\n", "\n  "))
        if shown > MAX_LISTED:
            lines.append(f"... and {shown - MAX_LISTED} more failing files ({more})")
        groups: dict[str, list[FileResult]] = {}
        for f in self.files:
            if f.not_provided:
                groups.setdefault(f.note or "the backend lacks this operation", []).append(f)
        for note, files in groups.items():
            count = sum(f.not_provided for f in files)
            names = ", ".join(f.name for f in files)
            lines.append(f"NOT PROVIDED ({note}): {count} cases not run, in {names}")
        verdict = "PASS" if self.ok else "FAIL"
        if self.ok and not self.complete:
            verdict = "PASS (some areas not provided)"
        lines.append(f"result: {verdict}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _u8(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"expected integer codes or scales; got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    return arr


def _bits_of(a: Any, width: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(a))
    if arr.dtype.itemsize * 2 != width or arr.dtype.kind != "f":
        raise TypeError(f"expected a {width * 4}-bit float result; got dtype {arr.dtype}")
    return arr.view({2: np.uint16, 4: np.uint32}[arr.dtype.itemsize])


def _failure(file: str, case: GoldenCase, expected: str, got: str | None,
             error: str | None = None) -> CaseFailure:  # fmt: skip
    """A golden case's failure: its tokens, and which output tokens differ."""
    want = expected.upper().split()
    words = [] if got is None else got.upper().split()
    if error is not None:
        differs = ["no output"]
    elif len(want) == len(words):
        positions = [i for i, (w, g) in enumerate(zip(want, words, strict=True)) if w != g]
        differs = ["output tokens " + ", ".join(map(str, positions)) + " (0-based)"]
    else:
        differs = [f"{len(words)} output tokens; expected {len(want)}"]
    return CaseFailure(
        check=case.area,
        where=f"{file}:{case.line} [{case.area}]",
        inputs={"case": case.input_text.split()},
        expected={"outputs": expected.split()},
        got={} if got is None else {"outputs": got.split()},
        differs=differs,
        error=error,
        file=file,
        line=case.line,
    )


class _Runner:
    """Runs one file's cases on the backend and fills a FileResult."""

    def __init__(self, name: str, operation: str) -> None:
        self.result = FileResult(name, operation)

    def check(self, case: GoldenCase, expected: str, got: str) -> None:
        if expected.upper() == got.upper():
            self.result.count(case.area, "passed")
            return
        self.result.count(case.area, "failed", _failure(self.result.name, case, expected, got))

    def not_provided(self, cases: Iterable[GoldenCase], what: str) -> None:
        for case in cases:
            self.result.count(case.area, "not_provided")
        self.result.note = f"the backend provides no {what}"

    def not_claimed(self, cases: Iterable[GoldenCase], what: str) -> None:
        """Count ``cases`` as not run: the backend does not claim ``what``."""
        for case in cases:
            self.result.count(case.area, "not_provided")
        self.result.note = f"not claimed by the backend: {what}"

    def error(self, cases: Sequence[GoldenCase], exc: BaseException) -> None:
        """Count ``cases`` as failed because the backend raised ``exc`` on them."""
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        if self.result.error is None:
            self.result.error = message
        for c in cases:
            failure = _failure(self.result.name, c, " ".join(c.outputs), None, error=message)
            self.result.count(c.area, "failed", failure)


Backend = dict[str, Callable[..., Any] | None]


def _run_encode(
    runner: _Runner,
    cases: Sequence[GoldenCase],
    params: dict[str, str],
    quantize: Callable[..., Any],
    claims: Claims | None = None,
) -> None:
    """Quantize the cases (same parameters) as one array, one row per case."""
    fmt = get_format(params["format"])
    policy = (params.get("scale_rule", "floor"), params.get("rounding", "rne"),
              params.get("overflow", "saturate"))  # fmt: skip
    if claims is not None and not claims.covers(fmt.name, *policy):
        runner.not_claimed(cases, f"{fmt.name} {'/'.join(policy)}")
        return
    digits = _code_digits(fmt)
    bs = int(params.get("block_size", BLOCK_SIZE))
    dtype = _HOST_BY_NAME[params.get("input", "float32")]
    width = np.dtype(dtype).itemsize * 2
    uint = HOST_FORMATS[np.dtype(dtype)][1]
    seed_text = params.get("stochastic_seed")
    seed = int(seed_text) if seed_text is not None else None
    lengths = {len(c.inputs) for c in cases}
    if len(lengths) != 1:
        for c in cases:  # regressions: one call per case
            _run_encode(runner, [c], params, quantize, claims)
        return
    for c in cases:
        if any(len(t) != width for t in c.inputs):
            raise ValueError(f"line {c.line}: inputs must be {width}-digit hex words")
    x = np.array([[int(t, 16) for t in c.inputs] for c in cases], uint).view(dtype)
    try:
        result = quantize(
            x,
            fmt.name,
            axis=-1,
            block_size=bs,
            scale_rule=params.get("scale_rule", "floor"),
            rounding=params.get("rounding", "rne"),
            overflow=params.get("overflow", "saturate"),
            seed=seed,
        )
        # the one backend contract every harness checks (docs/conformance.md)
        codes, scales = backend_output(result, x.shape, -1, bs, fmt.code_count)
    except Exception as exc:  # the backend under test may raise anything
        runner.error(cases, exc)
        return
    for i, c in enumerate(cases):
        got = (
            " ".join(_hex(int(s), 2) for s in scales[i])
            + " "
            + " ".join(_hex(int(v), digits) for v in codes[i])
        )
        runner.check(c, " ".join(c.outputs), got)


def _run_decode(
    runner: _Runner,
    cases: Sequence[GoldenCase],
    header: dict[str, str],
    dequantize: Callable[..., Any] | None,
    scale_file: bool,
) -> None:
    if dequantize is None:
        runner.not_provided(cases, "dequantize")
        return
    try:
        if scale_file:
            fmt = get_format(E8M0_PROBE[0])
            scales = np.array([int(c.inputs[0], 16) for c in cases], np.uint8)
            codes = np.full((len(cases), BLOCK_SIZE), E8M0_PROBE[1], np.uint8)
            mx = MXArray(
                codes=codes, scales=scales[:, None], fmt=fmt, axis=1, block_size=BLOCK_SIZE
            )
            out = _bits_of(dequantize(mx, np.float32), 8)
            if out.shape != codes.shape:
                raise ValueError(f"dequantize returned shape {out.shape}; expected {codes.shape}")
            got = [int(v) for v in out[:, 0]]
        else:
            fmt = get_format(header["format"])
            byte = int(header.get("scale", "7F"), 16)
            codes = np.array([int(c.inputs[0], 16) for c in cases], np.uint8)
            nb = -(-codes.size // BLOCK_SIZE)
            mx = MXArray(
                codes=codes,
                scales=np.full(nb, byte, np.uint8),
                fmt=fmt,
                axis=0,
                block_size=BLOCK_SIZE,
            )
            out = _bits_of(dequantize(mx, np.float32), 8)
            if out.shape != codes.shape:
                raise ValueError(f"dequantize returned shape {out.shape}; expected {codes.shape}")
            got = [int(v) for v in out]
    except Exception as exc:  # the backend under test may raise anything
        runner.error(cases, exc)
        return
    for c, g in zip(cases, got, strict=True):
        runner.check(c, " ".join(c.outputs), _hex(g, 8))


def _run_pack(
    runner: _Runner,
    cases: Sequence[GoldenCase],
    header: dict[str, str],
    pack: Callable[..., Any] | None,
) -> None:
    if pack is None:
        runner.not_provided(cases, "pack")
        return
    fmt = get_format(header["format"])
    digits = _code_digits(fmt)
    for c in cases:
        n_text, token = c.inputs
        codes = np.array(_split(token, digits), np.uint8)
        if len(codes) != int(n_text):
            raise ValueError(f"line {c.line}: {n_text} codes announced, {len(codes)} given")
        mx = MXArray(
            codes=codes,
            scales=np.full(-(-codes.size // BLOCK_SIZE), 0x7F, np.uint8),
            fmt=fmt,
            axis=0,
            block_size=BLOCK_SIZE,
        )
        try:
            result = pack(mx)
            data = _u8(getattr(result, "data", result)).reshape(-1)
        except Exception as exc:  # the backend under test may raise anything
            runner.error([c], exc)
            continue
        runner.check(c, " ".join(c.outputs), bytes(data.tolist()).hex().upper())


def _run_gemm_case(
    runner: _Runner, c: GoldenCase, params: dict[str, str], matmul: Callable[..., Any]
) -> None:
    fa, fb, k_text, ac, asc, bc, bsc = c.inputs
    fmt_a, fmt_b = get_format(fa), get_format(fb)
    k = int(k_text)
    a_codes = np.array([_split(ac, _code_digits(fmt_a))], np.uint8)
    b_codes = np.array([_split(bc, _code_digits(fmt_b))], np.uint8)
    if a_codes.shape[1] != k or b_codes.shape[1] != k:
        raise ValueError(f"line {c.line}: K = {k} but the codes have another length")
    a = MXArray(
        codes=a_codes,
        scales=np.array([_split(asc, 2)], np.uint8),
        fmt=fmt_a,
        axis=1,
        block_size=BLOCK_SIZE,
    )
    b = MXArray(
        codes=b_codes,
        scales=np.array([_split(bsc, 2)], np.uint8),
        fmt=fmt_b,
        axis=1,
        block_size=BLOCK_SIZE,
    )
    out = params.get("output", "float32")
    _, dtype, _, width = _OUT_FORMATS[out]
    c_text = params.get("c", "none")
    c_arr = None if c_text == "none" else np.array([[int(c_text, 16)]], np.uint32).view(np.float32)
    try:
        d = matmul(a, b, accum=params["accum"], out_dtype=dtype, c=c_arr)
        bits = _bits_of(d, width).reshape(-1)
        if bits.size != 1:
            raise ValueError(f"matmul returned {bits.size} values for a 1 x 1 product")
    except Exception as exc:  # the backend under test may raise anything
        runner.error([c], exc)
        return
    runner.check(c, " ".join(c.outputs), _hex(int(bits[0]), width))


def _verify_file(
    name: str, parsed: GoldenFile, backend: Backend, claims: Claims | None = None
) -> FileResult:
    header = parsed.header
    op = header.get("operation", "")
    runner = _Runner(name, op.split(":")[0])
    quantize, dequantize = backend["quantize"], backend["dequantize"]
    pack, matmul = backend["pack"], backend["matmul"]
    try:
        if op == "encode":
            assert quantize is not None
            _run_encode(runner, parsed.cases, header, quantize, claims)
        elif op == "decode":
            _run_decode(runner, parsed.cases, header, dequantize, scale_file=False)
        elif op == "decode_scale":
            _run_decode(runner, parsed.cases, header, dequantize, scale_file=True)
        elif op == "pack":
            _run_pack(runner, parsed.cases, header, pack)
        elif op == "encode_nv":
            assert quantize is not None
            run_encode_nv(runner, parsed.cases, header, quantize, claims)
        elif op == "decode_nv":
            run_decode_nv(runner, parsed.cases, dequantize)
        elif op == "pack_nv":
            run_pack_nv(runner, parsed.cases, pack)
        elif op == "gemm":
            if matmul is None:
                runner.not_provided(parsed.cases, "matmul")
            else:
                for c in parsed.cases:
                    _run_gemm_case(runner, c, header, matmul)
        elif op.startswith("mixed"):
            for c in parsed.cases:
                params = dict(c.params)
                if c.op == "encode":
                    assert quantize is not None
                    _run_encode(runner, [c], params, quantize, claims)
                elif c.op == "gemm":
                    if matmul is None:
                        runner.not_provided([c], "matmul")
                    else:
                        params.setdefault("accum", "exact")
                        _run_gemm_case(runner, c, params, matmul)
                else:
                    raise ValueError(f"line {c.line}: unknown operation {c.op!r}")
        else:
            raise ValueError(f"unknown operation {op!r} in the header")
    except (ValueError, KeyError) as exc:
        runner.result.error = f"malformed golden file: {exc}"
    runner.result.finish()
    return runner.result


def verify(
    directory: str | Path,
    *,
    quantize: Callable[..., Any] = mxref_quantize,
    pack: Callable[..., Any] | None = None,
    matmul: Callable[..., Any] | None = None,
    dequantize: Callable[..., Any] | None = None,
    backend_name: str = "",
    claims: Claims | None = None,
) -> VerifyReport:
    """Check the golden files against the MANIFEST, then run an implementation on every case.

    Parameters
    ----------
    directory : str or Path
        A golden directory (with its MANIFEST).
    quantize : callable, optional
        The quantize under test, with :func:`mxref.quantize`'s signature; its
        result is read with :func:`mxref.testing.backend.codes_and_scales`.
        Default :func:`mxref.quantize`.
    pack : callable, optional
        ``pack(mx: MXArray)`` returning an object with a uint8 ``.data`` (as
        :func:`mxref.pack`) or the bytes as a uint8 array.  None: the packing
        files are reported "not provided".
    matmul : callable, optional
        ``matmul(a, b, *, accum, out_dtype, c)`` as :func:`mxref.matmul`,
        with B given N x K (blocked along axis 1).  None: the GEMM cases are
        reported "not provided".
    dequantize : callable, optional
        ``dequantize(mx, dtype)`` as :func:`mxref.dequantize`.  None: the
        decode files are reported "not provided".
    backend_name : str
        Shown in the report.
    claims : Claims, optional
        What the backend implements (:mod:`mxref.conformance.claims`): encode
        cases of other formats or policies are counted "not provided" with a
        note, not run.

    Returns
    -------
    VerifyReport
        Every integrity problem (missing, extra, modified file; such files
        are never used), then per file and per area the pass / fail /
        not-provided counts and the first failing case in hex.

    Raises
    ------
    InputError
        If ``directory`` is not a directory.

    Spec: OCP MX v1.0 sections 5.1, 6.2 and 6.3 (the golden cases are the oracle's).
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{root}: no such golden directory")
    report = VerifyReport(str(directory), backend=backend_name)
    try:
        manifest = read_manifest(root)
    except InputError as exc:
        report.integrity.append(IntegrityProblem(MANIFEST, str(exc)))
        return report
    report.generator, report.seed = manifest.generator, manifest.seed
    if manifest.generator != GENERATOR:
        report.integrity.append(
            IntegrityProblem(MANIFEST, f"generator {manifest.generator!r}, expected {GENERATOR!r}")
        )
    present = {p.name for p in root.iterdir()}
    for name in sorted(present - set(manifest.files) - UNLISTED):
        report.integrity.append(IntegrityProblem(name, "extra: not in the MANIFEST (not used)"))
    backend: Backend = {
        "quantize": quantize,
        "pack": pack,
        "matmul": matmul,
        "dequantize": dequantize,
    }
    for name, digest in sorted(manifest.files.items()):
        path = root / name
        if name not in present or not path.is_file():
            report.integrity.append(IntegrityProblem(name, "missing"))
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            report.integrity.append(
                IntegrityProblem(name, "modified: sha256 differs from the MANIFEST (not used)")
            )
            continue
        try:
            parsed = parse_golden(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            report.integrity.append(IntegrityProblem(name, f"unreadable: {exc}"))
            continue
        if parsed.header.get("generator") != GENERATOR:
            report.integrity.append(
                IntegrityProblem(
                    name, f"generator {parsed.header.get('generator')!r}, expected {GENERATOR!r}"
                )
            )
            continue
        report.files.append(_verify_file(name, parsed, backend, claims))
    return report


def mxref_backend() -> dict[str, Callable[..., Any]]:
    """mxref's own operations, as :func:`verify` keyword arguments.

    Spec: OCP MX v1.0 sections 5.1, 6.2 and 6.3 (what each operation implements).
    """
    import mxref

    return {
        "quantize": mxref.quantize,
        "pack": mxref.pack,
        "matmul": mxref.matmul,
        "dequantize": mxref.dequantize,
    }
