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


#: The NVFP4 area of the report (not a golden area: its golden cases use the spec areas).
NVFP4_AREA = ("NVFP4", "docs/semantics.md 8c; docs/conformance.md (NVFP4)")

#: An NVFP4 check's class: a property every NVFP4 implementation shares.
SPEC_LIKE = "spec-like"
#: An NVFP4 check's class: a choice NVFP4 implementations make differently.
IMPLEMENTATION_DEFINED = "implementation-defined"

_NV_SEC = "docs/semantics.md 8c"

NV_CHECK_LIST = (
    CheckInfo("nvfp4.tensor_scale", "nvfp4",
              "the float32 tensor scale G = RN32(2688 / amax), amax over finite values, on "
              "amaxes where 1 / RN32(amax / 2688) differs; per-tensor G of rows with "
              "different amax", f"{_NV_SEC} (G); implementation-defined formula"),
    CheckInfo("nvfp4.block_scale_rounding", "nvfp4",
              "E4M3 block scale amax_b / 6 * G on every E4M3 midpoint and beside it (RNE)",
              f"{_NV_SEC} (s_b); OFP8 E4M3 RNE"),
    CheckInfo("nvfp4.block_scale_subnormal", "nvfp4",
              "subnormal E4M3 block scales kept; a tiny block's scale rounding to 0 gives 0x00",
              f"{_NV_SEC}; torchao clamps to 2**-6 instead"),
    CheckInfo("nvfp4.block_scale_saturation", "nvfp4",
              "under a given tensor scale, block scales at and above 448 saturate to 0x7E "
              "(never 0x7F, E4M3's NaN)", f"{_NV_SEC}; OFP8 E4M3 satfinite"),
    CheckInfo("nvfp4.element_rounding", "nvfp4",
              "E2M1 midpoints times an exact block scale and the floats beside them",
              f"{_NV_SEC} (codes); OCP MX v1.0 6.3 roundTiesToEven"),
    CheckInfo("nvfp4.element_saturation", "nvfp4",
              "x * G / s_b above 6 (a scale rounded down, a saturated scale) clamps to +-6",
              f"{_NV_SEC}; OCP MX v1.0 6.3"),
    CheckInfo("nvfp4.zero_tensor", "nvfp4",
              "a tensor without a finite nonzero value: G = 1, bytes 0x00, signed zero codes",
              f"{_NV_SEC} (amax = 0); mxref's choice"),
    CheckInfo("nvfp4.zero_block", "nvfp4",
              "an all-zero block beside nonzero ones: byte 0x00, signed zero codes",
              f"{_NV_SEC}; torchao gives 2**-6"),
    CheckInfo("nvfp4.negative_zero", "nvfp4",
              "-0.0 and negative values that round to zero give the -0 code 0x8",
              "OCP MX v1.0 5.3, 6.3"),
    CheckInfo("nvfp4.special_values", "nvfp4",
              "a NaN or Inf block gets byte 0x7F and signed zero codes; G from the finite amax",
              f"{_NV_SEC} (NaN and Inf); mxref's choice"),
    CheckInfo("nvfp4.per_row", "nvfp4",
              "per_row=True: one tensor scale per row, from that row's amax",
              f"{_NV_SEC} (per_row)"),
    CheckInfo("nvfp4.packing", "nvfp4",
              "E2M1 codes two per byte (low nibble first) and E4M3 bytes plain and in "
              "NVIDIA's 128x4 swizzled tiles; the tensor scale kept",
              "mxref.pack; cuBLAS 1D block scaling factors layout"),
    CheckInfo("nvfp4.decode", "nvfp4",
              "RN32(code * s_b / G) for every E4M3 byte (0x7F: NaN) and every code, under "
              "several tensor scales", f"{_NV_SEC} (decoded value)"),
)  # fmt: skip

#: NVFP4 check id -> its class (:data:`SPEC_LIKE` or :data:`IMPLEMENTATION_DEFINED`);
#: the one table a report's per-class verdict reads.
NV_CHECK_CLASS: dict[str, str] = {
    "nvfp4.tensor_scale": IMPLEMENTATION_DEFINED,
    "nvfp4.block_scale_rounding": SPEC_LIKE,
    "nvfp4.block_scale_subnormal": IMPLEMENTATION_DEFINED,
    "nvfp4.block_scale_saturation": SPEC_LIKE,
    "nvfp4.element_rounding": SPEC_LIKE,
    "nvfp4.element_saturation": SPEC_LIKE,
    "nvfp4.zero_tensor": IMPLEMENTATION_DEFINED,
    "nvfp4.zero_block": IMPLEMENTATION_DEFINED,
    "nvfp4.negative_zero": SPEC_LIKE,
    "nvfp4.special_values": IMPLEMENTATION_DEFINED,
    "nvfp4.per_row": IMPLEMENTATION_DEFINED,
    "nvfp4.packing": SPEC_LIKE,
    "nvfp4.decode": SPEC_LIKE,
}

#: Every MX check, by id, in report order (areas of :data:`AREAS`).
CHECKS: dict[str, CheckInfo] = {c.id: c for c in _CHECK_LIST}

#: Every NVFP4 check, by id, in report order (the report's ``nvfp4`` area).
NV_CHECKS: dict[str, CheckInfo] = {c.id: c for c in NV_CHECK_LIST}




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
        """Keyword arguments for a quantize with :func:`mxref.quantize`'s signature (MX)."""
        out: dict[str, Any] = {"axis": -1, "block_size": self.block_size}
        if self.preset is not None:  # the preset fixes the policies (and its quirks)
            out["preset"] = self.preset
        else:
            out.update(scale_rule=self.scale_rule, rounding=self.rounding, overflow=self.overflow)
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclasses.dataclass(frozen=True)
class NVConfig:
    """One NVFP4 run: the element rounding, per-row scales, a given tensor scale.

    Attributes
    ----------
    rounding : str
        ``"rne"``, ``"away"`` or ``"zero"``.
    per_row : bool
        One tensor scale per row.
    given : bool
        The tensor scale is given (calibrated), not computed.
    """

    rounding: str = Rounding.RNE.value
    per_row: bool = False
    given: bool = False

    def label(self) -> str:
        """``"nvfp4 rne"``, ``"nvfp4 rne per_row"``, ``"nvfp4 rne, given G"``."""
        return (f"nvfp4 {self.rounding}" + (" per_row" if self.per_row else "")
                + (", given G" if self.given else ""))  # fmt: skip

    def meta(self) -> dict[str, Any]:
        """The ``meta`` object of the ``--command`` protocol for NVFP4."""
        return {"protocol": PROTOCOL, "format": "nvfp4", "rounding": self.rounding,
                "block_size": 16, "per_row": self.per_row,
                "tensor_scale_given": self.given}  # fmt: skip

    def kwargs(self, given: Any = None) -> dict[str, Any]:
        """Keyword arguments for a quantize with :func:`mxref.quantize`'s signature.

        ``per_row`` and ``tensor_scale`` are passed only when used, so a
        backend without them still serves the other checks.
        """
        out: dict[str, Any] = {"axis": -1, "block_size": 16, "rounding": self.rounding}
        if self.per_row:
            out["per_row"] = True
        if given is not None:
            out["tensor_scale"] = given
        return out
