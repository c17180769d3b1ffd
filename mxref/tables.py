"""Human-readable tables of the MX formats: limits, every code, the E8M0 scale.

Everything printed here is derived, never typed in: the limits come from the
:class:`~mxref.formats.ElementFormat` properties, and every code's value from
the exact oracle :func:`mxref.ref.element.decode_element`.  The text is what
``mxref info FORMAT`` prints and what ``docs/formats.md`` holds; a test checks
that the committed file still equals :func:`render_formats_markdown`.

Run ``python -m mxref.tables`` to print the markdown.

Spec: OCP MX v1.0 section 5 (Tables 1-7).
"""

from __future__ import annotations

import math
from fractions import Fraction

from mxref.formats import (
    FORMATS,
    SCALE_BIAS,
    SCALE_MAX_EXPONENT,
    SCALE_MIN_EXPONENT,
    SCALE_NAN,
    ElementFormat,
    SignEncoding,
    Specials,
    get_format,
    mx_format_names,
)
from mxref.ref.element import decode_element
from mxref.ref.scale import decode_scale

#: formats whose full code table goes into docs/formats.md (the 8-bit ones are
#: 256 lines each; ``mxref info`` prints them)
SMALL_FORMATS = ("mxfp4", "mxfp6_e2m3", "mxfp6_e3m2")

#: E8M0 bytes shown in the scale table
SCALE_EXAMPLES = (0x00, 0x01, 0x7E, 0x7F, 0x80, 0xFE, 0xFF)

Limit = int | str | Fraction


# --- exact number formatting ------------------------------------------------


def exact_decimal(q: Fraction) -> str:
    """Return ``q`` as an exact decimal string, e.g. ``"0.001953125"``.

    Parameters
    ----------
    q : Fraction
        A value whose denominator has no prime factor other than 2 and 5
        (every MX value qualifies: their denominators are powers of two).

    Returns
    -------
    str
        No exponent notation and no trailing zeros: ``"448"``, ``"-0.5"``.

    Raises
    ------
    ValueError
        If ``q`` has no finite decimal expansion.
    """
    den = q.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        raise ValueError(f"{q} has no finite decimal expansion")
    digits = max(twos, fives)
    scaled = abs(q) * 10**digits  # an integer by construction
    assert scaled.denominator == 1
    whole, frac = divmod(scaled.numerator, 10**digits)
    sign = "-" if q < 0 else ""
    if digits == 0 or frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{digits}d}".rstrip("0")


def power_of_two_exponent(q: Fraction) -> int | None:
    """Return ``k`` if ``q == 2**k`` exactly, else None."""
    if q <= 0:
        return None
    num, den = q.numerator, q.denominator
    if den == 1 and num & (num - 1) == 0:
        return num.bit_length() - 1
    if num == 1 and den & (den - 1) == 0:
        return -(den.bit_length() - 1)
    return None


def exact_text(q: Fraction) -> str:
    """Return ``q`` as an exact decimal, followed by ``(2^k)`` when it is a power of two.

    Small powers of two (1, 2, 4, 8) are left alone.  Examples: ``"448"``,
    ``"0.015625 (2^-6)"``, ``"1"``.
    """
    k = power_of_two_exponent(q)
    text = exact_decimal(q)
    return text if k is None or 0 <= k <= 3 else f"{text} (2^{k})"


def value_text(sign: int, magnitude: Fraction | float) -> str:
    """Return a decoded element value as text: ``"-0"``, ``"+Inf"``, ``"-Inf"``, ``"NaN"``.

    NaN is printed without a sign whatever the sign bit (the bit is visible
    in the code itself).
    """
    if isinstance(magnitude, float):
        if math.isnan(magnitude):
            return "NaN"
        return "-Inf" if sign else "+Inf"
    text = exact_decimal(magnitude)
    return f"-{text}" if sign else text


# --- per-format data -------------------------------------------------------


def element_name(fmt: ElementFormat) -> str:
    """Return the element type as the spec names it: ``"E2M1"``, ``"INT8"``."""
    if fmt.sign is SignEncoding.TWOS_COMPLEMENT:
        return f"INT{fmt.bits}"
    return f"E{fmt.ebits}M{fmt.mbits}"


