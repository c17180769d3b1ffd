"""The ``mxref`` command line: encode, decode, multiply, compare and describe MX formats.

::

    mxref encode --format mxfp4 [--scale-rule floor|ceil|even|rceil]
                 [--rounding rne|away|zero|stochastic] [--overflow saturate|ieee]
                 [--seed N] [--axis -1] [--block-size 32]
                 [--dtype float32 --shape 4,64] [--tensor NAME]
                 [--scale-layout plain|nvidia_blocked] [--scales FILE] [--force] IN OUT
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
plus ``.scales.bin`` and a ``.json`` sidecar; ``--scales FILE`` encodes against
the E8M0 scales of an MX file instead of choosing them.  ``decode`` reads
either back and writes ``.npy`` or raw ``.bin``.  The file formats are
described in :mod:`mxref.io`.

``gemm`` reads A (M x K, blocked along K) and B (K x N blocked along axis 0,
or N x K blocked along axis 1, meaning ``D = A @ B.T``), both results of
``encode`` in either file form, and an optional float32 ``.npy`` C, and
writes ``D = A @ B (+ C)`` from :func:`mxref.matmul` as ``.npy`` or raw
little-endian ``.bin``.  ``compare`` is :mod:`mxref.conformance.compare`: it exits 0 when
ACTUAL matches REFERENCE within ``--max-ulp``, 1 when it does not.

Every problem the user can fix prints one line, ``mxref: error: ...``, on
stderr and exits with status 2, usage errors included (argparse would print
the whole usage first; the line says which ``--help`` to read instead).

One module per subcommand (:mod:`mxref.cli.encode`, ...), each with
``add_parser(sub)`` and ``run(args)``; this package assembles them and owns
the exit codes.  No library module imports argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mxref.cli import compare, conform, decode, encode, gemm, golden, info

__all__ = ["EXIT_USAGE", "build_parser", "main"]

#: Exit status for user errors; argparse uses the same for usage errors.
EXIT_USAGE = 2

#: The subcommands, in the order ``mxref --help`` lists them.
COMMANDS = (encode, decode, gemm, compare, conform, golden, info)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error convention of this CLI (subcommands inherit it)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"mxref: error: {message} (see '{self.prog} --help')\n")


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

    parser = _Parser(
        prog="mxref",
        description="Bit-exact encoder, decoder and GEMM for the OCP Microscaling (MX) formats.",
    )
    parser.add_argument("--version", action="version", version=f"mxref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


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
