"""MX fake quantization and encoding in torch, bit for bit equal to mxref.

:func:`quantize_dequantize` and :func:`encode` take mxref's arguments and give
mxref's bits (:func:`mxref.quantize_dequantize`, :func:`mxref.quantize`) for
every format, scale rule, rounding, overflow policy and preset, on any device
torch runs on (:mod:`mxref.torch` sends ``"nvfp4"`` to :mod:`mxref.torch.nvfp4`).  The
arithmetic mirrors mxref's numba kernels (:mod:`mxref.kernels`) operation by operation, in
torch tensor operations:

- the block's amax and the shared exponent are read from float bit fields
  (a subnormal amax is normalised through the exponent of its fraction as a
  float64), never from ``log2``;
- round to nearest even adds and subtracts ``C = 2**(t - mbits + host_mbits)``
  (``t`` the magnitude's binade), so the floating-point adder does the rounding;
  the other modes split ``y * 2**(mbits - t)`` into integer and fraction, both
  exact;
- stochastic rounding draws SplitMix64 bits keyed by the seed and mxref's
  counter (flat index of the block's scale times the block size plus the lane),
  in int64 arithmetic that wraps like uint64;
- float16 and bfloat16 inputs are widened to float32 (exact), computed there and
  rounded back once; float64 inputs are computed in float64.

mxref is used only for the format definitions, policies, presets and the
parameter derivation of :mod:`mxref.kernels.params`; none of its kernels runs here.

Gradients (:func:`quantize_dequantize` only) are straight-through for the
rounding: the gradient passes unchanged where the scaled magnitude ``|x| / X``
is at most the format's max normal and the block is finite, and is zero where
the element saturates or overflows and in NaN/Inf blocks.  The shared scale
``X`` is computed from the live tensor but its gradient is stopped: ``X`` is a
piecewise-constant power of two of the block's amax, whose derivative is zero
almost everywhere.

On the CPU, blocks are processed in chunks of about a million elements, so
that the dozen in-place passes over a chunk run in cache; the full-size
allocations are the result, a float32 copy of float16/bfloat16 input or of a
padded short last block, and the gradient mask (one byte per element, only
when ``x`` requires grad).  Work a policy makes unnecessary is skipped: NaN
block handling runs only for chunks that hold one, random bits only for
stochastic rounding, code arithmetic only in :func:`encode`.

Spec: OCP MX v1.0 sections 5.1, 5.4.1 and 6.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import numpy as np
import torch

from mxref.arguments import (
    check_axis,
    check_block_size,
    check_scales_alone,
    check_scales_shape,
    check_seed,
    nan_scale_error,
    nonfinite_input_error,
    resolve_policies,
)
from mxref.array import scales_shape
from mxref.formats import ElementFormat, get_format
from mxref.kernels import element as el
from mxref.kernels.params import element_params, scale_params
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import Preset
from mxref.torch.inputs import check_tensor, widen

__all__ = ["encode", "quantize_dequantize"]

#: elements per chunk on the CPU: the chunk's input, result and scratch stay in
#: cache between passes; stochastic rounding's int64 temporaries want smaller chunks
_CPU_CHUNK = 1 << 20
_CPU_CHUNK_STOCHASTIC = 1 << 18

#: SplitMix64 constants as signed int64 (torch has no uint64 arithmetic)
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _signed(value: int, bits: int) -> int:
    """The two's complement reading of an unsigned ``bits``-wide integer."""
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


@dataclass(frozen=True)
class _Plan:
    """Every constant of one (format, policies, host float) combination, as Python numbers."""

    host: torch.dtype  # float32 or float64: the type the arithmetic runs in
    itype: torch.dtype  # the signed integer of the same width (bit views)
    host_mbits: int
    host_bias: int
    # element encoding (mxref.kernels.element's ip tuple)
    pmin_bits: int
    exp_mask: int
    rne_offset: int
    inverse_bits: int  # INVERSE_BASE + ONE_BITS: minus bits(2**t) gives bits(2**(mbits - t))
    quantum_offset: int
    mbits: int
    max_code: int
    overflow_code: int
    sign_xor: int
    sign_add: int
    code_mask: int
    negative_zero: bool
    clamp: float  # 2**(emax + 1)
    abs_mask: int
    nan_bits: int  # host bits of the NaN mxref writes, positive
    neg_nan_bits: int  # and negative
    # fp tuple
    overflow_value: float
    max_normal: float
    saturating: bool  # overflow_value == max_normal: a clamp suffices
    drop_negative_zero: bool  # the input addend is +0.0 (a preset quirk)
    # scale (mxref.kernels.params.scale_params)
    emax: int
    max_mant: int
    rule: ScaleRule
    divisor_min_byte: int
    rounding: Rounding


