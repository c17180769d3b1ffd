"""Structured and random dot-product cases for the GEMM oracle, the golden GEMM files and the tests.

Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mxref.formats import DEFAULT_BLOCK_SIZE, ElementFormat
from mxref.ref.element import apply_sign, decode_element
from mxref.ref.stochastic import random_u32
from mxref.testing.cases import check_level, finite_codes

_E4, _E5, _FP4, _I8 = "mxfp8_e4m3", "mxfp8_e5m2", "mxfp4", "mxint8"


_E2M3, _E3M2 = "mxfp6_e2m3", "mxfp6_e3m2"


_ONE, _TWO, _THREE = (0x7F,), (0x7F, 0x7F), (0x7F, 0x7F, 0x7F)


@dataclass(frozen=True)
class DotCase:
    """One MX dot product ``sum_k A[k] * B[k]`` with per-block scales.

    Attributes
    ----------
    fmt_a, fmt_b : ElementFormat
    a_codes, b_codes : tuple of int
        K codes each.
    a_scales, b_scales : tuple of int
        ``ceil(K / 32)`` E8M0 bytes each.
    area : str
    note : str

    Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
    """

    fmt_a: ElementFormat
    fmt_b: ElementFormat
    a_codes: tuple[int, ...]
    a_scales: tuple[int, ...]
    b_codes: tuple[int, ...]
    b_scales: tuple[int, ...]
    area: str
    note: str

    @property
    def k(self) -> int:
        """The dot product length K."""
        return len(self.a_codes)


def code_of(value: Fraction, fmt: ElementFormat) -> int:
    """The code of an exactly representable signed value (ValueError otherwise).

    Zero gives the +0 code; MXINT8's -2 gives 0x80.

    Spec: OCP MX v1.0 section 5.3 (Tables 2-6).
    """
    sign = 1 if value < 0 else 0
    for code in range(fmt.code_count):
        s, mag = decode_element(code, fmt)
        if isinstance(mag, Fraction) and mag == abs(value) and (s == sign or mag == 0):
            return code
    raise ValueError(f"{value} is not a {fmt.name} value")


def _lanes(k: int, values: dict[int, int]) -> tuple[int, ...]:
    """K codes, zero except at the given lanes."""
    return tuple(values.get(i, 0) for i in range(k))


def dot_cases(formats: Sequence[ElementFormat], seed: int = 0, level: int = 1) -> list[DotCase]:
    """Dot products for the GEMM golden files.

    - every ordered pair of formats with random finite codes and scales near
      2**0, K cycling through 32, 1, 31, 33, 40, 64, 95 (not only multiples of 32);
    - exact cancellation inside a block and across blocks;
    - near cancellation of huge E4M3/E5M2 products around a tiny one, which
      separates the exact, 25-bit and 14-bit accumulation models;
    - float32 accumulator ties across blocks (2**24 + 1 + 1);
    - extreme scales 0x00 and 0xFE (overflow to Inf, underflow, subnormal results);
    - NaN scales (0xFF), Inf and NaN element codes;
    - negative zeros and all-zero operands.

    Parameters
    ----------
    formats : sequence of ElementFormat
        The element formats to pair (every ordered pair is used).
    seed : int
    level : {1, 2}
        Level 2 adds two more random products per pair.

    Spec: OCP MX v1.0 section 6.2 (Dot, DotGeneral).
    """
    check_level(level)
    by_name = {f.name: f for f in formats}
    counter = 0

    def draw() -> int:
        nonlocal counter
        counter += 1
        return random_u32(seed, counter)

    out: list[DotCase] = []
    ks = [32, 1, 31, 33, 40, 64, 95]
    rounds = 2 if level == 1 else 4
    i = 0
    for r in range(rounds):
        for fa in formats:
            fin_a = finite_codes(fa)
            for fb in formats:
                fin_b = finite_codes(fb)
                k = ks[i % len(ks)]
                i += 1
                nb = -(-k // DEFAULT_BLOCK_SIZE)
                out.append(
                    DotCase(
                        fa,
                        fb,
                        tuple(fin_a[draw() % len(fin_a)] for _ in range(k)),
                        tuple(0x7F - 6 + draw() % 13 for _ in range(nb)),
                        tuple(fin_b[draw() % len(fin_b)] for _ in range(k)),
                        tuple(0x7F - 6 + draw() % 13 for _ in range(nb)),
                        "gemm",
                        f"random {fa.name} x {fb.name}, K={k} (round {r})",
                    )
                )
    out += _structured_dots(by_name)
    return out


#: Hand-built dot products: (format_a, format_b, K, A values by lane, B values by lane,
#: A scale bytes, B scale bytes, area, note).  Values are exact element values.
_F = Fraction


# fmt: off
STRUCTURED_DOTS: tuple[tuple[str, str, int, dict[int, Fraction], dict[int, Fraction],
                             tuple[int, ...], tuple[int, ...], str, str], ...] = (
    # exact cancellation
    (_E4, _E4, 32, {0: _F(448), 1: _F(3, 8)}, {0: _F(448), 1: _F(5, 4)}, _ONE, _ONE, "gemm",
     "no cancellation, one block"),
    (_E4, _E4, 32, {0: _F(448), 1: _F(448)}, {0: _F(448), 1: _F(-448)}, _ONE, _ONE, "gemm",
     "exact cancellation in a block"),
    (_E4, _E4, 64, {0: _F(448), 32: _F(448)}, {0: _F(448), 32: _F(-448)}, _TWO, _TWO, "gemm",
     "exact cancellation across blocks"),
    (_FP4, _FP4, 32, {i: _F(6) if i % 2 else _F(-6) for i in range(32)},
     {i: _F(6) for i in range(32)}, _ONE, _ONE, "gemm", "16 x 36 - 16 x 36 in mxfp4"),
    (_I8, _I8, 32, {0: _F(-2), 1: _F(1), 2: _F(127, 64)}, {0: _F(1, 2), 1: _F(1), 2: _F(1, 64)},
     _ONE, _ONE, "gemm", "mxint8 -2 x 1/2 + 1 x 1 cancels, 0x80 decodes as -2"),
    # near cancellation: huge + small - huge, separating exact / 25-bit / 14-bit sums
    (_E4, _E4, 32, {0: _F(448), 1: _F(1, 512), 2: _F(-448)},
     {0: _F(448), 1: _F(1, 512), 2: _F(448)}, _ONE, _ONE, "gemm",
     "e4m3: 448^2 + 2^-18 - 448^2 in one block"),
    (_E4, _E4, 64, {0: _F(448), 1: _F(1, 512), 32: _F(-448)},
     {0: _F(448), 1: _F(1, 512), 32: _F(448)}, _TWO, _TWO, "gemm",
     "e4m3: 448^2 + 2^-18 | -448^2 across blocks"),
    (_E4, _E4, 32, {0: _F(448), 1: _F(3, 4), 2: _F(-448)}, {0: _F(416), 1: _F(5, 8), 2: _F(416)},
     _ONE, _ONE, "gemm", "e4m3: 448*416 + 15/32 - 448*416, 25-bit visible"),
    (_E4, _E4, 32, {0: _F(448), 1: _F(7, 2), 2: _F(-448)}, {0: _F(448), 1: _F(13, 2), 2: _F(448)},
     _ONE, _ONE, "gemm", "e4m3: 448^2 + 22.75 - 448^2, 14-bit visible"),
    (_E5, _E5, 32, {0: _F(57344), 1: _F(1, 1 << 16), 2: _F(-57344)},
     {0: _F(57344), 1: _F(1, 1 << 16), 2: _F(57344)}, _ONE, _ONE, "gemm",
     "e5m2: 57344^2 + 2^-32 - 57344^2"),
    (_E4, _E5, 32, {0: _F(448), 1: _F(1, 8), 2: _F(-448)}, {0: _F(57344), 1: _F(3, 4),
     2: _F(57344)}, _ONE, _ONE, "gemm", "e4m3 x e5m2 near cancellation"),
    (_E5, _FP4, 96, {0: _F(57344), 40: _F(3, 4), 70: _F(-57344)},
     {0: _F(6), 40: _F(1, 2), 70: _F(6)}, _THREE, _THREE, "gemm",
     "e5m2 x fp4 near cancellation over 3 blocks"),
    (_E2M3, _E3M2, 40, {0: _F(15, 2), 33: _F(1, 8)}, {0: _F(28), 33: _F(1, 16)}, _TWO, _TWO,
     "gemm", "e2m3 x e3m2, K = 40"),
    # float32 accumulator ties: 2^24 then +1, +1 (block_fp32 keeps 2^24)
    (_E4, _E4, 96, {0: _F(1), 32: _F(1), 64: _F(1)}, {0: _F(1), 32: _F(1), 64: _F(1)},
     (0x7F + 24, 0x7F, 0x7F), _THREE, "gemm", "2^24 + 1 + 1: float32 accumulator ties"),
    (_E4, _E4, 64, {0: _F(1), 1: _F(1, 512), 32: _F(-1)}, {0: _F(1), 1: _F(1, 512), 32: _F(1)},
     (0x7F + 30, 0x7F + 30), _TWO, "gemm", "2^30 + 2^12 then -2^30"),
    # extreme scales
    (_E4, _E4, 32, {0: _F(1)}, {0: _F(1)}, (0xFE,), (0xFE,), "scale", "2^127 x 2^127 overflows"),
    (_E4, _E4, 32, {0: _F(1)}, {0: _F(1)}, (0x00,), (0x00,), "scale",
     "2^-127 x 2^-127 underflows"),
    (_E4, _E4, 32, {0: _F(448)}, {0: _F(448)}, (0x00,), (0xFE,), "scale", "2^-127 x 2^127, 448^2"),
    (_E4, _E4, 32, {0: _F(448), 1: _F(-448)}, {0: _F(448), 1: _F(448)}, (0xFE,), (0xFE,), "scale",
     "huge products cancelling inside one block"),
    (_E4, _E4, 64, {0: _F(1), 32: _F(-1)}, {0: _F(1), 32: _F(1)}, (0xFE, 0xFE), (0xFE, 0xFE),
     "scale", "2^254 - 2^254 across blocks"),
    (_E4, _E4, 32, {0: _F(1, 512), 1: _F(3, 512)}, {0: _F(1), 1: _F(1)}, (0x02,), _ONE, "scale",
     "float32 subnormal block result 2^-132 (0 under ftz)"),
    (_E4, _E4, 64, {0: _F(1, 512), 32: _F(1)}, {0: _F(1), 32: _F(1)}, (0x02, 0x01), _TWO,
     "scale", "subnormal partial sum 2^-134, then 2^-126: flushed under ftz"),
    (_I8, _FP4, 32, {0: _F(1, 64)}, {0: _F(1, 2)}, (0x00,), (0x00 + 30,), "scale",
     "mxint8 x fp4 at the smallest scales"),
    # NaN scales, zeros
    (_E4, _E4, 32, {}, {}, (0xFF,), _ONE, "special", "NaN scale on A, zero elements"),
    (_FP4, _E5, 64, {0: _F(1)}, {0: _F(1)}, _TWO, (0x7F, 0xFF), "special",
     "NaN scale on B's second block"),
    (_I8, _E2M3, 40, {0: _F(1)}, {0: _F(1)}, (0x7F, 0xFF), _TWO, "special",
     "NaN scale on A's short last block"),
    (_FP4, _I8, 33, {}, {}, (0x7F, 0x00), (0xFE, 0x7F), "special", "all-zero operands, K = 33"),
)


def _structured_dots(by_name: dict[str, ElementFormat]) -> list[DotCase]:
    """The hand-built dot products of :func:`dot_cases` (formats missing are skipped)."""
    out: list[DotCase] = []
    for fa, fb, k, a, b, sa, sb, area, note in STRUCTURED_DOTS:
        if fa not in by_name or fb not in by_name:
            continue
        ea, eb = by_name[fa], by_name[fb]
        a_codes = _lanes(k, {i: code_of(v, ea) for i, v in a.items()})
        b_codes = _lanes(k, {i: code_of(v, eb) for i, v in b.items()})
        out.append(DotCase(ea, eb, a_codes, sa, b_codes, sb, area, note))
    # special codes (Inf, NaN, -0) are codes, not values: built from the format fields
    e5, e4 = by_name.get(_E5), by_name.get(_E4)
    if e5 is not None and e5.inf_code is not None and e5.nan_code is not None:
        inf, nan, one = e5.inf_code, e5.nan_code, code_of(Fraction(1), e5)
        neg_inf = apply_sign(1, inf, e5)
        for k, lanes_a, lanes_b, note in (
            (32, {0: inf}, {}, "e5m2 Inf x 0"),
            (32, {0: inf}, {0: one}, "e5m2 Inf x 1"),
            (64, {0: inf, 32: neg_inf}, {0: one, 32: one}, "+Inf and -Inf across blocks"),
            (32, {0: nan}, {0: one}, "e5m2 NaN code"),
        ):
            scales = (0x7F,) * (k // DEFAULT_BLOCK_SIZE)
            a_codes, b_codes = _lanes(k, lanes_a), _lanes(k, lanes_b)
            out.append(DotCase(e5, e5, a_codes, scales, b_codes, scales, "special", note))
    if e4 is not None and e4.nan_code is not None:
        neg_nan, neg_zero = apply_sign(1, e4.nan_code, e4), apply_sign(1, 0, e4)
        one = code_of(Fraction(1), e4)
        for codes_a, codes_b, note in (
            (_lanes(32, {5: neg_nan}), _lanes(32, {5: one}), "e4m3 NaN code 0xFF"),
            ((neg_zero,) * 32, (0,) * 32, "-0 x +0 products: +0"),
        ):
            out.append(DotCase(e4, e4, codes_a, (0x7F,), codes_b, (0x7F,), "special", note))
    return out
