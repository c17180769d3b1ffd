"""``mxref info``: a format's parameters and code table."""

from __future__ import annotations

import argparse
import sys

from mxref.cli.help import ExamplesFormatter, examples
from mxref.formats import FORMATS, get_format
from mxref.tables import render_info


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    info = sub.add_parser(
        "info",
        help="print a format's parameters and code table",
        description="Print an element format's parameters and every code's value.",
        formatter_class=ExamplesFormatter,
        epilog=examples("mxref info mxfp4", "mxref info float8_e4m3fn"),
    )
    info.add_argument("format", metavar="FORMAT", help=", ".join(FORMATS))
    info.set_defaults(func=run)
    return info


def run(args: argparse.Namespace) -> int:
    """Run ``mxref info``: print a format's description and code table.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`add_parser`'s parser.

    Returns
    -------
    int
        0 on success.
    """
    text = render_info(get_format(args.format))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
