"""Writing the golden files from the exact oracle (:mod:`mxref.ref`) only.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mxref.conformance.golden.format import (
    BLOCK_SIZE,
    DECODE_SCALE,
    E8M0_PROBE,
    GEMM_MODELS,
    IEEE_FORMATS,
    MANIFEST,
    REGRESSIONS,
    ROUNDINGS,
    SCALE_RULES,
    SPEC_DEFAULTS,
    UNLISTED,
    Flag,
    Header,
    _code_digits,
    _encode_file,
    _f32,
    _file_seed,
    _hex,
    _join,
    _model_file,
)
from mxref.conformance.golden.manifest import _manifest_text
from mxref.conformance.golden.nvfp4 import nv_plan
from mxref.conformance.golden.oracle import (
    _common_tail,
    _draws,
    _encode_case,
    _gemm_case,
    _gemm_operand_text,
    _header,
)
from mxref.conformance.golden.regressions import _carried_regressions, _regressions_text
from mxref.formats import ElementFormat, get_format, mx_format_names
from mxref.io import InputError, check_new
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.ref.element import (
    BINARY32,
    decode_element,
    encode_float,
)
from mxref.ref.packing import pack_row
from mxref.ref.scale import decode_scale
from mxref.testing import cases as cases_mod
from mxref.testing.cases import BlockCase
from mxref.testing.gemm_cases import DotCase, dot_cases


def file_names() -> list[str]:
    """Every file :func:`generate` writes (besides the MANIFEST), sorted.

    Spec: OCP MX v1.0 section 5.2, Table 1 (one file set per format).
    """
    return sorted(name for name, _ in _plan())


def _encode_lines(
    blocks: Sequence[BlockCase],
    fmt: ElementFormat,
    rule: ScaleRule,
    rounding: Rounding,
    overflow: Overflow,
    seed: int | None,
) -> list[str]:
    digits = _code_digits(fmt)
    lines = []
    for index, block in enumerate(blocks):
        values = [_f32(b) for b in block.inputs]
        draws = _draws(seed, index, len(values))
        byte, codes, flags = _encode_case(values, fmt, rule, rounding, overflow, draws)
        lines.append(
            " ".join(_hex(b, 8) for b in block.inputs)
            + " -> "
            + _hex(byte, 2)
            + " "
            + " ".join(_hex(c, digits) for c in codes)
            + f" {flags.value:02X} {block.area}"
        )
    return lines


def _encode_file_text(
    fmt: ElementFormat,
    rule: ScaleRule,
    rounding: Rounding,
    overflow: Overflow,
    name: str,
    level: int,
    blocks: Sequence[BlockCase],
) -> str:
    seed = _file_seed(name) if rounding is Rounding.STOCHASTIC else None
    items: Header = [
        ("operation", "encode"),
        ("format", fmt.name),
        ("scale_rule", rule.value),
        ("rounding", rounding.value),
        ("overflow", overflow.value),
        ("block_size", str(BLOCK_SIZE)),
        ("input", "float32"),
        ("level", "1" if level == 1 else "1 and 2"),
    ]
    if seed is not None:
        items += [
            ("stochastic_seed", str(seed)),
            (
                "stochastic_counter",
                "line_index * 32 + lane, line_index counting case lines from 0 "
                "(mxref.ref.stochastic.random_u32)",
            ),
        ]
    items += _common_tail(
        f"x0 .. x31 (float32 bits) -> scale (E8M0 byte) p0 .. p31 ({fmt.name} codes, "
        f"{_code_digits(fmt)} hex digits) flags area; one block per line"
    )
    title = (
        f"encode {fmt.name}, scale rule {rule.value}, rounding {rounding.value}, {overflow.value}"
    )
    lines = _header(title, items)
    lines += _encode_lines(blocks, fmt, rule, rounding, overflow, seed)
    return "\n".join(lines) + "\n"


def _decode_value(code: int, fmt: ElementFormat, byte: int) -> int:
    """float32 bits of ``X * P`` for one code (the oracle's dequantize, rounded once)."""
    sign, mag = decode_element(code, fmt)
    scale = decode_scale(byte)
    if scale is None:
        return encode_float((sign, math.nan), BINARY32)
    if isinstance(mag, float):
        return encode_float((sign, mag), BINARY32)
    return encode_float((sign, mag * scale), BINARY32)


def _decode_file_text(fmt: ElementFormat) -> str:
    digits = _code_digits(fmt)
    items: Header = [
        ("operation", "decode"),
        ("format", fmt.name),
        ("scale", _hex(DECODE_SCALE, 2)),
    ]
    items += _common_tail(
        f"code ({digits} hex digits) -> value (float32 bits) at scale 2^0 flags area; every code"
    )
    lines = _header(f"decode every {fmt.name} code at scale 0x7F", items)
    for code in range(fmt.code_count):
        lines.append(
            f"{_hex(code, digits)} -> {_hex(_decode_value(code, fmt, DECODE_SCALE), 8)} 00 decode"
        )
    return "\n".join(lines) + "\n"


def _decode_e8m0_text() -> str:
    fmt_name, probe = E8M0_PROBE
    fmt = get_format(fmt_name)
    items: Header = [
        ("operation", "decode_scale"),
        ("format", "e8m0"),
        ("probe", f"{fmt_name} code {_hex(probe, 2)} (1.0): verified as the decoded probe element"),
    ]
    items += _common_tail("scale byte -> 2^(byte-127) (float32 bits; FF is NaN) flags area")
    lines = _header("decode every E8M0 scale byte", items)
    for byte in range(256):
        bits = _decode_value(probe, fmt, byte)
        flags = Flag.NAN_BLOCK if byte == 0xFF else Flag(0)
        lines.append(f"{_hex(byte, 2)} -> {_hex(bits, 8)} {flags.value:02X} decode")
    return "\n".join(lines) + "\n"


def _pack_file_text(fmt: ElementFormat) -> str:
    digits = _code_digits(fmt)
    items: Header = [
        ("operation", "pack"),
        ("format", fmt.name),
        ("layout", "mxref.packing: LSB-first bitstream per row, zero padded to whole groups"),
        ("block_size", str(BLOCK_SIZE)),
    ]
    items += _common_tail(
        f"n (decimal) codes ({digits} hex digits each, concatenated) -> "
        "packed bytes (concatenated) flags area; one 1-D row per line"
    )
    lines = _header(f"pack {fmt.name} codes into bytes", items)
    for row in cases_mod.pack_rows(fmt, _file_seed(f"pack_{fmt.name}")):
        packed = pack_row(row.codes, fmt.bits)
        lines.append(
            f"{len(row.codes)} {_join(row.codes, digits)} -> {packed.hex().upper()} 00 packing"
        )
    return "\n".join(lines) + "\n"


def _gemm_file_text(model: str, dots: Sequence[DotCase]) -> str:
    items: Header = [
        ("operation", "gemm"),
        ("accum", model),
        ("output", "float32"),
        ("c", "none"),
        ("block_size", str(BLOCK_SIZE)),
        ("layout", "D = A @ B.T with A and B each one row of K codes blocked along K"),
    ]
    items += _common_tail(
        "format_a format_b K (decimal) a_codes a_scales b_codes b_scales (each one token of "
        "concatenated fixed-width hex) -> D (float32 bits) flags area; one dot product per line"
    )
    lines = _header(f"MX dot products, accumulation model {model}", items)
    for case in dots:
        bits, flags = _gemm_case(case, model)
        lines.append(f"{_gemm_operand_text(case)} -> {_hex(bits, 8)} {flags.value:02X} {case.area}")
    return "\n".join(lines) + "\n"


def _plan() -> list[tuple[str, Callable[[], str]]]:
    """(file name, text builder) for every generated file, in generation order."""
    formats = [get_format(n) for n in mx_format_names()]
    block_cache: dict[tuple[str, int], list[BlockCase]] = {}
    dot_cache: list[list[DotCase]] = []

    def encode_text(
        fmt: ElementFormat, rule: ScaleRule, rounding: Rounding, overflow: Overflow, name: str
    ) -> str:
        # level 2 only in the spec-default file of each format: the oracle is slow
        level = 2 if (rule, rounding, overflow) == SPEC_DEFAULTS else 1
        key = (fmt.name, level)
        if key not in block_cache:
            seed = _file_seed(f"blocks_{fmt.name}")
            block_cache[key] = cases_mod.encode_blocks(fmt, level, seed)
        return _encode_file_text(fmt, rule, rounding, overflow, name, level, block_cache[key])

    def gemm_text(model: str) -> str:
        if not dot_cache:
            dot_cache.append(dot_cases(formats, _file_seed("gemm")))
        return _gemm_file_text(model, dot_cache[0])

    plan: list[tuple[str, Callable[[], str]]] = []
    plan += [(f"decode_{f.name}.hex", partial(_decode_file_text, f)) for f in formats]
    plan.append(("decode_e8m0.hex", _decode_e8m0_text))
    for fmt in formats:
        policies = [(r, q, Overflow.SATURATE) for r in SCALE_RULES for q in ROUNDINGS]
        if fmt.name in IEEE_FORMATS:
            policies.append((ScaleRule.FLOOR, Rounding.RNE, Overflow.IEEE))
        for rule, rounding, overflow in policies:
            name = _encode_file(fmt.name, rule, rounding, overflow is Overflow.IEEE)
            plan.append((name, partial(encode_text, fmt, rule, rounding, overflow, name)))
    plan += [(f"pack_{f.name}.hex", partial(_pack_file_text, f)) for f in formats]
    plan += [(_model_file(m), partial(gemm_text, m)) for m in GEMM_MODELS]
    plan += nv_plan()  # after the MX files, which stay byte-identical
    return plan


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate` wrote.

    Attributes
    ----------
    directory : str
    files : list of (str, int)
        File name and size in bytes, MANIFEST last.
    seconds : float
        Wall time.
    stale : list of str
        Files in the directory that are neither generated nor hand-written
        (``README.md``); :func:`verify` reports them as extra.
    """

    directory: str
    files: list[tuple[str, int]]
    seconds: float
    stale: list[str]

    @property
    def total_bytes(self) -> int:
        """The size of every written file together."""
        return sum(size for _, size in self.files)


def generate(
    directory: str | Path,
    *,
    force: bool = False,
    regressions: str | Path | None = None,
) -> GenerateResult:
    """Write every golden file and the MANIFEST into ``directory``, from the oracle only.

    The output is byte-identical on every run and machine: cases come from
    :mod:`mxref.testing.cases` with :data:`SEED`, expected outputs from
    :mod:`mxref.ref`, and nothing else (no time, no path) enters the files.

    Parameters
    ----------
    directory : str or Path
        Created if missing (its parent must exist).
    force : bool
        Replace existing files.
    regressions : str or Path, optional
        A ``regressions.hex`` whose appended cases (beyond the built-in ones)
        are carried into the new file, their outputs re-derived from the
        oracle.  Default: the directory's own ``regressions.hex``, if any.

    Returns
    -------
    GenerateResult

    Raises
    ------
    InputError
        If a file exists and ``force`` is False, the parent directory is
        missing, or a carried regression no longer matches the oracle.

    Spec: OCP MX v1.0 sections 5, 6.2 and 6.3, through the oracle.
    """
    start = time.perf_counter()
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: is not a directory")
    if not root.exists() and not root.parent.is_dir():
        raise InputError(f"{root}: parent directory {root.parent} does not exist")
    plan = _plan()
    names = [name for name, _ in plan] + [REGRESSIONS, MANIFEST]
    if root.is_dir():
        check_new([root / n for n in names], force=force)
    source = Path(regressions) if regressions is not None else root / REGRESSIONS
    carried = _carried_regressions(source) if (regressions is not None or source.is_file()) else []
    root.mkdir(exist_ok=True)
    written: list[tuple[str, int]] = []
    digests: list[tuple[str, str]] = []
    texts = [(name, build) for name, build in plan]
    texts.append((REGRESSIONS, lambda: _regressions_text(carried)))
    for name, build in texts:
        data = build().encode("ascii")
        (root / name).write_bytes(data)
        written.append((name, len(data)))
        digests.append((name, hashlib.sha256(data).hexdigest()))
    manifest = _manifest_text(digests).encode("ascii")
    (root / MANIFEST).write_bytes(manifest)
    written.append((MANIFEST, len(manifest)))
    stale = sorted(p.name for p in root.iterdir() if p.name not in set(names) | UNLISTED)
    return GenerateResult(str(directory), written, time.perf_counter() - start, stale)
