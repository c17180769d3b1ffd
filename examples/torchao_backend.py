"""torchao 0.18's ``to_mx`` (FLOOR scale, RNE elements) as an ``mxref conform`` backend.

::

    mxref conform --backend torchao_backend:quantize \\
        --format mxfp4,mxfp6_e2m3,mxfp6_e3m2,mxfp8_e4m3,mxfp8_e5m2

(run from ``examples/`` or with it on ``PYTHONPATH``).  docs/conformance.md,
"Verdict", shows the report.  torchao has no MXINT8 and only FLOOR/RNE here;
anything else raises, as a kernel that lacks it would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchao.prototype.mx_formats.mx_tensor import MXTensor, to_mx

from mxref.array import MXArray
from mxref.torch.torchao import TORCHAO_ELEMENTS, from_mxtensor


def quantize(x: Any, fmt: str, *, axis: int = -1, block_size: int = 32, scale_rule: Any = "floor",
             rounding: Any = "rne", overflow: Any = "saturate", **kw: Any) -> MXArray:  # fmt: skip
    """:func:`mxref.quantize`'s signature over torchao's ``to_mx`` (FLOOR, RNE, saturate)."""
    if (str(scale_rule), str(rounding), str(overflow), kw) != ("floor", "rne", "saturate", {}):
        raise NotImplementedError(f"{scale_rule}/{rounding}/{overflow} {kw}: floor/rne only")
    a = np.moveaxis(np.asarray(x), axis, -1)
    if a.dtype not in (np.float32, np.float16):  # float16 -> float32 is exact; float64 is not
        raise NotImplementedError(f"to_mx takes float32 or bfloat16 inputs, not {a.dtype}")
    n = a.shape[-1]
    padded = -(-n // block_size) * block_size  # mxref's short last block = zero padding
    t = torch.from_numpy(np.pad(a.astype(np.float32), [(0, 0)] * (a.ndim - 1) + [(0, padded - n)]))
    scale, data = to_mx(t.contiguous(), TORCHAO_ELEMENTS[fmt], block_size)  # KeyError: no MXINT8
    elem = TORCHAO_ELEMENTS[fmt]
    mx = from_mxtensor(MXTensor(data, scale, elem, block_size, torch.float32, None, None, False))
    codes = np.moveaxis(mx.codes[..., :n], -1, axis)
    return MXArray(codes, np.moveaxis(mx.scales, -1, axis), mx.fmt, axis % a.ndim, block_size)
