"""Exact oracle of mxref's packing convention (:mod:`mxref.packing` is the fast path).

Spec: the OCP MX v1.0 spec defines no packing; this is mxref's documented convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["nvidia_blocked_offset", "nvidia_blocked_size", "pack_row"]


def pack_row(codes: Sequence[int], bits: int) -> bytes:
    """Pack one row of codes as :mod:`mxref.packing` documents it, independently of it.

    Code ``i`` occupies bits ``[bits*i, bits*i + bits)`` of the little-endian
    integer formed by the row's bytes, and the row is padded with zero codes
    to a whole number of groups of ``lcm(bits, 8)`` bits.  For 4-bit codes that
    is ``byte_j = c[2j] | c[2j+1] << 4``; for 6-bit codes ``byte0 = c0 |
    (c1 & 3) << 6``, ``byte1 = c1 >> 2 | (c2 & 0xF) << 4``, ``byte2 = c2 >> 4 | c3 << 2``
    (both checked here).

    Spec: the OCP MX v1.0 spec defines no packing; this is mxref's documented convention.
    """
    group_bits = math.lcm(bits, 8)
    per_group = group_bits // bits
    n_bytes = -(-len(codes) // per_group) * (group_bits // 8)
    word = 0
    for i, c in enumerate(codes):
        if not 0 <= c < 1 << bits:
            raise ValueError(f"code {c:#x} does not fit in {bits} bits")
        word |= c << (bits * i)
    out = word.to_bytes(n_bytes, "little")
    padded = list(codes) + [0] * (n_bytes * 8 // bits - len(codes))
    if bits == 4:
        assert all(out[j] == padded[2 * j] | padded[2 * j + 1] << 4 for j in range(n_bytes))
    if bits == 6:
        for g in range(n_bytes // 3):
            c0, c1, c2, c3 = padded[4 * g : 4 * g + 4]
            want = (c0 | (c1 & 3) << 6, c1 >> 2 | (c2 & 0xF) << 4, c2 >> 4 | c3 << 2)
            assert tuple(out[3 * g : 3 * g + 3]) == want
    return out


def nvidia_blocked_size(rows: int, cols: int) -> int:
    """Bytes of a ``rows x cols`` scale matrix in NVIDIA's 128x4 tiles (zero padded)."""
    return -(-rows // 128) * -(-cols // 4) * 512


def nvidia_blocked_offset(rows: int, cols: int, r: int, c: int) -> int:
    """Where scale ``(r, c)`` of a ``rows x cols`` matrix lies in NVIDIA's 128x4 tiles.

    ``((r // 128) * ceil(cols / 4) + c // 4) * 512 + (r % 32) * 16 + (r % 128 // 32) * 4
    + c % 4``: tiles row-major over (row tile, column tile), and inside a tile
    row ``32q + p`` stored at ``p * 16 + q * 4`` (the cuBLAS "1D block scaling
    factors layout", CUTLASS's ``SfKMajorAtom``), written from the formula,
    independently of :mod:`mxref.packing`'s reshapes.
    """
    if not (0 <= r < rows and 0 <= c < cols):
        raise ValueError(f"scale ({r}, {c}) is outside a {rows} x {cols} matrix")
    tile = (r // 128) * -(-cols // 4) + c // 4
    return tile * 512 + (r % 32) * 16 + (r % 128 // 32) * 4 + c % 4
