"""The float dtypes mxref reads and writes.

bfloat16 has no numpy dtype of its own; ml_dtypes provides one.  mxref does
not require ml_dtypes: a user holding bfloat16 numpy arrays already has it,
and torch bfloat16 tensors are widened by torch itself.
"""

from __future__ import annotations

import numpy as np

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    BFLOAT16: np.dtype | None = None
else:
    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

#: every float dtype accepted as input or requested as output
FLOAT_DTYPES: tuple[np.dtype, ...] = tuple(
    d
    for d in (np.dtype(np.float16), BFLOAT16, np.dtype(np.float32), np.dtype(np.float64))
    if d is not None
)
FLOAT_NAMES = "float16, bfloat16, float32 or float64"


def bfloat16() -> np.dtype:
    """Return the bfloat16 dtype, or explain that ml_dtypes is needed for it."""
    if BFLOAT16 is None:  # pragma: no cover - exercised only without ml_dtypes
        raise ValueError("bfloat16 arrays need the ml_dtypes package: pip install ml_dtypes")
    return BFLOAT16
