"""NVFP4 golden files: whole tensors in, tensor scale(s), E4M3 bytes and E2M1 codes out.

NVFP4's tensor scale depends on the whole tensor, so an NVFP4 encode line is
a tensor (``ROWS COLS`` then its float32 inputs), not a block; its outputs
are the tensor scale(s) as float32 bits, the E4M3 byte of every block and
every code.  Decode lines give a tensor scale, an E4M3 byte and codes; pack
lines a scale matrix and codes, packed with NVIDIA's 128x4 swizzled scale
layout.  The file format is docs/golden_format.md ("NVFP4").

Everything expected comes from the oracle :mod:`mxref.ref.nvfp4` and the
layout formula :func:`mxref.ref.packing.nvidia_blocked_offset`.

Spec: none for NVFP4 (docs/semantics.md section 8c); E2M1 is OCP MX v1.0
section 5.3's element.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.golden.format import Flag, GoldenCase, Header, _file_seed, _hex, _join
from mxref.conformance.golden.oracle import _common_tail, _header
from mxref.formats import get_format
from mxref.policies import Rounding
from mxref.ref.element import BINARY32, Value, decode_element, encode_float
from mxref.ref.nvfp4 import (
    E2M1,
    E4M3,
    NV_BLOCK_SIZE,
    decode_block_scale,
    dequantize_nv_block,
    quantize_nv_block,
    tensor_scale,
)
from mxref.ref.packing import nvidia_blocked_offset, nvidia_blocked_size, pack_row
from mxref.testing.cases.checked import case_rng
from mxref.testing.cases.nvfp4 import NVCase, nv_cases, nv_pack_cases

__all__ = ["nv_plan"]

NVFP4 = get_format("nvfp4", two_level=True)

#: The element roundings NVFP4 takes, each with its own per-tensor encode file.
NV_ROUNDINGS = (Rounding.RNE, Rounding.AWAY, Rounding.ZERO)

#: encode file kinds: name suffix -> (header tensor_scale value, which cases).
_KINDS: dict[str, tuple[str, Callable[[NVCase], bool]]] = {
    "": ("per_tensor", lambda c: not c.per_row and c.given is None),
    "_per_row": ("per_row", lambda c: c.per_row and c.given is None),
    "_given": ("given", lambda c: c.given is not None),
}

_FLOAT32_MAX = Fraction(float(np.finfo(np.float32).max))


def _value(bits: int) -> Value:
    return decode_element(bits, BINARY32)


def _f32_bits(value: Fraction) -> int:
    return encode_float((0, value), BINARY32)


def _encode_tensor(
    case: NVCase, rounding: Rounding
) -> tuple[list[int], list[int], list[int], Flag]:
    """(tensor scale bits, E4M3 bytes, codes, flags) of one tensor, from the oracle."""
    rows = [[_value(b) for b in row] for row in case.rows]

    def finite_amax(values: Sequence[Value]) -> Fraction:
        return max((m for _, m in values if isinstance(m, Fraction)), default=Fraction(0))

    if case.given is not None:
        amaxes = []
        gs = [Fraction(_value(case.given)[1])]
    elif case.per_row:
        amaxes = [finite_amax(r) for r in rows]
        gs = [tensor_scale(a) for a in amaxes]
    else:
        amaxes = [max(finite_amax(r) for r in rows)]
        gs = [tensor_scale(amaxes[0])]
    flags = Flag(0)
    if any(a > 0 and 6 * 448 / a > _FLOAT32_MAX for a in amaxes):
        flags |= Flag.SCALE_CLAMPED
    all_bytes, all_codes = [], []
    for r, row in enumerate(rows):
        g = gs[r if len(gs) > 1 else 0]
        for start in range(0, len(row), NV_BLOCK_SIZE):
            values = row[start : start + NV_BLOCK_SIZE]
            byte, codes = quantize_nv_block(values, g, rounding)
            all_bytes.append(byte)
            all_codes += codes
            flags |= _block_flags(values, g, byte, codes)
    return [_f32_bits(g) for g in gs], all_bytes, all_codes, flags


def _block_flags(values: Sequence[Value], g: Fraction, byte: int, codes: Sequence[int]) -> Flag:
    if not all(isinstance(m, Fraction) for _, m in values):
        return Flag.NAN_BLOCK
    amax = max(m for _, m in values)
    assert isinstance(amax, Fraction)
    if amax == 0:
        return Flag.ZERO_BLOCK
    flags = Flag(0)
    if amax / E2M1.max_normal * g > E4M3.max_normal:
        flags |= Flag.SATURATED
    scale = decode_block_scale(byte)
    assert scale is not None
    for (_, mag), code in zip(values, codes, strict=True):
        assert isinstance(mag, Fraction)
        if scale and mag * g / scale > E2M1.max_normal:
            flags |= Flag.SATURATED
        _, got = decode_element(code, E2M1)
        assert isinstance(got, Fraction)
        if (got * scale / g if scale else 0) != mag:
            flags |= Flag.INEXACT
    return flags


def _encode_text(rounding: Rounding, kind: str, cases: Sequence[NVCase], level: int) -> str:
    mode, _ = _KINDS[kind]
    given = "G (float32 bits, the given tensor scale) " if mode == "given" else ""
    out_g = "G0 .. G<rows-1> (one per row)" if mode == "per_row" else "G"
    items: Header = [
        ("operation", "encode_nv"),
        ("format", "nvfp4"),
        ("rounding", rounding.value),
        ("tensor_scale", mode),
        ("block_size", str(NV_BLOCK_SIZE)),
        ("input", "float32"),
        ("level", "1" if level == 1 else "1 and 2"),
    ]
    items += _common_tail(
        f"rows cols (decimal) {given}x0 .. x<rows*cols-1> (float32 bits, row-major, blocked "
        f"along each row) -> {out_g} (float32 bits) s0 .. (E4M3 byte of each block, row-major) "
        "p0 .. (E2M1 codes, 1 hex digit) flags area; one tensor per line"
    )
    title = f"encode nvfp4, rounding {rounding.value}, tensor scale {mode.replace('_', ' ')}"
    lines = _header(title, items)
    for case in cases:
        gs, scale_bytes, codes, flags = _encode_tensor(case, rounding)
        rows, cols = case.shape
        head = [str(rows), str(cols)] + ([_hex(case.given, 8)] if case.given is not None else [])
        inputs = [_hex(b, 8) for row in case.rows for b in row]
        outs = [_hex(g, 8) for g in gs] + [_hex(b, 2) for b in scale_bytes]
        outs += [_hex(c, 1) for c in codes]
        lines.append(" ".join([*head, *inputs, "->", *outs, f"{flags.value:02X}", case.area]))
    return "\n".join(lines) + "\n"


def _decode_rows(seed: int) -> list[tuple[int, int, list[int]]]:
    """(G bits, byte, codes) lines: every byte and code at G = 1, a sample at other G."""
    rng = case_rng(seed, "nvfp4 decode lines")
    every = list(range(16))
    lines = [(_f32_bits(Fraction(1)), byte, every) for byte in range(0x80)]
    gs = [Fraction(3), Fraction(2688) / Fraction(float(np.float32(3.7))), _FLOAT32_MAX,
          Fraction(1, 2**149), Fraction(float(np.float32(1e-30)))]  # fmt: skip
    for g in gs:
        bits = _f32_bits(g)
        picks = [0x00, 0x01, 0x07, 0x08, 0x38, 0x7E, 0x7F]
        picks += [int(b) for b in rng.integers(0, 0x80, 4)]
        lines += [(bits, byte, every) for byte in picks]
    return lines


def _decode_text(seed: int) -> str:
    items: Header = [("operation", "decode_nv"), ("format", "nvfp4"),
                     ("block_size", str(NV_BLOCK_SIZE))]  # fmt: skip
    items += _common_tail(
        "G (float32 bits) scale (E4M3 byte) codes (16 E2M1 codes, 1 hex digit each, "
        "concatenated) -> v0 .. v15 (float32 bits of RN32(code * s / G); byte 7F is NaN) "
        "flags area; one block per line"
    )
    lines = _header("decode nvfp4 blocks: every E4M3 scale byte, every code", items)
    for g_bits, byte, codes in _decode_rows(seed):
        g = _value(g_bits)[1]
        assert isinstance(g, Fraction)
        values = dequantize_nv_block(byte, codes, g)
        flags = Flag.NAN_BLOCK if byte == 0x7F else Flag(0)
        lines.append(f"{_hex(g_bits, 8)} {_hex(byte, 2)} {_join(codes, 1)} -> "
                     + " ".join(_hex(v, 8) for v in values) + f" {flags.value:02X} decode")
    return "\n".join(lines) + "\n"


def _blocked(scales: np.ndarray) -> bytes:
    rows, cols = scales.shape
    out = bytearray(nvidia_blocked_size(rows, cols))
    for r in range(rows):
        for c in range(cols):
            out[nvidia_blocked_offset(rows, cols, r, c)] = int(scales[r, c])
    return bytes(out)


def _pack_text(seed: int) -> str:
    items: Header = [
        ("operation", "pack_nv"),
        ("format", "nvfp4"),
        ("layout", "codes: mxref.packing (two per byte, low nibble first), per row; scales: "
                   "NVIDIA's 128x4 tiles (cuBLAS 1D block scaling factors layout)"),
        ("block_size", str(NV_BLOCK_SIZE)),
    ]  # fmt: skip
    items += _common_tail(
        "rows cols (decimal) codes (rows*cols E2M1 codes, 1 hex digit each, row-major) scales "
        "(rows*ceil(cols/16) E4M3 bytes, row-major) -> packed codes (bytes, row after row) "
        "swizzled scales (bytes) flags area; one array per line"
    )
    lines = _header("pack nvfp4 codes, and its scales in NVIDIA's swizzled layout", items)
    for case in nv_pack_cases(seed):
        rows, cols = case.codes.shape
        data = b"".join(pack_row(row.tolist(), 4) for row in case.codes)
        lines.append(
            f"{rows} {cols} {_join(case.codes.reshape(-1).tolist(), 1)} "
            f"{_join(case.scales.reshape(-1).tolist(), 2)} -> {data.hex().upper()} "
            f"{_blocked(case.scales).hex().upper()} 00 packing"
        )
    return "\n".join(lines) + "\n"


def nv_plan() -> list[tuple[str, Callable[[], str]]]:
    """(file name, text builder) of every NVFP4 golden file, in generation order."""
    cache: dict[int, list[NVCase]] = {}

    def cases(level: int) -> list[NVCase]:
        if level not in cache:
            cache[level] = nv_cases(level, _file_seed(f"cases_nvfp4_{level}") % 2**32)
        return cache[level]

    def encode(rounding: Rounding, kind: str) -> Callable[[], str]:
        level = 2 if rounding is Rounding.RNE else 1
        return lambda: _encode_text(rounding, kind,
                                    [c for c in cases(level) if _KINDS[kind][1](c)], level)

    plan: list[tuple[str, Callable[[], str]]] = [
        ("decode_nvfp4.hex", lambda: _decode_text(_file_seed("decode_nvfp4"))),
    ]
    for rounding in NV_ROUNDINGS:
        kinds = list(_KINDS) if rounding is Rounding.RNE else [""]
        plan += [(f"encode_nvfp4_{rounding.value}{kind}.hex", encode(rounding, kind))
                 for kind in kinds]  # fmt: skip
    plan.append(("pack_nvfp4.hex", lambda: _pack_text(_file_seed("pack_nvfp4") % 2**32)))
    return plan


# --- verifying -------------------------------------------------------------------------


def _u32(tokens: Sequence[str]) -> np.ndarray:
    return np.array([int(t, 16) for t in tokens], np.uint32)


def run_encode_nv(runner: Any, cases: Sequence[GoldenCase], header: dict[str, str],
                  quantize: Callable[..., Any], claims: Any) -> None:  # fmt: skip
    """Quantize every tensor line with the backend; compare G, bytes and codes exactly."""
    from mxref.testing.backend import nv_backend_output

    rounding = header.get("rounding", "rne")
    mode = header.get("tensor_scale", "per_tensor")
    if claims is not None and not claims.covers(fmt="nvfp4", rounding=rounding):
        runner.not_claimed(cases, f"nvfp4 {rounding}")
        return
    for c in cases:
        rows, cols = int(c.inputs[0]), int(c.inputs[1])
        rest = list(c.inputs[2:])
        kw: dict[str, Any] = {"axis": -1, "block_size": NV_BLOCK_SIZE, "rounding": rounding}
        if mode == "given":
            kw["tensor_scale"] = _u32(rest[:1]).view(np.float32)[0]
            rest = rest[1:]
        if mode == "per_row":
            kw["per_row"] = True
        if len(rest) != rows * cols:
            raise ValueError(f"line {c.line}: {rows} x {cols} announced, {len(rest)} inputs given")
        x = _u32(rest).view(np.float32).reshape(rows, cols)
        try:
            result = quantize(x, "nvfp4", **kw)
            codes, scales, t = nv_backend_output(result, x.shape, mode == "per_row")
        except Exception as exc:  # the backend under test may raise anything
            runner.error([c], exc)
            continue
        got = [_hex(int(v), 8) for v in t.view(np.uint32)]
        got += [_hex(int(v), 2) for v in scales.reshape(-1)]
        got += [_hex(int(v), 1) for v in codes.reshape(-1)]
        runner.check(c, " ".join(c.outputs), " ".join(got))


def run_decode_nv(runner: Any, cases: Sequence[GoldenCase],
                  dequantize: Callable[..., Any] | None) -> None:  # fmt: skip
    """Dequantize every block line (grouped by tensor scale) and compare float32 bits."""
    if dequantize is None:
        runner.not_provided(cases, "dequantize")
        return
    groups: dict[str, list[GoldenCase]] = {}
    for c in cases:
        groups.setdefault(c.inputs[0], []).append(c)
    for g_text, members in groups.items():
        codes = np.array([[int(ch, 16) for ch in c.inputs[2]] for c in members], np.uint8)
        scales = np.array([[int(c.inputs[1], 16)] for c in members], np.uint8)
        t = _u32([g_text]).view(np.float32).reshape(())
        try:
            mx = MXArray(codes=codes, scales=scales, fmt=NVFP4, axis=1, block_size=NV_BLOCK_SIZE,
                         tensor_scale=t)  # fmt: skip
            out = np.ascontiguousarray(np.asarray(dequantize(mx, np.float32)))
            if out.shape != codes.shape or out.dtype != np.float32:
                raise ValueError(f"dequantize returned {out.dtype} {out.shape}; expected "
                                 f"float32 {codes.shape}")  # fmt: skip
        except Exception as exc:  # the backend under test may raise anything
            runner.error(members, exc)
            continue
        for c, row in zip(members, out.view(np.uint32), strict=True):
            runner.check(c, " ".join(c.outputs), " ".join(_hex(int(v), 8) for v in row))


def run_pack_nv(runner: Any, cases: Sequence[GoldenCase],
                pack: Callable[..., Any] | None) -> None:  # fmt: skip
    """Pack every line with ``scale_layout="nvidia_blocked"``; compare both byte strings."""
    if pack is None:
        runner.not_provided(cases, "pack")
        return
    for c in cases:
        rows, cols, code_text, scale_text = c.inputs
        r, k = int(rows), int(cols)
        codes = np.array([int(ch, 16) for ch in code_text], np.uint8).reshape(r, k)
        nb = -(-k // NV_BLOCK_SIZE)
        scales = np.array([int(scale_text[i : i + 2], 16) for i in range(0, len(scale_text), 2)],
                          np.uint8).reshape(r, nb)  # fmt: skip
        mx = MXArray(codes=codes, scales=scales, fmt=NVFP4, axis=1, block_size=NV_BLOCK_SIZE,
                     tensor_scale=np.array(1.0, np.float32))  # fmt: skip
        try:
            result = pack(mx, scale_layout="nvidia_blocked")
            data = np.asarray(result.data, np.uint8).reshape(-1)
            blocked = np.asarray(result.scales, np.uint8).reshape(-1)
        except Exception as exc:  # the backend under test may raise anything
            runner.error([c], exc)
            continue
        got = f"{bytes(data.tolist()).hex().upper()} {bytes(blocked.tolist()).hex().upper()}"
        runner.check(c, " ".join(c.outputs), got)
