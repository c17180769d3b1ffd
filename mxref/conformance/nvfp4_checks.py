"""The NVFP4 checks of ``mxref conform``: tensor scale, block scales, codes, packing, decoding.

Every case is a small tensor (:func:`mxref.testing.cases.nvfp4.nv_cases`);
the backend's float32 tensor scale(s), E4M3 bytes and E2M1 codes are
compared bit for bit with the exact oracle :mod:`mxref.ref.nvfp4`, and a
failure names the tensor, the block ``(row, block)`` and the lane.

Spec: none for NVFP4 (docs/semantics.md section 8c); E2M1 is OCP MX v1.0
section 5.3's element, E4M3 OFP8's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.backends import Backend, CommandBackend, NVOutput, _one_line
from mxref.conformance.batches import _hex8, _hex32
from mxref.conformance.checks import NVConfig
from mxref.conformance.failures import CaseFailure
from mxref.conformance.report import _Tally
from mxref.formats import get_format
from mxref.policies import Rounding
from mxref.ref.element import BINARY32, decode_element, encode_float
from mxref.ref.nvfp4 import (
    NV_BLOCK_SIZE,
    dequantize_nv_block,
    quantize_nv_block,
    quantize_nv_rows,
)
from mxref.ref.packing import nvidia_blocked_offset, nvidia_blocked_size, pack_row
from mxref.testing.cases.checked import case_rng
from mxref.testing.cases.nvfp4 import NVCase, nv_cases, nv_pack_cases

__all__ = ["nv_oracle", "run_nv_decode", "run_nv_pack", "run_nv_quantize"]

NVFP4 = get_format("nvfp4", two_level=True)

Expected = tuple[np.ndarray, np.ndarray, np.ndarray]


def _values(x: np.ndarray) -> list[list[Any]]:
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return [[decode_element(int(b), BINARY32) for b in row] for row in bits]


def _f32(value: Fraction) -> np.float32:
    bits = encode_float((0, value), BINARY32)
    return np.array([bits], np.uint32).view(np.float32)[0]


@functools.lru_cache(maxsize=1024)
def _oracle_cached(data: bytes, shape: tuple[int, int], rounding: str, per_row: bool,
                   given: int | None) -> Expected:  # fmt: skip
    x = np.frombuffer(data, np.float32).reshape(shape)
    rows = _values(x)
    rnd = Rounding.parse(rounding)
    if given is None:
        gs, all_bytes, all_codes = quantize_nv_rows(rows, NV_BLOCK_SIZE, per_row, rnd)
    else:
        g = Fraction(float(np.array([given], np.uint32).view(np.float32)[0]))
        gs, all_bytes, all_codes = [g], [], []
        for row in rows:
            blocks = [quantize_nv_block(row[s : s + NV_BLOCK_SIZE], g, rnd)
                      for s in range(0, len(row), NV_BLOCK_SIZE)]  # fmt: skip
            all_bytes.append([b for b, _ in blocks])
            all_codes.append([c for _, cs in blocks for c in cs])
    return (np.array([_f32(g) for g in gs], np.float32),
            np.array(all_bytes, np.uint8).reshape(shape[0], -1),
            np.array(all_codes, np.uint8).reshape(shape))  # fmt: skip


def nv_oracle(x: np.ndarray, rounding: str = "rne", per_row: bool = False,
              given: int | None = None) -> Expected:  # fmt: skip
    """The exact oracle's NVFP4 encoding of a 2-D float32 tensor blocked along its rows.

    Parameters
    ----------
    x : np.ndarray
        float32, ``(rows, cols)``.
    rounding : str
        Element rounding: ``"rne"``, ``"away"`` or ``"zero"``.
    per_row : bool
    given : int, optional
        float32 bits of a given tensor scale.

    Returns
    -------
    (np.ndarray, np.ndarray, np.ndarray)
        float32 tensor scale(s) ``(1,)`` or ``(rows,)``, uint8 E4M3 bytes
        ``(rows, ceil(cols / 16))``, uint8 codes ``(rows, cols)``.
    """
    x = np.ascontiguousarray(x, np.float32)
    return _oracle_cached(x.tobytes(), (int(x.shape[0]), int(x.shape[1])), rounding, per_row,
                          given)  # fmt: skip


def _t_hex(t: np.ndarray) -> list[str]:
    return _hex32(np.asarray(t, np.float32))


def _nv_failure(
    check: str, case: NVCase, index: int, config: NVConfig, x: np.ndarray, want: Expected,
    got: NVOutput | None, error: str | None,
) -> CaseFailure:  # fmt: skip
    """Describe one failing tensor by its first differing block (row, block) and lane."""
    shape = case.shape
    where = f"{config.label()}, tensor {index} {shape[0]}x{shape[1]}: {case.note}"
    inputs = {"x": _hex32(x[0, :NV_BLOCK_SIZE])}
    if case.given is not None:
        inputs["given_tensor_scale"] = [f"{case.given:08x}"]
    w_t, w_s, w_c = want
    if got is None:
        expected = {"tensor_scale": _t_hex(w_t), "scale": _hex8(w_s[0, :1]),
                    "codes": _hex8(w_c[0, :NV_BLOCK_SIZE])}  # fmt: skip
        return CaseFailure(check, where, inputs, expected, {}, ["no output"], error=error)
    g_t, g_s, g_c = got.tensor_scale, got.scales, got.codes
    differs = []
    bad_t = np.flatnonzero(w_t.view(np.uint32) != g_t.view(np.uint32))
    if bad_t.size:
        differs.append("tensor scale" + ("" if w_t.size == 1 else
                                         f" of rows {', '.join(map(str, bad_t[:8]))}"))  # fmt: skip
    nb = w_s.shape[1]
    lanes_bad = (w_c != g_c)
    block_code_bad = np.zeros(w_s.shape, bool)
    for b in range(nb):
        block_code_bad[:, b] = lanes_bad[:, b * NV_BLOCK_SIZE : (b + 1) * NV_BLOCK_SIZE].any(axis=1)
    scale_bad = w_s != g_s
    bad_blocks = np.argwhere(scale_bad | block_code_bad)
    if scale_bad.any():
        where_s = ", ".join(f"({r}, {b})" for r, b in np.argwhere(scale_bad)[:6])
        differs.append(f"block scale in {int(scale_bad.sum())} block(s): {where_s}")
    r, b = (int(v) for v in bad_blocks[0]) if bad_blocks.size else (0, 0)
    lo, hi = b * NV_BLOCK_SIZE, min((b + 1) * NV_BLOCK_SIZE, shape[1])
    lanes = np.flatnonzero(lanes_bad[r, lo:hi])
    if lanes.size:
        differs.append(f"block ({r}, {b}): codes at lanes {', '.join(map(str, lanes[:12]))}")
        j = int(lanes[0])
        v = x[r, lo + j]
        differs.append(f"block ({r}, {b}) lane {j}: x {_hex32(v)[0]} ({float(v)!r}) "
                       f"expected {_hex8([w_c[r, lo + j]])[0]}, "
                       f"got {_hex8([g_c[r, lo + j]])[0]}")  # fmt: skip
    row_t = r if w_t.size > 1 else 0
    inputs["x"] = _hex32(x[r, lo:hi])
    return CaseFailure(
        check=check, where=f"{where}; block ({r}, {b})", inputs=inputs,
        expected={"tensor_scale": _t_hex(w_t[row_t : row_t + 1]), "scale": _hex8([w_s[r, b]]),
                  "codes": _hex8(w_c[r, lo:hi])},
        got={"tensor_scale": _t_hex(g_t[row_t : row_t + 1]), "scale": _hex8([g_s[r, b]]),
             "codes": _hex8(g_c[r, lo:hi])},
        differs=differs or ["?"], blocks=int(bad_blocks.shape[0]),
    )  # fmt: skip


def _same(want: Expected, got: NVOutput) -> bool:
    return (np.array_equal(want[0].view(np.uint32), got.tensor_scale.view(np.uint32))
            and np.array_equal(want[1], got.scales) and np.array_equal(want[2], got.codes))


def run_nv_quantize(backend: Backend, roundings: Sequence[str], level: int, seed: int,
                    tally: _Tally) -> None:  # fmt: skip
    """Run every NVFP4 quantize case under each rounding; tally them by check.

    A ``--command`` backend gets one run per shape and configuration; a
    callable one call per tensor.
    """
    cases = nv_cases(level, seed)
    for rounding in roundings:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, case in enumerate(cases):
            key = (case.per_row, case.given is not None,
                   case.shape if isinstance(backend, CommandBackend) else i)  # fmt: skip
            groups.setdefault(key, []).append(i)
        for (per_row, has_given, _), members in groups.items():
            config = NVConfig(rounding, per_row, has_given)
            x = np.stack([cases[i].array() for i in members])
            given = None
            if has_given:
                bits = np.array([cases[i].given for i in members], np.uint32)
                given = bits.view(np.float32)
            outputs = backend.run_nv(x, config, given)
            for i, xi, out in zip(members, x, outputs, strict=True):
                case = cases[i]
                want = nv_oracle(xi, rounding, case.per_row, case.given)
                good = not isinstance(out, str) and _same(want, out)
                if good:
                    tally.add(case.check, None)
                    continue
                got = None if isinstance(out, str) else out
                err = out if isinstance(out, str) else None
                tally.add(case.check, functools.partial(
                    _nv_failure, case.check, case, i, config, xi, want, got, err),
                    error=err is not None)  # fmt: skip


def _built(failure: CaseFailure) -> CaseFailure:
    return failure


def _reference_pack(codes: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Packed codes and 128x4-tiled scale bytes, from the formulas (not :func:`mxref.pack`)."""
    data = np.array([list(pack_row(row.tolist(), 4)) for row in codes], np.uint8)
    rows, cols = scales.shape
    blocked = np.zeros(nvidia_blocked_size(rows, cols), np.uint8)
    for r in range(rows):
        for c in range(cols):
            blocked[nvidia_blocked_offset(rows, cols, r, c)] = scales[r, c]
    return data, blocked


