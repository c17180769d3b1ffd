"""Oracle: NVFP4's two-level scaling, exactly (an FP32 tensor scale, E4M3 block scales).

NVFP4 stores E2M1 elements in blocks of 16 that share an FP8 E4M3 scale
byte, under one float32 scale per tensor (or per row).  No standard fixes
its arithmetic; every implementation we know computes in float32 with
several roundings, and they differ.  mxref's default is exact arithmetic,
rounded once at each stored value (``docs/semantics.md``, "NVFP4"):

- the tensor scale ``G = RN32(448 * 6 / amax)``, ``amax`` the largest finite
  ``|x|`` of the tensor (or of the row), stored as float32;
- each block's scale ``s_b = E4M3_RNE_sat(block_amax / 6 * G)``, stored as
  the E4M3 byte;
- each element's code ``E2M1_RNE_sat(x * G / s_b)``;
- the value ``RN(code * s_b / G)`` in the output's precision.

Every quotient and product above is exact here (:class:`~fractions.Fraction`)
and rounded once; the kernels reach the same bits by exact comparisons.

Values are ``(sign, magnitude)`` pairs as in :mod:`mxref.ref.element`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from mxref.formats import get_format
from mxref.policies import Overflow, Rounding
from mxref.ref.element import (
    BINARY32,
    Value,
    apply_sign,
    decode_element,
    encode_element,
    encode_float,
)

#: The element and scale encodings (OCP FP4 E2M1, OFP8 E4M3).
E2M1 = get_format("mxfp4")
E4M3 = get_format("mxfp8_e4m3")
#: Elements per E4M3 scale.
NV_BLOCK_SIZE = 16
#: The E4M3 byte of a block holding NaN or Inf (E4M3's NaN, S.1111.111 with S = 0).
SCALE_NAN_BYTE = 0x7F
#: 448 * 6: the tensor scale maps the tensor's amax onto E4M3's max times E2M1's.
_RANGE = E4M3.max_normal * E2M1.max_normal
#: The float32 range the tensor scale is kept in (it is stored as a float32).
_FLOAT32_MAX = BINARY32.max_normal
_FLOAT32_TINY = BINARY32.min_subnormal


def _float32(value: Fraction) -> Fraction:
    """``value`` (positive) rounded once to float32 (RNE), saturating at float32's max."""
    bits = encode_float((0, value), BINARY32)
    _, mag = decode_element(bits, BINARY32)
    if not isinstance(mag, Fraction):  # beyond float32's range
        return _FLOAT32_MAX
    return mag


def tensor_scale(amax: Fraction) -> Fraction:
    """The tensor scale ``G = RN32(448 * 6 / amax)`` (a float32 value).

    Parameters
    ----------
    amax : Fraction
        The largest finite magnitude of the tensor (or row), >= 0.

    Returns
    -------
    Fraction
        ``G``.  Kept within float32's range: an ``amax`` so small that the
        quotient exceeds float32's max gives that max, one so large that it
        rounds to 0 gives the smallest subnormal (a float64 input beyond
        float32's range).  ``amax == 0`` (no finite nonzero value) gives 1,
        which no code depends on: every code is 0.
    """
    if amax < 0:
        raise ValueError("amax must be >= 0")
    if amax == 0:
        return Fraction(1)
    g = _float32(_RANGE / amax)
    return max(g, _FLOAT32_TINY)


def encode_block_scale(block_amax: Fraction | None, g: Fraction) -> int:
    """The E4M3 byte ``E4M3_RNE_sat(block_amax / 6 * G)`` of one block.

    Parameters
    ----------
    block_amax : Fraction or None
        The block's largest magnitude, or None when it holds NaN or Inf.
    g : Fraction
        The tensor scale.

    Returns
    -------
    int
        :data:`SCALE_NAN_BYTE` for a NaN/Inf block; otherwise the exact
        product rounded once to nearest even on E4M3's grid (subnormals
        included), saturating at 448.  A block whose scale rounds to 0 gets
        byte 0x00.
    """
    if block_amax is None:
        return SCALE_NAN_BYTE
    return encode_element(0, block_amax / E2M1.max_normal * g, E4M3, Rounding.RNE,
                          Overflow.SATURATE)  # fmt: skip


