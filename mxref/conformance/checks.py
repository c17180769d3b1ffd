"""The conformance battery's vocabulary: areas, check ids and the configurations they run under.

Spec: OCP MX v1.0 sections 5.1-5.4.1 and 6.2-6.3 (docs/spec_map.md maps each clause to checks).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mxref.formats import DEFAULT_BLOCK_SIZE
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.testing.areas import AREAS as SPEC_AREAS

#: Version tag of the ``--command`` exchange files.
PROTOCOL = "mxref-conform-1"


#: Spec areas, in report order: id -> (title, spec clauses).
AREAS = SPEC_AREAS  # the one vocabulary (mxref.testing.areas): area -> (title, clauses)


DEFAULT_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class CheckInfo:
    """One check of the battery.

    Attributes
    ----------
    id : str
        Stable id, ``<area>.<name>``; what a deviations file names.
    area : str
        A key of :data:`AREAS`.
    title : str
        What the check verifies, in one line.
    spec : str
        The spec clause it tests (or the mxref choice where the spec is silent).
    """

    id: str
    area: str
    title: str
    spec: str


_CHECK_LIST = (
    CheckInfo("scale.pow2_neighbours", "scale",
              "amax = 2**k and its float32 predecessor and successor, every k "
              "(a float log2 picks a scale one too high just below 2**k)", "6.3 step 1"),
    CheckInfo("scale.rule_thresholds", "scale",
              "amax significand at the max-normal and EVEN thresholds and their neighbours",
              "6.3 step 1 (FLOOR); CEIL/EVEN/RCEIL as in docs/semantics.md"),
    CheckInfo("scale.above_max_significand", "scale",
              "amax significand between max normal's and 2", "6.3 step 1"),
    CheckInfo("scale.tiny_blocks", "scale",
              "amax below 2**(emax_elem - 127): byte 0x00 and elements on the 2**-127 grid",
              "5.4.1 (0x00 = 2**-127), 6.3; clamp is mxref's choice"),
    CheckInfo("scale.random_forced_amax", "scale",
              "random blocks with a forced amax (pow2, pred, succ, above max significand)",
              "6.3"),
    CheckInfo("rounding.exact_codes", "rounding",
              "every finite code's value times the scale encodes to that code", "5.3, 6.3"),
    CheckInfo("rounding.midpoints", "rounding",
              "exact midpoints of adjacent codes (RNE: to the even code)", "6.3 roundTiesToEven"),
    CheckInfo("rounding.midpoint_neighbours", "rounding",
              "the float32 just below and just above every midpoint", "6.3"),
    CheckInfo("rounding.subnormal_inputs", "rounding",
              "float32 subnormal elements (kept, never flushed)", "6.3; docs/semantics.md 5"),
    CheckInfo("rounding.random_bits", "rounding",
              "random float32 bit patterns in a narrow exponent window", "6.3"),
    CheckInfo("rounding.random_ties", "rounding",
              "random exact ties of the element grid under a pinned scale", "6.3"),
    CheckInfo("saturation.above_max_normal", "saturation",
              "elements above max normal in their binade clamp to +-max normal", "6.3"),
    CheckInfo("saturation.overflow_midpoint", "saturation",
              "max normal + half a step (E4M3 464) and its neighbours", "6.3"),
    CheckInfo("special.nan_block_scale", "special",
              "a block holding NaN gets scale 0xFF", "5.4.1 (0xFF = NaN)"),
    CheckInfo("special.nan_block_codes", "special",
              "element codes of a NaN block are signed zeros (mxref's choice)",
              "implementation-defined (5.3.2-5.3.4); docs/semantics.md 5"),
    CheckInfo("special.inf_block_scale", "special",
              "a block holding +-Inf gets scale 0xFF", "5.4.1; docs/semantics.md 5"),
    CheckInfo("special.inf_block_codes", "special",
              "element codes of an Inf block are signed zeros (mxref's choice)",
              "implementation-defined; docs/semantics.md 5"),
    CheckInfo("special.zero_block_scale", "special",
              "an all-zero block gets scale 0x00 (mxref's choice)",
              "spec silent; docs/semantics.md 2"),
    CheckInfo("special.zero_block_codes", "special",
              "an all-zero block keeps each zero's sign (MXINT8: 0x00)", "5.3"),
    CheckInfo("special.negative_zero", "special",
              "-0.0 and negative values that round to zero give the -0 code", "5.3, 6.3"),
    CheckInfo("packing.fp4_nibbles", "packing",
              "4-bit codes: element 2j in the low nibble of byte j", "5.2; mxref.pack"),
    CheckInfo("packing.fp6_bits", "packing",
              "6-bit codes: four per three bytes, LSB first", "5.2; mxref.pack"),
    CheckInfo("packing.byte_codes", "packing",
              "8-bit codes: one per byte, unchanged", "5.2; mxref.pack"),
    CheckInfo("gemm.random_blocks", "gemm",
              "random finite codes and ordinary scales", "6.2"),
    CheckInfo("gemm.extreme_scales", "gemm",
              "scales 2**-127 .. 2**127 whose products leave the float32 range", "6.2"),
    CheckInfo("gemm.nan_scale", "gemm",
              "a 0xFF scale makes its row/column NaN", "5.4.1, 6.2"),
    CheckInfo("gemm.special_codes", "gemm",
              "E4M3 NaN and E5M2 Inf/NaN element codes as operands", "5.3.1, 6.2"),
    CheckInfo("gemm.cancellation", "gemm",
              "blocks whose products cancel exactly", "6.2"),
)  # fmt: skip


#: Every check, by id, in report order.
CHECKS: dict[str, CheckInfo] = {c.id: c for c in _CHECK_LIST}




# --------------------------------------------------------------------------
# configurations, cases and results
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    """One format and policy combination the backend is run under.

    Attributes
    ----------
    fmt : str
        mxref format name.
    scale_rule, rounding, overflow : str
        mxref policy names.
    block_size : int
    seed : int or None
        Only with ``rounding="stochastic"``.
    preset : str or None
        A preset (:mod:`mxref.presets`) the backend claims to reproduce: the
        policies are its, its quirks go to the oracle, and the backend is
        called with ``preset=`` instead of the policies.
    """

    fmt: str
    scale_rule: str = ScaleRule.FLOOR.value
    rounding: str = Rounding.RNE.value
    overflow: str = Overflow.SATURATE.value
    block_size: int = DEFAULT_BLOCK_SIZE
    seed: int | None = None
    preset: str | None = None

    def label(self) -> str:
        """``"mxfp4 floor/rne/saturate"`` (``"... (preset torchao)"`` under a preset)."""
        text = f"{self.fmt} {self.scale_rule}/{self.rounding}/{self.overflow}"
        return text if self.preset is None else f"{text} (preset {self.preset})"

    def meta(self) -> dict[str, Any]:
        """The ``meta`` object of the ``--command`` protocol."""
        out: dict[str, Any] = {
            "protocol": PROTOCOL,
            "format": self.fmt,
            "scale_rule": self.scale_rule,
            "rounding": self.rounding,
            "overflow": self.overflow,
            "block_size": self.block_size,
        }
        if self.seed is not None:
            out["seed"] = self.seed
        if self.preset is not None:
            out["preset"] = self.preset
        return out

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a quantize with :func:`mxref.quantize`'s signature."""
        out: dict[str, Any] = {"axis": -1, "block_size": self.block_size}
        if self.preset is not None:  # the preset fixes the policies (and its quirks)
            out["preset"] = self.preset
        else:
            out.update(scale_rule=self.scale_rule, rounding=self.rounding, overflow=self.overflow)
        if self.seed is not None:
            out["seed"] = self.seed
        return out
