"""Reading an MX-encoded input on the command line: a file mxref wrote, or a raw device dump.

``.npz`` files and packed ``.bin`` files with their ``.json`` sidecar say
what they hold.  A raw dump does not: ``--format`` and ``--shape`` (and
``--axis``, ``--block-size``, ``--scale-layout``, ``--scales`` where they are
not the defaults, and ``--tensor-scale`` for NVFP4) describe it, and the file
sizes are checked against that description.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mxref.array import MXArray
from mxref.formats import FORMATS, get_format
from mxref.io import InputError, parse_shape
from mxref.mx_files import SCALE_LAYOUTS, packed_paths, read_mx, read_raw_packed
from mxref.nv_files import parse_tensor_scale_option

__all__ = ["add_raw_dump_arguments", "describes_raw_dump", "is_mx_file", "read_mx_input"]

#: The options that describe a raw dump, besides --format and --shape (argparse dest ->
#: option); those a command does not add (or uses otherwise) are simply absent.
_DESCRIPTION = {"axis": "--axis", "raw_block_size": "--block-size",
                "scale_layout": "--scale-layout", "scales": "--scales",
                "tensor_scale": "--tensor-scale"}  # fmt: skip


def add_raw_dump_arguments(
    parser: argparse.ArgumentParser, *, block_size: bool = True, scales: bool = True
) -> None:
    """Add ``--format``, ``--axis``, ``--scale-layout``, ``--tensor-scale`` (and ``--block-size``,
    ``--scales``).

    ``--shape`` is the caller's (it may also describe a raw float file), and so
    is ``--block-size`` where the caller has one with another use as well.
    """
    group = parser.add_argument_group("raw MX dump, without a sidecar")
    group.add_argument("--format", metavar="{" + ",".join(FORMATS) + "}",
                       help="element format of a raw packed dump (needs --shape)")  # fmt: skip
    group.add_argument("--axis", type=int, help="the dump's blocked axis (default: -1)")
    if block_size:
        group.add_argument("--block-size", type=int, dest="raw_block_size",
                           help="block size (default: the format's, 32 for MX, 16 for "
                           "nvfp4)")  # fmt: skip
    group.add_argument("--scale-layout", metavar="{" + ",".join(SCALE_LAYOUTS) + "}",
                       help="the dump's scale byte layout (default: plain)")  # fmt: skip
    group.add_argument(
        "--tensor-scale", metavar="G",
        help="nvfp4 only: the float32 tensor scale (encode scale G): a number, float32 bits "
        "(0x...), a comma-separated list with one per row, or a .npy or raw float32 .bin "
        "file of them",
    )  # fmt: skip
    if scales:
        group.add_argument(
            "--scales", metavar="FILE", help="the dump's scale bytes (default: IN.scales.bin)"
        )


def describes_raw_dump(args: argparse.Namespace) -> bool:
    """Whether ``--format`` was given; the description options without it are an error."""
    if args.format is not None:
        if args.shape is None:
            raise InputError("--format describes a raw MX dump and needs --shape too")
        return True
    given = [opt for dest, opt in _DESCRIPTION.items() if getattr(args, dest, None) is not None]
    if given:
        verb = "describes" if len(given) == 1 else "describe"
        raise InputError(f"{', '.join(given)} {verb} a raw MX dump; give --format and "
                         "--shape too")  # fmt: skip
    return False


def is_mx_file(path: str) -> bool:
    """Whether ``path`` is an MX file mxref can read without a description."""
    p = Path(path)
    suffix = p.suffix.lower()
    return suffix in (".npz", ".json") or (suffix == ".bin" and packed_paths(p)[2].is_file())


def read_mx_input(path: str, args: argparse.Namespace, *, raw: bool) -> MXArray:
    """The MXArray in ``path``: described by ``args`` when ``raw``, else by the file itself."""
    if not raw:
        return read_mx(path)
    scales = getattr(args, "scales", None) or packed_paths(path)[1]
    try:
        fmt = get_format(args.format, two_level=True)
    except ValueError as exc:
        raise InputError(f"--format: {exc}") from None
    axis = -1 if args.axis is None else args.axis
    return read_raw_packed(
        path,
        scales,
        fmt=fmt.name,
        shape=args.shape,
        axis=axis,
        block_size=_block_size(args, fmt.block_size),
        scale_layout="plain" if args.scale_layout is None else args.scale_layout,
        tensor_scale=_tensor_scale(args, fmt.name, fmt.two_level, axis),
    )


def _tensor_scale(
    args: argparse.Namespace, fmt: str, two_level: bool, axis: int
) -> np.ndarray | None:
    """``--tensor-scale`` as a float32 array for NVFP4; refused for MX, required for NVFP4."""
    text = getattr(args, "tensor_scale", None)
    if not two_level:
        if text is not None:
            raise InputError(f"--tensor-scale: {fmt} has no tensor scale (nvfp4 only)")
        return None
    if text is None:
        raise InputError(f"--format {fmt} needs --tensor-scale G: a raw dump does not "
                         "carry its float32 tensor scale")  # fmt: skip
    shape = parse_shape(args.shape)
    if not -len(shape) <= axis < len(shape):
        raise InputError(f"--axis {axis} is out of range for shape {args.shape}")
    return parse_tensor_scale_option(text, shape, axis % len(shape))


def _block_size(args: argparse.Namespace, default: int) -> int:
    # a command may use --block-size for more than raw dumps (compare: K blocks)
    value = getattr(args, "raw_block_size", None)
    if value is None:
        value = getattr(args, "block_size", None)
    return default if value is None else int(value)