def _blocked_position(rows: int, cols: int, offset: int) -> str:
    for r in range(rows):
        for c in range(cols):
            if nvidia_blocked_offset(rows, cols, r, c) == offset:
                return f"scale ({r}, {c})"
    return "a padding byte"


def run_nv_pack(pack_fn: Callable[..., Any], level: int, seed: int, tally: _Tally) -> None:
    """``pack(mx, scale_layout="nvidia_blocked")`` of NVFP4 arrays against the layout's formula."""
    check = "nvfp4.packing"
    for case in nv_pack_cases(seed, level):
        mx = MXArray(codes=case.codes, scales=case.scales, fmt=NVFP4, axis=1,
                     block_size=NV_BLOCK_SIZE, tensor_scale=case.tensor_scale)  # fmt: skip
        want_data, want_scales = _reference_pack(case.codes, case.scales)
        error = None
        differs: list[str] = []
        try:
            result = pack_fn(mx, scale_layout="nvidia_blocked")
            data = np.asarray(getattr(result, "data", None))
            scales = np.asarray(getattr(result, "scales", None)).reshape(-1)
            t = getattr(result, "tensor_scale", None)
            if data.shape != want_data.shape or data.dtype != np.uint8:
                error = (f"packed data is {data.dtype} {data.shape}; expected uint8 "
                         f"{want_data.shape}")  # fmt: skip
            elif scales.shape != want_scales.shape or scales.dtype != np.uint8:
                error = (f"packed scales are {scales.dtype} {scales.shape}; expected uint8 "
                         f"{want_scales.shape} (128x4 tiles)")  # fmt: skip
            else:
                bad = np.argwhere(data != want_data)
                if bad.size:
                    r, j = (int(v) for v in bad[0])
                    differs.append(f"data at {bad.shape[0]} bytes, first row {r} byte {j} "
                                   f"(codes {2 * j} and {2 * j + 1})")  # fmt: skip
                off = np.flatnonzero(scales != want_scales)
                if off.size:
                    rows, cols = case.scales.shape
                    first = int(off[0])
                    differs.append(f"swizzled scales at {off.size} bytes, first offset {first} "
                                   f"({_blocked_position(rows, cols, first)} belongs there)")
                if t is None or np.asarray(t, np.float32).view(np.uint32).tolist() != \
                        case.tensor_scale.view(np.uint32).tolist():  # fmt: skip
                    differs.append("tensor scale not kept")
        except Exception as exc:  # the backend's bug, reported as a failure
            error = f"raised {type(exc).__name__}: {_one_line(exc)}"
        if error is None and not differs:
            tally.add(check, None)
            continue
        got = {} if error is not None else {"packed": _hex8(data[0][:16]),
                                            "blocked_scales": _hex8(scales[:32])}  # fmt: skip
        failure = CaseFailure(check, f"nvfp4 pack, scale_layout nvidia_blocked, {case.note}",
                              {"codes": _hex8(case.codes[0, :16]),
                               "scales": _hex8(case.scales.reshape(-1)[:32])},
                              {"packed": _hex8(want_data[0][:16]),
                               "blocked_scales": _hex8(want_scales[:32])},
                              got, differs or ["no output"], error=error)  # fmt: skip
        tally.add(check, functools.partial(_built, failure), error=error is not None)


