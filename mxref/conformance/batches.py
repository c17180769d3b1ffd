"""The quantize batches of ``mxref conform``, with the exact oracle's answers.

The blocks themselves come from the one case generator,
:func:`mxref.testing.cases.checked_blocks`; this module stacks them per
configuration and keeps the oracle's codes and scales for them.

Spec: OCP MX v1.0 section 6.3 (the conversion the cases probe).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from mxref.codec import input_emax
from mxref.conformance.checks import Config
from mxref.formats import get_format
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import get_preset
from mxref.ref.array import quantize_array
from mxref.testing.cases import checked_blocks


def _hex32(x: np.ndarray) -> list[str]:
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).ravel()
    return [f"{int(b):08x}" for b in bits]


def _hex8(a: Any) -> list[str]:
    return [f"{int(b):02x}" for b in np.asarray(a).ravel()]


@dataclasses.dataclass(frozen=True)
class _Batch:
    """All quantize rows of one configuration."""

    config: Config
    x: np.ndarray  # (rows, block_size) float32
    notes: list[str]
    checks: list[tuple[tuple[str, str], ...]]


def build_batch(config: Config, level: int = 1, seed: int = 0) -> _Batch:
    """Every structured and random block for one configuration.

    Parameters
    ----------
    config : Config
    level : {1, 2}
    seed : int
        Seeds the random battery; the structured part does not depend on it.

    Returns
    -------
    _Batch
        ``x`` (rows x block_size, float32), a note per row and the checks it feeds.
    """
    blocks = checked_blocks(get_format(config.fmt), config.block_size, level, seed)
    if not blocks:
        x = np.zeros((0, config.block_size), np.float32)
    else:
        x = np.array([b.inputs for b in blocks], np.uint32).view(np.float32)
    notes = [b.note for b in blocks]
    checks = [b.checks for b in blocks]
    return _Batch(config, x, notes, checks)


_ORACLE_CACHE: dict[tuple[Config, bytes], tuple[np.ndarray, np.ndarray]] = {}


_ORACLE_CACHE_SIZE = 256


def oracle_quantize(x: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The exact oracle's codes and scales for rows of blocks (cached).

    Parameters
    ----------
    x : np.ndarray
        float32, ``(rows, block_size)``.
    config : Config

    Returns
    -------
    (np.ndarray, np.ndarray)
        uint8 codes ``(rows, block_size)`` and scale bytes ``(rows,)``.

    Spec: OCP MX v1.0 section 6.3, through :func:`mxref.ref.array.quantize_array`.
    """
    key = (
        config,
        hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest() + str(x.shape).encode(),
    )
    hit = _ORACLE_CACHE.get(key)
    if hit is None:
        codes, scales = quantize_array(
            x,
            get_format(config.fmt),
            axis=-1,
            block_size=config.block_size,
            scale_rule=ScaleRule.parse(config.scale_rule),
            rounding=Rounding.parse(config.rounding),
            overflow=Overflow.parse(config.overflow),
            seed=config.seed,
            **_preset_quirks(config.preset, x.dtype),
        )
        hit = (codes, scales.reshape(-1))
        if len(_ORACLE_CACHE) >= _ORACLE_CACHE_SIZE:
            _ORACLE_CACHE.clear()
        _ORACLE_CACHE[key] = hit
    return hit


def _preset_quirks(preset: str | None, dtype: np.dtype) -> dict[str, Any]:
    """The oracle's arguments for what a preset does beyond its three policies
    (the scale-byte overflow quirk depends on the input's type: ``dtype``)."""
    if preset is None:
        return {}
    chosen = get_preset(preset)
    overflow = input_emax(dtype) if chosen.scale_overflow_nan else None
    return {"divisor_min_exponent": chosen.divisor_min_exponent,
            "keep_negative_zero": chosen.keep_negative_zero,
            "overflow_input_emax": overflow}  # fmt: skip
