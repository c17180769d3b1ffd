"""NVFP4's float32 tensor scale in files: JSON sidecar fields and the ``--tensor-scale`` option.

An NVFP4 dump carries, besides its E2M1 codes and E4M3 block-scale bytes, the
float32 tensor scale ``G`` (docs/semantics.md section 8c): one number for the
tensor (shape ``()``), or one per row along the blocked axis (the array's
shape without that axis).  ``.npz`` files hold it as a float32 array; a JSON
sidecar and the command line hold decimal numbers, which are read exactly and
rounded once to float32 (round to nearest, ties to even), so that a value
printed by any shortest-repr printer, or written by mxref, reads back as the
same float32.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import row_scale_shape
from mxref.io import InputError, _check_readable, _fmt_shape
from mxref.ref.element import BINARY32, encode_float

__all__ = [
    "parse_tensor_scale_option",
    "tensor_scale_from_json",
    "tensor_scale_text",
    "tensor_scale_to_json",
]


def tensor_scale_to_json(tensor_scale: np.ndarray) -> float | list[Any]:
    """A float32 tensor scale as JSON: a number, or nested lists for one per row.

    Python's ``repr`` of a float is the shortest decimal that reads back as the
    same float64, and a float32 widened to float64 is that float64 exactly: the
    number reads back, through :func:`tensor_scale_from_json`, as the same bits.
    """
    values = np.asarray(tensor_scale, np.float32).astype(np.float64)
    out: float | list[Any] = values.tolist()
    return out


def _rn32(where: str, value: object) -> np.float32:
    """``value`` (a JSON number or a decimal string) rounded once to float32."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{where} must be a number; got {value!r}")
    try:
        exact = Fraction(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError, OverflowError):  # NaN and Infinity too
        raise InputError(f"{where} must be a finite positive number; got {value!r}") from None
    if exact <= 0:
        raise InputError(f"{where} must be a finite positive number; got {value!r}")
    bits = encode_float((0, exact), BINARY32)
    if bits >= 0x7F800000:
        raise InputError(f"{where} is {value!r}, beyond float32's range")
    if bits == 0:
        raise InputError(f"{where} is {value!r}, which rounds to 0 in float32")
    return np.array([bits], np.uint32).view(np.float32)[0]


def _from_bits_text(where: str, text: str) -> np.float32 | None:
    """``0x3F800000``-style float32 bits, or None where ``text`` is not hexadecimal bits."""
    if not text.lower().startswith("0x"):
        return None
    try:
        bits = int(text, 16)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not float32 bits (0x3F800000 is 1.0)") from None
    if not 0 < bits < 0x7F800000:
        raise InputError(f"{where}: {text} is not the bits of a finite positive float32")
    return np.array([bits], np.uint32).view(np.float32)[0]


def _shaped(where: str, values: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """``values`` as a tensor scale of an array of ``shape`` blocked along ``axis``."""
    rows = row_scale_shape(shape, axis)
    if values.size == 1 and values.ndim <= 1 and rows != (1,):
        return values.reshape(())
    if values.shape == rows:
        return values
    if values.ndim == 1 and values.size == math.prod(rows):
        return values.reshape(rows)  # a flat list of the rows, in C order
    raise InputError(
        f"{where} holds {values.size} value{'s' if values.size != 1 else ''} of shape "
        f"{_fmt_shape(values.shape)}; shape {_fmt_shape(shape)} blocked along axis {axis} takes "
        f"one number, or one per row (shape {_fmt_shape(rows)})"
    )


def tensor_scale_from_json(
    where: str, value: object, shape: tuple[int, ...], axis: int
) -> np.ndarray:
    """A sidecar's ``tensor_scale`` field as a float32 array, checked against the array's shape.

    Parameters
    ----------
    where : str
        What to name in errors (the sidecar and field).
    value : number, str or list
        A number, or (nested) lists of numbers, one per row; decimal strings and
        ``"0x..."`` float32 bits are accepted in their place.
    shape : tuple of int
    axis : int
        The blocked axis, non-negative.

    Returns
    -------
    np.ndarray of float32
        0-d, or of ``row_scale_shape(shape, axis)``.

    Raises
    ------
    InputError
        A value that is not a finite positive number, or the wrong count.
    """
    flat = np.asarray(value, dtype=object)
    if flat.dtype != object or flat.ndim > len(shape):
        raise InputError(f"{where} must be a number or a list of numbers (one per row)")
    values = np.array([_one(where, v) for v in flat.reshape(-1)], np.float32)
    return _shaped(where, values.reshape(flat.shape), shape, axis)


def _one(where: str, value: object) -> np.float32:
    """One tensor scale: ``0x...`` float32 bits, or a number rounded once to float32."""
    if isinstance(value, str):
        bits = _from_bits_text(where, value.strip())
        if bits is not None:
            return bits
    return _rn32(where, value)


def parse_tensor_scale_option(text: str, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """``--tensor-scale``: a number, float32 bits, or a file of per-row scales.

    Parameters
    ----------
    text : str
        A decimal number (``2.5e4``, rounded once to float32), float32 bits
        (``0x46C35000``), a comma-separated list of either (one per row), or a
        file: ``.npy`` (float32) or raw little-endian float32 ``.bin``.
    shape : tuple of int
    axis : int
        The blocked axis, non-negative.

    Returns
    -------
    np.ndarray of float32

    Raises
    ------
    InputError
        Naming ``--tensor-scale``.
    """
    where = "--tensor-scale"
    p = Path(text)
    if p.suffix.lower() in (".npy", ".bin"):
        _check_readable(p)
        if p.suffix.lower() == ".npy":
            try:
                values = np.load(p, allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise InputError(f"{p}: not a readable .npy file ({exc})") from None
            if not isinstance(values, np.ndarray) or values.dtype != np.float32:
                raise InputError(f"{p}: {where} file must hold float32 values")
        else:
            data = p.read_bytes()
            if len(data) % 4:
                raise InputError(f"{p}: is {len(data)} bytes, not whole float32 values")
            values = np.frombuffer(data, "<f4").astype(np.float32)
        if values.size and not bool(np.all(np.isfinite(values) & (values > 0))):
            raise InputError(f"{p}: {where} values must be finite and positive")
        return _shaped(f"{p}", values, shape, axis)
    values = np.array([_one(where, t) for t in text.split(",")], np.float32)
    return _shaped(where, values, shape, axis)


def tensor_scale_text(value: object) -> str:
    """A float32 as its shortest decimal and its bits: ``2.5 (0x40200000)``."""
    f = np.float32(value)  # type: ignore[arg-type]
    bits = int(np.array([f], np.float32).view(np.uint32)[0])
    return f"{f!s} (0x{bits:08X})"  # str: the shortest float32 decimal (format() widens)
