"""Tests of the demo (`make demo`): it runs, lists every format, shows a FLOOR/RCEIL split."""

from __future__ import annotations

import re

import numpy as np

from mxref import mx_format_names, quantize
from mxref.demo import (
    constructed_block,
    find_differing_block,
    format_stats,
    main,
    render_comparison,
    sample_tensor,
)

SCALE_LINE = re.compile(r"^  (floor|rceil): scale byte 0x([0-9A-F]{2}) ", re.MULTILINE)


def test_main_prints_every_format_and_a_differing_block(capsys):
    main()
    out = capsys.readouterr().out
    table_rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    for name in mx_format_names():
        assert name in table_rows, f"{name} missing from the demo table"
    found = dict(SCALE_LINE.findall(out))
    assert set(found) == {"floor", "rceil"}
    assert found["floor"] != found["rceil"]


def test_sample_tensor_is_deterministic():
    a, b = sample_tensor(), sample_tensor()
    assert a.dtype == np.float32
    assert a.shape == (64, 256)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_differing_block_really_differs():
    x = sample_tensor()
    c = find_differing_block(x)
    assert c is not None
    assert c.scale_bytes[0] != c.scale_bytes[1]
    # RCEIL never picks a smaller exponent than FLOOR, and differs by at most one
    assert c.scale_bytes[1] - c.scale_bytes[0] == 1
    for codes, rule, byte in zip(c.codes, c.rules, c.scale_bytes, strict=True):
        again = quantize(c.values, "mxfp4", scale_rule=rule)
        assert int(again.scales[0]) == byte
        assert np.array_equal(again.codes, codes)


def test_find_differing_block_none_when_rules_agree():
    x = np.ones((2, 64), np.float32)  # amax 1: both rules give 2^-2
    assert find_differing_block(x) is None


def test_constructed_block_amax_seven():
    c = constructed_block()
    assert c.scale_bytes == (0x7F, 0x80)
    assert c.decoded[0][0] == 6.0  # FLOOR: 7 clamps to max normal
    assert c.decoded[1][0] == 8.0  # RCEIL: 7 / 2 = 3.5 ties to even 4
    text = render_comparison(c)
    assert "scale byte 0x7F" in text
    assert "scale byte 0x80" in text


def test_format_stats_saturation():
    x = np.zeros((1, 32), np.float32)
    x[0, 0], x[0, 1] = 7.0, 1.0
    stats = format_stats(x, "mxfp4")
    assert stats.saturated_blocks_pct == 100.0
    assert stats.max_abs_error == 1.0
    assert format_stats(x, "mxfp4", scale_rule="rceil").saturated_blocks_pct == 0.0