@cache
def _plan(
    fmt: ElementFormat,
    rule: ScaleRule,
    rounding: Rounding,
    overflow: Overflow,
    host: torch.dtype,
    keep_negative_zero: bool,
    divisor_min_exponent: int,
) -> _Plan:
    """Derive the plan from mxref's own parameter tuples, so that both read the format alike."""
    np_host = np.dtype(np.float64 if host == torch.float64 else np.float32)
    ip_raw, fp = element_params(fmt, rounding, overflow, np_host, keep_negative_zero)
    sp = [int(v) for v in scale_params(fmt, rule, np_host, divisor_min_exponent)]
    ip = [int(v) for v in ip_raw]
    width = np_host.itemsize * 8
    overflow_value, max_normal, addend = (float(v) for v in fp)
    uint = np.uint64 if width == 64 else np.uint32
    nan_bits = int(np.array(np.nan, np_host).view(uint))
    return _Plan(
        host=host,
        itype=torch.int64 if width == 64 else torch.int32,
        host_mbits=sp[0],
        host_bias=sp[1],
        pmin_bits=ip[el.IP_PMIN_BITS],
        exp_mask=ip[el.IP_EXP_MASK],
        rne_offset=ip[el.IP_RNE_OFFSET],
        inverse_bits=ip[el.IP_INVERSE_BASE] + ip[el.IP_ONE_BITS],
        quantum_offset=ip[el.IP_QUANTUM_OFFSET],
        mbits=sp[3],
        max_code=fmt.max_code,
        overflow_code=ip[el.IP_OVERFLOW_CODE],
        sign_xor=ip[el.IP_SIGN_XOR],
        sign_add=ip[el.IP_SIGN_ADD],
        code_mask=ip[el.IP_CODE_MASK],
        negative_zero=ip[el.IP_NEGATIVE_ZERO] == 1,
        clamp=float(np.array(ip[el.IP_CLAMP_BITS], uint).view(np_host)),
        abs_mask=ip[el.IP_ABS_MASK],
        nan_bits=_signed(nan_bits, width),
        neg_nan_bits=_signed(nan_bits | 1 << (width - 1), width),
        overflow_value=overflow_value,
        max_normal=max_normal,
        saturating=overflow_value == max_normal,
        drop_negative_zero=not math.copysign(1.0, addend) < 0,
        emax=sp[2],
        max_mant=sp[4],
        rule=rule,
        divisor_min_byte=sp[6],
        rounding=rounding,
    )


@cache
def _log2_fp32_thresholds() -> tuple[float, ...]:
    """FLOOR_LOG2_FP32: ``2**(1 - g/2)`` for every bit length of ``|n|``, as the kernel computes it.

    RN32(log2(amax)) reaches ``n = e + 1`` exactly when the significand exceeds
    this; ``g/2 = 2**(width - 25)`` with ``width`` the bit length of ``n - 1``
    (n > 0) or ``-n`` (n < 0).  Exponents stay below 2**11, so 13 entries do.
    """
    return tuple(math.pow(2.0, 1.0 - math.ldexp(1.0, w - 25)) for w in range(13))


# --- argument checking (mxref.codec's rules and messages) --------------------------------


class _Call(NamedTuple):
    """A validated call: the plan, the blocked axis, the block size, the seed and given scales."""

    plan: _Plan
    axis: int
    block_size: int
    seed: int
    scales: torch.Tensor | None = None  # uint8 in the scales' shape, checked finite


