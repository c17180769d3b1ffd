"""Oracle: the random bits of stochastic rounding.

Each element draws 32 bits from SplitMix64 (Steele, Lea and Flood, OOPSLA
2014) keyed by the user's seed and a counter: ``counter = block_index *
block_size + lane``, where ``block_index`` is the flat C-order index of the
block's scale in ``MXArray.scales`` and ``lane`` the element's position in its
block.  The draw therefore depends only on where an element sits in the
blocked array, never on threads or memory layout.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def random_u32(seed: int, counter: int) -> int:
    """Return 32 random bits for ``counter`` under ``seed``.

    The SplitMix64 output function applied to ``seed + (counter + 1) * gamma``;
    the high 32 bits are returned.
    """
    z = (seed + (counter + 1) * GOLDEN_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z >> 32
