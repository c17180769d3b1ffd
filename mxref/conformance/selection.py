"""Which formats, policies and accumulation model a conformance run selects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from mxref.formats import get_format
from mxref.io import InputError
from mxref.policies import Overflow, Rounding, ScaleRule


# --- golden files -------------------------------------------------------------
class NotSelected(Exception):
    """Raised to :func:`mxref.conformance.golden.verify` for a case outside the run's selection.

    Such cases (another format, policy or accumulation model than selected,
    or a float64 input to a ``--command`` backend) are left out of the counts.
    """


@dataclasses.dataclass(frozen=True)
class _Selection:
    """What a run covers: formats, policies, and the backends' extra operations."""

    formats: frozenset[str]
    scale_rules: frozenset[str]
    roundings: frozenset[str]
    overflows: frozenset[str]
    accum: str | None
    float32_only: bool

    def quantize(self, fmt: Any, rule: Any, rounding: Any, overflow: Any, dtype: Any) -> bool:
        try:
            return (
                get_format(fmt).name in self.formats
                and ScaleRule.parse(rule).value in self.scale_rules
                and Rounding.parse(rounding).value in self.roundings
                and Overflow.parse(overflow).value in self.overflows
                and (not self.float32_only or np.dtype(dtype) == np.float32)
            )
        except (ValueError, TypeError):
            return False

    def quantize_nv(self, rounding: Any) -> bool:
        """Whether NVFP4 under this element rounding is selected."""
        try:
            return "nvfp4" in self.formats and Rounding.parse(rounding).value in self.roundings
        except (ValueError, TypeError):
            return False

    def gemm(self, fa: str, fb: str, accum: str) -> bool:
        return (
            self.accum is not None
            and fa in self.formats
            and fb in self.formats
            and _same_accum(accum, self.accum)
        )


def _same_accum(a: str, b: str) -> bool:
    from mxref.accum import parse_accum

    try:
        return parse_accum(a) == parse_accum(b)
    except ValueError:
        return False


# --- the runner ----------------------------------------------------------------
def _parse_list(
    values: str | Sequence[str] | None, choices: Sequence[str], everything: Sequence[str], what: str
) -> list[str]:
    """Parse ``"a,b"``, a list, or ``"all"`` (meaning ``everything``)."""
    if values is None:
        return list(everything)
    items = values.split(",") if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower().replace("-", "_")
        if key == "all":
            out.extend(everything)
        elif key in choices:
            out.append(key)
        else:
            raise InputError(
                f"unknown {what} {item!r}; expected 'all' or one of {', '.join(choices)}"
            )
    return list(dict.fromkeys(out))