def code_values(fmt: str | ElementFormat) -> list[tuple[int, str]]:
    """Return every code of ``fmt`` with its decoded value as text.

    Parameters
    ----------
    fmt : str or ElementFormat

    Returns
    -------
    list of (int, str)
        ``(code, value)`` for codes ``0 .. 2**bits - 1`` in order; the value
        is an exact decimal, or ``"-0"``, ``"+Inf"``, ``"-Inf"``, ``"NaN"``.
        Decoded by the oracle, so the table cannot disagree with it.

    Spec: OCP MX v1.0 section 5.3 (Tables 2-6).
    """
    f = get_format(fmt, two_level=True)
    return [(code, value_text(*decode_element(code, f))) for code in range(f.code_count)]


def _code_ranges(codes: list[int], width: int) -> str:
    """Return sorted codes as hex ranges: ``"0x7D-0x7F, 0xFD-0xFF"``."""
    parts: list[str] = []
    start = prev = None
    for c in [*sorted(codes), None]:
        if c is not None and prev is not None and c == prev + 1:
            prev = c
            continue
        if start is not None and prev is not None:
            a, b = f"0x{start:0{width}X}", f"0x{prev:0{width}X}"
            parts.append(a if start == prev else f"{a}-{b}")
        start = prev = c
    return ", ".join(parts)


