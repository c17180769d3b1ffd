"""MXArray: element codes plus E8M0 scales, the result of :func:`mxref.quantize`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mxref.formats import ElementFormat, get_format


def scales_shape(shape: tuple[int, ...], axis: int, block_size: int) -> tuple[int, ...]:
    """Shape of the scale array: ``shape`` with ``axis`` cut into blocks (ceil)."""
    return shape[:axis] + (-(-shape[axis] // block_size),) + shape[axis + 1 :]


@dataclass(frozen=True, eq=False)
class MXArray:
    """An MX-encoded array.

    Attributes
    ----------
    codes : np.ndarray of uint8
        One element code per value, same shape as the input, in the low bits:
        sign-exponent-mantissa for FP formats, the two's complement byte for mxint8.
    scales : np.ndarray of uint8
        E8M0 bytes; the blocked axis has length ``ceil(n / block_size)``.
    fmt : ElementFormat
    axis : int
        The blocked axis, non-negative.
    block_size : int

    Spec: OCP MX v1.0 section 5 (a block is one shared scale X and k elements P_i).
    """

    codes: np.ndarray
    scales: np.ndarray
    fmt: ElementFormat
    axis: int
    block_size: int

    def __post_init__(self) -> None:
        fmt = get_format(self.fmt)
        object.__setattr__(self, "fmt", fmt)
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

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the encoded array (and of ``codes``)."""
        return tuple(self.codes.shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.codes.ndim

    def __repr__(self) -> str:
        return (
            f"MXArray(fmt={self.fmt.name}, shape={self.shape}, axis={self.axis}, "
            f"block_size={self.block_size})"
        )
