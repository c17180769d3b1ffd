"""``mxref info``: element formats by any of their names, and the E8M0 scale format."""

from __future__ import annotations

from mxref.cli import main


def test_info_describes_the_scale_format_and_accepts_other_libraries_names(capsys):
    assert main(["info", "e8m0"]) == 0
    out = capsys.readouterr().out
    assert "0x7F  2^0 = 1" in out
    assert "0xFF  NaN" in out
    assert "0x00  2^-127" in out
    assert main(["info", "float8_e8m0fnu"]) == 0
    assert capsys.readouterr().out == out
    assert main(["info", "float4_e2m1fn"]) == 0
    assert capsys.readouterr().out.startswith("mxfp4: E2M1 elements")
