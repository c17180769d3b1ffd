"""The MANIFEST: each golden file's SHA-256, written with the files and checked before any case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mxref.conformance.golden.format import GENERATOR, MANIFEST, SEED
from mxref.io import InputError


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_text(entries: Sequence[tuple[str, str]]) -> str:
    lines = [
        "# mxref golden MANIFEST: sha256 of every golden file (sha256sum format)",
        f"# generator: {GENERATOR}",
        f"# seed: {SEED}",
    ]
    lines += [f"{digest}  {name}" for name, digest in sorted(entries)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Manifest:
    """A parsed MANIFEST: generator, seed and ``{file name: sha256}``."""

    generator: str | None
    seed: int | None
    files: dict[str, str]


def read_manifest(directory: str | Path) -> Manifest:
    """Read ``directory/MANIFEST``.

    Raises
    ------
    InputError
        If it is missing or a line is malformed, naming the line.
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise InputError(f"{path}: no MANIFEST")
    generator = seed = None
    files: dict[str, str] = {}
    for number, raw in enumerate(
        path.read_text(encoding="ascii", errors="replace").splitlines(), 1
    ):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep and key == "generator":
                generator = value.strip()
            elif sep and key == "seed":
                try:
                    seed = int(value)
                except ValueError:
                    raise InputError(
                        f"{path}: line {number}: seed {value!r} is not an integer"
                    ) from None
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise InputError(f"{path}: line {number}: expected 'sha256  filename'")
        files[name.strip()] = digest
    return Manifest(generator, seed, files)


def _write_manifest_entry(directory: Path, name: str) -> None:
    manifest = read_manifest(directory)
    files = dict(manifest.files)
    files[name] = sha256_file(directory / name)
    (directory / MANIFEST).write_bytes(_manifest_text(list(files.items())).encode("ascii"))
