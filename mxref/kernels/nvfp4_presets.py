"""Kernel twin of the NVFP4 preset recipes in :mod:`mxref.ref.nvfp4` (torchao, Transformer Engine).

Both implementations compute in float32, one IEEE operation at a time, so
this module does the same: every step is a numba float32 operation (one
rounding to nearest even, no fused multiply-add: no fastmath), and the
results are rounded onto E4M3 and E2M1 by the exact helpers of
:mod:`mxref.kernels.nvfp4`.  The oracle spells each float32 step as an exact
rational rounded once; ``tests/mxref/test_nvfp4_presets.py`` asserts bit
equality, and against torchao itself.

Rows are float32 and blocked along their last axis, as in
:mod:`mxref.kernels.nvfp4`; ``t`` is each row's tensor scale as the preset
stores it (torchao: the decode scale ``amax / 2688``; Transformer Engine:
the amax itself).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from mxref.kernels.nvfp4 import E2M1_GRID, E2M1_TOP, E4M3_GRID, RNE, e4m3_byte, round_to_grid

#: the recipes, as the codec passes them (mxref.presets.NVRecipe)
TORCHAO = 0
TRANSFORMER_ENGINE = 1

_F6 = np.float32(6.0)
_F448 = np.float32(448.0)
_RANGE32 = np.float32(2688.0)  # 448 * 6, exact
_ONE = np.float32(1.0)
_EPS = np.float32(2.0**-6)  # torchao's E4M3_EPS: E4M3's smallest normal
_F32_MAX = np.float32(np.finfo(np.float32).max)
#: Transformer Engine's float constants: 1.0f / 6.0f, and 1.0 / (6.0 * 448.0) as a double
#: then a float
_RCP6 = np.float32(1.0) / np.float32(6.0)
_RCP_RANGE = np.float32(1.0 / 2688.0)


@njit(cache=True)
def torchao_tensor_scale(amax):
    """torchao's ``per_tensor_amax_to_scale``: ``RN32(amax / 2688)`` of a float32 amax."""
    return np.float64(np.float32(amax) / _RANGE32)


@njit(cache=True)
def te_encode_scale(amax):
    """Transformer Engine's global encode scale ``min(RN32(2688 / amax), FLT_MAX)``; 1 for
    ``amax == 0`` and for a quotient of 0."""
    a = np.float32(amax)
    if a == 0:
        return _ONE
    s = min(_RANGE32 / a, _F32_MAX)
    return _ONE if s == 0 else s


@njit(cache=True, inline="always")
def _e2m1(q, negative):
    """The E2M1 code of the float32 magnitude ``q`` (saturated to 6 here), rounded RNE."""
    m = round_to_grid(np.float64(min(q, _F6)), 0.0, 1.0, E2M1_GRID, E2M1_TOP, RNE)
    return (8 | m) if negative else m


@njit(cache=True, inline="always")
def _block(x, codes, t, recipe):
    """Quantize one float32 block under the row's stored tensor scale ``t``; return its byte."""
    top = np.float32(0.0)
    for i in range(x.shape[0]):
        v = abs(x[i])
        top = v if v > top else top
    if recipe == TORCHAO:
        scaled = np.float32(top / _F6) / t
        scaled = min(max(scaled, _EPS), _F448)
        byte = e4m3_byte(np.float64(scaled))
        factor = (_ONE / t) / np.float32(E4M3_GRID[byte])
    else:
        g = te_encode_scale(t)
        scaled = min(top * (g * _RCP6), _F32_MAX)
        byte = e4m3_byte(np.float64(scaled))  # saturating at 448, as the satfinite cast
        factor = min(_ONE / (np.float32(E4M3_GRID[byte]) * (_ONE / g)), _F32_MAX)
    for i in range(x.shape[0]):
        # an Inf product (TE's zero-scale blocks: FLT_MAX times a small value) saturates at 6
        codes[i] = _e2m1(abs(x[i]) * factor, math.copysign(1.0, x[i]) < 0.0)
    return byte


@njit(cache=True, parallel=True)
def quantize_rows(x2, codes2, bytes2, t, block_size, recipe):
    """E2M1 codes and E4M3 bytes of the float32 rows of ``x2``, row ``r`` under ``t[r]``."""
    rows, n = x2.shape
    nblk = bytes2.shape[1]
    for k in prange(rows * nblk):
        r = k // nblk
        b = k - r * nblk
        lo = b * block_size
        hi = min(n, lo + block_size)
        bytes2[r, b] = _block(x2[r, lo:hi], codes2[r, lo:hi], np.float32(t[r]), recipe)


@njit(cache=True, parallel=True)
def dequantize_rows(codes2, bytes2, t, block_size, recipe, out2):
    """The preset's float32 decoding into ``out2`` (float32).

    torchao: ``RN32(code * RN32(t * s_b))``.  Transformer Engine:
    ``RN32(code * RN32(RN32(s_b * amax) * RN32(1 / 2688)))``.
    """
    rows, n = codes2.shape
    nblk = bytes2.shape[1]
    for k in prange(rows * nblk):
        r = k // nblk
        b = k - r * nblk
        s = np.float32(E4M3_GRID[bytes2[r, b]])
        tr = np.float32(t[r])
        combined = tr * s if recipe == TORCHAO else s * tr * _RCP_RANGE
        for i in range(b * block_size, min(n, (b + 1) * block_size)):
            code = codes2[r, i]
            mag = np.float32(E2M1_GRID[code & 7]) * combined
            out2[r, i] = -mag if code >= 8 else mag
