"""Oracle: MX block dot products and GEMMs, exactly, under every accumulation model.

This module is the normative definition of :mod:`mxref.accum`'s models; the
prose version is ``docs/gemm.md``.  Everything is Python integers and
:class:`~fractions.Fraction`; no floating-point arithmetic touches a value.
It is slow on purpose: every step is the definition, never an optimisation.

Extended values
---------------
An :data:`ExtValue` is an element of the extended reals plus NaN: a finite
value is always a :class:`~fractions.Fraction` (so an exact zero is +0: a
Fraction has no sign), and the non-finite ones are the Python floats
``math.inf``, ``-math.inf`` and ``math.nan``.

- Product (IEEE 754 rules): NaN anywhere gives NaN; Inf times 0 gives NaN;
  Inf times a nonzero value gives an Inf with the product's sign; otherwise
  the exact Fraction.
- Sum: any NaN gives NaN; +Inf and -Inf both present give NaN; Infs of one
  sign give that Inf; otherwise the exact finite sum (an exact zero is +0).

Definitions (normative)
-----------------------
Blocks run along K: block ``b`` covers ``k`` in ``[b*bs, min(K, (b+1)*bs))``;
a short last block equals zero padding.  ``P = decode_element(code, fmt)``,
``X = decode_scale(byte)`` (None means the NaN scale 0xFF).  The scaled
product of lane ``k`` of block ``b`` for output ``(i, j)`` is::

    q_k = X_A[i,b] * X_B[j,b] * P_A[i,k] * P_B[j,k]

(B is K-major: row ``j`` is column ``j`` of B), an extended value; a NaN scale
on either side makes every ``q_k`` of that block pair NaN, even where the
elements are zero.  ``C`` (float32, or absent = +0) is read exactly.

- Exact: ``D = RNE_out(C + sum_b sum_k q_k)``, one extended sum, one rounding
  straight to the output type (float16/bfloat16 are not reached via float32).
  An exact-zero result is +0, even when C is -0.0.
- BlockFP32: ``acc = C`` (or +0.0); for each block in K order,
  ``acc = RN_fp32(acc + Dot_b)`` with ``Dot_b = sum_k q_k`` exact, the add
  following IEEE 754 (see :func:`fp32_add`); with ``flush_subnormals`` a
  nonzero subnormal acc becomes a zero of its sign after every add.  Then
  ``D = RNE_out(acc)``.
- FixedPoint(W, G, rounding): as BlockFP32, but the K axis is cut into groups
  of G lanes (spanning blocks; each ``q_k`` keeps its own block's scales) and
  each group's value is :func:`group_value`: with ``e_max`` the largest
  ``floor(log2|q_k|)``, every ``q_k`` is cut to a multiple of the quantum
  ``2**(e_max + 1 - W)`` (truncated toward zero, or rounded to nearest even),
  and the kept values are summed exactly.

NaN results are the canonical quiet NaN of the output type with a clear sign
bit (0x7FC00000 in float32): NaN payloads and NaN signs are not modelled.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral); internal precision and
summation order are implementation-defined there, which is what the models
pin down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from mxref import dtypes
from mxref.accum import AccumModel, AlignRounding, BlockFP32, Exact, FixedPoint, parse_accum
from mxref.formats import ElementFormat
from mxref.ref.element import (
    BFLOAT16,
    BINARY16,
    BINARY32,
    Value,
    decode_element,
    encode_float,
    floor_log2,
    pow2,
)
from mxref.ref.scale import decode_scale

if TYPE_CHECKING:  # mxref.gemm may import this module; import it lazily at run time
    from mxref.array import MXArray
    from mxref.gemm_operands import Operands

#: A finite Fraction (exact zero is +0), or math.inf, -math.inf, math.nan.
ExtValue = Fraction | float

ZERO = Fraction(0)


# --- extended arithmetic ---------------------------------------------------


def is_nan(v: ExtValue) -> bool:
    """Whether ``v`` is NaN (a Fraction never is)."""
    return isinstance(v, float) and math.isnan(v)


def ext_from_value(value: Value) -> ExtValue:
    """Turn a ``(sign, magnitude)`` pair into an extended value (-0 becomes +0)."""
    sign, mag = value
    if isinstance(mag, float):
        return mag if math.isnan(mag) else (-math.inf if sign else math.inf)
    return -mag if sign else Fraction(mag)


def ext_to_value(v: ExtValue) -> Value:
    """Turn an extended value into ``(sign, magnitude)`` for :func:`encode_float`.

    NaN gets sign 0 (the canonical quiet NaN); a zero is +0.
    """
    if isinstance(v, float):
        if math.isnan(v):
            return 0, math.nan
        return (1 if v < 0 else 0), math.inf
    return (1 if v < 0 else 0), abs(v)


def ext_sum(values: Iterable[ExtValue]) -> ExtValue:
    """Sum extended values exactly, with IEEE 754 rules for the specials.

    Any NaN gives NaN; +Inf together with -Inf gives NaN; Infs of one sign
    give that Inf; otherwise the exact sum, an exact zero being +0.  The
    result does not depend on the order of ``values``.
    """
    total = ZERO
    pos_inf = neg_inf = False
    for v in values:
        if isinstance(v, float):
            if math.isnan(v):
                return math.nan
            if v > 0:
                pos_inf = True
            else:
                neg_inf = True
        else:
            total += v
    if pos_inf and neg_inf:
        return math.nan
    if pos_inf:
        return math.inf
    if neg_inf:
        return -math.inf
    return total


def scaled_product(x_a: Fraction | None, x_b: Fraction | None, p_a: Value, p_b: Value) -> ExtValue:
    """Return ``q = X_A * X_B * P_A * P_B`` as an extended value.

    Parameters
    ----------
    x_a, x_b : Fraction or None
        The two block scales; None is the NaN scale (byte 0xFF).
    p_a, p_b : (sign, magnitude)
        The two decoded elements.

    Returns
    -------
    ExtValue
        NaN if a scale or an element is NaN, or for Inf times zero (a NaN
        scale wins even over zero elements: the whole block decodes as NaN);
        Inf with the product's sign for Inf times a nonzero finite value; the
        exact Fraction otherwise (scales are never zero, so only elements can
        make the zero).

    Spec: OCP MX v1.0 sections 5.1 (a NaN scale makes the block NaN) and 6.2
    (Dot multiplies the scales and elements).
    """
    sign_a, mag_a = p_a
    sign_b, mag_b = p_b
    if x_a is None or x_b is None:
        return math.nan
    if (isinstance(mag_a, float) and math.isnan(mag_a)) or (
        isinstance(mag_b, float) and math.isnan(mag_b)
    ):
        return math.nan
    negative = (sign_a ^ sign_b) == 1
    if isinstance(mag_a, float) or isinstance(mag_b, float):
        # at least one is Inf; the other is Inf or finite (scales are finite and nonzero)
        if mag_a == 0 or mag_b == 0:
            return math.nan
        return -math.inf if negative else math.inf
    mag = x_a * x_b * mag_a * mag_b
    return -mag if negative else mag


def block_dot(
    a_codes: Sequence[int],
    a_byte: int,
    b_codes: Sequence[int],
    b_byte: int,
    fmt_a: ElementFormat,
    fmt_b: ElementFormat,
) -> ExtValue:
    """Return the spec's Dot of one block pair, exactly.

    ``Dot = X_A * X_B * sum_k P_A[k] * P_B[k]``, computed as the extended sum
    of the scaled products :func:`scaled_product` (so a NaN scale gives NaN,
    Inf times 0 gives NaN, +Inf with -Inf gives NaN); a finite result is the
    exact Fraction, an exact zero being +0.

    Parameters
    ----------
    a_codes, b_codes : sequence of int
        The element codes of the two blocks, of equal length (a short block
        is the same as one padded with zero codes).
    a_byte, b_byte : int
        The two E8M0 scale bytes.
    fmt_a, fmt_b : ElementFormat
        The element formats; they may differ.

    Spec: OCP MX v1.0 section 6.2 (Dot).
    """
    if len(a_codes) != len(b_codes):
        raise ValueError(
            f"block_dot needs blocks of equal length; got {len(a_codes)} and {len(b_codes)}"
        )
    x_a, x_b = decode_scale(int(a_byte)), decode_scale(int(b_byte))
    return ext_sum(
        scaled_product(x_a, x_b, decode_element(int(ca), fmt_a), decode_element(int(cb), fmt_b))
        for ca, cb in zip(a_codes, b_codes, strict=True)
    )


# --- the float32 accumulator -------------------------------------------------


def round_fp32(v: ExtValue) -> Value:
    """Round an extended value once (RNE, overflow to Inf) to a float32 value.

    Returns the float32 value as ``(sign, magnitude)``, exactly; a nonzero
    value that rounds to zero keeps its sign.
    """
    return decode_element(encode_float(ext_to_value(v), BINARY32), BINARY32)


def fp32_add(acc: Value, v: ExtValue, flush_subnormals: bool = False) -> Value:
    """One IEEE 754 float32 addition ``RN_fp32(acc + v)`` with an exact addend.

    Parameters
    ----------
    acc : (sign, magnitude)
        A float32 value (the accumulator), -0 included.
    v : ExtValue
        The exact addend (a block's Dot or a group's value); its zero is +0.
    flush_subnormals : bool
        Flush a nonzero subnormal result to the zero of its sign.

    Returns
    -------
    (sign, magnitude)
        NaN if either is NaN or for +Inf plus -Inf; an Inf plus anything
        finite is that Inf; a finite sum is rounded once (RNE, overflow to
        Inf).  An exact zero sum of finite values is +0: IEEE gives -0 only
        when both addends are -0, and ``v`` is never -0.

    Spec: IEEE 754-2019 sections 6.1, 6.2 and 6.3 (the sign of a zero sum
    under roundTiesToEven).
    """
    total = ext_sum((ext_from_value(acc), v))
    result = round_fp32(total)
    sign, mag = result
    if flush_subnormals and isinstance(mag, Fraction) and 0 < mag < BINARY32.min_normal:
        return sign, ZERO
    return result


# --- one output element under each model ---------------------------------------


def group_value(qs: Sequence[ExtValue], width: int, rounding: AlignRounding) -> ExtValue:
    """A FixedPoint group's value: products aligned to the largest one, kept to ``width`` bits.

    Parameters
    ----------
    qs : sequence of ExtValue
        The group's scaled products.
    width : int
        Bits kept below and including the leading bit of the largest product.
    rounding : AlignRounding
        TRUNCATE drops the low bits of each magnitude (toward zero); RNE
        rounds each magnitude to nearest, ties to even.

    Returns
    -------
    ExtValue
        If any product is NaN or Inf, the extended sum of all of them.
        Otherwise 0 if all are zero, else, with ``e_max`` the largest
        ``floor(log2|q|)`` and ``quantum = 2**(e_max + 1 - width)``, the exact
        sum of ``sign(q) * cut(|q| / quantum) * quantum``.
    """
    if any(isinstance(q, float) for q in qs):
        return ext_sum(qs)
    finite = [Fraction(q) for q in qs]
    nonzero = [q for q in finite if q != 0]
    if not nonzero:
        return ZERO
    e_max = max(floor_log2(abs(q)) for q in nonzero)
    quantum = pow2(e_max + 1 - width)
    total = ZERO
    for q in nonzero:
        units = abs(q) / quantum
        kept = math.floor(units)
        if rounding is AlignRounding.RNE:
            rest = units - kept
            if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and kept % 2 == 1):
                kept += 1
        total += (-kept if q < 0 else kept) * quantum
    return total


#: Every code of operand A's and of operand B's format, decoded (for speed only).
Tables = tuple[list[Value], list[Value]]


def decode_tables(ops: Operands) -> Tables:
    """Decode every code of both operands' formats once (for speed only)."""
    return (
        [decode_element(code, ops.fmt_a) for code in range(ops.fmt_a.code_count)],
        [decode_element(code, ops.fmt_b) for code in range(ops.fmt_b.code_count)],
    )


