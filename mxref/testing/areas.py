"""The one vocabulary of spec areas, shared by the golden files, ``mxref conform`` and the tests.

Every conformance check id starts with one of these (``rounding.midpoints``),
every golden case ends with one, and every report groups by them.

Spec: OCP MX v1.0; the clause of each area is in :data:`AREAS`.
"""

from __future__ import annotations

__all__ = ["AREAS", "AREA_NAMES", "LEGACY_AREA_NAMES"]

#: area -> (title, spec clauses), in report order.
AREAS: dict[str, tuple[str, str]] = {
    "scale": ("scale computation", "5.4.1, 6.3 step 1"),
    "rounding": ("element rounding", "5.3, 6.3 step 2"),
    "saturation": ("saturation", "6.3 (clamp to max normal)"),
    "special": ("special values", "5.3.1-5.3.4, 5.4.1; NaN/Inf/zero handling"),
    "packing": ("packing", "5.2 (element widths); layout is mxref.pack's convention"),
    "gemm": ("GEMM", "6.2 (Dot, DotGeneral)"),
    "decode": ("decoding", "5.1 (X * P_i), 5.4.1 (E8M0)"),
}

#: The area names, in order (the golden files' ``areas:`` header line).
AREA_NAMES: tuple[str, ...] = tuple(AREAS)

#: Names earlier releases used for an area: ``mxref conform`` called the
#: rounding area "element" (check ids ``element.*``); deviations files that
#: still say so are read with the current name.
LEGACY_AREA_NAMES: dict[str, str] = {"element": "rounding"}
