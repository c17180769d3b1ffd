"""One backend contract, checked the same way by conform, golden verify and the pytest battery."""

from __future__ import annotations

import numpy as np
import pytest

import mxref
from mxref.conformance import run_conformance
from mxref.conformance.golden import shipped_golden_dir, verify
from mxref.testing.backend import BackendContractError, backend_output


def flat_scales(x, fmt, **kwargs):
    """Right codes and scale bytes, but the scales flattened to (blocks,)."""
    mx = mxref.quantize(x, fmt, **kwargs)
    return mx.codes, mx.scales.reshape(-1)


def test_the_contract_is_mxref_quantizes_shapes():
    x = np.ones((3, 40), np.float32)
    mx = mxref.quantize(x, "mxfp4", block_size=16)
    codes, scales = backend_output(mx, x.shape, -1, 16, 16)
    assert codes.dtype == scales.dtype == np.uint8
    assert scales.shape == (3, 3)
    wide = (mx.codes.astype(np.int32), mx.scales.astype(np.int64))  # any integer dtype
    assert backend_output(wide, x.shape, -1, 16, 16)[1].shape == (3, 3)
    with pytest.raises(BackendContractError, match=r"scales have shape \(9,\); expected \(3, 3\)"):
        backend_output((mx.codes, mx.scales.reshape(-1)), x.shape, -1, 16, 16)
    with pytest.raises(BackendContractError, match="every value must be below 0x10"):
        backend_output((mx.codes | 0x10, mx.scales), x.shape, -1, 16, 16)
    with pytest.raises(BackendContractError, match="must be an integer array"):
        backend_output((mx.codes.astype(np.float32), mx.scales), x.shape, -1, 16, 16)


def test_flattened_scales_fail_every_harness_for_the_same_reason():
    report = run_conformance(flat_scales, formats="mxfp4", golden=None)
    assert report.exit_status == 1
    errors = {c.first_failure.error for c in report.failures if c.first_failure}
    assert any("scales have shape" in (e or "") and "blocked axis kept" in (e or "")
               for e in errors)  # fmt: skip
    golden = verify(shipped_golden_dir(), quantize=flat_scales)
    assert not golden.ok
    assert "scales have shape" in golden.summary()
