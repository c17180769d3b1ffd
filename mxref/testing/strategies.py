"""Hypothesis strategies for testing an MX implementation against mxref.

Every strategy here draws inputs at the places where MX implementations go
wrong, and says in its docstring exactly what it promises, so that a user's
property test can rely on it (``tests/mxref/test_strategies.py`` checks each
promise):

==========================  =====================================================
strategy                    draws
==========================  =====================================================
:func:`float32_bits`        raw float32 bit patterns (ints), optionally finite only
:func:`float32_values`      the same as ``np.float32`` values
:func:`forced_amax`         a positive float32 amax at a hard spot: 2**k, its
                            predecessor or successor, a significand above the
                            format's max-normal significand, a bit pattern
:func:`forced_amax_blocks`  a block whose largest magnitude is exactly that amax
:func:`tie_blocks`          a block pinned to scale 2**k whose other lanes are
                            exact midpoints of the element grid under it
:func:`special_blocks`      a block holding NaN or +-Inf among finite values
:func:`mx_arrays`           a random :class:`~mxref.MXArray` (any code, any
                            E8M0 byte including 0x00, 0xFE and 0xFF)
:func:`mx_input`            a 2-D float32 array of hard blocks (rows x n)
:func:`nv_input`            a 2-D float32 NVFP4 tensor of hard blocks of 16
==========================  =====================================================

Example, a user's own test of a quantizer ``my_quantize`` with mxref's
signature against the exact oracle::

    import numpy as np
    from hypothesis import given
    from mxref.ref.array import quantize_array
    from mxref.testing.strategies import forced_amax_blocks
    import mxref

    @given(forced_amax_blocks("mxfp8_e4m3"))
    def test_scale_of_hard_blocks(block):
        x = block.x[None, :]
        got = my_quantize(x, "mxfp8_e4m3")
        codes, scales = quantize_array(x, mxref.get_format("mxfp8_e4m3"))
        assert np.array_equal(got.scales, scales)
        assert np.array_equal(got.codes, codes)

The strategies need ``hypothesis`` (mxref's ``dev`` extra); mxref itself
does not.

Deadlines: the first call of each mxref kernel in a process compiles it
(about a second of numba JIT, less once numba's on-disk cache is warm), which
hypothesis's default 200 ms per-example deadline reports as a flaky test.
Either load the ``"mxref"`` profile this module registers (no deadline:
``settings.load_profile("mxref")``, or ``pytest --hypothesis-profile=mxref``),
or call :func:`warm_up` once before the tests (a session fixture).

Spec: OCP MX v1.0 sections 5.3 (element grids), 5.4.1 (E8M0) and 6.3
(scale and element conversion).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mxref.array import MXArray, scales_shape
from mxref.formats import DEFAULT_BLOCK_SIZE, ElementFormat, get_format, mx_format_names
from mxref.ref.element import decode_element, pow2

__all__ = [
    "AMAX_KINDS",
    "PROFILE",
    "ForcedAmaxBlock",
    "TieBlock",
    "element_value",
    "f32",
    "float32_bits",
    "float32_values",
    "forced_amax",
    "forced_amax_blocks",
    "formats",
    "max_normal_significand",
    "mx_arrays",
    "mx_input",
    "nv_input",
    "special_blocks",
    "tie_blocks",
    "warm_up",
]

#: The hypothesis profile for tests that call mxref: no per-example deadline (a
#: kernel's first call compiles it).
PROFILE = "mxref"
settings.register_profile(PROFILE, deadline=None)


def warm_up(formats: list[str] | None = None) -> None:
    """Compile mxref's codec kernels now: one small call of each codec function per
    format (default: every registered one) and input dtype, so that no test's first
    example pays for the compilation.

    >>> warm_up(["mxfp4"])
    """
    import mxref

    for name in formats if formats is not None else list(mxref.FORMATS):
        for dtype in (np.float32, np.float64):
            x = np.linspace(-3, 3, 64, dtype=dtype).reshape(2, 32)
            encoded = mxref.quantize(x, name)
            mxref.dequantize(encoded)
            mxref.quantize_dequantize(x, name)
            mxref.quantize_dequantize(x, name, out=np.empty_like(x))

#: Every float32 bit pattern (NaNs and infinities included).
F32_BITS = st.integers(0, 2**32 - 1)

#: What :func:`forced_amax` can force the amax to.
AMAX_KINDS = ("pow2", "pred_pow2", "succ_pow2", "above_max_significand", "significand_pattern")

_EXP_MASK = 0x7F800000
_FRAC_BITS = 23


def f32(bits: int) -> np.float32:
    """Return the float32 with these bits.

    >>> f32(0x3F800000)
    np.float32(1.0)
    """
    return np.array([bits], np.uint32).view(np.float32)[0]


def _bits(v: float) -> int:
    return int(np.array([v], np.float32).view(np.uint32)[0])


def _format(fmt: str | ElementFormat) -> ElementFormat:
    return get_format(fmt)


def max_normal_significand(fmt: str | ElementFormat) -> Fraction:
    """The significand of ``fmt``'s max normal, in [1, 2).

    A block whose amax has a larger significand overflows under the spec's
    FLOOR scale and saturates (E2M1: 1.5; E4M3: 1.75; MXINT8: 1.984375).

    >>> max_normal_significand("mxfp4")
    Fraction(3, 2)
    """
    f = _format(fmt)
    return f.max_normal / pow2(f.emax)


def formats() -> st.SearchStrategy[ElementFormat]:
    """Any of mxref's element formats.

    >>> from hypothesis import given
    >>> @given(formats())
    ... def test(fmt): ...
    """
    return st.sampled_from([get_format(n) for n in mx_format_names()])


def float32_bits(*, finite: bool = False, subnormal: bool = True) -> st.SearchStrategy[int]:
    """Raw float32 bit patterns, as ints in ``[0, 2**32)``.

    Parameters
    ----------
    finite : bool
        Leave out NaN and infinity patterns (exponent field 0xFF).
    subnormal : bool
        Allow subnormals (exponent field 0; the zeros are always allowed).

    Examples
    --------
    >>> from hypothesis import given
    >>> @given(float32_bits(finite=True))
    ... def test(bits):
    ...     assert np.isfinite(f32(bits))
    """
    sign = st.sampled_from([0, 0x80000000])
    mantissa = st.integers(0, 0x7FFFFF)
    # uniform patterns reach the exponent fields 0 and 0xFF once in 256 draws;
    # mixing them in explicitly makes subnormals, infinities and NaNs common
    strategy: st.SearchStrategy[int] = st.one_of(
        F32_BITS,
        st.builds(lambda s, m: s | m, sign, mantissa),
        st.builds(lambda s, m: s | _EXP_MASK | m, sign, mantissa),
    )
    if finite:
        strategy = strategy.filter(lambda b: b & _EXP_MASK != _EXP_MASK)
    if not subnormal:
        strategy = strategy.filter(lambda b: b & _EXP_MASK or not b & 0x7FFFFF)
    return strategy


def float32_values(*, finite: bool = False, subnormal: bool = True) -> st.SearchStrategy[Any]:
    """:func:`float32_bits` as ``np.float32`` values (every payload and sign of zero).

    >>> from hypothesis import given
    >>> @given(float32_values())
    ... def test(v):
    ...     assert v.dtype == np.float32
    """
    return float32_bits(finite=finite, subnormal=subnormal).map(f32)


@st.composite
def forced_amax(draw: st.DrawFn, fmt: str | ElementFormat, kind: str | None = None) -> float:
    """A positive, finite float32 amax at a spot where scale computations go wrong.

    Parameters
    ----------
    fmt : str or ElementFormat
        The element format (for ``"above_max_significand"``).
    kind : str, optional
        One of :data:`AMAX_KINDS`; drawn when None:

        ``"pow2"``
            ``2**k`` for ``-149 <= k <= 127`` (subnormal powers included).
        ``"pred_pow2"``
            The float32 just below ``2**k``: ``floor(log2)`` in float32 rounds
            it up to ``k`` (microxcaling's bug; the spec's FLOOR gives k - 1).
        ``"succ_pow2"``
            The float32 just above ``2**k``.
        ``"above_max_significand"``
            A normal float32 whose significand lies strictly between the
            format's max-normal significand and 2: its elements saturate under
            FLOOR, and CEIL/EVEN/RCEIL may pick the next binade.
        ``"significand_pattern"``
            A normal float32 with any 23-bit fraction.

    Returns
    -------
    float
        A Python float that is exactly a float32 (``float(np.float32(v)) == v``).

    Examples
    --------
    >>> from hypothesis import given
    >>> @given(forced_amax("mxfp8_e4m3", kind="pred_pow2"))
    ... def test(amax):
    ...     up = np.nextafter(np.float32(amax), np.float32(np.inf))
    ...     assert np.frexp(up)[0] == 0.5  # a power of two
    """
    f = _format(fmt)
    if kind is None:
        kind = draw(st.sampled_from(AMAX_KINDS))
    if kind == "pow2":
        return float(np.float32(2.0 ** draw(st.integers(-149, 127))))
    if kind == "pred_pow2":
        p = np.float32(2.0 ** draw(st.integers(-147, 127)))  # pred(2**-148) is 2**-149
        return float(np.nextafter(p, np.float32(0)))
    if kind == "succ_pow2":
        p = np.float32(2.0 ** draw(st.integers(-149, 127)))
        return float(np.nextafter(p, np.float32(np.inf)))
    k = draw(st.integers(-126, 127))
    if kind == "above_max_significand":
        sig = max_normal_significand(f)
        # fractions m / 2**23 with 1 + m / 2**23 strictly above sig and below 2
        lo = int(np.floor((sig - 1) * 2**_FRAC_BITS)) + 1
        frac = draw(st.integers(lo, 2**_FRAC_BITS - 1))
        return float(f32(((k + 127) << _FRAC_BITS) | frac))
    if kind == "significand_pattern":
        frac = draw(st.integers(0, 2**_FRAC_BITS - 1))
        return float(f32(((k + 127) << _FRAC_BITS) | frac))
    raise ValueError(f"kind must be one of {', '.join(AMAX_KINDS)}; got {kind!r}")


@st.composite
def element_value(draw: st.DrawFn, fmt: str | ElementFormat, amax: float) -> float:
    """One float32 value no larger than ``amax`` in magnitude, from a mix of hard cases.

    Raw bit patterns, fractions of amax, exact ties of the element grid at
    some binade, signed zeros, float32 subnormals, +-amax and tiny multiples.

    >>> from hypothesis import given
    >>> @given(element_value("mxfp4", 6.0))
    ... def test(v):
    ...     assert abs(v) <= 6.0
    """
    f = _format(fmt)
    kind = draw(st.sampled_from(["bits", "fraction", "tie", "zero", "subnormal", "amax", "tiny"]))
    if kind == "bits":
        v = float(f32(draw(F32_BITS)))
        return v if np.isfinite(v) and abs(v) <= amax else amax * 0.5
    if kind == "fraction":
        return float(np.float32(amax * draw(st.floats(-1, 1, width=32))))
    if kind == "tie":
        # an odd multiple of half a quantum at some binade
        q = float(f.min_subnormal) * (draw(st.integers(1, 2 * f.code_count)) + 0.5)
        v = float(np.float32(q * 2.0 ** draw(st.integers(-130, 120))))
        sign = draw(st.sampled_from([1.0, -1.0]))
        return sign * v if abs(v) <= amax else 0.0
    if kind == "zero":
        return draw(st.sampled_from([0.0, -0.0]))
    if kind == "subnormal":  # a float32 subnormal, at most amax
        top = min((1 << 23) - 1, _bits(amax))
        return float(f32(draw(st.integers(0, top)) | (draw(st.integers(0, 1)) << 31)))
    if kind == "amax":
        return draw(st.sampled_from([amax, -amax]))
    return float(np.float32(amax * 2.0 ** -draw(st.integers(1, 40))))


class ForcedAmaxBlock(NamedTuple):
    """A block from :func:`forced_amax_blocks`.

    Attributes
    ----------
    x : np.ndarray
        float32, shape ``(block_size,)``; ``np.max(np.abs(x)) == amax``.
    amax : float
        The forced amax (exactly a float32).
    kind : str
        Which of :data:`AMAX_KINDS` it is.
    lane : int
        A lane holding ``+-amax``.
    """

    x: np.ndarray
    amax: float
    kind: str
    lane: int


@st.composite
def forced_amax_blocks(
    draw: st.DrawFn,
    fmt: str | ElementFormat,
    *,
    kind: str | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> ForcedAmaxBlock:
    """One block whose largest magnitude is exactly a :func:`forced_amax` value.

    One lane holds ``+-amax``; the others are :func:`element_value` draws,
    all at most amax in magnitude (no NaN or Inf).

    Parameters
    ----------
    fmt : str or ElementFormat
    kind : str, optional
        Passed to :func:`forced_amax`.
    block_size : int

    Returns
    -------
    ForcedAmaxBlock

    Examples
    --------
    >>> from hypothesis import given
    >>> @given(forced_amax_blocks("mxfp4", kind="pred_pow2"))
    ... def test(block):
    ...     assert np.max(np.abs(block.x)) == block.amax
    """
    f = _format(fmt)
    chosen = kind if kind is not None else draw(st.sampled_from(AMAX_KINDS))
    amax = draw(forced_amax(f, chosen))
    lane = draw(st.integers(0, block_size - 1))
    x = np.empty(block_size, np.float32)
    for j in range(block_size):
        x[j] = draw(element_value(f, amax))
    x[lane] = draw(st.sampled_from([amax, -amax]))
    return ForcedAmaxBlock(x, amax, chosen, lane)


class TieBlock(NamedTuple):
    """A block from :func:`tie_blocks`.

    Attributes
    ----------
    x : np.ndarray
        float32, shape ``(block_size,)``.  Lane 0 is the anchor
        ``max_normal * 2**scale_exponent``, which makes the block's scale
        ``2**scale_exponent`` under the FLOOR, EVEN and RCEIL rules.
    scale_exponent : int
        The block's shared exponent (E8M0 byte ``127 + scale_exponent``).
    tie_lanes : tuple of int
        Lanes holding an exact midpoint of two adjacent element values times
        the scale; the others (if any) hold signed zeros.
    """

    x: np.ndarray
    scale_exponent: int
    tie_lanes: tuple[int, ...]


def _midpoints(f: ElementFormat) -> list[Fraction]:
    mags: list[Fraction] = []
    for code in range(f.max_code + 1):
        mag = decode_element(code, f)[1]
        assert isinstance(mag, Fraction)
        mags.append(mag)
    return [(a + b) / 2 for a, b in zip(mags, mags[1:], strict=False)]


def _scale_exponents(f: ElementFormat) -> tuple[int, int]:
    """Shared exponents whose anchor and midpoints are all normal float32 or exact."""
    # midpoint * 2**k must be exact in float32: the smallest midpoint is
    # min_subnormal / 2 and needs k + emin - mbits - 1 >= -149
    lo = max(-127, -149 - (f.emin - f.mbits - 1))
    hi = 127 - f.emax  # the anchor max_normal * 2**k stays below 2**128
    return lo, hi


def tie_blocks(
    fmt: str | ElementFormat,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    scale_exponent: int | None = None,
) -> st.SearchStrategy[TieBlock]:
    """A block whose lanes are exact ties of the element grid under its scale.

    Lane 0 holds ``max_normal * X`` with ``X = 2**k``, which pins the block's
    scale to X (FLOOR, EVEN and RCEIL rules; CEIL picks ``2X``).  Every other
    lane is ``+-(a + b) / 2 * X`` for two adjacent non-negative element values
    ``a < b`` (about one lane in eight is a signed zero instead).  Under RNE each
    tie goes to the neighbour with the even code; ties away from zero goes to ``b``.

    Parameters
    ----------
    fmt : str or ElementFormat
    block_size : int
        At least 2.
    scale_exponent : int, optional
        ``k``; drawn from the range where every tie is exactly a float32.

    Returns
    -------
    SearchStrategy of TieBlock

    Raises
    ------
    ValueError
        ``block_size < 2``, or a ``scale_exponent`` outside the range where
        every tie is exactly a float32 (``[-127, 127 - emax]`` for the MX formats).

    Examples
    --------
    >>> from hypothesis import given
    >>> @given(tie_blocks("mxfp4"))
    ... def test_ties_go_to_even(block):
    ...     mx = mxref.quantize(block.x, "mxfp4")
    ...     assert all(mx.codes[i] % 2 == 0 for i in block.tie_lanes)
    """
    f = _format(fmt)
    if block_size < 2:
        raise ValueError(f"tie blocks need block_size >= 2; got {block_size}")
    lo, hi = _scale_exponents(f)
    if scale_exponent is not None and not lo <= scale_exponent <= hi:
        raise ValueError(
            f"scale_exponent must be in [{lo}, {hi}] for {f.name}; got {scale_exponent}"
        )
    exponents = st.integers(lo, hi) if scale_exponent is None else st.just(scale_exponent)
    return _tie_blocks(f, block_size, exponents, _midpoints(f))


@st.composite
def _tie_blocks(
    draw: st.DrawFn,
    f: ElementFormat,
    block_size: int,
    exponents: st.SearchStrategy[int],
    mids: list[Fraction],
) -> TieBlock:
    k = draw(exponents)
    scale = pow2(k)
    x = np.zeros(block_size, np.float32)
    x[0] = np.float32(float(f.max_normal * scale))
    ties = []
    for j in range(1, block_size):
        if draw(st.integers(0, 7)) == 0:
            x[j] = draw(st.sampled_from([0.0, -0.0]))
            continue
        mid = draw(st.sampled_from(mids)) * scale
        sign = draw(st.sampled_from([1.0, -1.0]))
        x[j] = np.float32(sign * float(mid))
        ties.append(j)
    return TieBlock(x, k, tuple(ties))


@st.composite
def special_blocks(
    draw: st.DrawFn,
    fmt: str | ElementFormat,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> np.ndarray:
    """A float32 block holding at least one NaN or +-Inf among hard finite values.

    NaNs come with any payload and either sign (quiet and signalling bit
    patterns); the finite lanes are :func:`element_value` draws around a
    :func:`forced_amax`.

    Returns
    -------
    np.ndarray
        float32, shape ``(block_size,)``; ``~np.isfinite(x)`` is true somewhere.

    Examples
    --------
    >>> from hypothesis import given
    >>> @given(special_blocks("mxfp8_e4m3"))
    ... def test_nan_blocks_get_the_nan_scale(x):
    ...     assert mxref.quantize(x, "mxfp8_e4m3").scales[0] == 0xFF
    """
    f = _format(fmt)
    amax = draw(forced_amax(f))
    x = np.empty(block_size, np.float32)
    for j in range(block_size):
        x[j] = draw(element_value(f, amax))
    nan = st.builds(
        lambda sign, payload: f32((sign << 31) | _EXP_MASK | payload),
        st.integers(0, 1),
        st.integers(1, (1 << 23) - 1),
    )
    inf = st.sampled_from([np.float32(np.inf), np.float32(-np.inf)])
    lanes = draw(st.lists(st.integers(0, block_size - 1), min_size=1, max_size=block_size))
    for j in lanes:
        x[j] = draw(st.one_of(nan, inf))
    return x


@st.composite
def mx_arrays(
    draw: st.DrawFn,
    fmt: str | ElementFormat | None = None,
    *,
    max_dims: int = 3,
    max_side: int = 16,
    block_sizes: tuple[int, ...] = (DEFAULT_BLOCK_SIZE, 1, 8, 16, 7),
) -> MXArray:
    """A random :class:`~mxref.MXArray`: any code of its format, any E8M0 byte.

    Codes cover every code (NaN and Inf codes of E4M3/E5M2 and MXINT8's 0x80
    included); scale bytes favour the extremes 0x00, 0x01, 0x7F, 0xFE and the
    NaN byte 0xFF.  Shapes have 1 to ``max_dims`` dimensions; the blocked axis
    and block size are drawn, so a last short block occurs.

    Parameters
    ----------
    fmt : str or ElementFormat, optional
        Drawn from every format when None.
    max_dims, max_side : int
        Bounds on the shape.
    block_sizes : tuple of int
        Block sizes to draw from.

    Returns
    -------
    MXArray

    Examples
    --------
    >>> from hypothesis import given
    >>> @given(mx_arrays("mxfp4"))
    ... def test_decode(mx):
    ...     assert mxref.dequantize(mx).shape == mx.shape
    """
    f = draw(formats()) if fmt is None else _format(fmt)
    ndim = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(0, ndim - 1))
    block_size = draw(st.sampled_from(block_sizes))
    codes = draw(arrays(np.uint8, shape, elements=st.integers(0, f.code_count - 1)))
    byte = st.one_of(st.sampled_from([0x00, 0x01, 0x7F, 0xFE, 0xFF]), st.integers(0, 255))
    scales = draw(arrays(np.uint8, scales_shape(shape, axis, block_size), elements=byte))
    return MXArray(codes=codes, scales=scales, fmt=f, axis=axis, block_size=block_size)


@st.composite
def mx_input(
    draw: st.DrawFn, fmt: str | ElementFormat, max_rows: int = 3, max_len: int = 70
) -> np.ndarray:
    """A (rows, n) float32 array of hard blocks, for quantizing along the last axis.

    Each row has a :func:`forced_amax` and :func:`element_value` lanes (so with
    ``n`` up to ``max_len`` a row spans one to three blocks of 32); one array in
    two holds a NaN of either sign or +-Inf somewhere.

    >>> from hypothesis import given
    >>> @given(mx_input("mxfp4"))
    ... def test(x):
    ...     assert x.ndim == 2
    """
    f = _format(fmt)
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, max_len))
    out = np.empty((rows, n), np.float32)
    for r in range(rows):
        amax = draw(forced_amax(f))
        for j in range(n):
            out[r, j] = draw(element_value(f, amax))
    # both NaN signs: a backend that loses or inverts a NaN's sign must meet one
    special = draw(st.sampled_from([None, None, None, None, "nan", "-nan", "inf", "-inf"]))
    if special is not None:
        r, j = draw(st.integers(0, rows - 1)), draw(st.integers(0, n - 1))
        out[r, j] = {"nan": np.nan, "-nan": np.copysign(np.nan, -1.0), "inf": np.inf,
                     "-inf": -np.inf}[special]  # fmt: skip
    return out


#: What an NVFP4 block of :func:`nv_input` is made of.
_NV_KINDS = ("anchored", "e4m3_midpoint", "e2m1_tie", "zero", "tiny", "random")


@st.composite
def nv_input(draw: st.DrawFn, max_rows: int = 3, max_blocks: int = 4) -> np.ndarray:
    """A ``(rows, n)`` float32 NVFP4 tensor of hard blocks of 16, quantized along its rows.

    Promises, each in some draws: a block whose amax is ``2688 * 2**k`` (so
    the tensor scale is ``2**-k`` exactly); blocks whose ``amax / 6`` under
    that scale is an E4M3 midpoint or a float32 beside one; lanes that are
    E2M1 midpoints (``0.25, 0.75, ... 5``) times an exact block scale, of
    either sign; all-zero blocks holding ``-0.0``; tiny blocks beside large
    ones; and, in one tensor in two, a NaN of either sign (a negative NaN
    too) or +-Inf.  ``n`` may end in a short block.

    >>> from hypothesis import given
    >>> @given(nv_input())
    ... def test(x):
    ...     assert x.ndim == 2
    """
    rows = draw(st.integers(1, max_rows))
    blocks = draw(st.integers(1, max_blocks))
    n = blocks * 16 - draw(st.sampled_from([0, 0, 0, 5, 15]))
    k = draw(st.integers(-60, 60))
    anchor = np.float32(np.ldexp(2688.0, k))
    e4m3 = [float(v) for v in _e4m3_values()]
    out = np.zeros((rows, blocks * 16), np.float32)
    for r in range(rows):
        for b in range(blocks):
            kind = "anchored" if (r, b) == (0, 0) else draw(st.sampled_from(_NV_KINDS))
            lanes = out[r, b * 16 : (b + 1) * 16]
            if kind == "anchored":
                lanes[0] = anchor
            elif kind == "e4m3_midpoint":
                i = draw(st.integers(0, len(e4m3) - 2))
                amax = np.float32(np.ldexp(3.0 * (e4m3[i] + e4m3[i + 1]), k))
                step = draw(st.sampled_from([0, 0, 1, -1]))
                lanes[0] = np.nextafter(amax, np.float32(np.inf) if step > 0 else np.float32(0)) \
                    if step else amax  # fmt: skip
            elif kind == "e2m1_tie":
                s = np.ldexp(draw(st.sampled_from(e4m3[1:])), k)
                lanes[0] = np.float32(6 * s)
                for j in range(1, 16):
                    m = draw(st.sampled_from([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]))
                    lanes[j] = np.float32(m * s * draw(st.sampled_from([1.0, -1.0])))
                continue
            elif kind == "zero":
                lanes[:] = np.where(draw(arrays(np.bool_, 16)), np.float32(-0.0), np.float32(0))
                continue
            elif kind == "tiny":
                lanes[0] = np.float32(np.ldexp(draw(st.floats(1.0, 2.0)), k - 40))
            else:
                lanes[0] = np.float32(np.ldexp(draw(st.floats(0.01, 1.0)), k + 11))
            signs = draw(arrays(np.bool_, 15))
            fracs = draw(arrays(np.float64, 15, elements=st.floats(0.0, 1.0)))
            body = np.float64(lanes[0]) * fracs * np.where(signs, -1.0, 1.0)
            lanes[1:] = body.astype(np.float32)
    special = draw(st.sampled_from([None, "nan", "-nan", "inf", "-inf"]))
    if special is not None:
        r, j = draw(st.integers(0, rows - 1)), draw(st.integers(0, n - 1))
        out[r, j] = {"nan": np.nan, "-nan": np.copysign(np.nan, -1.0), "inf": np.inf,
                     "-inf": -np.inf}[special]  # fmt: skip
    return np.ascontiguousarray(out[:, :n])


def _e4m3_values() -> list[Fraction]:
    f = get_format("mxfp8_e4m3")
    out = []
    for code in range(f.max_code + 1):
        _, mag = decode_element(code, f)
        assert isinstance(mag, Fraction)
        out.append(mag)
    return out
