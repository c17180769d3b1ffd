"""The input check and widening both torch codecs share (:mod:`mxref.torch.codec`,
:mod:`mxref.torch.nvfp4`).

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


def widen(t: torch.Tensor, host: torch.dtype) -> torch.Tensor:
    """``t`` in the float ``host``, exactly, every NaN keeping its sign.

    torch's scalar float16 cast turns -NaN into +NaN (its vectorised one does
    not), and a NaN block's values carry their inputs' signs.
    """
    work = t.to(host)
    if t.dtype in (torch.float16, torch.bfloat16) and bool(torch.isnan(work).any()):
        sign = torch.where(t.view(torch.int16) < 0, -1.0, 1.0).to(host)
        work = torch.where(torch.isnan(work), torch.copysign(work, sign), work)
    return work
