"""Loading the implementation under test ("backend") named on a command line."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

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
