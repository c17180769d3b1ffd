"""What the mxref tests share: calling the ``mxref`` command in-process and judging its errors.

Every problem a user can fix must end the command with status 2 and one
line, ``mxref: error: ...``, naming it; :func:`assert_user_error` is that
rule, in one place.
"""

from __future__ import annotations

import pytest

from mxref.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Call ``main`` in-process; return (status, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *needles: str) -> None:
    """Exit status 2 and exactly one line ``mxref: error: ...`` naming the problem."""
    assert rc == 2
    assert err.startswith("mxref: error: "), err
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
