"""Turning user inputs into float arrays the kernels accept, with clear errors."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

#: dtypes quantize accepts; float16 and bfloat16 widen exactly to float32.
ACCEPTED_DTYPES = (
    np.dtype(np.float16),
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(np.float32),
    np.dtype(np.float64),
)
ACCEPTED_NAMES = "float16, bfloat16, float32 or float64"


def is_torch_tensor(x: object) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def torch_to_numpy(t: Any, name: str) -> np.ndarray:
    """Return a CPU numpy view or copy of a float torch tensor (bfloat16 included)."""
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    if t.dtype in (torch.float16, torch.float32, torch.float64):
        return t.numpy()
    raise TypeError(f"{name} must be a {ACCEPTED_NAMES} tensor; got torch dtype {t.dtype}")


def as_float_array(x: object, name: str = "x") -> np.ndarray:
    """Return ``x`` as a numpy array of an accepted float dtype.

    Raises
    ------
    TypeError
        For a non-float dtype, naming the argument and the dtype.
    ValueError
        For a 0-d input.
    """
    if is_torch_tensor(x):
        arr = torch_to_numpy(x, name)
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        arr = np.asarray(x)
        if arr.dtype.kind in "iub" or arr.dtype == object:
            raise TypeError(f"{name} must hold floats; got {arr.dtype} values")
    if arr.dtype not in ACCEPTED_DTYPES:
        raise TypeError(f"{name} must be a {ACCEPTED_NAMES} array; got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension; got a scalar")
    return arr
