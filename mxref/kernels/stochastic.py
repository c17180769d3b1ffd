"""Kernel twin of :mod:`mxref.ref.stochastic`: SplitMix64 draws per element."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def random_u32(seed, counter):
    """Return 32 random bits for ``counter`` under ``seed`` (see the oracle)."""
    z = np.uint64(seed) + (np.uint64(counter) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(32))
