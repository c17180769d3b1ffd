"""The case type every quantize generator returns, and how values become blocks.

Spec: OCP MX v1.0 section 6.3 (one block of ``k`` inputs shares a scale).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mxref.formats import DEFAULT_BLOCK_SIZE
from mxref.testing.areas import AREA_NAMES

#: The levels of the generators (TestFloat's ``-level 1`` and ``-level 2``).
LEVELS = (1, 2)


#: Spec areas a case can exercise; every case carries one of them.
AREAS = AREA_NAMES  # the one vocabulary (mxref.testing.areas)


@dataclass(frozen=True)
class BlockCase:
    """One block of float32 inputs and the spec area it exercises.

    Attributes
    ----------
    inputs : tuple of int
        float32 bit patterns, one per lane.
    area : str
        One of :data:`AREAS`.
    note : str
        What the block is for, in a few words.
    checks : tuple of (str, str)
        The named checks the block feeds (:mod:`mxref.testing.cases.checked`),
        each with what it compares: ``"codes"``, ``"scale"`` or ``"both"``.
        Empty for the structured set, which is graded by area alone.

    Spec: OCP MX v1.0 section 6.3 (one block of 32 inputs).
    """

    inputs: tuple[int, ...]
    area: str
    note: str
    checks: tuple[tuple[str, str], ...] = ()

    def array(self) -> np.ndarray:
        """The inputs as a float32 array."""
        return np.array(self.inputs, np.uint32).view(np.float32)


def check_level(level: int) -> None:
    """Raise unless ``level`` is one of :data:`LEVELS`."""
    if level not in LEVELS:
        raise ValueError(f"level must be 1 or 2; got {level!r}")


def cut_rows(
    values: Sequence[int], block_size: int, anchor: int | None = None
) -> Iterator[tuple[int, int, tuple[int, ...]]]:
    """Cut float32 bit patterns into zero-filled blocks, lane 0 holding ``anchor`` when given.

    An anchor of ``max_normal * 2**k`` pins the block scale to ``2**k`` under
    every scale rule, so the other lanes are rounded on a known grid.

    Yields
    ------
    (int, int, tuple of int)
        The index of the first value in the block, how many values it holds,
        and its ``block_size`` lanes.
    """
    per = block_size - (1 if anchor is not None else 0)
    for start in range(0, len(values), per):
        chunk = list(values[start : start + per])
        lanes = ([] if anchor is None else [anchor]) + chunk
        lanes += [0] * (block_size - len(lanes))
        yield start, len(chunk), tuple(lanes)


def blocks_of(
    values: Sequence[int],
    area: str,
    note: str,
    anchor: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> list[BlockCase]:
    """Values cut into blocks by :func:`cut_rows`, all with the same area and note."""
    return [BlockCase(lanes, area, note) for _, _, lanes in cut_rows(values, block_size, anchor)]