def _hex_width(fmt: ElementFormat) -> int:
    return -(-fmt.bits // 4)


def specials_text(fmt: ElementFormat) -> str:
    """Describe the non-finite codes of ``fmt``, found by decoding every code.

    Spec: OCP MX v1.0 section 5.3 (FP8 follows OFP8; FP6, FP4, INT8 have none).
    """
    width = _hex_width(fmt)
    nan: list[int] = []
    inf: dict[int, int] = {}
    for code in range(fmt.code_count):
        sign, mag = decode_element(code, fmt)
        if isinstance(mag, float):
            if math.isnan(mag):
                nan.append(code)
            else:
                inf[sign] = code
    if not nan and not inf:
        return "none"
    nan_text = f"NaN {_code_ranges(nan, width)}"
    if not inf:
        return f"{nan_text}; no Inf"
    return f"+Inf 0x{inf[0]:0{width}X}, -Inf 0x{inf[1]:0{width}X}; {nan_text}"


def sign_text(fmt: ElementFormat) -> str:
    """Describe the sign encoding of ``fmt``."""
    if fmt.sign is SignEncoding.TWOS_COMPLEMENT:
        return "two's complement (no -0)"
    return f"sign-magnitude, sign bit 0x{fmt.sign_bit:0{_hex_width(fmt)}X}"


def format_limits(fmt: str | ElementFormat) -> dict[str, Limit]:
    """Return the limits of an element format, exactly.

    Parameters
    ----------
    fmt : str or ElementFormat

    Returns
    -------
    dict
        ``name``, ``element`` (``"E4M3"``), ``bits``, ``ebits``, ``mbits``,
        ``bias``, ``emin``, ``emax`` (ints); ``max_normal``, ``min_normal``,
        ``min_subnormal`` and ``bits_per_element`` (storage per element with
        one 8-bit scale per block: 32 elements for MX, 16 for NVFP4) as
        :class:`~fractions.Fraction`;
        ``specials`` and ``sign_encoding`` as text.  Every value comes from
        the format's derived properties or from decoding its codes.

    Spec: OCP MX v1.0 sections 5.2 and 5.3 (Tables 1-6).
    """
    f = get_format(fmt, two_level=True)
    return {
        "name": f.name,
        "element": element_name(f),
        "bits": f.bits,
        "ebits": f.ebits,
        "mbits": f.mbits,
        "bias": f.bias,
        "emin": f.emin,
        "emax": f.emax,
        "max_normal": f.max_normal,
        "min_normal": f.min_normal,
        "min_subnormal": f.min_subnormal,
        "specials": specials_text(f),
        "sign_encoding": sign_text(f),
        "bits_per_element": Fraction(f.bits * f.block_size + 8, f.block_size),
    }


def code_fields(code: int, fmt: ElementFormat) -> str:
    """Return the code's bits split into fields: ``"0.1111.110"`` (S.E.M).

    Two's complement codes are printed as their plain bits, since their high
    bit is not a sign bit over a magnitude.
    """
    bits = format(code, f"0{fmt.bits}b")
    if fmt.sign is SignEncoding.TWOS_COMPLEMENT:
        return bits
    e_end = 1 + fmt.ebits
    fields = [bits[0], bits[1:e_end]]
    if fmt.mbits:
        fields.append(bits[e_end:])
    return ".".join(fields)


def _field_header(fmt: ElementFormat) -> str:
    if fmt.sign is SignEncoding.TWOS_COMPLEMENT:
        return "two's complement"
    return ".".join(["S", "E" * fmt.ebits] + (["M" * fmt.mbits] if fmt.mbits else []))


# --- mxref info FORMAT ----------------------------------------------------

_LIMIT_LABELS = (
    ("element", "element type"),
    ("bits", "bits per code"),
    ("ebits", "exponent bits"),
    ("mbits", "mantissa bits"),
    ("bias", "exponent bias"),
    ("emin", "emin"),
    ("emax", "emax (emax_elem)"),
    ("max_normal", "max normal"),
    ("min_normal", "min normal"),
    ("min_subnormal", "min subnormal"),
    ("specials", "specials"),
    ("sign_encoding", "sign"),
    ("bits_per_element", "bits/element with scale"),
)


def _limit_text(value: Limit) -> str:
    return exact_text(value) if isinstance(value, Fraction) else str(value)


def render_info(fmt: str | ElementFormat) -> str:
    """Return what ``mxref info FORMAT`` prints: the limits, then every code.

    Parameters
    ----------
    fmt : str or ElementFormat

    Returns
    -------
    str
        Plain text ending in a newline: one ``label: value`` line per limit,
        then one line per code with its hex, its bit fields and its exact value.

    Spec: OCP MX v1.0 section 5.3.
    """
    f = get_format(fmt, two_level=True)
    limits = format_limits(f)
    width = _hex_width(f)
    if f.two_level:
        lines = [f"{f.name}: {limits['element']} elements, one E4M3 scale per {f.block_size}, "
                 "under a float32 tensor scale G (docs/semantics.md section 8c)"]  # fmt: skip
    else:
        lines = [f"{f.name}: {limits['element']} elements, one E8M0 scale per {f.block_size}"]
    for key, label in _LIMIT_LABELS:
        lines.append(f"  {label + ':':<26}{_limit_text(limits[key])}")
    if f.sign is SignEncoding.TWOS_COMPLEMENT:
        lines.append(
            f"  note: value = code as a signed integer x 2^{f.emin - f.mbits} "
            f"(an E{f.ebits}M{f.mbits} grid, bias {f.bias}); "
            f"0x{f.code_count // 2:02X} decodes but is never produced"
        )
    lines.append("")
    decoded = "value x s_b / G (s_b the E4M3 block scale: mxref info e4m3-scale), rounded once" \
        if f.two_level else "value x 2^(scale byte - 127)"  # fmt: skip
    lines.append(f"codes ({f.code_count}); a decoded element is {decoded}")
    header = _field_header(f)
    field_width = max(len(header), f.bits + 2)
    lines.append(f"  {'code':<{width + 4}}{header:<{field_width + 2}}value")
    for code, text in code_values(f):
        lines.append(f"  0x{code:0{width}X}  {code_fields(code, f):<{field_width + 2}}{text}")
    return "\n".join(lines) + "\n"


#: Names ``mxref info`` accepts for the E8M0 scale format (ml_dtypes/torch name included).
SCALE_FORMAT_NAMES = ("e8m0", "float8_e8m0fnu", "scale")


def render_scale_info() -> str:
    """Return what ``mxref info e8m0`` prints: the E8M0 scale format and every byte.

    Spec: OCP MX v1.0 section 5.4.1, Table 7.
    """
    lines = [
        f"e8m0: the shared block scale, an unsigned 8-bit exponent, bias {SCALE_BIAS}",
        f"  {'value:':<26}2^(byte - {SCALE_BIAS}); no sign, no mantissa, no zero, no infinity",
        f"  {'smallest (0x00):':<26}2^{SCALE_MIN_EXPONENT}",
        f"  {'largest (0xFE):':<26}2^{SCALE_MAX_EXPONENT}",
        f"  {'NaN:':<26}0x{SCALE_NAN:02X} (every element of the block decodes to NaN)",
        f"  {'also known as:':<26}float8_e8m0fnu (ml_dtypes, torch)",
        "",
        "bytes (256)",
        "  byte  value",
    ]
    for byte in range(256):
        scale = decode_scale(byte)
        exponent = byte - SCALE_BIAS
        text = "NaN" if scale is None else f"2^{exponent}"
        if scale is not None and abs(exponent) <= 8:  # short enough to print exactly
            text += f" = {exact_decimal(scale)}"
        lines.append(f"  0x{byte:02X}  {text}")
    return "\n".join(lines) + "\n"


#: Names ``mxref info`` accepts for NVFP4's block scale.
E4M3_SCALE_NAMES = ("e4m3-scale", "e4m3_scale", "ue4m3")


def render_e4m3_scale_info() -> str:
    """Return what ``mxref info e4m3-scale`` prints: NVFP4's block scale and every byte.

    The bytes are OFP8 E4M3 codes with the sign bit clear; mxref rounds a
    block's ``amax / 6 * G`` to them once, to nearest even, saturating at 448.
    """
    fmt = get_format("nvfp4", two_level=True).scale_format
    assert fmt is not None
    assert fmt.nan_code is not None
    lines = [
        "e4m3-scale: NVFP4's block scale, an OFP8 E4M3 code without its sign",
        f"  {'value:':<26}the E4M3 value of the byte (bias {fmt.bias}, subnormals below 2^-6)",
        f"  {'smallest nonzero (0x01):':<26}{exact_text(fmt.min_subnormal)}",
        f"  {'largest (0x7E):':<26}{exact_text(fmt.max_normal)}",
        f"  {'zero (0x00):':<26}a block whose scale rounds to 0: every code is zero",
        f"  {'NaN:':<26}0x{fmt.nan_code:02X} (a block holding NaN or Inf; decodes to NaN)",
        f"  {'rounding:':<26}amax / 6 x G rounded once to nearest even, saturating at 448",
        f"  {'also known as:':<26}ue4m3, float8_e4m3fn with the sign clear (torch)",
        "",
        f"bytes ({fmt.nan_code + 1})",
        "  byte  value",
    ]
    for byte in range(fmt.nan_code + 1):
        _, mag = decode_element(byte, fmt)
        text = "NaN" if not isinstance(mag, Fraction) else exact_text(mag)
        lines.append(f"  0x{byte:02X}  {text}")
    return "\n".join(lines) + "\n"


# --- docs/formats.md ------------------------------------------------------


def _scale_rows() -> list[str]:
    rows = []
    notes = {
        0x00: "smallest; an fp32 subnormal (bits 0x00400000)",
        0x7F: "one",
        0xFE: "largest",
        0xFF: "every element of the block decodes to NaN",
    }
    for byte in SCALE_EXAMPLES:
        scale = decode_scale(byte)
        if scale is None:
            value = "NaN"
        elif abs(byte - SCALE_BIAS) <= 3:
            value = f"2^{byte - SCALE_BIAS} = {exact_decimal(scale)}"
        else:
            value = f"2^{byte - SCALE_BIAS}"
        rows.append(f"| 0x{byte:02X} | {value} | {notes.get(byte, '')} |")
    return rows


def _code_table(fmt: ElementFormat) -> list[str]:
    """Markdown rows pairing each positive code with its negative twin."""
    width = _hex_width(fmt)
    values = dict(code_values(fmt))
    header = _field_header(fmt)
    lines = [
        f"| code | {header} | value | code | {header} | value |",
        "|---|---|---|---|---|---|",
    ]
    for code in range(fmt.sign_bit):
        neg = code | fmt.sign_bit
        lines.append(
            f"| 0x{code:0{width}X} | {code_fields(code, fmt)} | {values[code]} "
            f"| 0x{neg:0{width}X} | {code_fields(neg, fmt)} | {values[neg]} |"
        )
    return lines


def render_formats_markdown() -> str:
    """Return the content of ``docs/formats.md``.

    A table of every element format's limits, the E8M0 scale, the full
    code-to-value tables of the 4-bit and 6-bit formats, and how MXINT8 is
    described.  Every figure is derived from :data:`mxref.formats.FORMATS`
    and the oracle.

    Returns
    -------
    str
        Markdown ending in a newline.

    Spec: OCP MX v1.0 section 5 (Tables 1-7).
    """
    out = [
        "# MX formats",
        "",
        "Generated by `python -m mxref.tables` from `mxref/formats.py` and the exact",
        "oracle (`mxref/ref/element.py`); `tests/mxref/test_tables.py` fails when this file",
        "is stale.  Values are exact: decimals are printed in full, with the power of",
        "two beside them where the value is one.",
        "",
        "Every concrete MX format is a block of 32 elements sharing one E8M0 scale",
        "(OCP MX v1.0 section 5.2, Table 1).  A decoded element is `X * P_i`: the",
        "scale `X = 2^(byte - 127)` times the element value `P_i` listed below",
        "(section 5.1).",
        "",
        "## Element formats",
        "",
        "| format | element | bits | bias | emin | emax | max normal | min normal "
        "| min subnormal | specials | bits/element with scale |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in (get_format(n) for n in mx_format_names()):
        lim = format_limits(f)
        cells = [
            f.name,
            str(lim["element"]),
            str(lim["bits"]),
            str(lim["bias"]),
            str(lim["emin"]),
            str(lim["emax"]),
            *(_limit_text(lim[k]) for k in ("max_normal", "min_normal", "min_subnormal")),
            str(lim["specials"]),
            _limit_text(lim["bits_per_element"]),
        ]
        if f.sign is SignEncoding.TWOS_COMPLEMENT:
            cells[7] += " (E1M6 view)"
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "`emax` is the spec's `emax_elem`, the exponent of the largest normal number;",
        "the FLOOR scale rule subtracts it from `floor(log2(amax))`.  Overflow under",
        '`overflow="ieee"` goes to the codes listed under specials (E4M3: NaN,',
        "E5M2: Inf); formats without specials always saturate.",
        "",
        "## MXINT8",
        "",
    ]
    int8 = next(f for f in FORMATS.values() if f.sign is SignEncoding.TWOS_COMPLEMENT)
    top = int8.code_count // 2
    out += [
        f"`{int8.name}` is described as an E{int8.ebits}M{int8.mbits} magnitude grid with "
        f"bias {int8.bias} and a two's",
        "complement sign.  With one exponent bit, biased exponent 0 gives `k * 2^-6`",
        "(k < 64) and biased exponent 1 gives `1 + k * 2^-6`, so the magnitude codes",
        "0..127 are exactly the integers 0..127 times 2^-6: the spec's \"two's",
        'complement with an implicit scale of 2^-6" (section 5.3.4).  The largest',
        f"magnitude is {exact_decimal(int8.max_normal)} (127/64, code 0x7F; -127/64 is "
        f"0x{int8.code_count - 127:02X}).",
        f"Code 0x{top:02X} decodes to {value_text(*decode_element(top, int8))} but is never "
        "produced: the encoder",
        "clamps to +-127/64, as microxcaling does.  There is no -0: a negative zero",
        "input gives 0x00.",
        "",
        "## E8M0 scale",
        "",
        "Unsigned, 8 exponent bits, bias 127, no mantissa (section 5.4.1, Table 7).",
        "There is no zero, no infinity and no sign.",
        "",
        "| byte | scale | note |",
        "|---|---|---|",
        *_scale_rows(),
        "",
        f"Byte 0x{SCALE_NAN:02X} is the only special.  mxref writes 0x00 for an all-zero block",
        "(any scale decodes its zeros to zero) and 0xFF for a block holding NaN or Inf.",
    ]
    for name in SMALL_FORMATS:
        f = FORMATS[name]
        specials = "no NaN and no Inf" if f.specials is Specials.NONE else specials_text(f)
        out += [
            "",
            f"## {f.name} ({element_name(f)}) codes",
            "",
            f"{f.code_count} codes, bias {f.bias}, {specials}.",
            "",
            *_code_table(f),
        ]
    return "\n".join(out) + "\n"


def main() -> None:
    """Print :func:`render_formats_markdown` (the content of ``docs/formats.md``)."""
    print(render_formats_markdown(), end="")


if __name__ == "__main__":
    main()