def decode_block_scale(byte: int) -> Fraction | None:
    """The block scale an E4M3 byte holds, or None for NaN (the sign bit is refused)."""
    if not 0 <= byte <= 0x7F:
        raise ValueError(f"NVFP4 block scale byte out of range (a positive E4M3 code): {byte:#x}")
    _, mag = decode_element(byte, E4M3)
    return mag if isinstance(mag, Fraction) else None


def quantize_nv_block(values: Sequence[Value], g: Fraction,
                      rounding: Rounding = Rounding.RNE) -> tuple[int, list[int]]:  # fmt: skip
    """Quantize one block of exact values under the tensor scale ``g``.

    Parameters
    ----------
    values : sequence of (sign, magnitude)
        At most :data:`NV_BLOCK_SIZE` values (a last, shorter block equals
        zero padding).
    g : Fraction
        The tensor scale (:func:`tensor_scale` of the tensor's amax).
    rounding : Rounding
        Of the elements: RNE (the default), AWAY or ZERO.

    Returns
    -------
    (int, list of int)
        The E4M3 byte and the E2M1 codes ``x * G / s_b`` rounded once,
        saturating at 6.  A NaN/Inf block gets :data:`SCALE_NAN_BYTE` and
        signed zero codes, a block whose scale is 0 signed zero codes.
    """
    if rounding is Rounding.STOCHASTIC:
        raise ValueError("rounding: NVFP4 takes 'rne', 'away' or 'zero'")
    finite = all(isinstance(m, Fraction) for _, m in values)
    amax = max((m for _, m in values), default=Fraction(0)) if finite else None
    byte = encode_block_scale(amax if finite else None, g)  # type: ignore[arg-type]
    scale = decode_block_scale(byte)
    if scale is None or scale == 0:
        return byte, [apply_sign(s, 0, E2M1) for s, _ in values]
    codes = []
    for sign, mag in values:
        assert isinstance(mag, Fraction)
        codes.append(encode_element(sign, mag * g / scale, E2M1, rounding, Overflow.SATURATE))
    return byte, codes


def dequantize_nv_block(byte: int, codes: Sequence[int], g: Fraction,
                        target: object = BINARY32) -> list[int]:  # fmt: skip
    """Decode one block to ``target``'s bit patterns: ``RN(code * s_b / G)``, rounded once.

    Parameters
    ----------
    byte : int
        The E4M3 scale byte; :data:`SCALE_NAN_BYTE` gives NaN throughout.
    codes : sequence of int
        E2M1 codes.
    g : Fraction
        The tensor scale.
    target : ElementFormat
        ``BINARY32`` (default) or ``BINARY64`` from :mod:`mxref.ref.element`.

    Returns
    -------
    list of int
        The bit patterns.
    """
    scale = decode_block_scale(byte)
    out = []
    for code in codes:
        sign, mag = decode_element(code, E2M1)
        assert isinstance(mag, Fraction)
        value: Value = (sign, math.nan) if scale is None else (sign, mag * scale / g)
        out.append(encode_float(value, target))  # type: ignore[arg-type]
    return out


def quantize_nv_rows(rows: Sequence[Sequence[Value]], block_size: int = NV_BLOCK_SIZE,
                     per_row: bool = False, rounding: Rounding = Rounding.RNE,
                     ) -> tuple[list[Fraction], list[list[int]], list[list[int]]]:  # fmt: skip
    """Quantize rows of exact values, blocked along each row.

    Parameters
    ----------
    rows : sequence of sequences of (sign, magnitude)
        The tensor, one row per slice along the blocked axis.
    block_size : int
    per_row : bool
        One tensor scale per row instead of one for the whole tensor.
    rounding : Rounding

    Returns
    -------
    (list of Fraction, list of list of int, list of list of int)
        The tensor scale(s) (one, or one per row), every row's scale bytes
        and every row's codes.
    """

    def finite_amax(values: Sequence[Value]) -> Fraction:
        return max((m for _, m in values if isinstance(m, Fraction)), default=Fraction(0))

    if per_row:
        scales = [tensor_scale(finite_amax(row)) for row in rows]
    else:
        scales = [tensor_scale(max((finite_amax(row) for row in rows), default=Fraction(0)))]
    all_bytes, all_codes = [], []
    for r, row in enumerate(rows):
        g = scales[r if per_row else 0]
        row_bytes, row_codes = [], []
        for start in range(0, len(row), block_size):
            byte, codes = quantize_nv_block(row[start : start + block_size], g, rounding)
            row_bytes.append(byte)
            row_codes += codes
        all_bytes.append(row_bytes)
        all_codes.append(row_codes)
    return scales, all_bytes, all_codes


