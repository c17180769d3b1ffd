"""``--preset`` on the command line: it fixes the policy options, so none may come with it."""

from __future__ import annotations

import argparse

from mxref.io import InputError

__all__ = ["check_preset_alone"]


def check_preset_alone(args: argparse.Namespace) -> None:
    """Refuse ``--preset`` together with ``--scale-rule``, ``--rounding`` or ``--overflow``."""
    given = [option for option, value in (("--scale-rule", args.scale_rule),
             ("--rounding", args.rounding), ("--overflow", args.overflow))
             if value is not None]  # fmt: skip
    if args.preset is not None and given:
        raise InputError(f"--preset fixes {', '.join(given)}; give either the preset or them")
