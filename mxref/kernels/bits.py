"""Bit views of float scalars inside kernels, for float32 and float64 alike.

numba only views a scalar's bits when its type is spelled out, so these
overloads pick the unsigned type of the same width.  They let one kernel body
serve float32 and float64 inputs: numba compiles one specialisation per type.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload


def float_bits(y):  # pragma: no cover - replaced by the overload under numba
    """Return the IEEE bit pattern of float scalar ``y`` as an unsigned int."""
    raise NotImplementedError("float_bits is only callable from numba kernels")


def bits_float(b, like):  # pragma: no cover - replaced by the overload under numba
    """Return the float of the same width as ``like`` whose bits are ``b``."""
    raise NotImplementedError("bits_float is only callable from numba kernels")


@overload(float_bits, inline="always")
def _float_bits(y):
    if isinstance(y, types.Float) and y.bitwidth == 32:
        return lambda y: np.float32(y).view(np.uint32)
    if isinstance(y, types.Float) and y.bitwidth == 64:
        return lambda y: np.float64(y).view(np.uint64)
    return None


@overload(bits_float, inline="always")
def _bits_float(b, like):
    if isinstance(like, types.Float) and like.bitwidth == 32:
        return lambda b, like: np.uint32(b).view(np.float32)
    if isinstance(like, types.Float) and like.bitwidth == 64:
        return lambda b, like: np.uint64(b).view(np.float64)
    return None


def float_like(v, like):  # pragma: no cover - replaced by the overload under numba
    """Return number ``v`` converted to the float type of ``like``."""
    raise NotImplementedError("float_like is only callable from numba kernels")


@overload(float_like, inline="always")
def _float_like(v, like):
    if isinstance(like, types.Float) and like.bitwidth == 32:
        return lambda v, like: np.float32(v)
    if isinstance(like, types.Float) and like.bitwidth == 64:
        return lambda v, like: np.float64(v)
    return None


def host_mbits(like):  # pragma: no cover - replaced by the overload under numba
    """Mantissa width of ``like``'s float type, as a compile-time constant."""
    raise NotImplementedError("host_mbits is only callable from numba kernels")


def sign_bit(x):  # pragma: no cover - replaced by the overload under numba
    """1 if the sign bit of float ``x`` is set (also for -0 and NaN), else 0."""
    raise NotImplementedError("sign_bit is only callable from numba kernels")


@overload(host_mbits, inline="always")
def _host_mbits(like):
    if isinstance(like, types.Float) and like.bitwidth == 32:
        return lambda like: 23
    if isinstance(like, types.Float) and like.bitwidth == 64:
        return lambda like: 52
    return None


@overload(sign_bit, inline="always")
def _sign_bit(x):
    # a signed view compared with zero keeps the lane width (no shift by a
    # runtime amount), which lets LLVM vectorise at the float's own width
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: np.uint32(np.float32(x).view(np.int32) < 0)
    if isinstance(x, types.Float) and x.bitwidth == 64:
        return lambda x: np.uint64(np.float64(x).view(np.int64) < 0)
    return None


def uint_like(v, like):  # pragma: no cover - replaced by the overload under numba
    """Return integer ``v`` as the unsigned type as wide as ``like``'s float type."""
    raise NotImplementedError("uint_like is only callable from numba kernels")


@overload(uint_like, inline="always")
def _uint_like(v, like):
    if isinstance(like, types.Float) and like.bitwidth == 32:
        return lambda v, like: np.uint32(v)
    if isinstance(like, types.Float) and like.bitwidth == 64:
        return lambda v, like: np.uint64(v)
    return None


def pow2_float64(k):  # pragma: no cover - replaced by the overload under numba
    """Return ``2.0**k`` as float64 for an integer ``-1022 <= k <= 1023``."""
    raise NotImplementedError("pow2_float64 is only callable from numba kernels")


@overload(pow2_float64, inline="always")
def _pow2_float64(k):
    # the biased exponent in its field is the number itself: no libm call
    # (math.ldexp is one, and costs more than a block's elements)
    if isinstance(k, types.Integer):
        return lambda k: np.uint64((np.int64(k) + 1023) << 52).view(np.float64)
    return None