def _decode_tensors(seed: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(note, codes, bytes, tensor scale) arrays that decode every byte and code."""
    rng = case_rng(seed, "nvfp4 decode")
    codes = np.tile(np.arange(16, dtype=np.uint8), (128, 1))  # row = byte: every code
    scales = np.arange(128, dtype=np.uint8)[:, None]
    out = []
    for g in (1.0, 2688 / 3.7, 3.0e-30, 3.4e38):
        out.append((f"every E4M3 byte x every code, G {g:g}", codes, scales,
                    np.array(g, np.float32)))  # fmt: skip
    per = rng.uniform(0.5, 3000.0, 128).astype(np.float32)
    out.append(("every E4M3 byte x every code, a random G per row", codes, scales, per))
    return out


def run_nv_decode(dequantize: Callable[..., Any], seed: int, tally: _Tally) -> None:
    """``dequantize(mx, np.float32)`` of NVFP4 arrays against ``RN32(code * s_b / G)``."""
    check = "nvfp4.decode"
    for note, codes, scales, t in _decode_tensors(seed):
        mx = MXArray(codes=codes, scales=scales, fmt=NVFP4, axis=1, block_size=NV_BLOCK_SIZE,
                     tensor_scale=t)  # fmt: skip
        ts = np.broadcast_to(t.reshape(-1), (codes.shape[0],))
        want = np.array([dequantize_nv_block(int(scales[r, 0]), codes[r].tolist(),
                                             Fraction(float(ts[r])))
                         for r in range(codes.shape[0])], np.uint32)  # fmt: skip
        error = None
        got = None
        try:
            out = np.asarray(dequantize(mx, np.float32))
            if out.shape != codes.shape or out.dtype != np.float32:
                error = (f"dequantize returned {out.dtype} {out.shape}; expected float32 "
                         f"{codes.shape}")  # fmt: skip
            else:
                got = out.view(np.uint32)
        except Exception as exc:  # the backend's bug, reported as a failure
            error = f"raised {type(exc).__name__}: {_one_line(exc)}"
        if got is not None and np.array_equal(got, want):
            tally.add(check, None)
            continue
        r, j = (0, 0) if got is None else (int(v) for v in np.argwhere(got != want)[0])
        differs = ["no output"] if got is None else [
            f"{int((got != want).sum())} values; first: scale byte {int(scales[r, 0]):02x} "
            f"code {j:x} (block ({r}, 0), lane {j})"]  # fmt: skip
        failure = CaseFailure(
            check, f"nvfp4 decode, {note}; block ({r}, 0)",
            {"codes": _hex8(codes[r]), "scale": _hex8([scales[r, 0]]),
             "tensor_scale": _t_hex(ts[r : r + 1])},
            {"values": [f"{int(v):08x}" for v in want[r]]},
            {} if got is None else {"values": [f"{int(v):08x}" for v in got[r]]},
            differs, error=error)  # fmt: skip
        tally.add(check, functools.partial(_built, failure), error=error is not None)
