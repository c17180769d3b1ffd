"""Tests of mxref.tables: derived limits, oracle-decoded code tables, docs/formats.md."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from mxref import FORMATS, get_format, mx_format_names
from mxref.tables import (
    code_values,
    exact_decimal,
    exact_text,
    format_limits,
    main,
    render_formats_markdown,
    render_info,
)

DOCS_FORMATS = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def _format_rows(markdown: str) -> dict[str, list[str]]:
    """Cells of the element-format table, keyed by format name."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] in FORMATS:
            rows[cells[0]] = cells
    return rows


def test_docs_formats_md_is_current():
    assert DOCS_FORMATS.read_text(encoding="utf-8") == render_formats_markdown(), (
        "docs/formats.md is stale: regenerate it with `python -m mxref.tables > docs/formats.md`"
    )


# Spec: OCP MX v1.0 section 5.3, Tables 2-6 (max normal of each element type).
@pytest.mark.parametrize(
    ("name", "max_normal"),
    [
        ("mxfp4", "6"),
        ("mxfp6_e2m3", "7.5"),
        ("mxfp6_e3m2", "28"),
        ("mxfp8_e4m3", "448"),
        ("mxfp8_e5m2", "57344"),
        ("mxint8", "1.984375"),
    ],
)
def test_rendered_table_has_spec_max_normal(name, max_normal):
    rows = _format_rows(render_formats_markdown())
    assert rows[name][6] == max_normal


def test_rendered_markdown_spec_literals():
    text = render_formats_markdown()
    rows = _format_rows(text)
    assert set(rows) == set(mx_format_names())  # docs/formats.md: the MX formats
    assert rows["mxfp8_e4m3"][8] == "0.001953125 (2^-9)"  # min subnormal, S.0000.001
    assert rows["mxfp8_e5m2"][8] == "0.0000152587890625 (2^-16)"
    assert "127/64" in text
    assert "1.984375" in text
    assert "| 0x00 | 2^-127 |" in text
    assert "| 0x7F | 2^0 = 1 |" in text
    assert "| 0xFE | 2^127 |" in text
    assert "| 0xFF | NaN |" in text
    assert "0x80 decodes to -2" in text
    for name in ("mxfp4", "mxfp6_e2m3", "mxfp6_e3m2"):
        assert f"## {name} (" in text
    # the 4-bit table, spec Table 5: 0x0-0x7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6
    assert "| 0x7 | 0.11.1 | 6 | 0xF | 1.11.1 | -6 |" in text
    assert "| 0x0 | 0.00.0 | 0 | 0x8 | 1.00.0 | -0 |" in text


def test_format_limits_are_exact():
    e4m3 = format_limits("mxfp8_e4m3")
    assert e4m3["bits"] == 8
    assert (e4m3["ebits"], e4m3["mbits"], e4m3["bias"]) == (4, 3, 7)
    assert (e4m3["emin"], e4m3["emax"]) == (-6, 8)
    assert e4m3["max_normal"] == Fraction(448)
    assert e4m3["min_normal"] == Fraction(1, 64)
    assert e4m3["min_subnormal"] == Fraction(1, 512)
    assert e4m3["specials"] == "NaN 0x7F, 0xFF; no Inf"
    assert e4m3["bits_per_element"] == Fraction(33, 4)
    e5m2 = format_limits("mxfp8_e5m2")
    assert e5m2["emax"] == 15
    assert e5m2["max_normal"] == Fraction(57344)
    assert e5m2["specials"] == "+Inf 0x7C, -Inf 0xFC; NaN 0x7D-0x7F, 0xFD-0xFF"
    int8 = format_limits("mxint8")
    assert int8["max_normal"] == Fraction(127, 64)
    assert int8["min_subnormal"] == Fraction(1, 64)
    assert int8["sign_encoding"] == "two's complement (no -0)"
    assert format_limits("mxfp4")["sign_encoding"] == "sign-magnitude, sign bit 0x8"


