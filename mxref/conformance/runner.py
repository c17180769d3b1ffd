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

    (a) the golden files (``mxref/golden_vectors/``), through
        :func:`mxref.conformance.golden.verify` (only the files of the
        selected formats, policies and accumulation model count; their checks
        are ``golden.<area>.<file>``);
    (b) structured cases: every power of two and its float32 neighbours as
        amax, the scale rules' significand thresholds, every code, every
        midpoint of adjacent codes and the floats beside it, the overflow
        midpoint, NaN/Inf/zero blocks, signed zeros, float32 subnormals;
    (c) a seeded random battery of hard blocks (forced amax, exact ties,
        narrow-exponent bit patterns), the same for a given ``--seed``.

    ``--level 2`` runs many more cases with the same check ids.

Exit status
    0 when every check passes (a failing check declared as a deviation
    counts as passing), 3 when every failing case is an implementation-defined
    difference or a golden case explained by one (passes with a warning;
    :mod:`mxref.conformance.verdict`), 1 for a spec violation, an unexplained
    golden case or a backend error, 2 for bad input (a backend
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
    A check in which the backend raised or gave no usable output fails even
    when declared: an exception is never a deviation.

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

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.backends import (
    Backend,
    BackendError,
    BackendOutput,
    CallableBackend,
    CommandBackend,
    _one_line,
    as_quantize,
)
from mxref.conformance.batches import _Batch, _hex8, _hex32, build_batch, oracle_quantize
from mxref.conformance.checks import _CHECK_LIST, DEFAULT_TIMEOUT, NV_CHECK_LIST, Config
from mxref.conformance.claims import CLAIM_KINDS, Claims
from mxref.conformance.deviations import _declared
from mxref.conformance.gemm_checks import _run_matmul_backend
from mxref.conformance.golden_checks import _run_golden
from mxref.conformance.nvfp4_checks import run_nv_decode, run_nv_pack, run_nv_quantize
from mxref.conformance.report import CaseFailure, CheckResult, ConformReport, _lanes, _Tally
from mxref.conformance.selection import _parse_list, _Selection
from mxref.formats import DEFAULT_BLOCK_SIZE, ElementFormat, get_format, mx_format_names
from mxref.io import InputError, PathLike
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import get_preset
from mxref.testing.cases import case_rng


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
                error=out is None,
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

        tally.add(check, failure, error=error is not None)


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
        rng = case_rng(seed, "packing", fmt.name)
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
    scale_rules: str | Sequence[str] | None = None,
    roundings: str | Sequence[str] | None = None,
    overflows: str | Sequence[str] | None = None,
    seed: int = 0,
    preset: str | None = None,
    claims: Claims | None = None,
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
        :func:`mxref.conformance.golden.verify`: the files of the selected formats,
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
    preset : str, optional
        The backend claims to reproduce this preset (:mod:`mxref.presets`):
        its policies are the ones run (so none may be given), the oracle
        applies its quirks, and the backend is called with ``preset=``.
        Golden files hold the spec's conversions only, so they are not run
        for a preset with quirks (torchao, microxcaling).
    claims : Claims, optional
        What the backend implements (:mod:`mxref.conformance.claims`): of the
        selected formats and policies only the claimed ones run (golden files
        and the packing and GEMM areas included); the rest is reported as not
        claimed.  Default: it claims everything.
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
    names = mx_format_names()
    # NVFP4 runs when named, or claimed by name: "all" is every MX format, and nvfp4
    # when the claims name it (an MX implementation is not expected to do NVFP4)
    two_level = [n for n in CLAIM_KINDS["formats"][0] if n not in names]
    claimed_nv = [n for n in two_level if claims is not None and claims.covers(fmt=n)]
    fmts = [get_format(f, two_level=True)
            for f in _parse_list(formats, names + two_level, names + claimed_nv, "format")]
    chosen = None
    if preset is not None:
        given = [n for n, v in (("scale rules", scale_rules), ("roundings", roundings),
                                ("overflows", overflows)) if v is not None]  # fmt: skip
        if given:
            raise InputError(f"the preset fixes the {', '.join(given)}; give one or the other")
        chosen = get_preset(preset)
        scale_rules, roundings = chosen.scale_rule.value, chosen.rounding.value
        overflows = chosen.overflow.value
        if chosen.divisor_min_exponent != -127 or not chosen.keep_negative_zero:
            golden = None
    rules = _parse_list(scale_rules if scale_rules is not None else "floor",
                        [r.value for r in ScaleRule], [r.value for r in ScaleRule], "scale rule")
    rnds = _parse_list(roundings if roundings is not None else "rne",
                       [r.value for r in Rounding], ["rne", "away", "zero"], "rounding")
    every_overflow = [o.value for o in Overflow]
    ovfs = _parse_list(overflows if overflows is not None else "saturate",
                       every_overflow, every_overflow, "overflow")  # fmt: skip
    if claims is not None:
        fmts = [f for f in fmts if claims.covers(fmt=f.name)]
        rules = [r for r in rules if claims.covers(scale_rule=r)]
        rnds = [r for r in rnds if claims.covers(rounding=r)]
        ovfs = [o for o in ovfs if claims.covers(overflow=o)]
        empty = [kind for kind, left in (("format", fmts), ("scale rule", rules),
                 ("rounding", rnds), ("overflow", ovfs)) if not left]  # fmt: skip
        if empty:
            raise InputError(f"no selected {' or '.join(empty)} is claimed by the backend; "
                             "select one it claims")  # fmt: skip
    if matmul is not None:
        from mxref.accum import parse_accum

        parse_accum(accum)  # a bad model is bad input, before anything runs
    declared = dict(deviations or {})

    tally = _Tally()
    had_packed = False
    nv = [f for f in fmts if f.two_level]
    fmts = [f for f in fmts if not f.two_level]
    if nv and chosen is not None:
        raise InputError(f"--preset {chosen.name} is an MX implementation; nvfp4 has no preset "
                         "(select MX formats with --format)")  # fmt: skip
    if nv:
        run_nv_quantize(backend, rnds, level, seed, tally)
        if pack is not None:
            run_nv_pack(pack, level, seed, tally)
        if dequantize is not None:
            run_nv_decode(dequantize, seed, tally)
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
                        None if chosen is None else chosen.name,
                    )
                    had_packed |= _run_batch(backend, build_batch(cfg, level, seed), tally)
    if pack is not None:
        _run_pack_backend(pack, fmts, level, seed, tally)
    if matmul is not None:
        _run_matmul_backend(matmul, accum, fmts, level, seed, tally)
    infos = list(_CHECK_LIST) + list(NV_CHECK_LIST)
    golden_account = None
    if golden is not None:
        sel = _Selection(
            formats=frozenset(f.name for f in fmts + nv),
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
    if not fmts:
        not_run.update({area: "no MX format selected" for area in not_run if area != "golden"})
        not_run.update({area: "no MX format selected" for area in ("scale", "rounding",
                                                                   "saturation", "special")})

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
                # a check that errored shows its first error: the root cause to fix first
                first_failure=tally.first_error.get(info.id, tally.first.get(info.id)),
                deviation=_declared(info.id, declared),
                errors=tally.errors.get(info.id, 0),
                classes=tally.classes_of(info.id),
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
            "format": [f.name for f in fmts + nv],
            "scale_rule": rules,
            "rounding": rnds,
            "overflow": ovfs,
            "block_size": [str(DEFAULT_BLOCK_SIZE)] * bool(fmts) + ["16"] * bool(nv),
            "accum": [accum] if matmul is not None else [],
        },
        checks=tuple(results),
        unobserved=tuple(unobserved),
        not_run=not_run,
        golden=golden_account,
        not_claimed=tuple(claims.not_claimed()) if claims is not None else (),
    )
