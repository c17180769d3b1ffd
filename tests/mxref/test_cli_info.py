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


def test_info_describes_nvfp4_and_its_e4m3_scale(capsys):
    assert main(["info", "nvfp4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nvfp4: E2M1 elements, one E4M3 scale per 16, under a float32 "
                          "tensor scale G")  # fmt: skip
    assert "bits/element with scale:  4.5" in out
    assert "0x7  0.11.1  6" in out
    assert main(["info", "e4m3-scale"]) == 0
    scale = capsys.readouterr().out
    assert "0x01  0.001953125 (2^-9)" in scale
    assert "0x7E  448" in scale
    assert "0x7F  NaN" in scale
    assert "0x80" not in scale  # the sign bit is never set
    assert main(["info", "ue4m3"]) == 0
    assert capsys.readouterr().out == scale
