"""Argument checks shared by every entry point that takes mxref's quantize arguments.

:mod:`mxref.codec` (numpy and torch inputs, numba kernels) and
:mod:`mxref.torch` (torch kernels) accept the same arguments with the
same rules and messages; both call these functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mxref.array import scales_shape
from mxref.formats import SCALE_NAN, ElementFormat
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import Preset, get_preset


def check_axis(axis: object, ndim: int) -> int:
    """Return ``axis`` as a non-negative index into ``ndim`` dimensions.

    Raises
    ------
    TypeError, ValueError
        Naming ``axis``.
    """
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"axis must be an int; got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a {ndim}-d input")
    return int(axis) % ndim


def check_block_size(block_size: object) -> int:
    """Return ``block_size`` as a positive int.

    Raises
    ------
    TypeError, ValueError
        Naming ``block_size``.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer):
        raise TypeError(f"block_size must be an int; got {type(block_size).__name__}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    return int(block_size)


def check_seed(seed: object, rounding: Rounding) -> int:
    """Return the stochastic-rounding seed in ``[0, 2**64)`` (0 when rounding is not stochastic).

    Raises
    ------
    ValueError
        A seed given without ``rounding="stochastic"``, or missing or out of
        range with it.
    """
    if rounding is not Rounding.STOCHASTIC:
        if seed is not None:
            raise ValueError("seed is only used with rounding='stochastic'; pass seed=None")
        return 0
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError("rounding='stochastic' needs seed=<int>, so that results reproduce")
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2**64); got {seed}")
    return int(seed)


class Policies(NamedTuple):
    """The preset in force and the three policies it and the caller chose."""

    preset: Preset
    scale_rule: ScaleRule
    rounding: Rounding
    overflow: Overflow


def resolve_policies(
    preset: str | Preset | None,
    scale_rule: str | ScaleRule | None,
    rounding: str | Rounding | None,
    overflow: str | Overflow | None,
    fmt: ElementFormat | None = None,
) -> Policies:
    """Return the policies: the caller's where given, else the preset's (``"ocp"`` by default).

    Raises
    ------
    ValueError
        A preset together with an explicit policy, or an unknown name,
        naming the argument.
    """
    if preset is not None:
        given = [n for n, v in (("scale_rule", scale_rule), ("rounding", rounding),
                                ("overflow", overflow)) if v is not None]  # fmt: skip
        if given:
            raise ValueError(f"preset fixes {', '.join(given)}; pass either the preset or them")
    chosen = get_preset(preset if preset is not None else "ocp", fmt)
    return Policies(
        chosen,
        ScaleRule.parse(chosen.scale_rule if scale_rule is None else scale_rule, "scale_rule"),
        Rounding.parse(chosen.rounding if rounding is None else rounding, "rounding"),
        Overflow.parse(chosen.overflow if overflow is None else overflow, "overflow"),
    )


# --- given scales (``scales=``) ------------------------------------------------------


def check_scales_alone(scale_rule: object, scales: object) -> None:
    """Refuse an explicit ``scale_rule`` together with given ``scales``.

    Raises
    ------
    ValueError
        Both given: the rule would choose no scale, so it would be silently
        unused.
    """
    if scales is not None and scale_rule is not None:
        raise ValueError("scale_rule has no effect with scales=; drop one")


def check_scales_shape(
    got: tuple[int, ...], shape: tuple[int, ...], axis: int, block_size: int
) -> None:
    """Check that given scales have the shape of ``x``'s scales.

    Raises
    ------
    ValueError
        Naming ``scales``, with the expected and the given shape.
    """
    want = scales_shape(shape, axis, block_size)
    if got != want:
        raise ValueError(
            f"scales must have shape {want} (x of shape {shape} in blocks of {block_size} "
            f"along axis {axis}); got {got}"
        )


def nan_scale_error(index: tuple[int, ...]) -> ValueError:
    """The error for a NaN scale byte (0xFF) among given scales, at scale index ``index``."""
    return ValueError(
        f"scales holds 0xFF (the NaN scale) at block {index}; given scales must be "
        "finite (0x00 to 0xFE)"
    )


def nonfinite_input_error(index: tuple[int, ...], value: float) -> ValueError:
    """The error for a NaN or Inf element of ``x`` (at ``index``) with given scales."""
    return ValueError(
        f"x holds {value} at {index}; with scales= every element must be finite "
        "(a finite scale gives NaN and Inf no encoding)"
    )


def check_scales_type(scales: object) -> np.ndarray:
    """Return ``scales`` once it is a uint8 numpy array.

    Raises
    ------
    TypeError
        Naming ``scales`` and what it is instead.
    """
    if not isinstance(scales, np.ndarray) or scales.dtype != np.uint8:
        got = f"dtype {scales.dtype}" if isinstance(scales, np.ndarray) else type(scales).__name__
        raise TypeError(f"scales must be a uint8 numpy array; got {got}")
    return scales


def check_scales(scales: object, shape: tuple[int, ...], axis: int, block_size: int) -> np.ndarray:
    """Return given numpy ``scales`` once they fit ``x``'s shape, axis and block size.

    Raises
    ------
    TypeError
        Not a uint8 numpy array.
    ValueError
        Another shape, or a NaN scale (0xFF), naming the first such block.
    """
    scales = check_scales_type(scales)
    check_scales_shape(tuple(scales.shape), shape, axis, block_size)
    nan = np.argwhere(scales == SCALE_NAN)
    if len(nan):
        raise nan_scale_error(tuple(int(i) for i in nan[0]))
    return scales


def first_nonfinite(x: np.ndarray) -> tuple[int, ...] | None:
    """The index of ``x``'s first NaN or Inf (C order), or None when it has none."""
    # max and min propagate NaN and reach Inf: two reductions, no full-size temporary
    if x.size == 0 or (np.isfinite(x.max()) and np.isfinite(x.min())):
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(np.isfinite(x))), x.shape))
