"""The implementation under test ("backend"): loading it by name, and its one output contract.

Every harness (``mxref conform``, ``mxref golden verify``, the pytest
battery) calls a Python backend as :func:`mxref.quantize` is called and
checks its answer with :func:`backend_output`, so a backend that passes one
passes the others' structural checks too.  docs/conformance.md states the
contract.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

Quantize = Callable[..., Any]


def load_backend(spec: str) -> Quantize:
    """Return the callable named ``"package.module:function"``.

    The callable must accept ``mxref.quantize``'s signature and return an
    object with ``codes`` and ``scales`` uint8 arrays (an MXArray, or any
    object or tuple ``(codes, scales)``).

    Raises
    ------
    ValueError
        For a malformed name, a module that does not import, or a missing or
        non-callable attribute, naming which.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"backend {spec!r} must look like 'package.module:function'")
    # like `python -m`, look in the current directory too: console scripts
    # do not put it on sys.path, and a backend usually sits beside the user
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"backend module {module_name!r} does not import: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"backend {spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"backend {spec!r} is not callable")
    return target


def codes_and_scales(result: Any) -> tuple[Any, Any]:
    """The (codes, scales) pair of a backend's result: an object with both, or a 2-tuple."""
    if hasattr(result, "codes") and hasattr(result, "scales"):
        return result.codes, result.scales
    if isinstance(result, tuple) and len(result) == 2:
        return result
    raise TypeError(
        "a backend must return an object with .codes and .scales, or a (codes, scales) tuple; "
        f"got {type(result).__name__}"
    )


class BackendContractError(ValueError):
    """A backend's answer does not have the shape or type the contract requires."""


def backend_output(
    result: Any,
    x_shape: tuple[int, ...],
    axis: int = -1,
    block_size: int = 32,
    code_count: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Check a backend's answer against the contract; return its (codes, scales) as uint8.

    The contract is :func:`mxref.quantize`'s: ``codes`` has the input's shape
    (one code per element, in the low bits of an integer); ``scales`` has the
    input's shape with ``axis`` cut into ``ceil(n / block_size)`` blocks (one
    E8M0 byte per block).  Any integer dtype is accepted for both when the
    values fit.

    Parameters
    ----------
    result : object
        What the backend returned: an object with ``codes`` and ``scales``
        (an MXArray), or a ``(codes, scales)`` tuple.
    x_shape : tuple of int
        The input's shape.
    axis, block_size : int
        As the backend was called.
    code_count : int
        Codes must be below this (``2**bits`` of the format).

    Raises
    ------
    BackendContractError
        Saying what is wrong and what was expected.
    """
    try:
        codes, scales = codes_and_scales(result)
    except TypeError as exc:
        raise BackendContractError(str(exc)) from None
    codes, scales = np.asarray(codes), np.asarray(scales)
    ax = axis % len(x_shape)
    want_scales = (*x_shape[:ax], -(-x_shape[ax] // block_size), *x_shape[ax + 1 :])
    for what, arr, shape, limit in (("codes", codes, tuple(x_shape), code_count),
                                    ("scales", scales, want_scales, 256)):  # fmt: skip
        if arr.dtype.kind not in "ui":
            raise BackendContractError(f"{what} must be an integer array; got dtype {arr.dtype}")
        if arr.shape != shape:
            extra = ("; one E8M0 byte per block, with the blocked axis kept (not flattened)"
                     if what == "scales" else "; one code per input element")  # fmt: skip
            raise BackendContractError(f"{what} have shape {arr.shape}; expected {shape}{extra}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= limit):
            raise BackendContractError(f"{what} hold {int(arr.max()):#x}; every value must be "
                                       f"below {limit:#x}")  # fmt: skip
    return codes.astype(np.uint8), scales.astype(np.uint8)


def nv_parts(result: Any) -> tuple[Any, Any, Any]:
    """The (codes, scales, tensor_scale) of an NVFP4 backend's result.

    An object with ``codes``, ``scales`` and ``tensor_scale`` (an MXArray), or
    a 3-tuple in that order.
    """
    if all(hasattr(result, a) for a in ("codes", "scales", "tensor_scale")):
        return result.codes, result.scales, result.tensor_scale
    if isinstance(result, tuple) and len(result) == 3:
        return result
    raise TypeError(
        "an NVFP4 backend must return an object with .codes, .scales and .tensor_scale, or a "
        f"(codes, scales, tensor_scale) tuple; got {type(result).__name__}"
    )


def nv_backend_output(
    result: Any, x_shape: tuple[int, ...], per_row: bool, block_size: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check an NVFP4 backend's answer; return codes, E4M3 bytes (uint8) and tensor scale(s).

    The contract is :func:`mxref.quantize`'s for ``"nvfp4"`` on a 2-D input
    blocked along its last axis: ``codes`` of the input's shape (E2M1, below
    16), ``scales`` of ``(rows, ceil(cols / 16))`` (E4M3 bytes, below 0x80:
    the sign bit is never set), and ``tensor_scale`` float32, one value
    (shape ``()`` or ``(1,)``) or, with ``per_row``, one per row ``(rows,)``.

    Raises
    ------
    BackendContractError
        Saying what is wrong and what was expected.
    """
    try:
        codes, scales, t = nv_parts(result)
    except TypeError as exc:
        raise BackendContractError(str(exc)) from None
    codes, scales = backend_output((codes, scales), x_shape, -1, block_size, 16)
    if int(scales.max(initial=0)) >= 0x80:
        raise BackendContractError(f"scales hold {int(scales.max()):#x}; an E4M3 block scale "
                                   "is positive (below 0x80)")  # fmt: skip
    t = np.asarray(t)
    if t.dtype != np.float32:
        raise BackendContractError(f"tensor_scale must be float32; got dtype {t.dtype}")
    want = (x_shape[0],) if per_row else (1,)
    if t.reshape(-1).shape != want or (per_row and t.ndim != 1):
        raise BackendContractError(
            f"tensor_scale has shape {t.shape}; expected "
            + (f"({x_shape[0]},), one per row" if per_row else "(), one for the tensor")
        )
    return codes, scales, t.reshape(-1)
