"""The GEMM area of ``mxref conform``: small MX products against the exact oracle.

Spec: OCP MX v1.0 section 6.2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.backends import _one_line
from mxref.conformance.batches import _hex8, _hex32
from mxref.conformance.report import CaseFailure, _Tally
from mxref.formats import (
    DEFAULT_BLOCK_SIZE,
    ElementFormat,
    Specials,
    get_format,
    mx_format_names,
)
from mxref.testing.cases import case_rng

# --- GEMM -------------------------------------------------------------------
_GEMM_PAIRS_L1 = (
    ("mxfp4", "mxfp4"),
    ("mxfp8_e4m3", "mxfp8_e4m3"),
    ("mxfp8_e5m2", "mxfp8_e4m3"),
    ("mxfp6_e2m3", "mxfp6_e3m2"),
    ("mxint8", "mxint8"),
    ("mxfp4", "mxint8"),
)


_EXTREME_BYTES = np.array([0, 1, 2, 126, 127, 128, 252, 253, 254])


def _finite_codes(
    fmt: ElementFormat, rng: np.random.Generator, shape: tuple[int, ...]
) -> np.ndarray:
    from mxref.ref.element import apply_sign

    mags = rng.integers(0, fmt.max_code + 1, shape)
    signs = rng.integers(0, 2, shape)
    return np.vectorize(lambda s, m: apply_sign(int(s), int(m), fmt), otypes=[np.uint8])(
        signs, mags
    )


def _operands(
    fa: ElementFormat, fb: ElementFormat, kind: str, rng: np.random.Generator
) -> tuple[MXArray, MXArray]:
    """A (m x k, blocked along k) and B (k x n, blocked along axis 0)."""
    bs = DEFAULT_BLOCK_SIZE
    m, n, k = int(rng.integers(1, 4)), int(rng.integers(1, 4)), 3 * bs
    ca, cb = _finite_codes(fa, rng, (m, k)), _finite_codes(fb, rng, (n, k))
    sa = rng.integers(110, 146, (m, 3)).astype(np.uint8)
    sb = rng.integers(110, 146, (n, 3)).astype(np.uint8)
    if kind == "extreme":
        sa = rng.choice(_EXTREME_BYTES, (m, 3)).astype(np.uint8)
        sb = rng.choice(_EXTREME_BYTES, (n, 3)).astype(np.uint8)
    elif kind == "nan_scale":
        sa[rng.integers(m), rng.integers(3)] = 0xFF
        if rng.integers(2):
            sb[rng.integers(n), rng.integers(3)] = 0xFF
    elif kind == "special":
        for codes, fmt in ((ca, fa), (cb, fb)):
            specials = [c for c in (fmt.nan_code, fmt.inf_code) if c is not None]
            for c in specials:
                codes[rng.integers(codes.shape[0]), rng.integers(k)] = c | (
                    fmt.sign_bit * int(rng.integers(2))
                )
    elif kind == "cancel":
        ca[:, bs : 2 * bs] = (
            ca[:, :bs] ^ fa.sign_bit
            if fa.has_negative_zero
            else (-ca[:, :bs].astype(np.int64)) & 0xFF
        )
        cb[:, bs : 2 * bs] = cb[:, :bs]
        sa[:, 1] = sa[:, 0]
        sb[:, 1] = sb[:, 0]
    a = MXArray(codes=ca, scales=sa, fmt=fa, axis=1, block_size=bs)
    b = MXArray(
        codes=np.ascontiguousarray(cb.T),
        scales=np.ascontiguousarray(sb.T),
        fmt=fb,
        axis=0,
        block_size=bs,
    )
    return a, b


_GEMM_KINDS = (
    ("gemm.random_blocks", "random", 2),
    ("gemm.extreme_scales", "extreme", 2),
    ("gemm.nan_scale", "nan_scale", 1),
    ("gemm.special_codes", "special", 1),
    ("gemm.cancellation", "cancel", 1),
)


def _run_matmul_backend(
    matmul_fn: Callable[..., Any],
    accum: str,
    formats: Sequence[ElementFormat],
    level: int,
    seed: int,
    tally: _Tally,
) -> None:
    from mxref.ref import gemm as ref_gemm

    names = {f.name for f in formats}
    every = mx_format_names()
    pairs = [(a, b) for a in every for b in every] if level >= 2 else list(_GEMM_PAIRS_L1)
    pairs = [(a, b) for a, b in pairs if a in names and b in names]
    for fa_name, fb_name in pairs:
        fa, fb = get_format(fa_name), get_format(fb_name)
        for check, kind, count in _GEMM_KINDS:
            if kind == "special" and fa.specials is Specials.NONE and fb.specials is Specials.NONE:
                continue
            rng = case_rng(seed, check, fa.name, fb.name)
            for rep in range(count * (4 if level >= 2 else 1)):
                a, b = _operands(fa, fb, kind, rng)
                want = ref_gemm.matmul(a, b, accum=accum)
                where = f"{fa.name} x {fb.name}, accum {accum}, case {rep}"
                got: np.ndarray | None = None
                error = None
                try:
                    got = np.asarray(matmul_fn(a, b, accum=accum))
                    if got.dtype != np.float32 or got.shape != want.shape:
                        error = f"result is {got.dtype} {got.shape}; expected float32 {want.shape}"
                        got = None
                except Exception as exc:  # the backend's bug
                    error = f"raised {type(exc).__name__}: {_one_line(exc)}"
                bad = None if got is None else got.view(np.uint32) != want.view(np.uint32)
                if bad is not None and not bad.any():
                    tally.add(check, None)
                    continue
                tally.add(
                    check,
                    functools.partial(_gemm_failure, check, where, a, b, want, got, bad, error),
                    error=error is not None,
                )


def _gemm_failure(
    check: str,
    where: str,
    a: MXArray,
    b: MXArray,
    want: np.ndarray,
    got: np.ndarray | None,
    bad: np.ndarray | None,
    error: str | None,
) -> CaseFailure:
    i, j = (0, 0) if bad is None else (int(v) for v in np.argwhere(bad)[0])
    return CaseFailure(
        check=check,
        where=f"{where}, D[{i}, {j}] ({a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]})",
        inputs={
            "a_codes": _hex8(a.codes[i]),
            "a_scales": _hex8(a.scales[i]),
            "b_codes": _hex8(b.codes[:, j]),
            "b_scales": _hex8(b.scales[:, j]),
        },
        expected={"d": _hex32(want[i, j])},
        got={} if got is None else {"d": _hex32(got[i, j])},
        differs=["no output"] if bad is None else [f"{int(bad.sum())} of {bad.size} elements of D"],
        error=error,
    )
