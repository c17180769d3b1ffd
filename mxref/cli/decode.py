"""``mxref decode``: MX codes and scales back to floats."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mxref.array import MXArray
from mxref.cli.help import ExamplesFormatter, examples
from mxref.cli.mx_input import add_raw_dump_arguments, describes_raw_dump, read_mx_input
from mxref.codec import dequantize
from mxref.io import DTYPES, InputError, check_new, parse_dtype, write_array
from mxref.nv_files import tensor_scale_text
from mxref.ref.element import decode_element
from mxref.tables import value_text


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    dec = sub.add_parser(
        "decode",
        help="decode MX codes and scales back to floats",
        description="Decode IN (an .npz from encode, a packed .bin or its .json "
        "sidecar, or a raw device dump described by --format and --shape) and write OUT "
        "as .npy or raw little-endian .bin.  NVFP4 (E4M3 block scales under a float32 "
        "tensor scale G; a raw dump needs --tensor-scale): the tensor scale is printed; "
        "--show N prints the first N blocks by lane, for any format: each scale byte "
        "decoded, each code and its decoded value as written to OUT.",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref decode x.npz x_decoded.npy",
            "mxref decode --dtype float64 out.json out_decoded.bin",
            "mxref decode --format mxfp4 --shape 128,4096 device.bin device.npy",
            "mxref decode --format mxfp8_e4m3 --shape 4096,128 --axis 0 "
            "--scales device_scales.bin device.bin device.npy",
            "mxref decode --show 2 w_nvfp4.npz w.npy",
            "mxref decode --format nvfp4 --shape 128,4096 --tensor-scale 0x44D80000 "
            "device.bin device.npy",
            "mxref decode --format nvfp4 --shape 128,4096 --tensor-scale g_rows.npy "
            "--scale-layout nvidia_blocked device.bin device.npy",
        ),
    )
    dec.add_argument(
        "--dtype",
        default="float32",
        metavar="{" + ",".join(DTYPES) + "}",
        help="output type (default: %(default)s; float64 is always exact)",
    )
    dec.add_argument("--force", action="store_true", help="replace an existing OUT")
    dec.add_argument(
        "--show", type=int, default=0, metavar="N",
        help="print the first N blocks, lane by lane (default: %(default)s)",
    )  # fmt: skip
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
    if args.show < 0:
        raise InputError(f"--show must be >= 0; got {args.show}")
    check_new([out], force=args.force, option="--force")
    mx = read_mx_input(args.input, args, raw=raw)
    values = dequantize(mx, dtype)
    write_array(out, values, force=args.force)
    sys.stdout.write(describe(mx, values, args.show))
    return 0


def describe(mx: MXArray, values: np.ndarray, show: int) -> str:
    """The tensor scale (NVFP4) and the first ``show`` blocks, lane by lane, as text.

    Parameters
    ----------
    mx : MXArray
    values : np.ndarray
        ``mx`` decoded, as written to OUT.
    show : int
        How many blocks to list, in C order of the scale array.

    Returns
    -------
    str
        Empty for an MX array with ``show`` 0.
    """
    lines = []
    if mx.tensor_scale is not None:
        g = mx.tensor_scale
        what = "" if mx.preset is None else f" (as preset {mx.preset} stores it)"
        if mx.per_row:
            lines.append(f"{mx.fmt.name}: tensor scale one per row{what}, {g.size} rows")
            rows = np.argwhere(np.ones(g.shape, bool))[: max(show, 1)]
            lines += [f"  row {_index(tuple(i))}: {tensor_scale_text(g[tuple(i)])}" for i in rows]
        else:
            lines.append(f"{mx.fmt.name}: tensor scale G = {tensor_scale_text(g[()])}{what}")
    moved = np.moveaxis(mx.codes, mx.axis, -1)
    decoded = np.moveaxis(values, mx.axis, -1)
    for block in map(tuple, np.argwhere(np.ones(mx.scales.shape, bool))[:show]):
        byte = int(mx.scales[block])
        if mx.fmt.scale_format is None:
            exponent = byte - 127
            scale = "NaN" if byte == 0xFF else f"2^{exponent}"
        else:
            scale = value_text(*decode_element(byte, mx.fmt.scale_format))
        lines.append(f"block {_index(block)}: scale 0x{byte:02X} ({scale})")
        row = block[: mx.axis] + block[mx.axis + 1 :]
        start = block[mx.axis] * mx.block_size
        codes = moved[row][start : start + mx.block_size]
        vals = decoded[row][start : start + mx.block_size]
        for lane, (code, value) in enumerate(zip(codes, vals, strict=True)):
            element = value_text(*decode_element(int(code), mx.fmt))
            lines.append(f"  lane {lane:>2}: 0x{int(code):02X} ({element}) -> {value!s}")
    return "".join(line + "\n" for line in lines)


def _index(idx: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, idx)) + ")"
