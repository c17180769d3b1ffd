"""``mxref info``: a format's parameters and code table."""

from __future__ import annotations

import argparse
import sys

from mxref.cli.help import ExamplesFormatter, examples
from mxref.formats import get_format, mx_format_names
from mxref.tables import SCALE_FORMAT_NAMES, render_info, render_scale_info


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    info = sub.add_parser(
        "info",
        help="print a format's parameters and code table",
        description="Print an element format's parameters and every code's value, or "
        "the E8M0 scale format and every scale byte (e8m0).",
        formatter_class=ExamplesFormatter,
        epilog=examples("mxref info mxfp4", "mxref info float8_e4m3fn", "mxref info e8m0"),
    )
    info.add_argument("format", metavar="FORMAT", help=", ".join([*mx_format_names(), "e8m0"]))
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
    name = args.format.strip().lower() if isinstance(args.format, str) else args.format
    text = render_scale_info() if name in SCALE_FORMAT_NAMES else render_info(get_format(name))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