@pytest.mark.parametrize("name", list(FORMATS))
def test_format_limits_match_derived_properties(name):
    fmt = get_format(name, two_level=True)
    limits = format_limits(fmt)
    assert limits["name"] == name
    assert limits["bits"] == 1 + limits["ebits"] + limits["mbits"]
    assert limits["max_normal"] == fmt.max_normal
    assert limits["min_normal"] == fmt.min_normal
    assert limits["min_subnormal"] == fmt.min_subnormal


def test_code_values_mxfp4_spec_table():
    # Spec: OCP MX v1.0 section 5.3.3 (E2M1).
    values = [v for _, v in code_values("mxfp4")]
    assert values == [
        "0", "0.5", "1", "1.5", "2", "3", "4", "6",
        "-0", "-0.5", "-1", "-1.5", "-2", "-3", "-4", "-6",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "code", "text"),
    [
        ("mxfp8_e4m3", 0x7E, "448"),
        ("mxfp8_e4m3", 0x7F, "NaN"),
        ("mxfp8_e4m3", 0xFF, "NaN"),
        ("mxfp8_e4m3", 0x01, "0.001953125"),
        ("mxfp8_e4m3", 0x80, "-0"),
        ("mxfp8_e5m2", 0x7B, "57344"),
        ("mxfp8_e5m2", 0x7C, "+Inf"),
        ("mxfp8_e5m2", 0xFC, "-Inf"),
        ("mxfp8_e5m2", 0x7D, "NaN"),
        ("mxfp6_e2m3", 0x1F, "7.5"),
        ("mxfp6_e3m2", 0x1F, "28"),
        ("mxint8", 0x7F, "1.984375"),
        ("mxint8", 0x80, "-2"),
        ("mxint8", 0x81, "-1.984375"),
        ("mxint8", 0xFF, "-0.015625"),
    ],
)
def test_code_values_spot_checks(name, code, text):
    table = code_values(name)
    assert len(table) == get_format(name).code_count
    assert table[code] == (code, text)


@pytest.mark.parametrize(
    ("q", "text"),
    [
        (Fraction(448), "448"),
        (Fraction(1, 512), "0.001953125"),
        (Fraction(-3, 2), "-1.5"),
        (Fraction(0), "0"),
        (Fraction(1, 5), "0.2"),
    ],
)
def test_exact_decimal(q, text):
    assert exact_decimal(q) == text


def test_exact_decimal_rejects_non_terminating():
    with pytest.raises(ValueError, match="no finite decimal"):
        exact_decimal(Fraction(1, 3))


def test_exact_text_adds_power_of_two():
    assert exact_text(Fraction(1, 512)) == "0.001953125 (2^-9)"
    assert exact_text(Fraction(1)) == "1"
    assert exact_text(Fraction(448)) == "448"


@pytest.mark.parametrize("name", list(FORMATS))
def test_render_info_lists_every_code(name):
    fmt = get_format(name, two_level=True)
    text = render_info(name)
    code_lines = [line for line in text.splitlines() if line.startswith("  0x")]
    assert len(code_lines) == fmt.code_count
    assert text.startswith(f"{name}: ")
    assert render_info(fmt) == text


def test_render_info_content():
    text = render_info("MXFP8_E4M3")
    assert "max normal:               448" in text
    assert "min subnormal:            0.001953125 (2^-9)" in text
    assert "  0x7E  0.1111.110  448" in text
    assert "  0xFF  1.1111.111  NaN" in text
    int8 = render_info("mxint8")
    assert "  0x80  10000000          -2" in int8
    assert "0x80 decodes but is never produced" in int8


def test_render_info_unknown_format():
    with pytest.raises(ValueError, match="unknown format"):
        render_info("mxfp3")


def test_main_prints_markdown(capsys):
    main()
    assert capsys.readouterr().out == render_formats_markdown()
