"""The input check both torch codecs share (:mod:`mxref.torch.codec`, :mod:`mxref.torch.nvfp4`).

Its rules and messages are :func:`mxref.quantize`'s for a tensor input.
"""

from __future__ import annotations

import torch

#: the dtypes the torch codecs take, and how their messages name them
INPUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPE_NAMES = "float16, bfloat16, float32 or float64"


def check_tensor(x: object) -> torch.Tensor:
    """Return ``x`` once it is a float tensor of at least one dimension.

    Raises
    ------
    TypeError, ValueError
        Naming ``x``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in INPUT_DTYPES:
        raise TypeError(f"x must be a {DTYPE_NAMES} tensor; got torch dtype {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension; got a scalar")
    return x
