"""Vendor-compatibility presets: other implementations' behaviour, as data.

Each preset is one frozen object naming the policies and quirks of a real
implementation, with its source, and the format family it applies to: a
:class:`Preset` for the MX formats, an :class:`NVFP4Preset` for NVFP4.
``mxref.quantize(x, fmt, preset="torchao")`` reproduces that
implementation's codes and scales, quirks included, where the quirk is listed
here; ``docs/semantics.md`` (sections 8a and 8c) describes where each still
differs.  Both families live in one registry, :data:`PRESETS`; a name may
exist in both (``torchao``), and :func:`get_preset` picks the one of the
format's family.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mxref.formats import ElementFormat
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.registry import Registry


class Family(StrEnum):
    """The formats a preset applies to: the MX formats, or NVFP4 (two-level)."""

    MX = "mx"
    NVFP4 = "nvfp4"

    @classmethod
    def of(cls, fmt: ElementFormat) -> Family:
        """The family of ``fmt``."""
        return cls.NVFP4 if fmt.two_level else cls.MX


class NVRecipe(StrEnum):
    """How an NVFP4 preset computes its scales and elements (docs/semantics.md section 8c).

    TORCHAO: torchao 0.18's ``NVFP4Tensor`` float32 steps.
    TRANSFORMER_ENGINE: Transformer Engine's NVFP4 quantize and dequantize kernels.
    """

    TORCHAO = "torchao"
    TRANSFORMER_ENGINE = "transformer-engine"


class PresetBase:
    """What every preset has: a ``name``, a ``source`` and the :class:`Family` it serves."""

    name: str
    source: str
    family: Family

    @property
    def key(self) -> str:
        """The registry key: the name for an MX preset, ``family/name`` otherwise."""
        return self.name if self.family is Family.MX else f"{self.family.value}/{self.name}"


@dataclass(frozen=True)
class Preset(PresetBase):
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
    scale_overflow_nan : bool
        False (the spec): a shared exponent above 127 is clamped to 127 (byte
        0xFE).  True (compressed-tensors): the amax rounded by the scale rule
        is formed in the input's float format, where it may overflow to Inf,
        and the byte is clamped to [0, 255] only, so an exponent above 127 or
        an Inf rounded amax gives 0xFF, the NaN scale, and the block decodes
        to NaN.
    formats : tuple of str
        The MX formats the implementation has; empty for all of them.
    source : str
        Where the behaviour comes from.
    """

    name: str
    scale_rule: ScaleRule
    rounding: Rounding
    overflow: Overflow
    keep_negative_zero: bool = True
    divisor_min_exponent: int = -127
    scale_overflow_nan: bool = False
    formats: tuple[str, ...] = ()
    source: str = ""
    family: Family = Family.MX


@dataclass(frozen=True)
class NVFP4Preset(PresetBase):
    """One NVFP4 implementation: its recipe and what its ``tensor_scale`` holds.

    Attributes
    ----------
    name : str
    recipe : NVRecipe
        The arithmetic (oracle: ``mxref.ref.nvfp4``, kernel:
        ``mxref.kernels.nvfp4_presets``).
    tensor_scale : str
        What ``MXArray.tensor_scale`` holds under this preset, as the
        implementation stores it (and what ``tensor_scale=`` takes).
    zero_tensor_scale : bool
        Whether that stored value may be 0 (an amax of 0 may; a scale may not).
    source : str
    """

    name: str
    recipe: NVRecipe
    tensor_scale: str
    zero_tensor_scale: bool = False
    source: str = ""
    family: Family = Family.NVFP4


