"""``mxref golden generate|verify``: the golden vector files (:mod:`mxref.conformance.golden`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mxref.cli.help import ExamplesFormatter, examples
from mxref.conformance.claims import Claims
from mxref.conformance.golden import generate, mxref_backend, shipped_golden_dir, verify
from mxref.io import InputError, check_new
from mxref.testing.backend import load_backend


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    parser = sub.add_parser(
        "golden",
        help="generate or verify the golden vector files",
        description="Generate the golden vector files from the exact oracle, or verify "
        "them against the MANIFEST and run an implementation on every case (see "
        "docs/golden_format.md).",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref golden verify",
            "mxref golden verify --backend mypkg.mx:quantize --json golden.json",
            "mxref golden generate --dir my_golden",
        ),
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``mxref golden generate`` and ``mxref golden verify`` to the ``golden`` subparser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``golden`` subparser of :mod:`mxref.cli`.
    """
    sub = parser.add_subparsers(dest="golden_command", required=True, metavar="ACTION")
    gen = sub.add_parser(
        "generate",
        help="write the golden files and their MANIFEST from the oracle",
        description="Write every golden file and the MANIFEST into --dir, from the exact "
        "oracle only; the bytes are the same on every run.",
    )
    gen.add_argument(
        "--dir",
        help="golden directory (default: the one shipped with mxref, which needs --force)",
    )
    gen.add_argument("--force", action="store_true", help="replace existing files")
    gen.set_defaults(func=run_generate)
    ver = sub.add_parser(
        "verify",
        help="check the golden files against the MANIFEST and run an implementation on them",
        description="Check every golden file against the MANIFEST, then run mxref (or the "
        "quantize named by --backend) on every case, comparing bits exactly.  Exit status 0 "
        "when everything run passes, 1 when a case fails or a file does not match the "
        "MANIFEST, 2 for bad input.",
    )
    ver.add_argument("--dir", help="golden directory (default: the one shipped with mxref)")
    ver.add_argument(
        "--backend",
        metavar="MODULE:FUNCTION",
        help="a quantize with mxref.quantize's signature; packing, GEMM and decode cases "
        "are then reported 'not provided' (default: mxref itself, every operation)",
    )
    ver.add_argument(
        "--claims",
        metavar="'KIND=NAMES;...'",
        help="what --backend implements, e.g. 'roundings=rne;scale_rules=floor'; cases of "
        "anything else are reported not provided",
    )
    ver.add_argument("--json", metavar="REPORT.json", help="also write the report as JSON")
    ver.set_defaults(func=run_verify)


def run_generate(args: argparse.Namespace) -> int:
    """Run ``mxref golden generate``.

    Returns
    -------
    int
        0 on success.
    """
    result = generate(args.dir or shipped_golden_dir(), force=args.force)
    print(
        f"wrote {len(result.files)} files ({result.total_bytes} bytes) to {result.directory} "
        f"in {result.seconds:.1f} s"
    )
    for name in result.stale:
        print(f"note: {name} is not a generated file; verify will report it as extra")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Run ``mxref golden verify``.

    Returns
    -------
    int
        0 when the report is ok, 1 otherwise.
    """
    if args.json is not None:
        check_new([args.json], force=True)  # a report is rewritten, but its folder must exist
    directory = args.dir or shipped_golden_dir()
    if args.claims is not None and not args.backend:
        raise InputError("--claims describes a --backend; mxref itself implements everything")
    # a backend claims every MX format and policy unless told otherwise; NVFP4 by name
    claims = Claims.parse(args.claims) if args.claims is not None else Claims()
    if args.backend:
        report = verify(directory, quantize=load_backend(args.backend), backend_name=args.backend,
                        claims=claims)  # fmt: skip
    else:
        ops = mxref_backend()
        report = verify(directory, quantize=ops["quantize"], pack=ops["pack"],
                        matmul=ops["matmul"], dequantize=ops["dequantize"],
                        backend_name="mxref")  # fmt: skip
    more = f"all of them are in {args.json}" if args.json else \
        "rerun with --json REPORT.json to list all of them"  # fmt: skip
    print(report.summary(more))
    if args.json is not None:
        Path(args.json).write_text(report.to_json(), encoding="utf-8")
    return 0 if report.ok else 1
