"""Oracle: encode and decode one element exactly.

Values are ``(sign, magnitude)`` pairs: ``sign`` is 0 or 1 and ``magnitude``
is a non-negative :class:`~fractions.Fraction`, or ``math.inf`` / ``math.nan``.
Keeping the sign apart is what lets -0 exist.

Spec: OCP MX v1.0 sections 5.3 (element encodings) and 6.3 (conversion).
"""

from __future__ import annotations

import math
from fractions import Fraction

from mxref.formats import ElementFormat, SignEncoding, Specials
from mxref.policies import Overflow, Rounding

Magnitude = Fraction | float
Value = tuple[int, Magnitude]

#: IEEE 754 interchange formats, described with the same dataclass so the
#: oracle reads inputs and writes outputs through the same exact code path.
BINARY16 = ElementFormat("binary16", ebits=5, mbits=10, bias=15, specials=Specials.IEEE)
BFLOAT16 = ElementFormat("bfloat16", ebits=8, mbits=7, bias=127, specials=Specials.IEEE)
BINARY32 = ElementFormat("binary32", ebits=8, mbits=23, bias=127, specials=Specials.IEEE)
BINARY64 = ElementFormat("binary64", ebits=11, mbits=52, bias=1023, specials=Specials.IEEE)


def pow2(k: int) -> Fraction:
    """Return ``2**k`` exactly, for any integer ``k``."""
    return Fraction(1 << k) if k >= 0 else Fraction(1, 1 << -k)


def floor_log2(q: Fraction) -> int:
    """Return ``floor(log2(q))`` for ``q > 0``, exactly."""
    if q <= 0:
        raise ValueError("floor_log2 needs a positive value")
    e = q.numerator.bit_length() - q.denominator.bit_length()
    # bit lengths give e within one of the answer; settle it by exact comparison
    while pow2(e) > q:
        e -= 1
    while pow2(e + 1) <= q:
        e += 1
    return e


def ceil_log2(q: Fraction) -> int:
    """Return ``ceil(log2(q))`` for ``q > 0``, exactly."""
    e = floor_log2(q)
    return e if pow2(e) == q else e + 1


def decode_element(code: int, fmt: ElementFormat) -> Value:
    """Decode one element code to ``(sign, magnitude)``.

    Parameters
    ----------
    code : int
        The code, ``0 <= code < 2**fmt.bits``.
    fmt : ElementFormat

    Returns
    -------
    tuple
        ``(sign, magnitude)`` with magnitude a Fraction, ``math.inf`` or ``math.nan``.

    Spec: OCP MX v1.0 section 5.3 (Tables 2-6).
    """
    if not 0 <= code < fmt.code_count:
        raise ValueError(f"code {code:#x} out of range for {fmt.name}")
    quantum = pow2(fmt.emin - fmt.mbits)
    if fmt.sign is SignEncoding.TWOS_COMPLEMENT:
        signed = code - fmt.code_count if code >= fmt.code_count // 2 else code
        return (1 if signed < 0 else 0), abs(signed) * quantum
    sign = code >> fmt.magnitude_bits
    mag = code & (fmt.sign_bit - 1)
    biased, mant = mag >> fmt.mbits, mag & ((1 << fmt.mbits) - 1)
    if fmt.specials is Specials.IEEE and biased == (1 << fmt.ebits) - 1:
        return sign, (math.inf if mant == 0 else math.nan)
    if fmt.specials is Specials.NAN_ONLY and mag == (1 << fmt.magnitude_bits) - 1:
        return sign, math.nan
    if biased == 0:
        return sign, mant * quantum
    return sign, ((1 << fmt.mbits) + mant) * pow2(biased - fmt.bias - fmt.mbits)


def round_magnitude(
    magnitude: Fraction, fmt: ElementFormat, rounding: Rounding, random32: int = 0
) -> int:
    """Round a magnitude onto the element grid, with an unbounded exponent.

    Returns the magnitude code ``q + ((t - emin) << mbits)`` where ``t`` is the
    binade (at least ``emin``) and ``q`` the rounded count of quanta
    ``2**(t - mbits)``.  A carry out of the binade gives the next binade's code,
    and a result above ``fmt.max_code`` means overflow; the caller decides.

    Parameters
    ----------
    magnitude : Fraction
        Non-negative, finite.
    fmt : ElementFormat
    rounding : Rounding
    random32 : int
        For stochastic rounding: 32 random bits.  The magnitude rounds away
        from zero iff ``random32 < floor(fraction * 2**32)``, where fraction is
        the discarded part in units of the quantum.

    Spec: OCP MX v1.0 section 6.3 (roundTiesToEven required).
    """
    if magnitude == 0:
        return 0
    t = max(floor_log2(magnitude), fmt.emin)
    scaled = magnitude / pow2(t - fmt.mbits)
    q = math.floor(scaled)
    frac = scaled - q
    half = Fraction(1, 2)
    if rounding is Rounding.RNE:
        up = frac > half or (frac == half and q % 2 == 1)
    elif rounding is Rounding.AWAY:
        up = frac >= half
    elif rounding is Rounding.ZERO:
        up = False
    else:
        up = random32 < math.floor(frac * (1 << 32))
    return q + int(up) + ((t - fmt.emin) << fmt.mbits)


def apply_sign(sign: int, magnitude_code: int, fmt: ElementFormat) -> int:
    """Combine a sign and a magnitude code into a full code.

    Two's complement has no negative zero, so ``(1, 0)`` gives code 0 there.
    """
    if fmt.sign is SignEncoding.TWOS_COMPLEMENT:
        return (-magnitude_code) % fmt.code_count if sign else magnitude_code
    return magnitude_code | (fmt.sign_bit if sign else 0)


def encode_element(
    sign: int,
    magnitude: Fraction,
    fmt: ElementFormat,
    rounding: Rounding = Rounding.RNE,
    overflow: Overflow = Overflow.SATURATE,
    random32: int = 0,
) -> int:
    """Encode one already-scaled finite value into an element code.

    Parameters
    ----------
    sign : int
        0 or 1; kept for zero too (-0 where the format has it).
    magnitude : Fraction
        ``|V_i / X|``, finite and non-negative.
    fmt : ElementFormat
    rounding : Rounding
    overflow : Overflow
        SATURATE clamps to max normal.  IEEE gives the overflow code (NaN for
        E4M3, Inf for E5M2), except under rounding toward zero, which per IEEE
        754 section 7.4 gives max normal; formats without specials saturate.
    random32 : int
        Random bits for stochastic rounding.

    Returns
    -------
    int
        The code.

    Spec: OCP MX v1.0 section 6.3 ("clamped to the max normal, preserving the sign").
    """
    code = round_magnitude(magnitude, fmt, rounding, random32)
    if code > fmt.max_code:
        ieee = overflow is Overflow.IEEE and rounding is not Rounding.ZERO
        code = fmt.overflow_code if ieee and fmt.overflow_code is not None else fmt.max_code
    return apply_sign(sign, code, fmt)


def encode_float(value: Value, fmt: ElementFormat) -> int:
    """Round an exact value once (RNE) to an IEEE format's bit pattern.

    Overflow gives Inf, NaN gives the canonical quiet NaN with the value's sign.
    Used to write outputs: one rounding from the exact value, never two.
    """
    sign, mag = value
    if isinstance(mag, float):
        special = fmt.nan_code if math.isnan(mag) else fmt.inf_code
        assert special is not None
        return apply_sign(sign, special, fmt)
    return encode_element(sign, mag, fmt, Rounding.RNE, Overflow.IEEE)
