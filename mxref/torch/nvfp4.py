"""NVFP4 fake quantization and encoding in torch, bit for bit equal to mxref's codec.

:func:`quantize_dequantize` and :func:`encode` give :func:`mxref.quantize_dequantize`'s
and :func:`mxref.quantize`'s bits for ``"nvfp4"`` (E2M1 elements in blocks of
16, E4M3 block scales, a float32 tensor scale per tensor or per row), on any
device torch runs on.  :mod:`mxref.torch` routes ``"nvfp4"`` here.  The
arithmetic mirrors the numba kernels (:mod:`mxref.kernels.nvfp4`) in float64
tensor operations, every decision an exact comparison:

- the tensor scale ``G = RN32(448 * 6 / amax)`` is the float64 quotient
  rounded to float32; where that quotient lands on a float32 midpoint, the
  sign of the exact remainder (a Dekker product) settles the double rounding;
- for float32, float16 and bfloat16 inputs ``|x| * G`` is exact in float64
  (at most 24 + 24 bits).  A block's E4M3 byte is read from the bit fields of
  ``t = block_amax * G / 6`` (one float64 division never lands on an E4M3
  midpoint unless the exact quotient does), and an element's E2M1 code is the
  number of thresholds ``s_b * {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5}`` the
  product passes, ties settled by the rounding (``s_b`` times them is exact);
- for float64 inputs the product is held exactly as ``p + e`` (Dekker's
  split at ``2**27 + 1``, a huge operand scaled first) and compared with
  the same thresholds exactly; the E4M3 byte is found by a binary search of
  such comparisons over E4M3's grid;
- decoded values are ``code * s_b / G``: float64 outputs by one float64
  division, float32 outputs as ``float32(code * s_b * (1 / G))`` (which the
  kernels prove is the correctly rounded quotient), float16 and bfloat16
  outputs from the float64 quotient rounded once (through float32 rounded
  to odd: torch's own float64 cast rounds twice).

A block holding NaN or Inf gets the E4M3 byte 0x7F, signed zero codes and
NaN values carrying each input's sign; a block whose scale rounds to 0 gets
signed zero codes.  Exponents come from float bit fields, never ``log2``.

Gradients (:func:`quantize_dequantize` only) pass straight through where the
element is not saturated (``|x| * G <= 6 * s_b``) and the block is finite, and
are zero where it saturates and in NaN/Inf blocks.  In a block whose scale
rounds to 0 the elements round to 0, which is rounding, not saturation: the
gradient passes there too.  ``G`` and ``s_b`` carry no gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from mxref.arguments import check_axis, check_block_size
from mxref.array import row_scale_shape, scales_shape
from mxref.formats import ElementFormat, get_format
from mxref.kernels.nvfp4 import E2M1_GRID, E4M3_GRID, SCALE_NAN_BYTE
from mxref.nvfp4_codec import check_given_tensor_scale, check_two_level_arguments
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import Preset
from mxref.torch.inputs import check_tensor

__all__ = ["encode", "quantize_dequantize"]

#: E2M1's magnitudes by code, and the midpoints between neighbours (midpoint k lies
#: between codes k - 1 and k)
_E2M1_VALUES = tuple(float(v) for v in E2M1_GRID)
_E2M1_MIDPOINTS = tuple(
    0.5 * (a + b) for a, b in zip(_E2M1_VALUES[:-1], _E2M1_VALUES[1:], strict=True)
)
_E2M1_MAX = _E2M1_VALUES[-1]
_E4M3_VALUES = tuple(float(v) for v in E4M3_GRID)
_E4M3_TOP = len(_E4M3_VALUES) - 1  # 0x7E, 448: the saturating byte
_E4M3_MAX = _E4M3_VALUES[-1]
_E4M3_MIN_NORMAL = 2.0**-6  # below it E4M3 steps by 2**-9
_RANGE = _E4M3_MAX * _E2M1_MAX  # 448 * 6
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = 2.0**-149
_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split into 26 + 27 bits
_BIG = 2.0**900  # above it, an operand is scaled before it is split (no overflow)
_BIG_SHIFT = 2.0**-128
_BIG_UNSHIFT = 2.0**128

_INT_VIEW = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
             torch.float32: torch.int32, torch.float64: torch.int64}  # fmt: skip


def _signed(value: int, bits: int) -> int:
    """The two's complement reading of an unsigned ``bits``-wide integer."""
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


