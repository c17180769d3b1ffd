"""The built wheel, installed outside the checkout, runs and verifies its own golden files.

The wheel is built offline from this checkout and installed with ``--no-deps``
into a fresh venv whose only extra path is the test venv's site-packages
(for numpy and numba).  Commands then run from an unrelated folder, so nothing
can come from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(venv, working folder, environment) of a wheel installed outside the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "--wheel-dir", str(tmp / "dist"), str(ROOT)], tmp, env)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("mxref-*.whl")
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                tmp, env).stdout.strip()  # fmt: skip
    # numpy, numba and the rest from the test venv; a path in a .pth file is not
    # itself a site directory, so the editable install's hook there stays inactive
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "test_venv_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    got = _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
               tmp, env)  # fmt: skip
    assert got.returncode == 0, got.stderr
    work = tmp / "elsewhere"
    work.mkdir()
    return venv, work, env


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    venv, work, env = installed
    out = _run([str(venv / "bin" / "python"), "-c", "import mxref; print(mxref.__file__)"],
               work, env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(venv), out.stdout


def test_installed_golden_verify_uses_the_shipped_vectors(installed):
    venv, work, env = installed
    out = _run([str(venv / "bin" / "mxref"), "golden", "verify"], work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "golden_vectors" in out.stdout
    assert str(venv) in out.stdout  # the installed copy, not the checkout's
    assert "MANIFEST" in out.stdout or "files" in out.stdout


def test_installed_info_and_python_dash_m(installed):
    venv, work, env = installed
    for cmd in ([str(venv / "bin" / "mxref")], [str(venv / "bin" / "python"), "-m", "mxref"]):
        out = _run([*cmd, "info", "mxfp4"], work, env)
        assert out.returncode == 0, out.stderr
        assert "E2M1" in out.stdout


def test_installed_conform_verifies_the_shipped_golden_files(installed):
    venv, work, env = installed
    args = ["conform", "--backend", "mxref:quantize", "--format", "mxfp4", "--level", "1"]
    out = _run([str(venv / "bin" / "mxref"), *args], work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "golden_vectors/ verified" in out.stdout, out.stdout
