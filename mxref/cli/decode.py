"""``mxref decode``: MX codes and scales back to floats."""

from __future__ import annotations

import argparse

from mxref.cli.help import ExamplesFormatter, examples
from mxref.cli.mx_input import add_raw_dump_arguments, describes_raw_dump, read_mx_input
from mxref.codec import dequantize
from mxref.io import DTYPES, InputError, check_new, parse_dtype, write_array


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    dec = sub.add_parser(
        "decode",
        help="decode MX codes and scales back to floats",
        description="Decode IN (an .npz from encode, a packed .bin or its .json "
        "sidecar, or a raw device dump described by --format and --shape) and write OUT "
        "as .npy or raw little-endian .bin.",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref decode x.npz x_decoded.npy",
            "mxref decode --dtype float64 out.json out_decoded.bin",
            "mxref decode --format mxfp4 --shape 128,4096 device.bin device.npy",
            "mxref decode --format mxfp8_e4m3 --shape 4096,128 --axis 0 "
            "--scales device_scales.bin device.bin device.npy",
        ),
    )
    dec.add_argument(
        "--dtype",
        default="float32",
        metavar="{" + ",".join(DTYPES) + "}",
        help="output type (default: %(default)s; float64 is always exact)",
    )
    dec.add_argument("--force", action="store_true", help="replace an existing OUT")
    dec.add_argument("--shape", help="shape of a raw MX dump IN, e.g. 4,64 (with --format)")
    add_raw_dump_arguments(dec)
    dec.add_argument("input", metavar="IN")
    dec.add_argument("output", metavar="OUT")
    dec.set_defaults(func=run)
    return dec


def run(args: argparse.Namespace) -> int:
    """Run ``mxref decode``: read an MX result, dequantize, write OUT.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`add_parser`'s parser.

    Returns
    -------
    int
        0 on success.
    """
    dtype = parse_dtype(args.dtype)
    raw = describes_raw_dump(args)
    out = args.output
    if not out.lower().endswith((".npy", ".bin")):
        raise InputError(f"{out}: OUT must end in .npy or .bin (raw)")
    check_new([out], force=args.force, option="--force")
    values = dequantize(read_mx_input(args.input, args, raw=raw), dtype)
    write_array(out, values, force=args.force)
    return 0
