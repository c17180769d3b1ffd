"""Turning user inputs into float arrays the kernels accept, with clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from mxref.dtypes import FLOAT_DTYPES as ACCEPTED_DTYPES
from mxref.dtypes import FLOAT_NAMES as ACCEPTED_NAMES


def is_torch_tensor(x: object) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def torch_to_numpy(t: Any, name: str) -> np.ndarray:
    """Return a CPU numpy view or copy of a float torch tensor.

    bfloat16 widens to float32 in torch, which is exact, so no numpy bfloat16
    dtype is needed.
    """
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy()
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
