"""A short tour of mxref: encode one sample tensor in every MX format.

``python -m mxref.demo`` (what ``make demo`` runs) builds a deterministic
64 x 256 float32 tensor shaped like an LLM activation (tokens x channels,
log-normal channel scales, a few outlier channels), encodes it along the
channel axis in every format with the spec's policies, and prints the error
of each.  It then shows one mxfp4 block where the spec's FLOOR scale rule and
the RCEIL rule of cuBLAS / Transformer Engine pick different E8M0 bytes, with
both encodings side by side.  Nothing is written to disk.

Spec: OCP MX v1.0 sections 5.1 and 6.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mxref.codec import dequantize, quantize
from mxref.formats import (
    DEFAULT_BLOCK_SIZE,
    SCALE_BIAS,
    ElementFormat,
    get_format,
    mx_format_names,
)

#: seed of the sample tensor; fixed so every run prints the same figures
SEED = 20261122
TOKENS, CHANNELS = 64, 256
#: channels whose scale is multiplied up, and by how much
OUTLIER_CHANNELS = (7, 100, 181, 230)
OUTLIER_GAINS = (24.0, 40.0, 64.0, 100.0)


def sample_tensor() -> np.ndarray:
    """Return the demo's 64 x 256 float32 tensor, the same on every call.

    Rows are tokens and columns channels, as in a linear layer's input: each
    channel has a log-normal scale, four channels are outliers (24x to 100x),
    and each token a milder log-normal gain.  Blocks run along the channels,
    so an outlier shares its block with 31 ordinary channels.
    """
    rng = np.random.default_rng(SEED)
    channel_scale = rng.lognormal(mean=0.0, sigma=0.75, size=CHANNELS)
    channel_scale[list(OUTLIER_CHANNELS)] *= OUTLIER_GAINS
    token_gain = rng.lognormal(mean=0.0, sigma=0.25, size=(TOKENS, 1))
    x = rng.standard_normal((TOKENS, CHANNELS)) * channel_scale * token_gain
    return x.astype(np.float32)


@dataclass(frozen=True)
class FormatStats:
    """Error figures of one format on one tensor (blocks along the last axis)."""

    name: str
    bits_per_element: float
    rmse: float
    max_abs_error: float
    sqnr_db: float
    saturated_blocks_pct: float


def block_scales(scales: np.ndarray) -> np.ndarray:
    """Return the E8M0 bytes as float64 scales ``2**(byte - 127)`` (NaN for 0xFF).

    Spec: OCP MX v1.0 section 5.4.1, Table 7.
    """
    exps = scales.astype(np.int64) - SCALE_BIAS
    return np.where(scales == 0xFF, np.nan, np.ldexp(1.0, exps))


def format_stats(x: np.ndarray, fmt: str | ElementFormat, **policies: Any) -> FormatStats:
    """Encode ``x`` (2-d, last axis a multiple of 32) and measure the error.

    A block counts as saturated when it holds an input beyond
    ``max_normal * X``, the largest magnitude its scale ``X`` can represent,
    so the encoder clamped it.  Errors are computed in float64 from the exact
    decoded values.

    Spec: OCP MX v1.0 section 6.3 (values above max normal are clamped).
    """
    f = get_format(fmt)
    mx = quantize(x, f, **policies)
    exact = x.astype(np.float64)
    err = dequantize(mx, np.float64) - exact
    blocks = np.abs(exact).reshape(*mx.scales.shape, DEFAULT_BLOCK_SIZE)
    limit = float(f.max_normal) * block_scales(mx.scales)
    saturated = blocks.max(axis=-1) > limit
    signal = float(np.sum(exact * exact))
    noise = float(np.sum(err * err))
    return FormatStats(
        name=f.name,
        bits_per_element=f.bits + 8 / DEFAULT_BLOCK_SIZE,
        rmse=float(np.sqrt(np.mean(err * err))),
        max_abs_error=float(np.max(np.abs(err))),
        sqnr_db=10.0 * np.log10(signal / noise) if noise else float("inf"),
        saturated_blocks_pct=100.0 * float(np.mean(saturated)),
    )


def render_stats(stats: list[FormatStats]) -> str:
    """Return the per-format error table as aligned text."""
    header = (
        f"{'format':<12}{'bits/elem':>10}{'RMSE':>12}{'max |err|':>12}"
        f"{'SQNR dB':>10}{'sat. blocks':>13}"
    )
    lines = [header, "-" * len(header)]
    for s in stats:
        lines.append(
            f"{s.name:<12}{s.bits_per_element:>10.2f}{s.rmse:>12.5f}{s.max_abs_error:>12.4f}"
            f"{s.sqnr_db:>10.2f}{s.saturated_blocks_pct:>12.1f}%"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class BlockComparison:
    """One block encoded under two scale rules."""

    fmt: ElementFormat
    where: str
    values: np.ndarray
    rules: tuple[str, str]
    scale_bytes: tuple[int, int]
    codes: tuple[np.ndarray, np.ndarray]
    decoded: tuple[np.ndarray, np.ndarray]


def _compare(values: np.ndarray, fmt: ElementFormat, rules: tuple[str, str], where: str):
    encoded = [quantize(values, fmt, scale_rule=rule) for rule in rules]
    return BlockComparison(
        fmt=fmt,
        where=where,
        values=values,
        rules=rules,
        scale_bytes=(int(encoded[0].scales[0]), int(encoded[1].scales[0])),
        codes=(encoded[0].codes, encoded[1].codes),
        decoded=(dequantize(encoded[0], np.float64), dequantize(encoded[1], np.float64)),
    )


def find_differing_block(
    x: np.ndarray, fmt: str | ElementFormat = "mxfp4", rules: tuple[str, str] = ("floor", "rceil")
) -> BlockComparison | None:
    """Return the first block of ``x`` (2-d, C order) whose scale byte differs between ``rules``.

    Returns None when every block gets the same byte.

    Spec: OCP MX v1.0 section 6.3 (FLOOR); RCEIL is ceil(log2(amax / max_normal)).
    """
    f = get_format(fmt)
    a, b = (quantize(x, f, scale_rule=rule).scales for rule in rules)
    differ = np.flatnonzero(a.ravel() != b.ravel())
    if differ.size == 0:
        return None
    row, blk = np.unravel_index(int(differ[0]), a.shape)
    lo = int(blk) * DEFAULT_BLOCK_SIZE
    values = np.ascontiguousarray(x[row, lo : lo + DEFAULT_BLOCK_SIZE])
    where = f"row {row}, columns {lo}..{lo + DEFAULT_BLOCK_SIZE - 1}"
    return _compare(values, f, rules, where)


def constructed_block(
    fmt: str | ElementFormat = "mxfp4", rules: tuple[str, str] = ("floor", "rceil")
) -> BlockComparison:
    """Return a built block with amax 7.0, where FLOOR and RCEIL differ for mxfp4.

    FLOOR gives ``floor(log2 7) - 2 = 0`` (byte 0x7F, 7 clamps to 6); RCEIL gives
    ``ceil(log2(7 / 6)) = 1`` (byte 0x80, 7 / 2 = 3.5 rounds to 4).
    """
    values = np.concatenate([[7.0], np.linspace(-3.0, 3.0, DEFAULT_BLOCK_SIZE - 1)])
    return _compare(values.astype(np.float32), get_format(fmt), rules, "a constructed block")


def _grid(items: list[str], per_line: int, indent: str) -> list[str]:
    width = max(len(s) for s in items)
    return [
        indent + " ".join(s.rjust(width) for s in items[i : i + per_line])
        for i in range(0, len(items), per_line)
    ]


def render_comparison(c: BlockComparison) -> str:
    """Return the two encodings of one block as text: bytes, codes, decoded values."""
    digits = -(-c.fmt.bits // 4)
    amax = float(np.max(np.abs(c.values.astype(np.float64))))
    lines = [
        f"{c.fmt.name} block where scale rules {c.rules[0]!r} and {c.rules[1]!r} differ "
        f"({c.where}, amax {amax:.6g}):",
        "  input:",
        *_grid([f"{v:.4g}" for v in c.values.tolist()], 8, "    "),
    ]
    exact = c.values.astype(np.float64)
    for rule, byte, codes, decoded in zip(c.rules, c.scale_bytes, c.codes, c.decoded, strict=True):
        sse = float(np.sum((decoded - exact) ** 2))
        lines += [
            f"  {rule}: scale byte 0x{byte:02X} (X = 2^{byte - SCALE_BIAS}), "
            f"squared error {sse:.6g}",
            "    codes:",
            *_grid([f"0x{int(k):0{digits}X}" for k in codes], 16, "      "),
            "    decoded:",
            *_grid([f"{v:g}" for v in decoded.tolist()], 8, "      "),
        ]
    return "\n".join(lines)


def main() -> None:
    """Print the per-format error table and one FLOOR-vs-RCEIL block."""
    x = sample_tensor()
    print(
        f"sample tensor: {TOKENS} x {CHANNELS} float32 (seed {SEED}), log-normal channel "
        f"scales, outlier channels {', '.join(map(str, OUTLIER_CHANNELS))}"
    )
    print(
        f"blocks of {DEFAULT_BLOCK_SIZE} along the channel axis; scale_rule='floor', "
        "rounding='rne', overflow='saturate'"
    )
    print(
        "bits/elem includes the 8-bit scale; a saturated block holds an input "
        "beyond max_normal * X\n"
    )
    print(render_stats([format_stats(x, name) for name in mx_format_names()]))
    print()
    comparison = find_differing_block(x)
    if comparison is None:
        comparison = constructed_block()
    print(render_comparison(comparison))


if __name__ == "__main__":
    main()
