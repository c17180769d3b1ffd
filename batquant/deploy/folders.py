"""Write a folder so that it appears complete or not at all (exports and layer dumps)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_new(out: Path, force: bool, option: str = "--force") -> None:
    """Refuse an existing ``out`` unless ``force``, before any long work starts."""
    if out.exists() and not force:
        raise ValueError(f"{out}: exists; pass force=True ({option}) to replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")


@contextmanager
def folder_in_place(out: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; move it to ``out`` when the block succeeds.

    The temporary folder is removed whatever happens; an existing ``out``
    (with ``force``) is replaced only once the new one is complete.
    """
    check_new(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.replaced")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