PRESETS: Registry[PresetBase] = Registry(
    "preset",
    PresetBase,
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
        Preset(
            "compressed-tensors",
            ScaleRule.EVEN,
            Rounding.RNE,
            Overflow.SATURATE,
            keep_negative_zero=False,
            scale_overflow_nan=True,
            formats=("mxfp4", "mxfp6_e2m3"),
            source="compressed-tensors 0.20.1 quantization/utils/mxfp_utils.py: "
            "round_to_power_2 adds half an element-mantissa ulp to the amax's bits in "
            "the input's dtype (an Inf when it carries past the top binade), "
            "generate_mx_scales takes 127 + floor(log2) - emax, helpers.py "
            "calculate_qparams rounds it into uint8 (clamped to [0, 255]); "
            "lifecycle/forward.py adds a +0.0 zero point, so -0.0 gives +0.0. "
            "Its MXFP8 rounds the amax at E2M1's mantissa width, not modelled",
        ),
        NVFP4Preset(
            "torchao",
            NVRecipe.TORCHAO,
            tensor_scale="the decode scale t = RN32(amax / 2688), torchao's per_tensor_scale",
            source="torchao 0.18.0 prototype/mx_formats/nvfp4_tensor.py: "
            "per_tensor_amax_to_scale, nvfp4_quantize (float32 steps, E4M3_EPS clamp, "
            "reciprocal multiply), NVFP4Tensor.dequantize",
        ),
        NVFP4Preset(
            "transformer-engine",
            NVRecipe.TRANSFORMER_ENGINE,
            tensor_scale="the float32 amax, as Transformer Engine stores it (amax_rowwise)",
            zero_tensor_scale=True,
            source="Transformer Engine docs/features/low_precision_training/nvfp4/nvfp4.rst "
            "(s_global = amax / (448 * 6), s_block = (block_amax / 6) / s_global), in "
            "the float32 steps of common/cast/nvfp4/core_nvfp4.cuh "
            "(compute_global_encode_scaling_factor_FP4, compute_decoding_scaling_factor, "
            "compute_scaling_coefficient), pytorch/custom_recipes/quantization_nvfp4.py "
            "and common/cast/nvfp4/dequantize_nvfp4.cuh",
        ),
    ),
    name_of=lambda p: p.key,
)


def preset_names(family: Family = Family.MX) -> list[str]:
    """The names of the presets of ``family``, in registration order."""
    return [p.name for p in PRESETS.values() if p.family is family]


def find_preset(preset: str | PresetBase, fmt: ElementFormat | None = None) -> PresetBase:
    """Return the preset named ``preset`` (case-insensitive) for ``fmt``'s family.

    Parameters
    ----------
    preset : str or Preset or NVFP4Preset
    fmt : ElementFormat, optional
        The format it is used with; None for the MX formats.

    Raises
    ------
    ValueError
        Naming ``preset``: an unknown name (listing the known ones), a preset
        of the other family, or an MX preset that lacks ``fmt``.
    """
    family = Family.MX if fmt is None else Family.of(fmt)
    where = "the MX formats" if fmt is None else fmt.name
    if isinstance(preset, PresetBase):
        found = preset
    elif isinstance(preset, str):
        name = preset.strip().lower()
        matches = [p for p in PRESETS.values() if p.name.lower() == name]
        if not matches:
            known = ", ".join(repr(n) for n in dict.fromkeys(p.name for p in PRESETS.values()))
            raise ValueError(f"preset must be one of {known}; got {preset!r}")
        found = next((p for p in matches if p.family is family), matches[0])
    else:
        raise TypeError(f"preset must be a name or a preset; got {type(preset).__name__}")
    if found.family is not family:
        takes = ", ".join(repr(n) for n in preset_names(family))
        raise ValueError(f"preset: {found.name!r} is an {found.family.value.upper()} preset; "
                         f"{where} take{'s' if fmt is not None else ''} {takes}")  # fmt: skip
    if fmt is not None and isinstance(found, Preset) and found.formats \
            and fmt.name not in found.formats:  # fmt: skip
        raise ValueError(f"preset: {found.name!r} has no {fmt.name} (only "
                         f"{', '.join(found.formats)})")  # fmt: skip
    return found


def get_preset(preset: str | PresetBase, fmt: ElementFormat | None = None) -> Preset:
    """:func:`find_preset` for an MX format (all of them when ``fmt`` is None): a :class:`Preset`.

    Raises
    ------
    ValueError
        As :func:`find_preset`, naming ``preset``.
    """
    found = find_preset(preset, fmt)
    assert isinstance(found, Preset)
    return found


def get_nvfp4_preset(preset: str | PresetBase, fmt: ElementFormat) -> NVFP4Preset:
    """:func:`find_preset` for a two-level format: an :class:`NVFP4Preset`."""
    found = find_preset(preset, fmt)
    assert isinstance(found, NVFP4Preset)
    return found