def _check_scales(scales: object, t: torch.Tensor, axis: int, block_size: int) -> torch.Tensor:
    """Return given ``scales`` once they fit ``t`` and ``t`` is finite; mxref's rules, messages."""
    if not isinstance(scales, torch.Tensor) or scales.dtype != torch.uint8:
        got = (f"torch dtype {scales.dtype}" if isinstance(scales, torch.Tensor)
               else type(scales).__name__)  # fmt: skip
        raise TypeError(f"scales must be a uint8 torch.Tensor; got {got}")
    if scales.device != t.device:
        raise ValueError(f"scales must be on x's device {t.device}; got {scales.device}")
    check_scales_shape(tuple(scales.shape), tuple(t.shape), axis, block_size)
    nan = (scales == 255).nonzero()
    if len(nan):
        raise nan_scale_error(tuple(nan[0].tolist()))
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = tuple((~finite).nonzero()[0].tolist())
        raise nonfinite_input_error(bad, float(t[bad]))
    return scales


def _prepare(
    x: object,
    fmt: str | ElementFormat,
    axis: object,
    block_size: object,
    scale_rule: str | ScaleRule | None,
    rounding: str | Rounding | None,
    overflow: str | Overflow | None,
    seed: object,
    preset: str | Preset | None,
    scales: object = None,
) -> tuple[torch.Tensor, _Call]:
    """Validate every argument in mxref's order, with mxref's messages."""
    fmt = get_format(fmt)
    check_scales_alone(scale_rule, scales)
    chosen, rule, rnd, ovf = resolve_policies(preset, scale_rule, rounding, overflow, fmt)
    if chosen.scale_overflow_nan:
        raise ValueError(f"preset: {chosen.name!r} (its scale-byte overflow to 0xFF) is not in "
                         "the torch twin; use mxref.quantize")  # fmt: skip
    key = _signed(check_seed(seed, rnd), 64)  # SplitMix64 adds it modulo 2**64, in int64
    bs = check_block_size(fmt.block_size if block_size is None else block_size)
    t = check_tensor(x)
    ax = check_axis(axis, t.dim())
    given = None if scales is None else _check_scales(scales, t, ax, bs)
    host = torch.float64 if t.dtype == torch.float64 else torch.float32
    plan = _plan(fmt, rule, rnd, ovf, host, chosen.keep_negative_zero,
                 chosen.divisor_min_exponent)  # fmt: skip
    return t, _Call(plan, ax, bs, key, given)


# --- per-block scale -------------------------------------------------------------------


def _pow2(k: torch.Tensor, host: torch.dtype) -> torch.Tensor:
    """``2**k`` for integer ``k`` in [-127, 127], built from float64 bits (exact in both hosts)."""
    return ((k + 1023) << 52).view(torch.float64).to(host)


def _bit_length(v: torch.Tensor) -> torch.Tensor:
    """Bit length of non-negative int64 values below 2**53, from their float64 exponent field."""
    return ((v.to(torch.float64).view(torch.int64) >> 52) - 1022).clamp_min_(0)


def _scale_bytes(a: torch.Tensor, amag: torch.Tensor, p: _Plan) -> torch.Tensor:
    """E8M0 bytes (int64) of finite blocks with amax bits ``a``; mxref's ``encode_scale``.

    Spec: OCP MX v1.0 sections 5.4.1 and 6.3.
    """
    hm, hb = p.host_mbits, p.host_bias
    one = 1 << hm
    rule = p.rule
    if rule is ScaleRule.RCEIL_FP32_DIV:
        # float64 divide, then float32: RN32(RN64(amax / max_normal)), as the oracle defines
        q = (amag.to(torch.float64) / p.max_normal).to(torch.float32)
        qbits = q.view(torch.int32).to(torch.int64)
        qfield = qbits >> 23
        e = qfield - 127 + ((qbits & 0x7FFFFF) != 0)
        e = e.masked_fill_(qfield == 0, -126)  # ROUND_UP carries a subnormal into 2**-126
        e = e.masked_fill_(q == 0, -127).masked_fill_(torch.isinf(q), 128)
    else:
        field = a >> hm
        frac = a & (one - 1)
        e = field - hb
        # a subnormal amax: normalise so that frac holds the bits below its leading one;
        # FLOOR clamps every subnormal amax to the byte 0 whatever its exponent
        sub = (field == 0) & (frac != 0) if rule is not ScaleRule.FLOOR else None
        if sub is not None and bool(sub.any()):
            width = torch.where(sub, _bit_length(frac), hm)
            e = torch.where(sub, width - hm - hb, e)
            shifted = torch.bitwise_left_shift(frac, hm + 1 - width) & (one - 1)
            frac = torch.where(sub, shifted, frac)
        if rule is ScaleRule.FLOOR_LOG2_FP32:
            n = e + 1
            m = torch.where(n > 0, n - 1, -n)
            table = torch.tensor(_log2_fp32_thresholds(), dtype=torch.float64, device=a.device)
            sig = 1.0 + frac.to(torch.float64) * math.ldexp(1.0, -hm)  # exact
            e = torch.where((n != 0) & (sig > table[_bit_length(m)]), n, e)
        e = e - p.emax
        if rule is ScaleRule.CEIL:
            e += frac != 0
        elif rule is ScaleRule.EVEN:
            e += frac >= one - (1 << (hm - p.mbits - 1))
        elif rule is ScaleRule.RCEIL:
            e += frac > (p.max_mant << (hm - p.mbits))
    byte = e.clamp_(-127, 127).add_(127)
    return byte.masked_fill_(a == 0, 0)


