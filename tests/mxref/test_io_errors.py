"""Errors name the user's own files and options, never a temporary or an API keyword on the CLI."""

from __future__ import annotations

import numpy as np
import pytest

import mxref
from mxref import io
from mxref.cli import main
from mxref.io import InputError


def test_a_failed_write_names_the_target_not_its_temporary(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(io.os, "open", refuse)
    target = tmp_path / "x.npy"
    with pytest.raises(InputError) as info:
        io.write_array(target, np.zeros(3, np.float32))
    message = str(info.value)
    assert message.startswith(f"{target}: cannot write it: Permission denied")
    assert ".tmp" not in message
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_existing_outputs_are_refused_in_the_callers_words(tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.ones((2, 32), np.float32))
    out = tmp_path / "x.npz"
    out.write_bytes(b"keep me")
    assert main(["encode", "--format", "mxfp4", str(x), str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists; pass --force to replace it" in err
    assert "force=True" not in err
    with pytest.raises(InputError, match="pass force=True to replace it"):
        mxref.save(out, mxref.quantize(np.ones(32, np.float32), "mxfp4"))
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize(("shape", "block_size", "warning"), [
    ((2, 40), 32, "the blocked axis has 40 elements, not a multiple of --block-size 32: the "
                  "last block of each row has 8"),
    ((2, 16), 32, "--block-size 32 exceeds the blocked axis (16 elements)"),
    ((2, 64), 32, None),
])  # fmt: skip
def test_encode_warns_when_the_axis_is_not_whole_blocks(tmp_path, capsys, shape, block_size,
                                                        warning):  # fmt: skip
    x = np.ones(shape, np.float32)
    np.save(tmp_path / "x.npy", x)
    argv = ["encode", "--format", "mxfp4", "--block-size", str(block_size),
            str(tmp_path / "x.npy"), str(tmp_path / "x.npz")]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    if warning is None:
        assert err == ""
    else:
        assert f"mxref: warning: {warning}" in err
    got = mxref.load(tmp_path / "x.npz")  # the result is the documented one all the same
    want = mxref.quantize(x, "mxfp4", block_size=block_size)
    assert got.codes.tobytes() == want.codes.tobytes()
    assert got.scales.tobytes() == want.scales.tobytes()
