"""``mxref info``: a format's parameters and code table."""

from __future__ import annotations

import argparse
import sys

from mxref.cli.help import ExamplesFormatter, examples
from mxref.formats import FORMATS, get_format
from mxref.tables import (
    E4M3_SCALE_NAMES,
    SCALE_FORMAT_NAMES,
    render_e4m3_scale_info,
    render_info,
    render_scale_info,
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    info = sub.add_parser(
        "info",
        help="print a format's parameters and code table",
        description="Print an element format's parameters and every code's value, or "
        "a block scale format and every scale byte (e8m0 for MX, e4m3-scale for NVFP4).",
        formatter_class=ExamplesFormatter,
        epilog=examples("mxref info mxfp4", "mxref info float8_e4m3fn", "mxref info e8m0",
                        "mxref info nvfp4", "mxref info e4m3-scale"),  # fmt: skip
    )
    info.add_argument("format", metavar="FORMAT",
                      help=", ".join([*FORMATS, "e8m0", "e4m3-scale"]))  # fmt: skip
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
    if name in SCALE_FORMAT_NAMES:
        text = render_scale_info()
    elif name in E4M3_SCALE_NAMES:
        text = render_e4m3_scale_info()
    else:
        text = render_info(get_format(name, two_level=True))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