class _Blocks(NamedTuple):
    """Per-block results for one chunk (shapes keep the block axis as length 1)."""

    byte: torch.Tensor  # int64 E8M0 bytes, 255 for NaN/Inf blocks
    special: torch.Tensor | None  # bool, None when no block of the chunk is NaN/Inf
    inv_scale: torch.Tensor  # host float 2**(127 - max(byte, divisor_min_byte))
    scale: torch.Tensor  # host float 2**(byte - 127)
    needs_clamp: bool  # some |x| / X exceeds 2**(emax + 1)


def _blocks(xc: torch.Tensor, p: _Plan, given: torch.Tensor | None = None) -> _Blocks:
    """Amax, E8M0 byte and scales of every block (axis 1) of ``xc``; mxref's quantize_block head.

    ``given`` holds the chunk's given E8M0 bytes (int64, finite blocks), used
    instead of the scale rule's.
    """
    # max |x| from max and -min: two reads and no full-size |x|; NaN propagates
    amag = torch.maximum(xc.amax(dim=1, keepdim=True), xc.amin(dim=1, keepdim=True).neg_())
    flags: torch.Tensor | None = None
    if given is not None:
        byte = live = given  # the caller checked every element finite
    else:
        a = amag.view(p.itype).bitwise_and(p.abs_mask).to(torch.int64)
        special = a >= p.exp_mask  # NaN or Inf somewhere in the block
        byte = _scale_bytes(a, amag, p)
        live = byte
        if bool(special.any()):
            flags = special
            byte.masked_fill_(special, 255)
            live = byte.masked_fill(special, 127)  # any finite scale: those lanes are rewritten
    # the divisor may be clamped above the stored scale (a vendor quirk, torchao's 2**-126)
    divisor = live.clamp_min(p.divisor_min_byte) if p.divisor_min_byte > 0 else live
    inv_scale = _pow2(127 - divisor, p.host)
    scale = _pow2(live - 127, p.host)
    # the kernel clamps y = |x| / X to 2**(emax + 1); the amax tells whether any y needs it
    # (a small given scale can take |x| / X to Inf: the clamp makes that max normal's overflow)
    over = amag * inv_scale > p.clamp
    if flags is not None:
        over.masked_fill_(flags, False)
    return _Blocks(byte, flags, inv_scale, scale, bool(over.any()))


# --- elements ----------------------------------------------------------------------------


def _random_u32(seed: int, counter: torch.Tensor) -> torch.Tensor:
    """SplitMix64's high 32 bits for each counter, as int64; mxref's ``random_u32``.

    int64 addition and multiplication wrap like uint64; right shifts are made
    logical by masking off the copies of the sign bit.
    """

    def lsr(z: torch.Tensor, k: int) -> torch.Tensor:
        return (z >> k) & ((1 << (64 - k)) - 1)

    z = (counter + 1) * _GOLDEN_GAMMA + seed
    z = (z ^ lsr(z, 30)) * _MIX1
    z = (z ^ lsr(z, 27)) * _MIX2
    z = z ^ lsr(z, 31)
    return lsr(z, 32)


