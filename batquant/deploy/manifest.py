"""The ``MANIFEST`` of an export: the sha256 of every file, checked file by file on load.

One line per file, ``<sha256>  <name>`` (the format ``sha256sum -c`` reads),
sorted by name; the MANIFEST itself is the one file it does not list.  An
export is complete exactly when its MANIFEST is present: the writer puts it
last, so a folder interrupted mid-write has none.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: The manifest's file name.
MANIFEST = "MANIFEST"


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> Path:
    """Hash every file of ``folder`` (not recursing) into its MANIFEST; return its path."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    lines = [f"{sha256_of(p)}  {p.name}\n" for p in files]
    path = folder / MANIFEST
    path.write_text("".join(lines), encoding="utf-8")
    return path


def verify_manifest(folder: Path) -> list[str]:
    """Check ``folder`` against its MANIFEST; return the names it lists.

    Raises
    ------
    ValueError
        No MANIFEST (an incomplete or foreign folder), a malformed line, or
        files that are missing, changed, or not listed, every one named.
    """
    path = folder / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder}: no {MANIFEST}; not a complete batquant export")
    expected: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name:
            raise ValueError(f"{path}: line {number} is not '<sha256>  <file>': {line!r}")
        expected[name] = digest
    problems = []
    for name, digest in expected.items():
        file = folder / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif sha256_of(file) != digest:
            problems.append(f"{name} does not match its sha256 (changed or corrupt)")
    extra = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and p.name != MANIFEST and p.name not in expected)  # fmt: skip
    problems += [f"{name} is not in the {MANIFEST}" for name in extra]
    if problems:
        raise ValueError(f"{folder}: the export fails its {MANIFEST}: " + "; ".join(problems))
    return list(expected)
