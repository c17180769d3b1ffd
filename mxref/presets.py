"""Vendor-compatibility presets: other implementations' behaviour, as data.

Each preset is one frozen :class:`Preset` naming the policies and quirks of a
real implementation, with its source.  ``mxref.quantize(x, fmt,
preset="torchao")`` reproduces that implementation's codes and scales, quirks
included, where the quirk is listed here; ``docs/semantics.md`` describes
where each still differs (mostly NaN/Inf handling).
"""

from __future__ import annotations

from dataclasses import dataclass

from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.registry import Registry


@dataclass(frozen=True)
class Preset:
    """The policies and quirks of one MX implementation.

    Attributes
    ----------
    name : str
    scale_rule, rounding, overflow
        The policies the implementation uses.
    keep_negative_zero : bool
        False: a -0.0 input is encoded as +0 (microxcaling returns +0.0).
    divisor_min_exponent : int
        Elements are divided by ``2**max(shared_exponent, this)`` while the
        stored scale stays ``2**shared_exponent``: -127 is the spec; torchao
        0.18 clamps its float32 divisor at 2**-126 (the smallest normal).
    source : str
        Where the behaviour comes from.
    """

    name: str
    scale_rule: ScaleRule
    rounding: Rounding
    overflow: Overflow
    keep_negative_zero: bool = True
    divisor_min_exponent: int = -127
    source: str = ""


PRESETS: Registry[Preset] = Registry(
    "preset",
    Preset,
    (
        Preset(
            "ocp",
            ScaleRule.FLOOR,
            Rounding.RNE,
            Overflow.SATURATE,
            source="OCP MX v1.0 section 6.3: FLOOR scale, roundTiesToEven, clamp to max normal",
        ),
        Preset(
            "microxcaling",
            ScaleRule.FLOOR_LOG2_FP32,
            Rounding.AWAY,
            Overflow.SATURATE,
            keep_negative_zero=False,
            source="microsoft/microxcaling 7bc4195: mx/mx_ops.py::_quantize_mx computes "
            "floor(log2(amax)) in float32; mx/elemwise_ops.py rounds 'nearest' = ties away "
            "(sign * floor(|x| + 0.5)); -0.0 comes out +0.0",
        ),
        Preset(
            "torchao",
            ScaleRule.FLOOR,
            Rounding.RNE,
            Overflow.SATURATE,
            divisor_min_exponent=-126,
            source="torchao 0.18.0 prototype/mx_formats/mx_tensor.py::to_mx: FLOOR from the "
            "float32 exponent bits; scale_fp32 = clamp(byte << 23, min=F32_MIN_NORMAL), so a "
            "0x00 block is divided by 2**-126; saturated RNE casts",
        ),
        Preset(
            "cublas",
            ScaleRule.RCEIL,
            Rounding.RNE,
            Overflow.SATURATE,
            source="cuBLAS/cuDNN 1D block scaling: scale = round_up(amax / vmax), "
            "elements round-to-nearest-even, satfinite; Transformer Engine MXFP8 "
            "cvt.rp.satfinite.ue8m0x2.f32",
        ),
        Preset(
            "quark",
            ScaleRule.EVEN,
            Rounding.RNE,
            Overflow.SATURATE,
            source="AMD Quark quark/torch/quantization/utils.py even_round: amax rounded "
            "half-up to the element mantissa, then floor(log2), clamped to [-127, 127]",
        ),
        Preset(
            "triton",
            ScaleRule.RCEIL_FP32_DIV,
            Rounding.RNE,
            Overflow.SATURATE,
            source="triton_kernels _downcast_to_mxfp.py DequantScaleRoundingMode.ROUND_UP: "
            "(bits(amax / max) + 0x7FFFFF) & 0x7F800000 on a float32 quotient, so a "
            "subnormal scale becomes 2**-126; E2M1 RNE saturating",
        ),
    ),
)


def get_preset(preset: str | Preset) -> Preset:
    """Return the preset named ``preset`` (case-insensitive), or the object itself.

    Raises
    ------
    ValueError
        Listing the known presets.
    """
    return PRESETS.resolve(preset)