# -- torchao 0.18's NVFP4Tensor: the same formats through float32 steps ------------------

#: torchao clamps a block's float32 scale to E4M3's smallest normal before its cast.
TORCHAO_SCALE_MIN = E4M3.min_normal


def _rn32(value: Fraction) -> Fraction:
    """A float32 operation's result: the exact value rounded once (RNE); Inf is refused."""
    sign = 1 if value < 0 else 0
    _, mag = decode_element(encode_float((sign, abs(value)), BINARY32), BINARY32)
    if not isinstance(mag, Fraction):
        raise ValueError("torchao's NVFP4 recipe overflows float32 here")
    return -mag if sign else mag


def torchao_tensor_scale(amax: Fraction) -> Fraction:
    """torchao's per-tensor (decode) scale ``t = RN32(amax / (448 * 6))``.

    Source: torchao 0.18 ``nvfp4_tensor.py::per_tensor_amax_to_scale``.
    Unlike :func:`tensor_scale` it is the inverse of an encode scale, and it
    is 0 for an amax below about 2**-139, which torchao then divides by.
    """
    t = _rn32(amax / _RANGE)
    if t == 0:
        raise ValueError("torchao's tensor scale is 0 for this amax (it then divides by 0)")
    return t


def torchao_quantize_nv_block(values: Sequence[Value], t: Fraction) -> tuple[int, list[int]]:
    """One block as torchao 0.18's ``nvfp4_quantize(x, 16, per_tensor_scale=t)`` does.

    Every step is a float32 operation: ``RN32(amax / 6)``, divided by ``t``,
    clamped to ``[2**-6, 448]`` (no subnormal scale, and an all-zero block
    gets ``2**-6``), cast to E4M3 (RNE); the elements are multiplied by
    ``RN32(RN32(1 / t) / s)``, clamped to +-6 and cast to E2M1 (RNE).
    Finite inputs only.
    """
    mags = [m for _, m in values]
    if not all(isinstance(m, Fraction) for m in mags):
        raise ValueError("torchao's NVFP4 recipe is modelled for finite inputs only")
    amax = max(mags, default=Fraction(0))
    assert isinstance(amax, Fraction)
    scaled = _rn32(_rn32(amax / E2M1.max_normal) / t)
    scaled = min(max(scaled, TORCHAO_SCALE_MIN), E4M3.max_normal)
    byte = encode_element(0, scaled, E4M3, Rounding.RNE, Overflow.SATURATE)
    scale = decode_block_scale(byte)
    assert scale is not None
    reciprocal = _rn32(_rn32(1 / t) / scale)
    codes = []
    for sign, mag in values:
        assert isinstance(mag, Fraction)
        q = min(_rn32(mag * reciprocal), E2M1.max_normal)
        codes.append(encode_element(sign, q, E2M1, Rounding.RNE, Overflow.SATURATE))
    return byte, codes


def torchao_dequantize_nv_block(byte: int, codes: Sequence[int], t: Fraction) -> list[int]:
    """torchao 0.18's ``NVFP4Tensor.dequantize`` of one block, as float32 bit patterns:
    ``RN32(code * RN32(t * s))``."""
    scale = decode_block_scale(byte)
    if scale is None:
        raise ValueError("torchao's NVFP4 recipe never stores a NaN scale for finite inputs")
    combined = _rn32(t * scale)
    out = []
    for code in codes:
        sign, mag = decode_element(code, E2M1)
        assert isinstance(mag, Fraction)
        out.append(encode_float((sign, mag * combined), BINARY32))
    return out


