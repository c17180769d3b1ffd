"""GEMMs on NVFP4 operands: ``D = A @ B (+ C)`` with the tensor scales, bit-exact.

:func:`mxref.matmul` sends NVFP4 operands here.  The definitions are in
``docs/gemm.md`` ("NVFP4 operands: where the tensor scales enter") and,
normatively, in the oracle :mod:`mxref.ref.nvfp4_gemm`:

- lane products ``q_k = (P_a[k] * s_a) * (P_b[k] * s_b)`` with the E4M3
  block scales decoded exactly, as a block-scaled MMA forms them;
- ``exact``: ``RNE_out(C + S / (G_a * G_b))``, ``S`` the exact sum of all q_k;
- ``block_fp32`` and ``fixed_point``: the model's float32 accumulator over
  the q_k, started at +0, then one exact epilogue
  ``RNE_out(acc / (G_a * G_b) + C)``.

How: the block scales are folded into the element integers
(:mod:`mxref.kernels.nvfp4_gemm`), so that one float64 BLAS product gives
``S`` exactly wherever a bound proves every partial sum exact, and the MX
exact kernel computes the rest (and every accumulating model).  The
epilogue rounds in float64 where an error bound proves that decides the
bits, and the few outputs left (values within about 2**-49 of an output
midpoint) are recomputed here with Python integers and fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np

from mxref.accum import AccumModel, AlignRounding, BlockFP32, Exact, FixedPoint
from mxref.array import MXArray
from mxref.formats import ElementFormat
from mxref.gemm_operands import Operands, operands
from mxref.kernels.gemm import (
    BLOCK_FP32,
    EXACT,
    FIXED_POINT,
    NAN,
    element_integers,
    matmul_exact_kernel,
    matmul_exact_pairs,
)
from mxref.kernels.gemm_blas import FLOAT32_EXACT_BOUND
from mxref.kernels.nvfp4_gemm import (
    KERNEL,
    UNDECIDED,
    epilogue_blas,
    epilogue_pairs,
    fold_integers,
    fold_values,
    fold_values_columns,
)
from mxref.kernels.params import decode_params

#: multiply-adds below which the exact kernel beats the BLAS path
BLAS_MIN_WORK = 1 << 18
#: bounds on partial sums, with a margin for the float64 rounding of the bound
_F64_EXACT = float(2**53) * (1 - 2.0**-20)
_F32_EXACT = FLOAT32_EXACT_BOUND


@dataclass(frozen=True, eq=False)
class NVOperands(Operands):
    """:class:`~mxref.gemm_operands.Operands` of two NVFP4 arrays, with their tensor scales.

    Attributes
    ----------
    g_a : (M,) float32
        The encode scale ``G`` of each row of A (all equal for a per-tensor one).
    g_b : (N,) float32
        The encode scale ``G`` of each column of B.
    """

    g_a: np.ndarray
    g_b: np.ndarray


def nv_operands(a: MXArray, b: MXArray) -> NVOperands:
    """Check two NVFP4 operands and bring them to the K-major layout with their G's.

    Raises
    ------
    TypeError, ValueError
        Naming the operand: not an MXArray, not 2-D, one NVFP4 and one MX
        (``kind::mxf4nvf4`` with E4M3 scales takes both sides NVFP4), or a
        layout or block-size mismatch.
    """
    for name, op in (("a", a), ("b", b)):
        if not isinstance(op, MXArray):
            raise TypeError(f"{name} must be an MXArray; got {type(op).__name__}")
    if a.fmt.two_level != b.fmt.two_level:
        raise ValueError(
            f"a is {a.fmt.name} and b is {b.fmt.name}: NVFP4 (E4M3 block scales under a "
            "float32 tensor scale) multiplies only NVFP4, as kind::mxf4nvf4 with ue4m3 "
            "scales does; quantize both operands to the same kind of format"
        )
    if not a.fmt.two_level:
        raise ValueError(f"a and b are {a.fmt.name} and {b.fmt.name}, not NVFP4: "
                         "mxref.gemm multiplies MX operands")  # fmt: skip
    ops = operands(a, b)
    m, n, _ = ops.shape
    g = {}
    for name, op, rows in (("a", a, m), ("b", b, n)):
        t = op.tensor_scale
        if t is None:  # MXArray refuses an NVFP4 array without one; this narrows the type
            raise ValueError(f"{name}.tensor_scale is missing for {op.fmt.name}")
        g[name] = np.ascontiguousarray(np.broadcast_to(t.reshape(-1), (rows,)))
    fields = {f: getattr(ops, f) for f in Operands.__dataclass_fields__}
    return NVOperands(**fields, g_a=g["a"], g_b=g["b"])


@cache
def scale_tables(scale_fmt: ElementFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scale byte: ``M`` and ``E`` with ``s = M * 2**E`` (``M`` odd, or 0), and NaN.

    Read from the scale format's integers ``s = n * 2**(emin - mbits)``:
    ``M`` is the odd part of ``n``, ``E`` the rest of the exponent, so for
    E4M3 ``M <= 15`` and ``-9 <= E <= 8`` (0x01 is 2**-9, 0x78 is 2**8).  A
    zero byte gives ``M = 0``.
    """
    n_table, cls = element_integers(*decode_params(scale_fmt))
    count = len(n_table)
    mult = np.zeros(256, np.int64)
    exp = np.zeros(256, np.int64)
    nan = np.ones(256, np.bool_)  # bytes beyond the format are never read (MXArray refuses them)
    quantum = scale_fmt.emin - scale_fmt.mbits
    for byte in range(count):
        n = abs(int(n_table[byte]))
        nan[byte] = cls[byte] == NAN
        if nan[byte] or n == 0:
            continue
        shift = (n & -n).bit_length() - 1
        mult[byte], exp[byte] = n >> shift, shift + quantum
    # the E8M0-like bytes handed to the MX kernel must stay clear of 0 and 255
    assert 127 + exp.min() > 0
    assert 127 + exp.max() < 255
    return mult, exp, nan