def _counters(r0: int, shape: torch.Size, inner: int, device: torch.device) -> torch.Tensor:
    """Stochastic counters ``scale_index * block_size + lane`` of a chunk starting at row r0."""
    rows, bs = shape[0], shape[1]
    idx = torch.arange(r0, r0 + rows, dtype=torch.int64, device=device)
    lane = torch.arange(bs, dtype=torch.int64, device=device)
    if len(shape) == 3:
        idx = idx.view(rows, 1, 1) * inner + torch.arange(inner, device=device).view(1, 1, inner)
        return idx * bs + lane.view(1, bs, 1)
    return idx.view(rows, 1) * bs + lane.view(1, bs)


def _round(
    y: torch.Tensor,
    work: torch.Tensor,
    p: _Plan,
    random32: torch.Tensor | None,
    want_codes: bool,
) -> torch.Tensor | None:
    """Round the magnitudes ``y`` (scaled, at most 2**(emax + 1)) in place; mxref's round_magnitude.

    ``work`` is an integer scratch tensor of ``y``'s shape.  Returns the
    magnitude codes (before overflow handling) when ``want_codes``; then ``y``
    is left holding garbage.
    """
    yi = y.view(p.itype)
    # pb = bits of 2**t, t = max(binade of y, emin); y >= +0, so clamping the
    # whole pattern and masking the exponent equals masking then clamping
    torch.clamp(yi, min=p.pmin_bits, out=work)
    work.bitwise_and_(p.exp_mask)
    if p.rounding is Rounding.RNE:
        work.add_(p.rne_offset)  # bits of C = 2**(t - mbits + host_mbits)
        y.add_(work.view(p.host))  # the adder rounds to nearest even
        if not want_codes:
            y.sub_(work.view(p.host))
            return None
        yi.sub_(work)  # quanta above C
        # binade code: (pb - pmin) >> host_mbits << mbits
        work.sub_(p.rne_offset + p.pmin_bits).bitwise_right_shift_(p.host_mbits - p.mbits)
        return yi.add_(work)
    # scaled = y * 2**(mbits - t), exact; whole and fraction are exact too
    y.mul_(torch.rsub(work, p.inverse_bits).view(p.host))
    whole = y.floor()
    frac = y.sub_(whole)
    if p.rounding is Rounding.AWAY:
        whole.add_(frac >= 0.5)
    elif p.rounding is Rounding.STOCHASTIC:
        assert random32 is not None
        up = random32.to(torch.float64) < (frac.to(torch.float64) * 4294967296.0).floor_()
        whole.add_(up)
    if not want_codes:
        torch.mul(whole, work.sub_(p.quantum_offset).view(p.host), out=y)  # q * 2**(t - mbits)
        return None
    work.sub_(p.pmin_bits).bitwise_right_shift_(p.host_mbits - p.mbits)
    return work.add_(whole.to(p.itype))


def _chunk_values(
    xc: torch.Tensor,
    oc: torch.Tensor,
    mc: torch.Tensor | None,
    work: torch.Tensor,
    p: _Plan,
    call: _Call,
    r0: int,
    inner: int,
    gc: torch.Tensor | None,
) -> bool:
    """Fake-quantize one chunk of blocks ``xc`` into ``oc`` (and the gradient mask into ``mc``).

    ``gc`` holds the chunk's given E8M0 bytes, if any.  Returns whether any
    block of the chunk is a NaN/Inf block.
    """
    blk = _blocks(xc, p, gc)
    # the identity, or -0.0 -> +0.0 where a preset says so
    xs = xc + 0.0 if p.drop_negative_zero else xc
    y = torch.mul(xs, blk.inv_scale, out=oc).abs_()  # |x| * 2**-s = |x * 2**-s|, exactly
    if blk.needs_clamp:
        y.clamp_max_(p.clamp)
    if mc is not None:
        torch.le(y, p.max_normal, out=mc)
    random32 = None
    if p.rounding is Rounding.STOCHASTIC:
        random32 = _random_u32(call.seed, _counters(r0, xc.shape, inner, xc.device))
    _round(y, work, p, random32, want_codes=False)
    if p.saturating:
        y.clamp_max_(p.max_normal)
    else:
        y.masked_fill_(y > p.max_normal, p.overflow_value)
    y.mul_(blk.scale).copysign_(xs)
    if not p.negative_zero:
        y.add_(0.0)  # two's complement has no -0: -0.0 + 0.0 = +0.0
    if blk.special is not None:
        # NaN/Inf block: every value a NaN carrying the input's sign where the format has -0
        nan = torch.full_like(work, p.nan_bits)
        if p.negative_zero:
            nan.masked_fill_(xs.view(p.itype) < 0, p.neg_nan_bits)
        oc.copy_(torch.where(blk.special, nan.view(p.host), oc))
        if mc is not None:
            mc.masked_fill_(blk.special, False)
    return blk.special is not None