#: the quiet NaN the numpy codec writes (math.copysign(nan, +-1), then cast), by dtype:
#: (positive, negative) as signed integers of the dtype's width
_NAN_BITS = {
    dtype: (_signed(bits, width), _signed(bits | 1 << (width - 1), width))
    for dtype, bits, width in [(torch.float64, 0x7FF8000000000000, 64),
                               (torch.float32, 0x7FC00000, 32),
                               (torch.float16, 0x7E00, 16), (torch.bfloat16, 0x7FC0, 16)]
}  # fmt: skip


class _Call(NamedTuple):
    """A validated call: the blocked axis, the block size, the rounding and the tensor scale."""

    axis: int
    block_size: int
    rounding: Rounding
    per_row: bool
    given: torch.Tensor | None  # float32 on x's device, shape () or one per row


def _prepare(x: object, fmt: str | ElementFormat, axis: object, block_size: object,
             scale_rule: object, rounding: object, overflow: object, seed: object,
             preset: object, scales: object, per_row: object, tensor_scale: object,
             ) -> tuple[torch.Tensor, _Call]:  # fmt: skip
    """Validate every argument in :func:`mxref.quantize`'s order, with its messages."""
    found = get_format(fmt, two_level=True)
    if not found.two_level:
        raise ValueError(f"fmt: {found.name} is an MX format; this codec takes nvfp4 "
                         "(mxref.torch.quantize_dequantize takes both)")  # fmt: skip
    rnd, nv_preset = check_two_level_arguments(found, scale_rule, rounding, overflow, seed,
                                               preset, scales)  # fmt: skip
    if nv_preset is not None:
        raise ValueError(f"preset: {nv_preset.name!r} for {found.name} runs in mxref.quantize "
                         "(numpy); the torch twin has no NVFP4 presets")  # fmt: skip
    if not isinstance(per_row, bool | np.bool_):
        raise TypeError(f"per_row must be a bool; got {type(per_row).__name__}")
    bs = check_block_size(found.block_size if block_size is None else block_size)
    t = check_tensor(x)
    ax = check_axis(axis, t.dim())
    given = None
    if tensor_scale is not None:
        if isinstance(tensor_scale, torch.Tensor):  # any device, any float dtype: widen exactly
            tensor_scale = tensor_scale.detach().cpu().to(torch.float64).numpy()
        checked = check_given_tensor_scale(tensor_scale, tuple(t.shape), ax, bool(per_row))
        given = torch.from_numpy(np.array(checked, np.float32)).to(t.device)
    return t, _Call(ax, bs, rnd, bool(per_row), given)


# --- exact arithmetic (mxref.kernels.nvfp4, vectorised) ----------------------------------


def _pow2(k: torch.Tensor) -> torch.Tensor:
    """``2**k`` for integer ``k`` within float64's normal range, from its bits."""
    return ((k + 1023) << 52).view(torch.float64)