# -- Transformer Engine's NVFP4: the documented formula in its kernels' float32 steps ----

#: TE's ``1.0f / 6.0f`` and ``(float)(1.0 / (6.0 * 448.0))``: float32 constants.
TE_RCP6 = _rn32(Fraction(1, 6))
TE_RCP_RANGE = _rn32(Fraction(1 / 2688))  # the double quotient, then float
_E4M3_MAX = E4M3.max_normal


def te_encode_scale(amax: Fraction) -> Fraction:
    """Transformer Engine's global encode scale ``S_enc = min(RN32(2688 / amax), FLT_MAX)``.

    Source: ``core_nvfp4.cuh::compute_global_encode_scaling_factor_FP4``;
    ``amax == 0``, and a quotient that rounds to 0, give 1.
    """
    if amax < 0:
        raise ValueError("amax must be >= 0")
    if amax == 0:
        return Fraction(1)
    q = _RANGE / amax
    if q >= _FLOAT32_MAX:  # beyond float32's max rounds to it or to Inf, then min() keeps max
        return _FLOAT32_MAX
    s = _rn32(q)
    return Fraction(1) if s == 0 else s


def te_quantize_nv_block(values: Sequence[Value], amax: Fraction) -> tuple[int, list[int]]:
    """One block as Transformer Engine's NVFP4 quantize kernel does, under the tensor's amax.

    ``S_enc = te_encode_scale(amax)``; the block's scale is
    ``E4M3_RNE_satfinite(RN32(block_amax * RN32(S_enc * RN32(1/6))))``; the
    elements are multiplied by ``min(RN32(1 / RN32(s_b * RN32(1 / S_enc))),
    FLT_MAX)`` in float32 and converted to E2M1 by RNE, saturating at 6 (so a
    block whose scale is 0 gives +-6 for every nonzero element).  Finite
    inputs only.
    """
    mags = [m for _, m in values]
    if not all(isinstance(m, Fraction) for m in mags):
        raise ValueError("Transformer Engine's NVFP4 recipe is modelled for finite inputs only")
    g = te_encode_scale(amax)
    block_amax = max(mags, default=Fraction(0))
    assert isinstance(block_amax, Fraction)
    scaled = _rn32(block_amax * _rn32(g * TE_RCP6))
    byte = encode_element(0, min(scaled, _E4M3_MAX), E4M3, Rounding.RNE, Overflow.SATURATE)
    scale = decode_block_scale(byte)
    assert scale is not None
    denominator = _rn32(scale * _rn32(1 / g))
    # min(RN32(1 / d), FLT_MAX): a quotient at or above FLT_MAX rounds to it or to Inf
    factor = _FLOAT32_MAX if denominator == 0 or 1 / denominator >= _FLOAT32_MAX \
        else _rn32(1 / denominator)  # fmt: skip
    codes = []
    for sign, mag in values:
        assert isinstance(mag, Fraction)
        product = mag * factor
        q = E2M1.max_normal if product >= _FLOAT32_MAX else _rn32(product)
        codes.append(encode_element(sign, min(q, E2M1.max_normal), E2M1, Rounding.RNE,
                                    Overflow.SATURATE))  # fmt: skip
    return byte, codes


def te_dequantize_nv_block(byte: int, codes: Sequence[int], amax: Fraction) -> list[int]:
    """Transformer Engine's ``dequantize_fp4_kernel`` of one block, as float32 bit patterns:
    ``RN32(code * RN32(RN32(s_b * amax) * RN32(1 / 2688)))``."""
    scale = decode_block_scale(byte)
    if scale is None:
        raise ValueError("Transformer Engine's NVFP4 recipe never stores a NaN scale here")
    combined = _rn32(_rn32(scale * amax) * TE_RCP_RANGE)
    out = []
    for code in codes:
        sign, mag = decode_element(code, E2M1)
        assert isinstance(mag, Fraction)
        out.append(encode_float((sign, mag * combined), BINARY32))
    return out
