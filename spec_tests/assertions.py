"""Bitwise comparisons that explain the first mismatch in hex."""

from __future__ import annotations

import numpy as np


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_bits_equal(actual: np.ndarray, expected: np.ndarray, what: str, inputs=None) -> None:
    """Assert two arrays are identical bit for bit (NaN payloads and -0 included).

    On failure, report the count and the first mismatch with both values in hex
    and, when given, the input element there.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    a, e = _bits(actual), _bits(expected)
    bad = np.argwhere(a != e)
    if bad.size:
        idx = tuple(bad[0])
        width = actual.dtype.itemsize * 2
        msg = (
            f"{what}: {len(bad)} of {a.size} differ; first at {idx}: "
            f"got {int(a[idx]):#0{width + 2}x} ({actual[idx]!r}), "
            f"expected {int(e[idx]):#0{width + 2}x} ({expected[idx]!r})"
        )
        if inputs is not None:
            x = np.asarray(inputs)
            if x.shape == actual.shape:
                msg += f"; input {x[idx]!r} (bits {int(_bits(x)[idx]):#x})"
        raise AssertionError(msg)