def _split(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = a * _SPLITTER
    hi = c - (c - a)
    return hi, a - hi


def _exact_product(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a * b`` exactly, as ``(p, e)``: ``p`` the rounded product, ``e`` its error.

    Exact for finite float64 ``a >= 0`` and ``b`` whose product is normal,
    ``|b| <= 2**128``; for the products compared here, that is every one
    near a threshold.  Each step is its own torch operation, so no fused
    multiply-add can merge two roundings.
    """
    big = a > _BIG
    a = torch.where(big, a * _BIG_SHIFT, a)
    unshift = torch.ones_like(a).masked_fill_(big, _BIG_UNSHIFT)
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p * unshift, e * unshift


def _difference(p: torch.Tensor, e: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """A float64 with the sign of ``(p + e) - c``, exactly, for ``|e| <= ulp(p) / 2``, ``c > 0``.

    Near ``c``, ``p - c`` is exact (Sterbenz) and adding ``e`` rounds once,
    which keeps the sign and gives 0 only for an exact 0.  Far from it the
    sign is ``p``'s side of ``c`` (``p`` may be Inf there, and ``e`` with it).
    """
    near = (p - c) + e
    return torch.where(p > 2.0 * c, 1.0, torch.where(p < 0.5 * c, -1.0, near))


def _passes(p: torch.Tensor, e: torch.Tensor | None, c: torch.Tensor | float
            ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(p + e > c, p + e == c)``, exactly; ``e`` is None where ``p`` is exact."""
    if e is None:
        return p > c, p == c
    d = _difference(p, e, c)
    return d > 0, d == 0


def _float32_quotient(a: float, b: torch.Tensor) -> torch.Tensor:
    """``a / b`` rounded once to float32 (as float64), for ``a / b`` within float32's range.

    The float64 quotient rounded to float32 is rounded once unless it lies on a
    float32 midpoint; there the sign of ``q * b - a`` says to which side the
    exact quotient lies.
    """
    q = a / b
    f = q.float()
    r = f.double()
    bits = f.view(torch.int32)
    other = torch.where(r < q, bits + 1, bits - 1).view(torch.float32).double()
    on_midpoint = (r != q) & (q - r == other - q)
    p, e = _exact_product(q, b)
    side = _difference(p, e, a)  # the sign of q - a / b
    settled = torch.where(side > 0, torch.minimum(r, other),
                          torch.where(side < 0, torch.maximum(r, other), r))  # fmt: skip
    return torch.where(on_midpoint, settled, r)


def _tensor_scale(amax: torch.Tensor) -> torch.Tensor:
    """``G = RN32(448 * 6 / amax)`` (float64) kept within float32's range; 1 for ``amax == 0``."""
    q = _RANGE / amax
    g = _float32_quotient(_RANGE, amax)
    g = torch.where(q <= _FLOAT32_TINY, _FLOAT32_TINY, g)
    g = torch.where(q >= _FLOAT32_MAX, _FLOAT32_MAX, g)
    return torch.where(amax == 0, 1.0, g)


def _e4m3_byte(t: torch.Tensor) -> torch.Tensor:
    """The E4M3 byte (int64) of ``t >= 0`` rounded to nearest even, saturating at 448.

    Rounding ``t`` is rounding the exact ``block_amax * G / 6`` once when ``t``
    is its float64 quotient and the product is exact (mxref.kernels.nvfp4's
    ``e4m3_byte``).  ``torch.round`` rounds half to even.
    """
    binade = ((t.view(torch.int64) >> 52) - 1023).clamp_(-6, 8)  # normal t: exponent field
    steps = torch.round(t * _pow2(3 - binade)).long()  # t / 2**(binade - 3), in [8, 16]
    normal = (binade + 7) * 8 + steps - 8  # 16 steps carry into the next binade
    subnormal = torch.round(t * 512.0).long()  # below 2**-6: multiples of 2**-9
    byte = torch.where(t < _E4M3_MIN_NORMAL, subnormal, normal)
    return byte.masked_fill_(t >= _E4M3_MAX, _E4M3_TOP)


def _e4m3_byte_exact(p: torch.Tensor, e: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The E4M3 byte (int64) of ``(p + e) / 6`` rounded to nearest even, saturating.

    A binary search for the largest grid value whose sextuple is at most
    ``p + e``, then a comparison with the midpoint above it (every sextuple
    has at most 7 significant bits: exact).
    """
    above_top, on_top = _passes(p, e, 6.0 * _E4M3_MAX)
    low = torch.zeros(p.shape, dtype=torch.int64, device=p.device)
    high = torch.full_like(low, _E4M3_TOP)
    for _ in range(_E4M3_TOP.bit_length()):  # halves high - low down to 1
        mid = (low + high) >> 1
        above, on = _passes(p, e, 6.0 * grid[mid])
        up = above | on
        open_ = high - low > 1
        low = torch.where(open_ & up, mid, low)
        high = torch.where(open_ & ~up, mid, high)
    above, on = _passes(p, e, 6.0 * (0.5 * (grid[low] + grid[low + 1])))
    byte = low + (above | (on & (low % 2 == 1)))
    return byte.masked_fill_(above_top | on_top, _E4M3_TOP)


def _e2m1_codes(p: torch.Tensor, e: torch.Tensor | None, s: torch.Tensor, rounding: Rounding
                ) -> torch.Tensor:  # fmt: skip
    """E2M1 magnitude codes (int64) of ``(p + e) / s``: how many thresholds it passes.

    Saturating: beyond the last threshold the code is 7 (6.0).  ``s > 0``.
    """
    codes = torch.zeros(p.shape, dtype=torch.int64, device=p.device)
    for k in range(1, len(_E2M1_VALUES)):
        if rounding is Rounding.ZERO:
            above, on = _passes(p, e, s * _E2M1_VALUES[k])
            codes += above | on
            continue
        above, on = _passes(p, e, s * _E2M1_MIDPOINTS[k - 1])
        codes += above
        if rounding is Rounding.AWAY or k % 2 == 0:  # a tie goes to code k: away, or even
            codes += on
    return codes


def _round_once(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Non-negative float64 ``values`` rounded once (RNE) to float16 or bfloat16.

    torch casts float64 to them through float32 with two roundings; rounding
    to float32 to odd first (the inexact results moved to their odd
    neighbour) keeps the second rounding the only one, for float32 has more
    than two bits beyond either type, in every binade they reach.
    """
    narrow = values.float()
    back = narrow.double()
    bits = narrow.view(torch.int32)
    even_inexact = (back != values) & (bits % 2 == 0)
    toward = torch.where(back < values, bits + 1, bits - 1)
    return torch.where(even_inexact, toward, bits).view(torch.float32).to(dtype)


# --- the codec ---------------------------------------------------------------------------


class _Result(NamedTuple):
    """One pass over ``x``, in ``x``'s layout; what was not asked for is None."""

    values: torch.Tensor | None
    mask: torch.Tensor | None  # where the gradient passes
    codes: torch.Tensor | None
    scales: torch.Tensor  # uint8 E4M3 bytes
    tensor_scale: torch.Tensor  # float32


def _quantize(t: torch.Tensor, call: _Call, want_values: bool, want_mask: bool,
              want_codes: bool) -> _Result:  # fmt: skip
    """Quantize ``t`` along ``call.axis`` and give back what is asked for."""
    shape = tuple(t.shape)
    ax, bs = call.axis, call.block_size
    device = t.device
    n = shape[ax]
    nblk = -(-n // bs)
    # rows blocked along their last axis, as the kernels do; per-row scales follow them
    moved = t.movedim(ax, -1)
    row_shape = tuple(moved.shape[:-1])
    if t.numel() == 0:
        ones = torch.ones(row_shape if call.per_row else (), dtype=torch.float32, device=device)
        return _Result(
            torch.empty_like(t) if want_values else None,
            torch.zeros(shape, dtype=torch.bool, device=device) if want_mask else None,
            torch.empty(shape, dtype=torch.uint8, device=device) if want_codes else None,
            torch.zeros(scales_shape(shape, ax, bs), dtype=torch.uint8, device=device),
            ones if call.given is None else call.given,
        )
    rows = moved.reshape(-1, n)
    nrows = rows.shape[0]
    negative = rows.view(_INT_VIEW[t.dtype]) < 0  # the sign bit, NaNs' included
    # a short last block is padded with +0.0, which changes neither its amax nor its codes
    wide = rows.new_zeros((nrows, nblk * bs), dtype=torch.float64)
    wide[:, :n] = rows
    negative = torch.cat([negative, negative.new_zeros((nrows, nblk * bs - n))], dim=1)
    blocks = wide.view(nrows, nblk, bs)
    finite = torch.isfinite(blocks)
    magnitude = torch.where(finite, blocks.abs(), 0.0)  # NaN and Inf do not count
    block_amax = magnitude.amax(dim=2)
    block_finite = finite.all(dim=2)
    if call.given is not None:
        g32 = call.given
    elif call.per_row:
        g32 = _tensor_scale(block_amax.amax(dim=1)).float().reshape(row_shape)
    else:
        g32 = _tensor_scale(block_amax.amax()).float()
    g = g32.double().reshape(-1, 1)  # one per row, or one broadcast over every row
    # float32, float16 and bfloat16 magnitudes times G are exact in float64; float64's not
    exact_input = t.dtype != torch.float64
    e4m3 = torch.tensor(_E4M3_VALUES, dtype=torch.float64, device=device)
    if exact_input:
        byte = _e4m3_byte(block_amax * g / _E2M1_MAX)
    else:
        byte = _e4m3_byte_exact(*_exact_product(block_amax, g), e4m3)
    s = e4m3[byte].unsqueeze(2)  # (rows, blocks, 1)
    g3 = g.unsqueeze(2)
    if exact_input:
        p, e = magnitude * g3, None
    else:
        p, e = _exact_product(magnitude, g3)
    live = (s > 0) & block_finite.unsqueeze(2)  # elements that get a nonzero code if large
    codes = _e2m1_codes(p, e, s, call.rounding).masked_fill_(~live, 0)
    scales = byte.masked_fill_(~block_finite, SCALE_NAN_BYTE).to(torch.uint8)

    def restore(a: torch.Tensor) -> torch.Tensor:
        """(rows, padded n) back to ``t``'s layout."""
        return a[:, :n].reshape(*row_shape, n).movedim(-1, ax).contiguous()

    values = mask = code_bytes = None
    if want_values:
        values = restore(_decode(codes, s, g3, negative, block_finite, t.dtype).flatten(1))
    if want_mask:
        saturated, _ = _passes(p, e, _E2M1_MAX * s)
        passes = (~saturated | (s == 0)) & block_finite.unsqueeze(2)
        mask = restore(passes.flatten(1))
    if want_codes:
        code_bytes = restore((codes.flatten(1) | negative.long() << 3).to(torch.uint8))
    scales = scales.reshape(*row_shape, nblk).movedim(-1, ax).contiguous()
    return _Result(values, mask, code_bytes, scales, g32)


def _decode(codes: torch.Tensor, s: torch.Tensor, g: torch.Tensor, negative: torch.Tensor,
            block_finite: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """``RN(code * s_b / G)`` in ``dtype``, signed as the input, NaN in NaN/Inf blocks."""
    e2m1 = torch.tensor(_E2M1_VALUES, dtype=torch.float64, device=codes.device)
    exact = e2m1[codes] * s  # at most 7 significant bits
    if dtype == torch.float64:
        magnitude = exact / g
    elif dtype == torch.float32:
        # two float64 roundings, then float32: the correctly rounded float32 of the
        # quotient, for the exact one is never a float32 midpoint and lies 2**-50 or
        # more from one, relatively (mxref.kernels.nvfp4's _float32_magnitude)
        magnitude = (exact * (1.0 / g)).float()
    else:
        # float16 and bfloat16 midpoints have at most 12 bits: the float64 quotient lands
        # on one only where the exact quotient does
        magnitude = _round_once(exact / g, dtype)
    negative = negative.view(codes.shape)
    values = torch.where(negative, -magnitude, magnitude)
    positive_nan, negative_nan = _NAN_BITS[dtype]
    itype = _INT_VIEW[dtype]
    nan = torch.where(negative, negative_nan, positive_nan).to(itype).view(dtype)
    return torch.where(block_finite.unsqueeze(2), values, nan)


class _FakeQuantize(torch.autograd.Function):
    """Exact NVFP4 fake quantization forward; straight-through backward, zero where saturated."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, call: _Call) -> torch.Tensor:
        want_mask = bool(ctx.needs_input_grad[0])
        run = _quantize(t, call, want_values=True, want_mask=want_mask, want_codes=False)
        if run.mask is not None:
            ctx.save_for_backward(run.mask)
        assert run.values is not None
        return run.values

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad.masked_fill(~mask, 0.0), None


def quantize_dequantize(
    x: torch.Tensor,
    fmt: str | ElementFormat = "nvfp4",
    *,
    axis: int = -1,
    block_size: int | None = None,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
    seed: int | None = None,
    preset: str | Preset | None = None,
    scales: Any = None,
    per_row: bool = False,
    tensor_scale: Any = None,
) -> torch.Tensor:
    """Fake-quantize ``x`` to NVFP4 and decode it again, bit for bit as mxref does.

    Parameters
    ----------
    x : torch.Tensor
        float16, bfloat16, float32 or float64, at least 1-d, on any device.
    fmt : str or ElementFormat
        ``"nvfp4"``.
    axis : int
        The axis cut into blocks.
    block_size : int, optional
        Elements per E4M3 scale; default 16.  A shorter last block is
        quantized as it is.
    rounding : {"rne", "away", "zero"}, optional
        Of the elements; default ``"rne"``.  The block scales are always
        rounded to nearest even.
    per_row : bool
        One tensor scale per row (per slice along ``axis``) from the row's
        own largest finite magnitude, instead of one for the tensor.
    tensor_scale : float, array_like or torch.Tensor, optional
        The encode scale ``G`` to use instead of ``RN32(448 * 6 / amax)``:
        finite, positive, float32-representable; 0-d, or one per row with
        ``per_row``.
    scale_rule, overflow, seed, preset, scales
        MX-only: refused by name, as :func:`mxref.quantize` refuses them
        (``overflow`` is accepted: both policies saturate E2M1).

    Returns
    -------
    torch.Tensor
        ``x``'s dtype, shape and device; equal bit for bit to
        ``mxref.quantize_dequantize(x, "nvfp4", ...)`` on the same values
        (``code * s_b / G`` rounded once in ``x``'s dtype).  Differentiable:
        the gradient passes straight through where ``|x| * G <= 6 * s_b`` or
        ``s_b`` is 0, and is zero where the element saturates and in NaN/Inf
        blocks; ``G`` and ``s_b`` carry none.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument.
    """
    t, call = _prepare(x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset,
                       scales, per_row, tensor_scale)  # fmt: skip
    return _FakeQuantize.apply(t, call)


@torch.no_grad()
def encode(
    x: torch.Tensor,
    fmt: str | ElementFormat = "nvfp4",
    *,
    axis: int = -1,
    block_size: int | None = None,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
    seed: int | None = None,
    preset: str | Preset | None = None,
    scales: Any = None,
    per_row: bool = False,
    tensor_scale: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode ``x`` into NVFP4's E2M1 codes, E4M3 scale bytes and float32 tensor scale.

    Parameters
    ----------
    x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset, scales
    per_row, tensor_scale
        As for :func:`quantize_dequantize`.

    Returns
    -------
    codes : torch.Tensor of uint8
        ``x``'s shape: equal to ``mxref.quantize(x, "nvfp4", ...).codes`` (bit
        3 the sign, kept for -0.0 and in NaN/Inf blocks).
    scales : torch.Tensor of uint8
        ``x``'s shape with ``axis`` cut into blocks: the E4M3 bytes, equal to
        ``.scales`` (0x7F for a NaN/Inf block).
    tensor_scale : torch.Tensor of float32
        0-d, or ``x``'s shape without ``axis`` with ``per_row``: equal to
        ``.tensor_scale`` (the given one when given).

    All three are on ``x``'s device.  Unlike the MX formats' ``encode``,
    which returns (codes, scales), this is a 3-tuple.  Not differentiable.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument.
    """
    t, call = _prepare(x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset,
                       scales, per_row, tensor_scale)  # fmt: skip
    run = _quantize(t, call, want_values=False, want_mask=False, want_codes=True)
    assert run.codes is not None
    expected = row_scale_shape(tuple(t.shape), call.axis) if call.per_row else ()
    assert tuple(run.tensor_scale.shape) == expected
    return run.codes, run.scales, run.tensor_scale
