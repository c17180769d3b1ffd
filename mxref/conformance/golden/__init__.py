"""Golden vector files: generated from the exact oracle, verified against any implementation.

The files in ``mxref/golden_vectors/`` are plain text in the style of Berkeley TestFloat:
``#`` header lines saying what the file holds, then one case per line, hex
inputs, ``->``, hex expected outputs, a hex flags field and an area tag.
They are produced **only** by the exact oracle :mod:`mxref.ref`, from the
structured cases of :mod:`mxref.testing.cases` and a fixed seed, so
:func:`generate` writes byte-identical files every time; ``golden_vectors/MANIFEST``
records the generator version, the seed and the sha256 of every file.

:func:`verify` first checks every file against the MANIFEST (a missing,
extra or edited file is reported by name and never used), then runs the
implementation under test on every case and compares codes, scales and bits
exactly.  The file format is documented in ``docs/golden_format.md``.

Files::

    decode_<fmt>.hex                    every code at scale 0x7F -> float32
    decode_e8m0.hex                     every E8M0 byte -> float32
    encode_<fmt>_<rule>_<rounding>.hex  32 float32 -> scale byte + 32 codes
    encode_<fmt>_floor_rne_ieee.hex     the same with IEEE overflow (FP8 only)
    pack_<fmt>.hex                      codes -> packed bytes
    gemm_<model>.hex                    one MX dot product -> float32
    regressions.hex                     bugs found so far, appended by append_regression

Spec: OCP MX v1.0 sections 5 (encodings), 5.1 (decoding), 6.2 (Dot) and 6.3
(conversion).
"""

from __future__ import annotations

from mxref.conformance.failures import CaseFailure
from mxref.conformance.golden.format import (
    GENERATOR,
    MANIFEST,
    REGRESSIONS,
    SEED,
    Flag,
    GoldenCase,
    GoldenFile,
    parse_golden,
    shipped_golden_dir,
)
from mxref.conformance.golden.generate import GenerateResult, file_names, generate
from mxref.conformance.golden.manifest import read_manifest, sha256_file
from mxref.conformance.golden.regressions import (
    EncodeRegression,
    GemmRegression,
    append_regression,
    regressions_text,
)
from mxref.conformance.golden.verify import VerifyReport, mxref_backend, verify
from mxref.testing.cases import AREAS

__all__ = [
    "AREAS",
    "CaseFailure",
    "EncodeRegression",
    "Flag",
    "GENERATOR",
    "GemmRegression",
    "GenerateResult",
    "GoldenCase",
    "GoldenFile",
    "MANIFEST",
    "REGRESSIONS",
    "SEED",
    "VerifyReport",
    "append_regression",
    "file_names",
    "generate",
    "mxref_backend",
    "parse_golden",
    "read_manifest",
    "regressions_text",
    "sha256_file",
    "shipped_golden_dir",
    "verify",
]
