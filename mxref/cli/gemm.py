"""``mxref gemm``: D = A @ B (+ C) of two MX operands under an accumulation model."""

from __future__ import annotations

import argparse

from mxref.accum import parse_accum
from mxref.cli.help import ExamplesFormatter, examples
from mxref.gemm import matmul
from mxref.io import InputError, check_new, parse_dtype, read_tensor, write_array
from mxref.mx_files import read_mx

#: Output types ``mxref gemm --out-dtype`` accepts (those :func:`mxref.matmul` rounds to).
GEMM_OUT_DTYPES = ("float32", "float16", "bfloat16")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    gemm = sub.add_parser(
        "gemm",
        help="multiply two MX operands: D = A @ B (+ C)",
        description="Multiply A (M x K, blocked along K) by B (K x N blocked along axis 0, "
        "or N x K blocked along axis 1, meaning D = A @ B.T) under an accumulation model, "
        "optionally adding a float32 C, and write D as .npy or raw little-endian .bin. "
        "A and B are .npz files from encode, or packed .bin files (or their .json sidecars): "
        "two MX operands, or two NVFP4 operands (with their tensor scales, applied once "
        "after the sum; docs/gemm.md section 7).",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref gemm --a a.npz --b b.npz --out d.npy",
            "mxref gemm --a a.npz --b b_nk.npz --c c.npy --accum block_fp32 --out d.npy",
            "mxref gemm --a a.json --b b.json --accum b200-f8f6f4 --out-dtype bfloat16 "
            "--out d.bin",
            "mxref gemm --a a_nvfp4.npz --b b_nvfp4_nk.json --accum block_fp32 --out d.npy",
        ),
    )
    gemm.add_argument("--a", required=True, metavar="A", help="M x K operand, blocked along K")
    gemm.add_argument(
        "--b",
        required=True,
        metavar="B",
        help="K x N operand blocked along axis 0, or N x K blocked along axis 1 (D = A @ B.T)",
    )
    gemm.add_argument(
        "--c", metavar="C.npy", help="float32 M x N .npy added to the product (default: none)"
    )
    gemm.add_argument(
        "--accum",
        default="exact",
        metavar="MODEL",
        help="accumulation model: exact, block_fp32, fixed_point:W:G[:rne], or a profile "
        "name, optionally + ':ftz' (default: %(default)s; see docs/gemm.md)",
    )
    gemm.add_argument(
        "--out-dtype",
        default="float32",
        metavar="{" + ",".join(GEMM_OUT_DTYPES) + "}",
        help="type of D (default: %(default)s)",
    )
    gemm.add_argument("--force", action="store_true", help="replace an existing --out")
    gemm.add_argument("--out", required=True, metavar="D", help="output file, .npy or .bin")
    gemm.set_defaults(func=run)
    return gemm


def run(args: argparse.Namespace) -> int:
    """Run ``mxref gemm``: read A, B and C, multiply with :func:`mxref.matmul`, write D.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`add_parser`'s parser.

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    ValueError, TypeError
        :class:`~mxref.io.InputError` for bad arguments and files, and
        :func:`mxref.matmul`'s own errors for operands that do not fit
        together; :func:`mxref.cli.main` reports either as one line.
    """
    # Check every argument before reading the operands, which may be large.
    model = parse_accum(args.accum)
    name = args.out_dtype.strip().lower() if isinstance(args.out_dtype, str) else ""
    if name not in GEMM_OUT_DTYPES:
        raise InputError(
            f"unknown --out-dtype {args.out_dtype!r}; expected one of {', '.join(GEMM_OUT_DTYPES)}"
        )
    out_dtype = parse_dtype(name)  # bfloat16 without ml_dtypes fails here, saying so
    out = args.out
    if not out.lower().endswith((".npy", ".bin")):
        raise InputError(f"{out}: --out must end in .npy or .bin (raw)")
    check_new([out], force=args.force, option="--force")
    if args.c is not None and not args.c.lower().endswith(".npy"):
        raise InputError(f"{args.c}: --c must be a float32 .npy file")

    a = read_mx(args.a)
    b = read_mx(args.b)
    c = None
    if args.c is not None:
        # float32 is the accumulator type; anything else is refused, naming the file
        c = read_tensor(args.c, dtype="float32")
        if a.ndim == 2 and b.ndim == 2:  # otherwise matmul says what is wrong with them
            want = (a.shape[0], b.shape[1] if b.axis == 0 else b.shape[0])
            if c.shape != want:
                raise InputError(
                    f"{args.c}: C has shape {tuple(c.shape)}, but D = A @ B "
                    f"{'' if b.axis == 0 else '(B read as N x K) '}has shape {want}"
                )
    d = matmul(a, b, accum=model, out_dtype=out_dtype, c=c)
    write_array(out, d, force=args.force)
    return 0