def _chunk_codes(
    xc: torch.Tensor,
    cc: torch.Tensor,
    sc: torch.Tensor,
    y: torch.Tensor,
    work: torch.Tensor,
    p: _Plan,
    call: _Call,
    r0: int,
    inner: int,
    gc: torch.Tensor | None,
) -> None:
    """Encode one chunk of blocks ``xc``: codes into ``cc``, bytes into ``sc`` (``gc`` if given)."""
    blk = _blocks(xc, p, gc)
    sc.copy_(blk.byte.view(sc.shape))
    xs = xc + 0.0 if p.drop_negative_zero else xc
    torch.mul(xs, blk.inv_scale, out=y).abs_()
    if blk.needs_clamp:
        y.clamp_max_(p.clamp)
    random32 = None
    if p.rounding is Rounding.STOCHASTIC:
        random32 = _random_u32(call.seed, _counters(r0, xc.shape, inner, xc.device))
    code = _round(y, work, p, random32, want_codes=True)
    assert code is not None
    # rounding is monotonic: the rounded value exceeds max normal exactly when the code does
    if p.overflow_code == p.max_code:
        code.clamp_max_(p.max_code)
    else:
        code.masked_fill_(code > p.max_code, p.overflow_code)
    sign = (xs.view(p.itype) < 0).to(p.itype)
    code.bitwise_xor_(sign * p.sign_xor)
    if p.sign_add:
        code.add_(sign)
    code.bitwise_and_(p.code_mask)
    if blk.special is not None:
        # NaN/Inf block: every code a signed zero
        zero = sign.mul_(p.sign_xor + p.sign_add).bitwise_and_(p.code_mask)
        code = torch.where(blk.special, zero, code)
    cc.copy_(code)


# --- layout --------------------------------------------------------------------------------


class _Layout(NamedTuple):
    """The input cut into blocks: ``blocks`` is (rows, block_size[, inner]), contiguous."""

    blocks: torch.Tensor
    outer: int
    n: int
    inner: int
    nblk: int
    chunk_rows: int


