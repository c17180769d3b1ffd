"""``mxref conform``: the conformance battery against an implementation (mxref.conformance)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxref.cli.help import ExamplesFormatter, examples
from mxref.cli.presets import check_preset_alone
from mxref.conformance import (
    DEFAULT_TIMEOUT,
    format_report,
    load_deviations,
    run_conformance,
    write_report_json,
)
from mxref.conformance.claims import Claims, load_claims
from mxref.conformance.golden import shipped_golden_dir
from mxref.conformance.junit import write_report_junit
from mxref.io import InputError, check_new
from mxref.presets import preset_names
from mxref.testing.backend import load_backend


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    parser = sub.add_parser(
        "conform",
        help="run the conformance battery against an MX implementation",
        description="Run the conformance checks (golden files, structured cases, a "
        "seeded random battery) against a Python quantize (--backend) or an external "
        "program (--command; see docs/conformance.md), comparing codes and scales with "
        "the exact oracle.  Exit status 0 when every check passes (declared deviations "
        "excluded), 3 when the backend differs only in implementation-defined choices "
        "(passes with a warning), 1 for a spec violation, an unexplained golden case or "
        "a backend error, 2 for bad input.",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref conform --backend mypkg.mx:quantize",
            "mxref conform --backend mypkg.mx:quantize --rounding all --level 2 --json r.json",
            "mxref conform --backend mypkg.mx:quantize --junit conform.xml  # for CI",
            "mxref conform --command './sim --in {in} --out {out}' --deviations known.toml",
            "mxref conform --backend mypkg.mx:quantize --preset cublas",
            "mxref conform --backend mypkg.mx:quantize --rounding all --claims roundings=rne",
        ),
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mxref conform`` arguments to ``parser`` and set ``func=run``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``conform`` subparser.
    """
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--backend",
        metavar="MODULE:FUNCTION",
        help="Python quantize with mxref.quantize's signature",
    )
    which.add_argument(
        "--command",
        metavar="'SIM --in {in} --out {out}'",
        help="external program speaking the .npz exchange protocol (docs/conformance.md)",
    )
    parser.add_argument(
        "--pack", metavar="MODULE:FUNCTION", help="pack with mxref.pack's signature (packing area)"
    )
    parser.add_argument(
        "--matmul",
        metavar="MODULE:FUNCTION",
        help="matmul with mxref.matmul's signature (GEMM area)",
    )
    parser.add_argument(
        "--dequantize",
        metavar="MODULE:FUNCTION",
        help="dequantize with mxref.dequantize's signature (golden decode files)",
    )
    parser.add_argument(
        "--accum",
        default="exact",
        metavar="MODEL",
        help="accumulation model of --matmul (default: %(default)s)",
    )
    gold = parser.add_mutually_exclusive_group()
    gold.add_argument(
        "--golden",
        metavar="DIR",
        help="golden files to verify (default: the ones shipped with mxref)",
    )
    gold.add_argument("--no-golden", action="store_true", help="do not verify golden files")
    parser.add_argument(
        "--deviations", metavar="FILE", help="known deviations, JSON or TOML: check id -> reason"
    )
    parser.add_argument(
        "--level",
        type=int,
        default=1,
        choices=(1, 2),
        help="1: quick (default); 2: many more cases",
    )
    parser.add_argument(
        "--format", default="all", metavar="LIST", help="formats, comma-separated (default: all)"
    )
    parser.add_argument(
        "--scale-rule",
        metavar="LIST",
        help="scale rules to test, comma-separated or 'all' (default: floor)",
    )
    parser.add_argument(
        "--rounding",
        metavar="LIST",
        help="roundings, or 'all' = rne,away,zero (default: rne)",
    )
    parser.add_argument(
        "--overflow",
        metavar="LIST",
        help="overflow policies, or 'all' (default: saturate)",
    )
    parser.add_argument(
        "--claims",
        metavar="'KIND=NAMES;...'",
        help="what the backend implements, e.g. 'roundings=rne;scale_rules=floor' (kinds: "
        "formats, scale_rules, roundings, overflows); the rest is reported as not claimed. "
        "Also read from a [claims] table of --deviations",
    )
    parser.add_argument(
        "--preset",
        metavar="{" + ",".join(preset_names()) + "}",
        help="the backend reproduces this preset: its policies and quirks are tested "
        "(instead of --scale-rule, --rounding, --overflow)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random battery seed (default: 0)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="limit per --command run (default: %(default)g)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--junit", metavar="PATH",
                        help="also write the report as JUnit XML (one test case per check)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing --json or --junit file")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mxref conform``: run the battery, print the summary, optionally write JSON.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed with :func:`add_arguments`.

    Returns
    -------
    int
        0 when every check passes (declared deviations excluded), 3 when only
        implementation-defined choices differ, 1 otherwise
        (:class:`mxref.conformance.verdict.Verdict`).

    Raises
    ------
    InputError, ValueError
        For bad input; :func:`mxref.cli.main` reports it as one line and
        exits with status 2.
    """
    outputs = [p for p in (args.json, args.junit) if p is not None]
    if outputs:
        # before the run, which takes a while
        check_new(outputs, force=args.force, option="--force")
    check_preset_alone(args)
    deviations = load_deviations(args.deviations) if args.deviations is not None else None
    claims = Claims.parse(args.claims) if args.claims is not None else None
    if args.deviations is not None:
        in_file = load_claims(args.deviations)
        if in_file is not None and claims is not None:
            raise InputError(f"--claims and the claims table of {args.deviations} both say what "
                             "the backend implements; keep one")  # fmt: skip
        claims = claims or in_file
    golden: Path | None = None
    if args.golden is not None:
        golden = Path(args.golden)
        if not golden.is_dir():
            raise InputError(f"{golden}: --golden must be a directory of golden files")
    elif not args.no_golden:
        golden = shipped_golden_dir()
    report = run_conformance(
        load_backend(args.backend) if args.backend is not None else None,
        command=args.command,
        pack=load_backend(args.pack) if args.pack is not None else None,
        matmul=load_backend(args.matmul) if args.matmul is not None else None,
        accum=args.accum,
        dequantize=load_backend(args.dequantize) if args.dequantize is not None else None,
        golden=golden,
        deviations=deviations,
        level=args.level,
        formats=args.format,
        scale_rules=args.scale_rule,
        roundings=args.rounding,
        overflows=args.overflow,
        seed=args.seed,
        preset=args.preset,
        claims=claims,
        timeout=args.timeout,
        name=args.backend if args.backend is not None else None,
    )
    sys.stdout.write(format_report(report))
    if args.json is not None:
        write_report_json(args.json, report, force=args.force)
    if args.junit is not None:
        write_report_junit(args.junit, report, force=args.force)
    return report.exit_status
