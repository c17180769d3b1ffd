"""The one failing-case record of every conformance harness (conform, golden verify).

Spec: OCP MX v1.0 sections 5-6 (what the cases check).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CaseFailure"]


@dataclasses.dataclass(frozen=True)
class CaseFailure:
    """One failing case, in hex.

    Attributes
    ----------
    check : str
        The check id (``mxref conform``), or the area of a golden file case.
    where : str
        Format, policies, case number and what the case is; or
        ``file:line [area]`` for a golden case.
    inputs, expected, got : dict of str to list of str
        Hex words: float32 inputs (``"x"``), scale byte and codes
        (``"scale"``, ``"codes"``), packed bytes, GEMM operands and results;
        a golden case's input and output tokens (``"case"``, ``"outputs"``).
    differs : list of str
        What differs, e.g. ``["scale", "codes at lanes 0, 7"]``.
    error : str or None
        Why there is no output to compare: the backend raised, crashed,
        timed out or wrote malformed output.
    file, line : str or None, int or None
        The golden file and line of the case, when it comes from one.
    blocks : int or None
        NVFP4: how many blocks of the case's tensor differ (scale byte or codes).
    """

    check: str
    where: str
    inputs: dict[str, list[str]]
    expected: dict[str, list[str]]
    got: dict[str, list[str]]
    differs: list[str]
    error: str | None = None
    file: str | None = None
    line: int | None = None
    blocks: int | None = None

    @property
    def area(self) -> str:
        """The check's area (its first dotted word)."""
        return self.check.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready builtins."""
        return dataclasses.asdict(self)

    def text(self) -> str:
        """One readable paragraph."""
        lines = [self.where]
        for title, part in (("inputs", self.inputs), ("expected", self.expected),
                            ("got", self.got)):  # fmt: skip
            words = [w for ws in part.values() for w in ws]
            lines.append(f"    {title + ':':<10}{' '.join(words) if words else '-'}")
        if self.error is not None:
            lines.append(f"    {'error:':<10}{self.error}")
        lines.append(f"    {'differs:':<10}{'; '.join(self.differs)}")
        return "\n".join(lines)