def _layout(t: torch.Tensor, call: _Call) -> _Layout:
    """Widen to the host float and view the blocked axis as (rows, block_size[, inner]).

    A short last block is padded with +0.0, which changes neither its amax nor
    the lanes before it; counters stay mxref's because they follow the
    padded layout's scale index and lane.
    """
    shape = tuple(t.shape)
    ax, bs = call.axis, call.block_size
    n = shape[ax]
    outer, inner = math.prod(shape[:ax]), math.prod(shape[ax + 1 :])
    nblk = -(-n // bs)
    work = widen(t, call.plan.host).reshape(outer, n, inner)
    if n % bs:
        padded = torch.zeros(outer, nblk * bs, inner, dtype=work.dtype, device=work.device)
        padded[:, :n] = work
        work = padded
    rows = outer * nblk
    blocks = work.reshape((rows, bs, inner) if inner > 1 else (rows, bs)).contiguous()
    if t.device.type == "cpu":
        stochastic = call.plan.rounding is Rounding.STOCHASTIC
        chunk = max(1, (_CPU_CHUNK_STOCHASTIC if stochastic else _CPU_CHUNK) // (bs * inner))
    else:
        chunk = rows  # one pass over everything: no cache to fit, fewer launches
    return _Layout(blocks, outer, n, inner, nblk, chunk)


def _given_blocks(call: _Call, lay: _Layout) -> torch.Tensor | None:
    """The given scales as int64 in the blocks' layout: (rows, 1[, inner])."""
    if call.scales is None:
        return None
    rows = lay.outer * lay.nblk
    shape = (rows, 1, lay.inner) if lay.inner > 1 else (rows, 1)
    return call.scales.reshape(shape).to(torch.int64)


def _unblock(a: torch.Tensor, lay: _Layout, shape: torch.Size) -> torch.Tensor:
    """Undo :func:`_layout`: drop padding and restore ``shape`` (contiguous)."""
    full = a.view(lay.outer, lay.nblk * a.shape[1], lay.inner)
    if full.shape[1] != lay.n:
        full = full[:, : lay.n]
    return full.reshape(shape).contiguous()


@cache
def _cpu_nan_bits(dtype: torch.dtype) -> tuple[int, int]:
    """The bits the CPU's float32 -> ``dtype`` cast gives mxref's +NaN and -NaN.

    mxref rounds on the CPU; other devices' casts may write other NaN patterns.
    """
    src = torch.tensor([0x7FC00000, -0x00400000] * 32, dtype=torch.int32).view(torch.float32)
    got = src.to(dtype).view(torch.int16)
    return int(got[0]), int(got[1])


def _narrow(values: torch.Tensor, dtype: torch.dtype, may_nan: bool) -> torch.Tensor:
    """Round exact float32 results once to float16/bfloat16 (RNE), NaN bits as mxref's.

    On the CPU this is the very cast mxref makes (a contiguous float32 tensor
    to ``dtype``), NaN patterns included; elsewhere NaNs are rewritten to those.
    """
    out = values.to(dtype)
    if may_nan and values.device.type != "cpu":
        pos, neg = _cpu_nan_bits(dtype)
        nan = torch.where(values.view(torch.int32) < 0, neg, pos).to(torch.int16)
        out = torch.where(torch.isnan(values), nan.view(dtype), out)
    return out


def _fake_quantize(
    t: torch.Tensor, call: _Call, want_mask: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The values (x's dtype) and, when asked, the gradient mask, both in x's shape."""
    p = call.plan
    shape = t.shape
    if t.numel() == 0:
        empty_mask = torch.zeros(shape, dtype=torch.bool, device=t.device) if want_mask else None
        return torch.empty(shape, dtype=t.dtype, device=t.device), empty_mask
    lay = _layout(t, call)
    xb = lay.blocks
    out = torch.empty_like(xb)
    mask = torch.empty(xb.shape, dtype=torch.bool, device=xb.device) if want_mask else None
    rows = xb.shape[0]
    work_all = torch.empty((min(lay.chunk_rows, rows), *xb.shape[1:]), dtype=p.itype,
                           device=xb.device)  # fmt: skip
    given = _given_blocks(call, lay)
    specials = False
    for r0 in range(0, rows, lay.chunk_rows):
        r1 = min(rows, r0 + lay.chunk_rows)
        mc = None if mask is None else mask[r0:r1]
        work = work_all[: r1 - r0]
        gc = None if given is None else given[r0:r1]
        specials |= _chunk_values(xb[r0:r1], out[r0:r1], mc, work, p, call, r0, lay.inner, gc)
    values = _unblock(out, lay, shape)
    if t.dtype != p.host:
        values = _narrow(values, t.dtype, specials or math.isnan(p.overflow_value))
    return values, None if mask is None else _unblock(mask, lay, shape)


class _FakeQuantize(torch.autograd.Function):
    """Exact fake quantization forward; straight-through backward, zero where saturated."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, call: _Call) -> torch.Tensor:
        values, mask = _fake_quantize(t, call, want_mask=bool(ctx.needs_input_grad[0]))
        if mask is not None:
            ctx.save_for_backward(mask)
        return values

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad.masked_fill(~mask, 0.0), None


def quantize_dequantize(
    x: torch.Tensor,
    fmt: str | ElementFormat,
    *,
    axis: int = -1,
    block_size: int | None = None,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
    seed: int | None = None,
    preset: str | Preset | None = None,
    scales: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fake-quantize ``x``: encode to MX and decode again, bit for bit as mxref does.

    Parameters
    ----------
    x : torch.Tensor
        float16, bfloat16, float32 or float64, at least 1-d, on any device.
        float16/bfloat16 are computed in float32 and rounded back once (RNE);
        float64 is computed in float64, never through float32.
    fmt : str or ElementFormat
        ``"mxfp4"``, ``"mxfp6_e2m3"``, ``"mxfp6_e3m2"``, ``"mxfp8_e4m3"``,
        ``"mxfp8_e5m2"`` or ``"mxint8"`` (``"nvfp4"`` through
        :func:`mxref.torch.quantize_dequantize`).
    axis : int
        The axis cut into blocks.
    block_size : int, optional
        Elements per block (default 32); a shorter last block is quantized as it is.
    scale_rule, rounding, overflow : str or enum, optional
        As for :func:`mxref.quantize`; defaults from ``preset`` (``"ocp"``:
        floor, rne, saturate).
    seed : int, optional
        Required with ``rounding="stochastic"`` and rejected otherwise.
    preset : str or Preset, optional
        A vendor preset (:mod:`mxref.presets`); it fixes the three policies.
    scales : torch.Tensor of uint8, optional
        Given E8M0 block scales on ``x``'s device, of exactly
        ``mxref.scales_shape(x.shape, axis, block_size)``, to encode against
        instead of computing them, as for :func:`mxref.quantize`: no 0xFF byte,
        a finite ``x``, no explicit ``scale_rule`` (a preset is accepted).
        Where a given scale makes ``|x| / X`` exceed max normal the gradient
        is zero, as for any saturated element.

    Returns
    -------
    torch.Tensor
        Same dtype, shape and device as ``x``; equal bit for bit to
        ``mxref.quantize_dequantize(x, ...)``.  Differentiable: the gradient
        passes straight through the rounding, is zero where ``|x| / X`` exceeds
        max normal (saturation) and in NaN/Inf blocks; the scale's gradient is
        stopped.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument.

    Spec: OCP MX v1.0 sections 5.1, 5.4.1 and 6.3.
    """
    t, call = _prepare(x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset,
                       scales)  # fmt: skip
    return _FakeQuantize.apply(t, call)


@torch.no_grad()
def encode(
    x: torch.Tensor,
    fmt: str | ElementFormat,
    *,
    axis: int = -1,
    block_size: int | None = None,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
    seed: int | None = None,
    preset: str | Preset | None = None,
    scales: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``x`` into MX element codes and E8M0 scale bytes on ``x``'s device.

    Parameters
    ----------
    x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset, scales
        As for :func:`quantize_dequantize`.

    Returns
    -------
    codes : torch.Tensor of uint8
        ``x``'s shape: equal to ``mxref.quantize(x, ...).codes``.
    scales : torch.Tensor of uint8
        ``x``'s shape with ``axis`` cut into ``ceil(n / block_size)`` blocks:
        equal to ``mxref.quantize(x, ...).scales`` (0xFF for NaN/Inf blocks);
        a copy of the given ``scales`` when given.

    Not differentiable.

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument.

    Spec: OCP MX v1.0 sections 5.4.1 and 6.3.
    """
    t, call = _prepare(x, fmt, axis, block_size, scale_rule, rounding, overflow, seed, preset,
                       scales)  # fmt: skip
    p = call.plan
    shape = t.shape
    sshape = scales_shape(tuple(shape), call.axis, call.block_size)
    if t.numel() == 0:
        return (
            torch.empty(shape, dtype=torch.uint8, device=t.device),
            torch.empty(sshape, dtype=torch.uint8, device=t.device),
        )
    lay = _layout(t, call)
    xb = lay.blocks
    rows = xb.shape[0]
    codes = torch.empty(xb.shape, dtype=torch.uint8, device=xb.device)
    scales = torch.empty((rows, 1, *xb.shape[2:]), dtype=torch.uint8, device=xb.device)
    chunk_shape = (min(lay.chunk_rows, rows), *xb.shape[1:])
    y_all = torch.empty(chunk_shape, dtype=p.host, device=xb.device)
    work_all = torch.empty(chunk_shape, dtype=p.itype, device=xb.device)
    given = _given_blocks(call, lay)
    for r0 in range(0, rows, lay.chunk_rows):
        r1 = min(rows, r0 + lay.chunk_rows)
        k = r1 - r0
        gc = None if given is None else given[r0:r1]
        _chunk_codes(xb[r0:r1], codes[r0:r1], scales[r0:r1], y_all[:k], work_all[:k], p, call,
                     r0, lay.inner, gc)  # fmt: skip
    return _unblock(codes, lay, shape), scales.reshape(sshape)
