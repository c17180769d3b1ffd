"""``mxref compare``: an output against mxref's, bit for bit and in ULPs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mxref.cli.help import ExamplesFormatter, examples
from mxref.cli.mx_input import (
    add_raw_dump_arguments,
    describes_raw_dump,
    is_mx_file,
    read_mx_input,
)
from mxref.conformance.compare import (
    DEFAULT_SHOW,
    LAYOUTS,
    compare_files,
    format_report,
    write_report_json,
)
from mxref.conformance.compare_mx import compare_mx, format_mx_report
from mxref.conformance.compare_nv import compare_nv, format_nv_report
from mxref.io import InputError, check_new, write_new_text


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    parser = sub.add_parser(
        "compare",
        help="compare an output with mxref's, bit for bit and in ULPs",
        description="Compare ACTUAL with REFERENCE element by element.  Float outputs "
        "(.npy, or raw .bin with --dtype and --shape): bit-exact count, ULP histogram, NaN "
        "and Inf classes, the first mismatches.  MX-encoded outputs (.npz, packed .bin "
        "with its .json sidecar, or raw packed dumps described by --format and --shape): "
        "codes and scale bytes directly, by block and lane, with each difference's kind "
        "(sign flip, magnitude, NaN code, scale).  NVFP4 dumps: the tensor scale "
        "first (value and bits), then E4M3 scale bytes by block, then codes by block and "
        "lane; a raw NVFP4 dump needs --tensor-scale.  Exit status 0 when every element "
        "passes, 1 when some do not, 2 for bad input.",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref compare ref.npy device.npy",
            "mxref compare --dtype float32 --shape 128,256 --max-ulp 1 ref.bin device.bin",
            "mxref compare --k 4096 --block-size 32 --json report.json d_ref.npy d_device.npy",
            "mxref compare ref.npz device.json",
            "mxref compare --format mxfp4 --shape 128,4096 ref.bin device.bin",
            "mxref compare w_nvfp4.npz w_device.json",
            "mxref compare --format nvfp4 --shape 128,4096 --tensor-scale 0x44D80000 "
            "w_nvfp4.npz w_device.bin",
            "mxref compare --format nvfp4 --shape 128,4096 --scale-layout nvidia_blocked "
            "--tensor-scale g_rows.npy ref.bin device.bin",
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
        "--block-size",
        type=int,
        metavar="BS",
        help="MX block size: along K (with --k), or of raw MX dumps (with --format)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument("reference", metavar="REFERENCE", help="mxref's output")
    parser.add_argument("actual", metavar="ACTUAL", help="the output to check")
    add_raw_dump_arguments(parser, block_size=False, scales=False)
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
        check_new([args.json], force=args.force, option="--force")
    if _mx_inputs(args):
        return _run_mx(args)
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


def _mx_inputs(args: argparse.Namespace) -> bool:
    """Whether both inputs are MX-encoded; one MX and one float input is an error."""
    raw = describes_raw_dump(args)
    # the description applies to each input that needs one: a raw .bin without a sidecar
    kinds = {name: is_mx_file(getattr(args, name)) or (raw and _raw_bin(getattr(args, name)))
             for name in ("reference", "actual")}  # fmt: skip
    if raw and not any(_raw_bin(getattr(args, n)) for n in ("reference", "actual")):
        raise InputError("--format and --shape describe a raw .bin dump without a .json "
                         "sidecar; neither input is one")  # fmt: skip
    if kinds["reference"] != kinds["actual"]:
        mx_side = "REFERENCE" if kinds["reference"] else "ACTUAL"
        raise InputError(f"{mx_side} is MX-encoded and the other is not; compare two MX files, "
                         "or decode with 'mxref decode' first")  # fmt: skip
    if not kinds["reference"]:
        return False
    unused = [opt for opt, value in (("--dtype", args.dtype), ("--k", args.k)) if value is not None]
    if args.max_ulp != 0:
        unused.append("--max-ulp")
    if args.block_size is not None and not raw:
        unused.append("--block-size")
    if unused:
        verb = "applies" if len(unused) == 1 else "apply"
        raise InputError(f"{', '.join(unused)} only {verb} to float outputs, "
                         "not to MX-encoded ones")  # fmt: skip
    return True


def _raw_bin(path: str) -> bool:
    """Whether ``path`` is a .bin dump that carries no description of its own."""
    return Path(path).suffix.lower() == ".bin" and not is_mx_file(path)


def _run_mx(args: argparse.Namespace) -> int:
    raw = args.format is not None
    # an .npz reference beside a raw device dump: only the dump is read by the description
    reference = read_mx_input(args.reference, args, raw=raw and _raw_bin(args.reference))
    actual = read_mx_input(args.actual, args, raw=raw and _raw_bin(args.actual))
    if reference.fmt.two_level or actual.fmt.two_level:
        if reference.fmt != actual.fmt:
            raise InputError(f"the two arrays differ in format: reference "
                             f"{reference.fmt.name}, actual {actual.fmt.name}")  # fmt: skip
        nv = compare_nv(reference, actual, show=args.show)
        sys.stdout.write(format_nv_report(nv))
        if args.json is not None:
            write_new_text(args.json, nv.to_json(), force=args.force)
        return nv.exit_status
    report = compare_mx(reference, actual, show=args.show)
    sys.stdout.write(format_mx_report(report))
    if args.json is not None:
        write_new_text(args.json, report.to_json(), force=args.force)
    return report.exit_status
