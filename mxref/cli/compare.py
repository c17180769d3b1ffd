"""``mxref compare``: an output against mxref's, bit for bit and in ULPs."""

from __future__ import annotations

import argparse
import sys

from mxref.cli.help import ExamplesFormatter, examples
from mxref.conformance.compare import (
    DEFAULT_SHOW,
    LAYOUTS,
    compare_files,
    format_report,
    write_report_json,
)
from mxref.io import check_new


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    parser = sub.add_parser(
        "compare",
        help="compare an output with mxref's, bit for bit and in ULPs",
        description="Compare ACTUAL with REFERENCE (.npy, or raw .bin with --dtype and "
        "--shape) element by element: bit-exact count, ULP histogram, NaN and Inf "
        "classes, the first mismatches.  Exit status 0 when every element is within "
        "--max-ulp, 1 when some are not, 2 for bad input.",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref compare ref.npy device.npy",
            "mxref compare --dtype float32 --shape 128,256 --max-ulp 1 ref.bin device.bin",
            "mxref compare --k 4096 --block-size 32 --json report.json d_ref.npy d_device.npy",
        ),
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mxref compare`` arguments to ``parser``.

    Also sets ``func=run`` as the parser's default, as the other
    subcommands of :mod:`mxref.cli` do.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``compare`` subparser.
    """
    parser.add_argument(
        "--dtype",
        metavar="{" + ",".join(LAYOUTS) + "}",
        help="element type; required for raw .bin, checked against .npy",
    )
    parser.add_argument("--shape", help="shape of raw .bin inputs, e.g. 4,64")
    parser.add_argument(
        "--max-ulp",
        type=int,
        default=0,
        metavar="N",
        help="largest ULP distance that passes (default: %(default)s, bit-exact)",
    )
    parser.add_argument(
        "--show",
        type=int,
        default=DEFAULT_SHOW,
        metavar="N",
        help="how many mismatches to describe (default: %(default)s)",
    )
    parser.add_argument(
        "--k", type=int, metavar="K", help="GEMM reduction length, to name K-blocks (2-D only)"
    )
    parser.add_argument(
        "--block-size", type=int, metavar="BS", help="MX block size along K (with --k)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument("reference", metavar="REFERENCE", help="mxref's output (.npy or .bin)")
    parser.add_argument("actual", metavar="ACTUAL", help="the output to check (.npy or .bin)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mxref compare``: compare, print a summary, optionally write JSON.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed with :func:`add_arguments`.

    Returns
    -------
    int
        0 when every element pair passes, 1 when some do not.

    Raises
    ------
    InputError
        For bad input; :func:`mxref.cli.main` reports it as one line and
        exits with status 2.
    """
    if args.json is not None:
        # before the compare, which may take long on large files
        check_new([args.json], force=args.force)
    report = compare_files(
        args.reference,
        args.actual,
        dtype=args.dtype,
        shape=args.shape,
        max_ulp=args.max_ulp,
        show=args.show,
        k=args.k,
        block_size=args.block_size,
    )
    sys.stdout.write(format_report(report))
    if args.json is not None:
        write_report_json(args.json, report, force=args.force)
    return report.exit_status
