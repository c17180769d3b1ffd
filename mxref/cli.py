"""The ``mxref`` command line: encode, decode, multiply, compare and describe MX formats.

::

    mxref encode --format mxfp4 [--scale-rule floor|ceil|even|rceil]
                 [--rounding rne|away|zero|stochastic] [--overflow saturate|ieee]
                 [--seed N] [--axis -1] [--block-size 32]
                 [--dtype float32 --shape 4,64] [--tensor NAME]
                 [--scale-layout plain|nvidia_blocked] [--force] IN OUT
    mxref decode [--dtype float32|float64|float16|bfloat16] [--force] IN OUT
    mxref gemm --a A --b B [--c C.npy] [--accum exact|block_fp32|fixed_point:W:G[:rne]]
               [--out-dtype float32|float16|bfloat16] [--force] --out D
    mxref compare REFERENCE ACTUAL [--max-ulp N] [--k K --block-size BS] ...
    mxref conform (--backend MODULE:FUNCTION | --command 'SIM --in {in} --out {out}') ...
    mxref golden generate [--dir DIR] [--force]
    mxref golden verify [--dir DIR] [--backend MODULE:FUNCTION] [--json REPORT.json]
    mxref info FORMAT

``encode`` reads IN (``.npy``, ``.safetensors`` or raw ``.bin`` with
``--dtype`` and ``--shape``) and writes OUT as ``.npz`` or as packed ``.bin``
plus ``.scales.bin`` and a ``.json`` sidecar.  ``decode`` reads either back and
writes ``.npy`` or raw ``.bin``.  The file formats are described in
:mod:`mxref.files`.

``gemm`` reads A (M x K, blocked along K) and B (K x N blocked along axis 0,
or N x K blocked along axis 1, meaning ``D = A @ B.T``), both results of
``encode`` in either file form, and an optional float32 ``.npy`` C, and
writes ``D = A @ B (+ C)`` from :func:`mxref.matmul` as ``.npy`` or raw
little-endian ``.bin``.  ``compare`` is :mod:`mxref.compare`: it exits 0 when
ACTUAL matches REFERENCE within ``--max-ulp``, 1 when it does not.

Every problem the user can fix prints one line, ``mxref: error: ...``, on
stderr and exits with status 2, as argparse does for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxref.formats import DEFAULT_BLOCK_SIZE, FORMATS, get_format
from mxref.policies import Overflow, Rounding, ScaleRule

#: Exit status for user errors; argparse uses the same for usage errors.
EXIT_USAGE = 2

#: Output types ``mxref gemm --out-dtype`` accepts (those :func:`mxref.matmul` rounds to).
GEMM_OUT_DTYPES = ("float32", "float16", "bfloat16")


def _choices(enum: type[ScaleRule] | type[Rounding] | type[Overflow]) -> str:
    return "{" + ",".join(m.value for m in enum) + "}"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``mxref``.

    Values with a fixed set of choices (format, policies, dtype) are plain
    strings here and checked by mxref itself, so that a wrong one gets the
    same one-line error as every other user error, listing what is accepted.

    Returns
    -------
    argparse.ArgumentParser
    """
    from mxref import __version__
    from mxref.compare import add_compare_arguments
    from mxref.conform import add_conform_arguments
    from mxref.files import DTYPES, SCALE_LAYOUTS
    from mxref.golden import add_golden_arguments

    parser = argparse.ArgumentParser(
        prog="mxref",
        description="Bit-exact encoder, decoder and GEMM for the OCP Microscaling (MX) formats.",
    )
    parser.add_argument("--version", action="version", version=f"mxref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enc = sub.add_parser(
        "encode",
        help="quantize a tensor to MX codes and scales",
        description="Quantize IN (.npy, .safetensors or raw .bin) and write OUT: "
        ".npz, or packed .bin (with NAME.scales.bin and a NAME.json sidecar).",
    )
    enc.add_argument(
        "--format", required=True, metavar="{" + ",".join(FORMATS) + "}", help="element format"
    )
    enc.add_argument(
        "--scale-rule",
        default=ScaleRule.FLOOR.value,
        metavar=_choices(ScaleRule),
        help="how the shared exponent is chosen (default: %(default)s, the spec's)",
    )
    enc.add_argument(
        "--rounding",
        default=Rounding.RNE.value,
        metavar=_choices(Rounding),
        help="element rounding (default: %(default)s, the spec's)",
    )
    enc.add_argument(
        "--overflow",
        default=Overflow.SATURATE.value,
        metavar=_choices(Overflow),
        help="what values above max normal become (default: %(default)s, the spec's)",
    )
    enc.add_argument("--seed", type=int, help="seed for --rounding stochastic (required there)")
    enc.add_argument("--axis", type=int, default=-1, help="axis cut into blocks (default: -1)")
    enc.add_argument(
        "--block-size",
        type=int,
        default=DEFAULT_BLOCK_SIZE,
        help="elements per block (default: %(default)s)",
    )
    enc.add_argument(
        "--dtype",
        metavar="{" + ",".join(DTYPES) + "}",
        help="element type of a raw .bin IN (little-endian)",
    )
    enc.add_argument("--shape", help="shape of a raw .bin IN, e.g. 4,64")
    enc.add_argument("--tensor", metavar="NAME", help="which tensor of a .safetensors IN")
    enc.add_argument(
        "--scale-layout",
        metavar="{" + ",".join(SCALE_LAYOUTS) + "}",
        help="scale byte layout of a packed .bin OUT (default: plain)",
    )
    enc.add_argument("--force", action="store_true", help="replace existing output files")
    enc.add_argument("input", metavar="IN")
    enc.add_argument("output", metavar="OUT")
    enc.set_defaults(func=cmd_encode)

    dec = sub.add_parser(
        "decode",
        help="decode MX codes and scales back to floats",
        description="Decode IN (an .npz from encode, or a packed .bin or its .json "
        "sidecar) and write OUT as .npy or raw little-endian .bin.",
    )
    dec.add_argument(
        "--dtype",
        default="float32",
        metavar="{" + ",".join(DTYPES) + "}",
        help="output type (default: %(default)s; float64 is always exact)",
    )
    dec.add_argument("--force", action="store_true", help="replace an existing OUT")
    dec.add_argument("input", metavar="IN")
    dec.add_argument("output", metavar="OUT")
    dec.set_defaults(func=cmd_decode)

    gemm = sub.add_parser(
        "gemm",
        help="multiply two MX operands: D = A @ B (+ C)",
        description="Multiply A (M x K, blocked along K) by B (K x N blocked along axis 0, "
        "or N x K blocked along axis 1, meaning D = A @ B.T) under an accumulation model, "
        "optionally adding a float32 C, and write D as .npy or raw little-endian .bin. "
        "A and B are .npz files from encode, or packed .bin files (or their .json sidecars).",
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
    gemm.set_defaults(func=cmd_gemm)

    add_compare_arguments(
        sub.add_parser(
            "compare",
            help="compare an output with mxref's, bit for bit and in ULPs",
            description="Compare ACTUAL with REFERENCE (.npy, or raw .bin with --dtype and "
            "--shape) element by element: bit-exact count, ULP histogram, NaN and Inf "
            "classes, the first mismatches.  Exit status 0 when every element is within "
            "--max-ulp, 1 when some are not, 2 for bad input.",
        )
    )

    add_conform_arguments(
        sub.add_parser(
            "conform",
            help="run the conformance battery against an MX implementation",
            description="Run the conformance checks (golden files, structured cases, a "
            "seeded random battery) against a Python quantize (--backend) or an external "
            "program (--command; see docs/conformance.md), comparing codes and scales with "
            "the exact oracle.  Exit status 0 when every check passes (declared deviations "
            "excluded), 1 when some fail, 2 for bad input.",
        )
    )

    add_golden_arguments(
        sub.add_parser(
            "golden",
            help="generate or verify the golden vector files",
            description="Generate the golden vector files from the exact oracle, or verify "
            "them against the MANIFEST and run an implementation on every case (see "
            "docs/golden_format.md).",
        )
    )

    info = sub.add_parser(
        "info",
        help="print a format's parameters and code table",
        description="Print an element format's parameters and every code's value.",
    )
    info.add_argument("format", metavar="FORMAT", help=", ".join(FORMATS))
    info.set_defaults(func=cmd_info)
    return parser


def cmd_encode(args: argparse.Namespace) -> int:
    """Run ``mxref encode``: read IN, quantize, write OUT.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`build_parser`.

    Returns
    -------
    int
        0 on success.
    """
    from mxref.codec import quantize
    from mxref.files import (
        InputError,
        check_new,
        packed_paths,
        parse_dtype,
        parse_shape,
        read_tensor,
        write_mx,
    )

    # Check every argument before reading the input, which may be large.
    fmt = get_format(args.format)
    rule = ScaleRule.parse(args.scale_rule, "--scale-rule")
    rounding = Rounding.parse(args.rounding, "--rounding")
    overflow = Overflow.parse(args.overflow, "--overflow")
    # quantize checks these too, but words its errors for the Python API
    if rounding is Rounding.STOCHASTIC and args.seed is None:
        raise InputError("--rounding stochastic needs --seed N, so that results reproduce")
    if rounding is not Rounding.STOCHASTIC and args.seed is not None:
        raise InputError("--seed is only used with --rounding stochastic")
    if args.block_size < 1:
        raise InputError(f"--block-size must be >= 1; got {args.block_size}")
    dtype = None if args.dtype is None else parse_dtype(args.dtype)
    shape = None if args.shape is None else parse_shape(args.shape)
    out = args.output
    suffix = out.rsplit(".", 1)[-1].lower() if "." in out else ""
    if suffix == "npz":
        if args.scale_layout is not None:
            raise InputError("--scale-layout applies only to packed .bin output")
        check_new([out], force=args.force)
    elif suffix == "bin":
        check_new(packed_paths(out), force=args.force)
    else:
        raise InputError(f"{out}: OUT must end in .npz or .bin (packed)")

    x = read_tensor(args.input, dtype=dtype, shape=shape, tensor=args.tensor)
    mx = quantize(
        x,
        fmt,
        axis=args.axis,
        block_size=args.block_size,
        scale_rule=rule,
        rounding=rounding,
        overflow=overflow,
        seed=args.seed,
    )
    write_mx(
        out,
        mx,
        scale_layout=args.scale_layout,
        scale_rule=rule,
        rounding=rounding,
        overflow=overflow,
        seed=args.seed,
        force=args.force,
    )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Run ``mxref decode``: read an MX result, dequantize, write OUT.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`build_parser`.

    Returns
    -------
    int
        0 on success.
    """
    from mxref.codec import dequantize
    from mxref.files import InputError, check_new, parse_dtype, read_mx, write_array

    dtype = parse_dtype(args.dtype)
    out = args.output
    if not out.lower().endswith((".npy", ".bin")):
        raise InputError(f"{out}: OUT must end in .npy or .bin (raw)")
    check_new([out], force=args.force)
    values = dequantize(read_mx(args.input), dtype)
    write_array(out, values, force=args.force)
    return 0


def cmd_gemm(args: argparse.Namespace) -> int:
    """Run ``mxref gemm``: read A, B and C, multiply with :func:`mxref.matmul`, write D.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`build_parser`.

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    ValueError, TypeError
        :class:`~mxref.files.InputError` for bad arguments and files, and
        :func:`mxref.matmul`'s own errors for operands that do not fit
        together; :func:`main` reports either as one line.
    """
    from mxref.accum import parse_accum
    from mxref.files import InputError, check_new, parse_dtype, read_mx, read_tensor, write_array
    from mxref.gemm import matmul

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
    check_new([out], force=args.force)
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


def cmd_info(args: argparse.Namespace) -> int:
    """Run ``mxref info``: print a format's description and code table.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`build_parser`.

    Returns
    -------
    int
        0 on success.
    """
    from mxref.tables import render_info

    text = render_info(get_format(args.format))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mxref`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success; 2 for a usage error or any problem the user can fix,
        reported as one line ``mxref: error: <message>`` on stderr.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help, --version and usage errors; return the
        # status instead, so that main() can be called in-process
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, OSError) as exc:
        # mxref raises ValueError/TypeError (InputError among them) with
        # messages meant for the user; OSError covers unreadable or
        # unwritable paths and a full disk.  Anything else is a bug and keeps
        # its traceback.
        print(f"mxref: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