@cache
def _element_table(fmt: ElementFormat) -> np.ndarray:
    return element_integers(*decode_params(fmt))[0]


@dataclass(eq=False)
class _Folded:
    """One operand's folded integers for the exact kernel and its row facts."""

    n: np.ndarray
    bytes: np.ndarray
    nan: np.ndarray
    low: np.ndarray


def _fold_integers(codes: np.ndarray, scales: np.ndarray, fmt: ElementFormat, bs: int) -> _Folded:
    assert fmt.scale_format is not None
    codes, scales = np.ascontiguousarray(codes), np.ascontiguousarray(scales)
    out_n = np.empty(codes.shape, np.int64)
    out_bytes = np.empty(scales.shape, np.uint8)
    nan, low = fold_integers(codes, scales, _element_table(fmt), *scale_tables(fmt.scale_format),
                             bs, out_n, out_bytes)  # fmt: skip
    return _Folded(out_n, out_bytes, nan, low)


def _fold_values(codes: np.ndarray, scales: np.ndarray, fmt: ElementFormat,
                 bs: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:  # fmt: skip
    """Fold one K-major operand of :class:`NVOperands` to float64, in the layout it has.

    Rows come C-contiguous (A, and B given N x K), or as the transposed view
    of a C-contiguous K x N array (B given K x N), which is folded in that
    layout and returned as the same kind of view.
    """
    assert fmt.scale_format is not None
    tables = (_element_table(fmt), *scale_tables(fmt.scale_format))
    if codes.flags.c_contiguous:
        out = np.empty(codes.shape, np.float64)
        facts = fold_values(codes, np.ascontiguousarray(scales), *tables, bs, out)
        return out, facts
    codes_kn = np.ascontiguousarray(codes.T)  # the view's base: no copy
    out = np.empty(codes_kn.shape, np.float64)
    facts = fold_values_columns(codes_kn, np.ascontiguousarray(scales.T), *tables, bs, out)
    return out.T, facts


def _model_code(model: AccumModel) -> tuple[int, int, int, bool, bool]:
    """The MX kernel's (model, width, group, rne, flush) for an accumulation model."""
    if isinstance(model, FixedPoint):
        return (FIXED_POINT, model.width, model.group, model.rounding is AlignRounding.RNE,
                model.flush_subnormals)  # fmt: skip
    if isinstance(model, BlockFP32):
        return BLOCK_FP32, 0, 1, False, model.flush_subnormals
    if isinstance(model, Exact):
        return EXACT, 0, 1, False, False
    raise TypeError(f"model must be Exact, BlockFP32 or FixedPoint; got {model!r}")


def matmul_nv(ops: NVOperands, model: AccumModel, out_fmt: np.dtype,
              output: tuple[int, int, int], c_arr: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """``D = A @ B (+ C)`` on two NVFP4 operands; see the module docstring.

    Parameters
    ----------
    ops : NVOperands
        From :func:`nv_operands`.
    model : Exact, BlockFP32 or FixedPoint
    out_fmt : np.dtype
        float32, float16 or bfloat16.
    output : (precision, min_exponent, max_exponent)
        ``out_fmt`` as a binary format (smallest quantum, largest exponent).
    c_arr : (M, N) float32 or None
        Checked by the caller.

    Returns
    -------
    np.ndarray of out_fmt
    """
    code, width, group, rne, flush = _model_code(model)
    m, n, k = ops.shape
    q_ab = (ops.fmt_a.emin - ops.fmt_a.mbits) + (ops.fmt_b.emin - ops.fmt_b.mbits)
    # every value stored is out_fmt's; float32 holds them for a float32 output
    out = np.zeros((m, n), np.float32 if out_fmt == np.float32 else np.float64)
    if not out.size:
        return out.astype(out_fmt)
    g_a, g_b = ops.g_a.astype(np.float64), ops.g_b.astype(np.float64)
    has_c = c_arr is not None
    c_in = c_arr if c_arr is not None else np.zeros((1, 1), np.float32)
    scales_args = (g_a, g_b, _is_pow2(g_a), _is_pow2(g_b))
    state = np.empty((m, n), np.uint8)
    x = None
    if code != FIXED_POINT and m * n * k >= BLAS_MIN_WORK:
        # the sum S; for block_fp32, S where its accumulator provably never rounds
        limit = _F64_EXACT if code == EXACT else _F32_EXACT
        fa, (a_nan, a_low, a_max, a_l1) = _fold_values(ops.a_codes, ops.a_scales, ops.fmt_a,
                                                       ops.block_size)  # fmt: skip
        fb, (b_nan, b_low, b_max, b_l1) = _fold_values(ops.b_codes, ops.b_scales, ops.fmt_b,
                                                       ops.block_size)  # fmt: skip
        top = min(float(a_l1.max(initial=0)) * float(b_max.max(initial=0)),
                  float(a_max.max(initial=0)) * float(b_l1.max(initial=0)))  # fmt: skip
        if top < _F32_EXACT:  # every output's partial sums stay float32: half the BLAS time
            fa, fb = fa.astype(np.float32), fb.astype(np.float32)
            limit = _F32_EXACT
        with np.errstate(all="ignore"):  # sums left to the kernel may be anything
            s = fa @ fb.T  # BLAS reads either layout of B.T without a copy
        del fa, fb
        epilogue_blas(s, a_low, b_low, q_ab, a_l1, a_max, b_l1, b_max, limit, *scales_args,
                      a_nan, b_nan, c_in, has_c, *output, out, state)  # fmt: skip
        pairs = np.argwhere(state == KERNEL) if state.any() else np.empty((0, 2), np.int64)
        # the BLAS sums are spent but the fallback's X: the kernel writes its X there too
        x = s if s.dtype == np.float64 or not pairs.size else s.astype(np.float64)
    else:
        pairs = None
    ints = None
    if pairs is None or pairs.size:
        fa_i = _fold_integers(ops.a_codes, ops.a_scales, ops.fmt_a, ops.block_size)
        fb_i = _fold_integers(ops.b_codes, ops.b_scales, ops.fmt_b, ops.block_size)
        ints = (fa_i, fb_i)
        a_nan, a_low, b_nan, b_low = fa_i.nan, fa_i.low, fb_i.nan, fb_i.low
        if x is None:
            x = np.empty((m, n), np.float64)
        # exact: S rounded once to 53 bits; the others: their float32 accumulator
        fmt64 = (53, -1074, 1023) if code == EXACT else (24, -149, 127)
        args = (
            fa_i.n, np.zeros(fa_i.n.shape, np.int8), fa_i.bytes,
            fb_i.n, np.zeros(fb_i.n.shape, np.int8), fb_i.bytes,
            q_ab, ops.block_size, code, width, group, rne, flush,
            np.zeros((1, 1), np.float32), False, *fmt64, x,
        )  # fmt: skip
        if pairs is None:
            matmul_exact_kernel(*args)
            pairs = np.argwhere(np.ones((m, n), np.bool_))
        else:
            matmul_exact_pairs(pairs, *args)
        epilogue_pairs(pairs, x, code != EXACT, a_low, b_low, q_ab, *scales_args, a_nan, b_nan,
                       c_in, has_c, *output, out, state)  # fmt: skip
    if state.any():
        undecided = np.argwhere(state == UNDECIDED)
        if code != EXACT:
            ints = None  # X is the accumulator: exact as it stands
        elif ints is None:
            ints = (
                _fold_integers(ops.a_codes, ops.a_scales, ops.fmt_a, ops.block_size),
                _fold_integers(ops.b_codes, ops.b_scales, ops.fmt_b, ops.block_size),
            )
        assert x is not None
        _exact_fallback(undecided, ops, ints, q_ab, x, c_arr, output, out)
    with np.errstate(over="ignore"):  # every value is out_fmt's already: the cast is exact
        return out.astype(out_fmt, copy=False)


def _is_pow2(g: np.ndarray) -> np.ndarray:
    """Whether each positive finite value is a power of two (from its significand)."""
    return np.frexp(g)[0] == 0.5


def _exact_fallback(where: np.ndarray, ops: NVOperands, ints: tuple[_Folded, _Folded] | None,
                    q_ab: int, x: np.ndarray, c_arr: np.ndarray | None,
                    output: tuple[int, int, int], out: np.ndarray) -> None:  # fmt: skip
    """Round ``X / (G_a * G_b) + C`` exactly, with Python integers, where float64 could not.

    With ``ints`` (the exact model, whose X may be rounded to 53 bits) ``S``
    is recomputed from the folded integers; otherwise ``x`` holds X exactly
    (an accumulator).  X and C are finite here (the epilogue settles NaN and
    Inf).
    """
    bs = ops.block_size
    for i, j in where.tolist():
        if ints is not None:
            fa, fb = ints
            total = 0
            low = int(fa.low[i] + fb.low[j])  # every block's exponent sum is >= low
            for blk in range(fa.bytes.shape[1]):
                lanes = slice(blk * bs, (blk + 1) * bs)
                dot = int(np.dot(fa.n[i, lanes], fb.n[j, lanes]))  # |n| <= 180: no overflow
                if dot:
                    shift = int(fa.bytes[i, blk]) + int(fb.bytes[j, blk]) - 254 - low
                    total += dot << shift
            value = Fraction(total) * Fraction(2) ** (low + q_ab)
        else:
            value = Fraction(float(x[i, j]))
        p = Fraction(float(ops.g_a[i])) * Fraction(float(ops.g_b[j]))
        c = Fraction(float(c_arr[i, j])) if c_arr is not None else Fraction(0)
        out[i, j] = round_fraction(value / p + c, *output)


def round_fraction(v: Fraction, precision: int, min_exponent: int, max_exponent: int) -> float:
    """``v`` rounded once (RNE) to a binary format, as a float; overflow gives Inf.

    An exact zero gives +0; a nonzero value that rounds to zero keeps its sign.
    """
    if v == 0:
        return 0.0
    mag = abs(v)
    lead = mag.numerator.bit_length() - mag.denominator.bit_length()
    if Fraction(2) ** lead > mag:  # now 2**lead <= mag < 2**(lead + 1)
        lead -= 1
    q = max(lead - (precision - 1), min_exponent)
    units = mag / Fraction(2) ** q
    whole = units.numerator // units.denominator
    rest = units - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    r = float(whole * Fraction(2) ** q)  # exact: at most `precision` bits
    if r >= 2.0 ** (max_exponent + 1):
        r = float("inf")
    return -r if v < 0 else r
