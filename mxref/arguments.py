"""Argument checks shared by every entry point that takes mxref's quantize arguments.

:mod:`mxref.codec` (numpy and torch inputs, numba kernels) and
:mod:`mxref.torch` (torch kernels) accept the same arguments with the
same rules and messages; both call these functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

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
    chosen = get_preset(preset if preset is not None else "ocp")
    return Policies(
        chosen,
        ScaleRule.parse(chosen.scale_rule if scale_rule is None else scale_rule, "scale_rule"),
        Rounding.parse(chosen.rounding if rounding is None else rounding, "rounding"),
        Overflow.parse(chosen.overflow if overflow is None else overflow, "overflow"),
    )
