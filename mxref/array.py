"""MXArray: element codes, block scales and NVFP4's tensor scale, from :func:`mxref.quantize`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mxref.formats import ElementFormat, get_format


def scales_shape(shape: tuple[int, ...], axis: int, block_size: int) -> tuple[int, ...]:
    """Shape of the scale array: ``shape`` with ``axis`` cut into blocks (ceil)."""
    return shape[:axis] + (-(-shape[axis] // block_size),) + shape[axis + 1 :]


def row_scale_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Shape of per-row tensor scales: one per slice along ``axis`` (``shape`` without it)."""
    return shape[:axis] + shape[axis + 1 :]


def check_preset_field(owner: str, fmt: ElementFormat, preset: object) -> str | None:
    """The canonical name of an NVFP4 preset field, or None; refuse it for an MX format.

    Raises
    ------
    TypeError, ValueError
        Naming ``owner``'s ``preset`` field.
    """
    if preset is None:
        return None
    if not isinstance(preset, str):
        raise TypeError(f"{owner}.preset must be a str or None; got {type(preset).__name__}")
    if not fmt.two_level:
        raise ValueError(f"{owner}.preset: {fmt.name} arrays decode the same under every "
                         "preset; leave it None")  # fmt: skip
    from mxref.presets import get_nvfp4_preset  # presets import formats, not arrays

    try:
        get_nvfp4_preset(preset, fmt)
    except ValueError as e:
        raise ValueError(f"{owner}.{e}") from None
    return preset.strip().lower()


def zero_allowed(fmt: ElementFormat, preset: str | None) -> bool:
    """Whether the tensor scale may be 0: only where the preset stores an amax there."""
    if preset is None:
        return False
    from mxref.presets import get_nvfp4_preset

    return get_nvfp4_preset(preset, fmt).zero_tensor_scale


def check_tensor_scale(owner: str, fmt: ElementFormat, tensor_scale: object,
                       shape: tuple[int, ...], axis: int, scales: np.ndarray,
                       allow_zero: bool = False) -> None:  # fmt: skip
    """Check a two-level format's float32 tensor scale and E4M3 bytes; None for MX.

    Raises
    ------
    TypeError, ValueError
        Naming ``owner``'s field.
    """
    t = tensor_scale
    if not fmt.two_level:
        if t is not None:
            raise ValueError(f"{owner}.tensor_scale: {fmt.name} has no tensor scale; "
                             "leave it None")  # fmt: skip
        return
    if not isinstance(t, np.ndarray) or t.dtype != np.float32:
        raise TypeError(f"{owner}.tensor_scale must be a float32 numpy array for {fmt.name}")
    per_row = row_scale_shape(shape, axis)
    if t.shape not in ((), per_row):
        raise ValueError(f"{owner}.tensor_scale has shape {t.shape}; {fmt.name} takes one "
                         f"scale (shape ()) or one per row {per_row}")  # fmt: skip
    low = (t >= 0) if allow_zero else (t > 0)  # a Transformer Engine amax may be 0
    if t.size and not bool(np.all(np.isfinite(t) & low)):
        raise ValueError(f"{owner}.tensor_scale must hold finite "
                         f"{'non-negative' if allow_zero else 'positive'} values")  # fmt: skip
    assert fmt.scale_format is not None
    nan = fmt.scale_format.nan_code
    if scales.size and int(scales.max()) > (nan if nan is not None else 0x7F):
        raise ValueError(f"{owner}.scales holds {int(scales.max()):#x}, not a "
                         f"positive {fmt.scale_format.name} byte")  # fmt: skip


@dataclass(frozen=True, eq=False)
class MXArray:
    """An MX-encoded array.

    Attributes
    ----------
    codes : np.ndarray of uint8
        One element code per value, same shape as the input, in the low bits:
        sign-exponent-mantissa for FP formats, the two's complement byte for mxint8.
    scales : np.ndarray of uint8
        The block scale bytes (E8M0; E4M3 for NVFP4); the blocked axis has
        length ``ceil(n / block_size)``.
    fmt : ElementFormat
    axis : int
        The blocked axis, non-negative.
    block_size : int
    tensor_scale : np.ndarray of float32, optional
        NVFP4 only (required there): the encode scale ``G``, 0-d for the
        whole tensor or of ``row_scale_shape(shape, axis)``, one per row;
        under an NVFP4 ``preset``, what that implementation stores instead
        (``mxref.presets.NVFP4Preset.tensor_scale``).
    preset : str, optional
        NVFP4 only: the name of the NVFP4 preset that encoded it, which fixes
        what ``tensor_scale`` holds and how :func:`mxref.dequantize` decodes.

    Spec: OCP MX v1.0 section 5 (a block is one shared scale X and k elements P_i).
    """

    codes: np.ndarray
    scales: np.ndarray
    fmt: ElementFormat
    axis: int
    block_size: int
    tensor_scale: np.ndarray | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        fmt = get_format(self.fmt, two_level=True)
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "preset", check_preset_field("MXArray", fmt, self.preset))
        for name in ("codes", "scales"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
                raise TypeError(f"MXArray.{name} must be a uint8 numpy array")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, int | np.integer):
            raise TypeError("MXArray.block_size must be an int")
        if self.block_size < 1:
            raise ValueError(f"MXArray.block_size must be >= 1; got {self.block_size}")
        ndim = self.codes.ndim
        if ndim == 0 or not -ndim <= self.axis < ndim:
            raise ValueError(f"MXArray.axis {self.axis} is out of range for {ndim}-d codes")
        object.__setattr__(self, "axis", int(self.axis) % ndim)
        object.__setattr__(self, "block_size", int(self.block_size))
        want = scales_shape(self.codes.shape, self.axis, self.block_size)
        if self.scales.shape != want:
            raise ValueError(
                f"MXArray.scales has shape {self.scales.shape}; codes of shape "
                f"{self.codes.shape} blocked by {self.block_size} along axis {self.axis} "
                f"need {want}"
            )
        if self.codes.size and int(self.codes.max()) >= fmt.code_count:
            raise ValueError(
                f"MXArray.codes holds {int(self.codes.max()):#x}, "
                f"not a {fmt.bits}-bit {fmt.name} code"
            )
        check_tensor_scale("MXArray", fmt, self.tensor_scale, self.codes.shape, self.axis,
                           self.scales, allow_zero=zero_allowed(fmt, self.preset))  # fmt: skip

    @property
    def per_row(self) -> bool:
        """Whether the tensor scale is one per row (NVFP4)."""
        return self.tensor_scale is not None and self.tensor_scale.ndim > 0

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the encoded array (and of ``codes``)."""
        return tuple(self.codes.shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.codes.ndim

    def __repr__(self) -> str:
        scale = "" if self.tensor_scale is None else \
            f", tensor_scale={'per row' if self.per_row else 'per tensor'}"  # fmt: skip
        scale += "" if self.preset is None else f", preset={self.preset!r}"
        return (
            f"MXArray(fmt={self.fmt.name}, shape={self.shape}, axis={self.axis}, "
            f"block_size={self.block_size}{scale})"
        )