def _products(ops: Operands, i: int, j: int, tables: Tables) -> list[ExtValue]:
    """The K scaled products ``q_k`` of output ``(i, j)``, each with its own block's scales."""
    table_a, table_b = tables
    bs = ops.block_size
    out: list[ExtValue] = []
    for k in range(ops.a_codes.shape[1]):
        b = k // bs
        out.append(
            scaled_product(
                decode_scale(int(ops.a_scales[i, b])),
                decode_scale(int(ops.b_scales[j, b])),
                table_a[int(ops.a_codes[i, k])],
                table_b[int(ops.b_codes[j, k])],
            )
        )
    return out


def dot_element(
    ops: Operands,
    i: int,
    j: int,
    model: AccumModel,
    c: Value | None = None,
    tables: Tables | None = None,
) -> Value:
    """Output ``(i, j)`` before the output cast, as an exact ``(sign, magnitude)``.

    Parameters
    ----------
    ops : mxref.gemm_operands.Operands
    i, j : int
        Row of A and column of B.
    model : Exact, BlockFP32 or FixedPoint
    c : (sign, magnitude), optional
        C[i, j], a float32 value read exactly; absent means +0.
    tables : optional
        From :func:`decode_tables`, to decode each format once per GEMM.

    Returns
    -------
    (sign, magnitude)
        For Exact, the exact extended sum ``C + sum_b sum_k q_k`` (not yet
        rounded; an exact zero is +0); for BlockFP32 and FixedPoint, the final
        float32 accumulator, -0 included (with K = 0 that is C itself, so a
        -0.0 C stays -0.0 there while Exact gives +0).

    Spec: OCP MX v1.0 section 6.2 (DotGeneral = sum of the blocks' Dots).
    """
    if tables is None:
        tables = decode_tables(ops)
    c_value: Value = c if c is not None else (0, ZERO)
    k_total, bs = ops.a_codes.shape[1], ops.block_size
    if isinstance(model, Exact):
        return ext_to_value(ext_sum([ext_from_value(c_value), *_products(ops, i, j, tables)]))
    if isinstance(model, BlockFP32):
        acc = c_value
        for b in range(-(-k_total // bs)):
            lanes = slice(b * bs, min(k_total, (b + 1) * bs))
            dot = block_dot(
                ops.a_codes[i, lanes].tolist(),
                int(ops.a_scales[i, b]),
                ops.b_codes[j, lanes].tolist(),
                int(ops.b_scales[j, b]),
                ops.fmt_a,
                ops.fmt_b,
            )
            acc = fp32_add(acc, dot, model.flush_subnormals)
        return acc
    if isinstance(model, FixedPoint):
        qs = _products(ops, i, j, tables)
        acc = c_value
        g = model.group
        for start in range(0, k_total, g):
            value = group_value(qs[start : start + g], model.width, model.rounding)
            acc = fp32_add(acc, value, model.flush_subnormals)
        return acc
    raise TypeError(
        f"model must be Exact, BlockFP32 or FixedPoint (see mxref.accum); got {model!r}"
    )


# --- whole GEMMs ------------------------------------------------------------------


def _output_format(out_dtype: Any) -> tuple[np.dtype, ElementFormat, type[np.unsignedinteger]]:
    """The numpy dtype, the oracle's IEEE format and the bit-pattern dtype of an output."""
    try:
        dt = np.dtype(out_dtype)
    except TypeError:
        dt = None
    if dt == np.dtype(np.float32):
        return dt, BINARY32, np.uint32
    if dt == np.dtype(np.float16):
        return dt, BINARY16, np.uint16
    if dt is not None and dt == dtypes.BFLOAT16:
        return dt, BFLOAT16, np.uint16
    raise ValueError(f"out_dtype must be float32, float16 or bfloat16; got {out_dtype!r}")


def _check_c(c: object, m: int, n: int) -> np.ndarray | None:
    if c is None:
        return None
    if not isinstance(c, np.ndarray):
        raise TypeError(f"c must be a float32 numpy array of shape ({m}, {n}); got {type(c)}")
    if c.dtype != np.float32:
        raise TypeError(f"c must be a float32 array; got dtype {c.dtype}")
    if c.shape != (m, n):
        raise ValueError(f"c must have shape (M, N) = ({m}, {n}); got {c.shape}")
    return c


def matmul_operands(
    ops: Operands, model: AccumModel, out_dtype: Any = np.float32, c: np.ndarray | None = None
) -> np.ndarray:
    """``D = A @ B + C`` on K-major operands, exactly under ``model``.

    Parameters
    ----------
    ops : mxref.gemm_operands.Operands
        ``a_codes`` (M, K), ``a_scales`` (M, nblocks), ``b_codes`` (N, K),
        ``b_scales`` (N, nblocks), the two formats and the block size.
    model : Exact, BlockFP32 or FixedPoint
        The accumulation model (see the module docstring and ``docs/gemm.md``).
    out_dtype : float32 (default), float16 or bfloat16
        Exact rounds the exact sum once to this type; the float32-accumulator
        models round their final float32 accumulator once to it.
    c : np.ndarray of float32, shape (M, N), optional
        Added exactly (Exact) or as the accumulator's start (the others).

    Returns
    -------
    np.ndarray of out_dtype, shape (M, N)
        Bit patterns from :func:`mxref.ref.element.encode_float`.

    Raises
    ------
    TypeError
        If ``model`` is not a model object or ``c`` is not a float32 array.
    ValueError
        If ``out_dtype`` is not supported or ``c`` has the wrong shape.

    Spec: OCP MX v1.0 section 6.2 (DotGeneral).
    """
    if not isinstance(model, Exact | BlockFP32 | FixedPoint):
        raise TypeError(
            f"model must be Exact, BlockFP32 or FixedPoint (see mxref.accum.parse_accum); "
            f"got {model!r}"
        )
    dt, out_fmt, bits_dtype = _output_format(out_dtype)
    m, n, _ = ops.shape
    c_arr = _check_c(c, m, n)
    c_bits = None if c_arr is None else c_arr.view(np.uint32)
    bits = np.zeros((m, n), dtype=bits_dtype)
    tables = decode_tables(ops)
    for i in range(m):
        for j in range(n):
            c_value = None if c_bits is None else decode_element(int(c_bits[i, j]), BINARY32)
            bits[i, j] = encode_float(dot_element(ops, i, j, model, c_value, tables), out_fmt)
    return bits.view(dt)


def matmul(
    a: MXArray,
    b: MXArray,
    accum: str | AccumModel = "exact",
    out_dtype: Any = np.float32,
    c: np.ndarray | None = None,
) -> np.ndarray:
    """``D = A @ B (+ C)`` on MX arrays, exactly under an accumulation model.

    Parameters
    ----------
    a : MXArray
        M x K, blocked along K (axis 1).
    b : MXArray
        K x N blocked along axis 0, or N x K blocked along axis 1 (then
        ``D = A @ B.T``, the layout MMA hardware consumes).
    accum : str or model
        Anything :func:`mxref.accum.parse_accum` accepts (default ``"exact"``).
    out_dtype, c
        As in :func:`matmul_operands`.

    Returns
    -------
    np.ndarray of out_dtype, shape (M, N)

    Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
    """
    # imported here, not at the top: mxref.gemm may import this oracle
    from mxref.gemm_operands import operands

    return matmul_operands(operands(a, b), parse_accum(accum), out_dtype, c)


def exact_dot(
    a_codes: Sequence[int],
    a_scales: Sequence[int],
    b_codes: Sequence[int],
    b_scales: Sequence[int],
    fmt_a: ElementFormat,
    fmt_b: ElementFormat,
    block_size: int,
    c: Value | None = None,
) -> Fraction | float:
    """The exact value ``C + sum_k q_k`` of one MX dot product, before any rounding.

    Parameters
    ----------
    a_codes, b_codes : sequence of int
        The ``k`` element codes of each operand.
    a_scales, b_scales : sequence of int
        One E8M0 byte per block of ``block_size`` elements.
    fmt_a, fmt_b : ElementFormat
    block_size : int
    c : Value, optional
        The addend, as :func:`mxref.ref.element.decode_element` values.

    Returns
    -------
    Fraction or float
        The exact sum, or a float NaN/Inf where the extended sum is one.

    Spec: OCP MX v1.0 section 6.2 (Dot, with infinite precision).
    """
    qs = []
    for k, (ca, cb) in enumerate(zip(a_codes, b_codes, strict=True)):
        b = k // block_size
        qs.append(
            scaled_product(
                decode_scale(a_scales[b]),
                decode_scale(b_scales[b]),
                decode_element(ca, fmt_a),
                decode_element(cb, fmt_b),
            )
        )
    if c is not None:
        qs.append(ext_from_value(c))
    sign, mag = ext_to_value(ext_sum(qs))
    if isinstance(mag, float):
        return mag
    return -mag if sign else mag
