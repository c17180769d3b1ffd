"""``regressions.hex``: the cases that once failed somewhere, kept with the answer the oracle gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mxref.accum import parse_accum
from mxref.conformance.golden.format import (
    _HOST_BY_NAME,
    BLOCK_SIZE,
    NOTE_PREFIX,
    REGRESSIONS,
    Flag,
    GoldenCase,
    Header,
    _code_digits,
    _hex,
    _split,
    parse_golden,
)
from mxref.conformance.golden.manifest import _write_manifest_entry, read_manifest, sha256_file
from mxref.conformance.golden.oracle import (
    _OUT_FORMATS,
    _common_tail,
    _draws,
    _encode_case,
    _gemm_case,
    _gemm_operand_text,
    _header,
)
from mxref.formats import get_format
from mxref.io import InputError
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.array import HOST_FORMATS
from mxref.ref.element import (
    decode_element,
)
from mxref.testing.cases import AREAS
from mxref.testing.gemm_cases import DotCase, code_of


@dataclass(frozen=True)
class EncodeRegression:
    """A quantize case to keep: a 1-D input and the policies it failed under.

    Attributes
    ----------
    x : array_like
        1-D float16, float32 or float64 input, blocked along its only axis.
    fmt : str
    scale_rule, rounding, overflow : str
        The policies (defaults: the spec's).
    seed : int or None
        For stochastic rounding.
    block_size : int
    area : str
        One of :data:`AREAS`.

    Spec: OCP MX v1.0 section 6.3.
    """

    x: Any
    fmt: str
    scale_rule: str = "floor"
    rounding: str = "rne"
    overflow: str = "saturate"
    seed: int | None = None
    block_size: int = BLOCK_SIZE
    area: str = "rounding"


@dataclass(frozen=True)
class GemmRegression:
    """A dot product case to keep: one row of A, one row of B (D = A @ B.T).

    Attributes
    ----------
    fmt_a, fmt_b : str
    a_codes, b_codes : sequence of int
        K codes each.
    a_scales, b_scales : sequence of int
        ``ceil(K / 32)`` E8M0 bytes each.
    accum : str
        An accumulation model string (:func:`mxref.accum.parse_accum`).
    out_dtype : {"float32", "float16"}
    c : int or None
        C as float32 bits, or None for no C.
    area : str

    Spec: OCP MX v1.0 section 6.2.
    """

    fmt_a: str
    fmt_b: str
    a_codes: Sequence[int]
    a_scales: Sequence[int]
    b_codes: Sequence[int]
    b_scales: Sequence[int]
    accum: str = "exact"
    out_dtype: str = "float32"
    c: int | None = None
    area: str = "gemm"


def _encode_regression_line(case: EncodeRegression) -> str:
    fmt = get_format(case.fmt)
    rule = ScaleRule.parse(case.scale_rule, "scale_rule")
    rounding = Rounding.parse(case.rounding, "rounding")
    overflow = Overflow.parse(case.overflow, "overflow")
    if case.area not in AREAS:
        raise ValueError(f"area must be one of {', '.join(AREAS)}; got {case.area!r}")
    x = np.asarray(case.x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"a regression input must be 1-D and not empty; got shape {x.shape}")
    names = {np.dtype(v): k for k, v in _HOST_BY_NAME.items()}
    if x.dtype not in names:
        raise ValueError(f"a regression input must be float16, float32 or float64; got {x.dtype}")
    if (rounding is Rounding.STOCHASTIC) != (case.seed is not None):
        raise ValueError("seed is required with stochastic rounding and only there")
    host, uint = HOST_FORMATS[x.dtype]
    patterns: list[int] = x.view(uint).tolist()
    values = [decode_element(p, host) for p in patterns]
    bs = case.block_size
    scales, codes, flags = [], [], Flag(0)
    for b in range(-(-len(values) // bs)):
        block = values[b * bs : (b + 1) * bs]
        seed = case.seed
        byte, block_codes, f = _encode_case(
            block, fmt, rule, rounding, overflow, _draws(seed, b, len(block), bs)
        )
        scales.append(byte)
        codes += block_codes
        flags |= f
    digits = _code_digits(fmt)
    params = [
        f"format={fmt.name}",
        f"scale_rule={rule.value}",
        f"rounding={rounding.value}",
        f"overflow={overflow.value}",
        f"input={names[x.dtype]}",
        f"block_size={bs}",
    ]
    if case.seed is not None:
        params.append(f"stochastic_seed={case.seed}")
    width = x.dtype.itemsize * 2
    return (
        "encode "
        + " ".join(params)
        + " "
        + " ".join(_hex(p, width) for p in patterns)
        + " -> "
        + " ".join(_hex(s, 2) for s in scales)
        + " "
        + " ".join(_hex(c, digits) for c in codes)
        + f" {flags.value:02X} {case.area}"
    )


def _gemm_regression_line(case: GemmRegression) -> str:
    if case.area not in AREAS:
        raise ValueError(f"area must be one of {', '.join(AREAS)}; got {case.area!r}")
    if case.out_dtype not in _OUT_FORMATS:
        raise ValueError(f"out_dtype must be float32 or float16; got {case.out_dtype!r}")
    model = parse_accum(case.accum).name
    dot = DotCase(
        get_format(case.fmt_a),
        get_format(case.fmt_b),
        tuple(int(v) for v in case.a_codes),
        tuple(int(v) for v in case.a_scales),
        tuple(int(v) for v in case.b_codes),
        tuple(int(v) for v in case.b_scales),
        case.area,
        "",
    )
    if len(dot.a_codes) != len(dot.b_codes) or not dot.a_codes:
        raise ValueError("a_codes and b_codes must have the same length K > 0")
    nb = -(-dot.k // BLOCK_SIZE)
    if len(dot.a_scales) != nb or len(dot.b_scales) != nb:
        raise ValueError(f"K = {dot.k} needs {nb} scale bytes per operand")
    bits, flags = _gemm_case(dot, model, case.out_dtype, case.c)
    params = [f"accum={model}", f"output={case.out_dtype}"]
    if case.c is not None:
        params.append(f"c={_hex(case.c, 8)}")
    width = _OUT_FORMATS[case.out_dtype][3]
    return (
        f"gemm {' '.join(params)} {_gemm_operand_text(dot)} -> {_hex(bits, width)} "
        f"{flags.value:02X} {case.area}"
    )


def _regression_line(case: EncodeRegression | GemmRegression) -> str:
    if isinstance(case, EncodeRegression):
        return _encode_regression_line(case)
    if isinstance(case, GemmRegression):
        return _gemm_regression_line(case)
    raise TypeError(f"a regression is an EncodeRegression or a GemmRegression; got {case!r}")


def builtin_regressions() -> list[tuple[str, EncodeRegression | GemmRegression]]:
    """The bugs found before golden files existed: (note, case).

    Spec: OCP MX v1.0 sections 6.2 and 6.3.
    """
    e4m3 = get_format("mxfp8_e4m3")
    code = code_of
    lanes = [code(Fraction(8), e4m3), code(Fraction(7, 16), e4m3)]
    other = [code(Fraction(1), e4m3), code(Fraction(7, 16), e4m3)]
    zeros = [0] * 32
    return [
        (
            "float64 input rounded once, not via float32: 0.25+2^-40 -> 0.5 and 5+2^-30 -> 6 "
            "under a 6.0 anchor (ml_dtypes-style double rounding gives 0 and 4)",
            EncodeRegression(np.array([6.0, 0.25 + 2.0**-40, 5.0 + 2.0**-30], np.float64), "mxfp4"),
        ),
        (
            "exact GEMM to float16: 8 + 49/256 is a float16 tie; a tiny positive C (2^-149) "
            "must break it upward (D = 0x4819), not be lost before the single rounding",
            GemmRegression(
                "mxfp8_e4m3",
                "mxfp8_e4m3",
                lanes,
                [0x7F],
                other,
                [0x7F],
                accum="exact",
                out_dtype="float16",
                c=0x00000001,
            ),
        ),
        (
            "a NaN C with a payload and sign gives the canonical quiet NaN 0x7FC00000 (exact)",
            GemmRegression(
                "mxfp8_e4m3",
                "mxfp8_e4m3",
                zeros,
                [0x7F],
                zeros,
                [0x7F],
                accum="exact",
                c=0xFFC00123,
                area="special",
            ),
        ),
        (
            "a signalling NaN C with a payload gives the canonical quiet NaN (block_fp32)",
            GemmRegression(
                "mxfp8_e4m3",
                "mxfp8_e4m3",
                zeros,
                [0x7F],
                zeros,
                [0x7F],
                accum="block_fp32",
                c=0x7F800001,
                area="special",
            ),
        ),
    ]


REGRESSIONS_HEADER_NOTE = (
    "New shrunk hypothesis failures are appended here with "
    "mxref.golden.append_regression(...) (see docs/golden_format.md)"
)


def _regressions_text(carried: Sequence[tuple[str | None, str]]) -> str:
    items: Header = [
        ("operation", "mixed: the first token of each case line (encode, gemm)"),
        ("appending", REGRESSIONS_HEADER_NOTE),
    ]
    items += _common_tail(
        "encode key=value... x... -> scale bytes (one per block) codes... flags area | "
        "gemm key=value... format_a format_b K a_codes a_scales b_codes b_scales -> D flags "
        "area; keys override the defaults scale_rule=floor rounding=rne overflow=saturate "
        "input=float32 block_size=32 (encode) and output=float32, no c (gemm)"
    )
    lines = _header("regressions: cases of bugs found so far", items)
    for text, case in builtin_regressions():
        lines += [f"# {NOTE_PREFIX} {text}", _regression_line(case)]
    for note, case_line in carried:
        if note is not None:
            lines.append(f"# {NOTE_PREFIX} {note}")
        lines.append(case_line)
    return "\n".join(lines) + "\n"


def _carried_regressions(source: Path) -> list[tuple[str | None, str]]:
    """Appended regression cases of ``source``, re-derived from the oracle.

    Every case line not produced by :func:`builtin_regressions` is carried:
    its inputs are re-run through the oracle and the stored outputs must
    agree, so a corrupted or outdated line stops generation.
    """
    if not source.is_file():
        raise InputError(f"{source}: no such regressions file")
    parsed = parse_golden(source.read_text(encoding="ascii"))
    builtin = {_regression_line(case).split(" -> ")[0] for _, case in builtin_regressions()}
    carried: list[tuple[str | None, str]] = []
    for case in parsed.cases:
        if case.input_text in builtin:
            continue
        line = _regression_line(_case_to_regression(case))
        stored = f"{case.input_text} -> {' '.join(case.outputs)} {case.flags:02X} {case.area}"
        if line.upper() != stored.upper():
            raise InputError(
                f"{source}: line {case.line}: the oracle now gives {line.split(' -> ')[1]!r}, "
                f"the file says {stored.split(' -> ')[1]!r}; fix the line or the oracle"
            )
        carried.append((case.note, line))
    return carried


def _case_to_regression(case: GoldenCase) -> EncodeRegression | GemmRegression:
    p = case.params
    if case.op == "encode":
        dtype = _HOST_BY_NAME.get(p.get("input", "float32"))
        if dtype is None:
            raise ValueError(f"line {case.line}: unknown input type {p.get('input')!r}")
        uint = HOST_FORMATS[np.dtype(dtype)][1]
        x = np.array([int(t, 16) for t in case.inputs], uint).view(dtype)
        return EncodeRegression(
            x,
            p["format"],
            p.get("scale_rule", "floor"),
            p.get("rounding", "rne"),
            p.get("overflow", "saturate"),
            int(p["stochastic_seed"]) if "stochastic_seed" in p else None,
            int(p.get("block_size", BLOCK_SIZE)),
            case.area,
        )
    if case.op == "gemm":
        fa, fb, k, ac, asc, bc, bsc = case.inputs
        da, db = _code_digits(get_format(fa)), _code_digits(get_format(fb))
        return GemmRegression(
            fa,
            fb,
            _split(ac, da),
            _split(asc, 2),
            _split(bc, db),
            _split(bsc, 2),
            p.get("accum", "exact"),
            p.get("output", "float32"),
            int(p["c"], 16) if "c" in p else None,
            case.area,
        )
    raise ValueError(f"line {case.line}: a regression line starts with encode or gemm")


def regressions_text(source: str | Path | None = None) -> str:
    """The text :func:`generate` writes as ``regressions.hex``.

    Parameters
    ----------
    source : str or Path, optional
        A ``regressions.hex`` whose appended cases are carried over (their
        outputs re-derived from the oracle); None gives the built-in cases only.

    Raises
    ------
    InputError
        If a carried case's stored outputs differ from the oracle's.

    Spec: OCP MX v1.0 sections 6.2 and 6.3, through the oracle.
    """
    return _regressions_text(_carried_regressions(Path(source)) if source is not None else [])


def append_regression(
    directory: str | Path,
    case: EncodeRegression | GemmRegression,
    *,
    note: str,
) -> str:
    """Append a case to ``regressions.hex``, its expected outputs from the oracle.

    The file must match the MANIFEST first (nothing unverified is extended);
    the MANIFEST entry is updated after the append.  Appending a case whose
    inputs are already there changes nothing.  :func:`generate` carries the
    appended cases into every later generation.

    Parameters
    ----------
    directory : str or Path
        The golden directory.
    case : EncodeRegression or GemmRegression
        The failing inputs (e.g. hypothesis' shrunk example) and their policies.
    note : str
        One line saying what broke; written as a comment above the case.

    Returns
    -------
    str
        The case line.

    Raises
    ------
    InputError
        If ``regressions.hex`` is missing or does not match the MANIFEST.
    ValueError
        For an invalid case.

    Spec: OCP MX v1.0 sections 6.2 and 6.3, through the oracle.
    """
    root = Path(directory)
    path = root / REGRESSIONS
    manifest = read_manifest(root)
    if not path.is_file():
        raise InputError(f"{path}: missing; run generate first")
    if manifest.files.get(REGRESSIONS) != sha256_file(path):
        raise InputError(f"{path}: does not match the MANIFEST; restore or regenerate it first")
    line = _regression_line(case)
    text = path.read_text(encoding="ascii")
    inputs = line.split(" -> ")[0]
    if any(c.input_text == inputs for c in parse_golden(text).cases):
        return line
    one_line = " ".join(str(note).split()).encode("ascii", "replace").decode() or "regression"
    if not text.endswith("\n"):
        text += "\n"
    path.write_bytes((text + f"# {NOTE_PREFIX} {one_line}\n{line}\n").encode("ascii"))
    _write_manifest_entry(root, REGRESSIONS)
    return line
