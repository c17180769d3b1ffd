"""NVFP4 on the quantize under test, against the exact oracle: ``mxref conform``'s cases and
hypothesis tensors.

Runs when the backend claims nvfp4 (``--mx-claims 'formats=nvfp4'`` with
``--mx-backend``), and on mxref itself; an MX-only backend skips it as not
claimed.  The cases are :func:`mxref.testing.cases.nvfp4.nv_cases`, grouped
by their check id (docs/conformance.md, "NVFP4"), so a failure here names
the same check ``mxref conform`` would.

Spec: none for NVFP4 (docs/semantics.md section 8c); E2M1 is OCP MX v1.0
section 5.3's element.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given

from mxref.conformance.checks import NV_CHECKS
from mxref.conformance.nvfp4_checks import nv_oracle
from mxref.testing.backend import BackendContractError, nv_backend_output
from mxref.testing.cases.nvfp4 import NVCase, nv_cases
from mxref.testing.strategies import nv_input
from spec_tests.conftest import Encoder

CASES = nv_cases(1, seed=0)
QUANTIZE_CHECKS = sorted({c.check for c in CASES})


def nv_encode(encoder: Encoder, x: np.ndarray, rounding: str = "rne", per_row: bool = False,
              given: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The backend's (tensor scale, bytes, codes) of one tensor, or a skip when not claimed."""
    if not encoder.claims.covers(fmt="nvfp4", rounding=rounding):
        pytest.skip(f"not claimed by the backend: nvfp4 {rounding}")
    kw: dict[str, Any] = {"axis": -1, "block_size": 16, "rounding": rounding}
    if per_row:
        kw["per_row"] = True
    if given is not None:
        kw["tensor_scale"] = np.array([given], np.uint32).view(np.float32)[0]
    try:
        codes, scales, t = nv_backend_output(encoder.quantize(x, "nvfp4", **kw), x.shape, per_row)
    except BackendContractError as exc:
        pytest.fail(f"the backend broke the output contract: {exc}")
    return t, scales, codes


def _mismatch(case: NVCase, got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> str:
    names = ("tensor scale", "E4M3 bytes", "codes")
    bad = [n for n, g, w in zip(names, got, want, strict=True)
           if not np.array_equal(np.asarray(g).view(np.uint8), np.asarray(w).view(np.uint8))]
    return f"{case.note}: {', '.join(bad)} differ" if bad else ""


@pytest.mark.parametrize("check", QUANTIZE_CHECKS)
@pytest.mark.parametrize("rounding", ["rne", "away", "zero"])
def test_conform_cases_by_check(mx_encode: Encoder, check: str, rounding: str):
    assert check in NV_CHECKS
    failures = []
    for case in (c for c in CASES if c.check == check):
        x = case.array()
        got = nv_encode(mx_encode, x, rounding, case.per_row, case.given)
        want = nv_oracle(x, rounding, case.per_row, case.given)
        text = _mismatch(case, got, want)
        if text:
            failures.append(text)
    assert not failures, f"{check}: {len(failures)} tensors differ; first: {failures[:3]}"


@given(x=nv_input())
def test_hypothesis_tensors_per_tensor(mx_encode: Encoder, x: np.ndarray):
    got = nv_encode(mx_encode, x)
    want = nv_oracle(x)
    assert np.array_equal(got[0].view(np.uint32), want[0].view(np.uint32)), "tensor scale"
    assert np.array_equal(got[1], want[1]), "E4M3 bytes"
    assert np.array_equal(got[2], want[2]), "codes"


@given(x=nv_input(max_rows=4, max_blocks=2))
def test_hypothesis_tensors_per_row(mx_encode: Encoder, x: np.ndarray):
    got = nv_encode(mx_encode, x, per_row=True)
    want = nv_oracle(x, per_row=True)
    assert np.array_equal(got[0].view(np.uint32), want[0].view(np.uint32)), "tensor scales"
    assert np.array_equal(got[1], want[1]), "E4M3 bytes"
    assert np.array_equal(got[2], want[2]), "codes"
