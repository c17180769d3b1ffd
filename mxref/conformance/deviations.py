"""Known deviations: a backend's declared check ids (or patterns) and reasons, from JSON or TOML.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mxref.io import InputError, PathLike
from mxref.testing.areas import LEGACY_AREA_NAMES

# --------------------------------------------------------------------------
# deviations
# --------------------------------------------------------------------------
_ID_RE = re.compile(r"[A-Za-z0-9_*?\[\]-]+(\.[A-Za-z0-9_*?\[\]-]+)*")


#: The deviations file's table of what the backend implements (mxref.conformance.claims).
CLAIMS_KEY = "claims"


def _flatten(data: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in data.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            _flatten(value, name, out)
        else:
            out[name] = value


def parse_deviations(data: object, source: str = "deviations") -> dict[str, str]:
    """Check and flatten a deviations object (as read from JSON or TOML).

    Parameters
    ----------
    data : object
        A mapping of check id (or glob pattern) to reason.  Keys starting
        with ``_`` are comments; nested mappings join their keys with dots
        (TOML tables).  Ids in an area's old name (``element.*``) are read
        under its current one (``rounding.*``).
    source : str
        Named in error messages.

    Returns
    -------
    dict of str to str
        Id or pattern -> reason.

    Raises
    ------
    InputError
        If ``data`` is not a mapping, a reason is not a non-empty string, or
        an id is not made of dotted words (glob characters allowed).
    """
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: must be an object mapping check ids to reasons")
    flat: dict[str, Any] = {}
    # the top-level "claims" table says what the backend implements (claims.load_claims)
    _flatten({k: v for k, v in data.items() if k != CLAIMS_KEY}, "", flat)
    out = {}
    for key, reason in flat.items():
        area, dot, rest = key.partition(".")
        if dot and area in LEGACY_AREA_NAMES:  # an id from before the one vocabulary
            key = f"{LEGACY_AREA_NAMES[area]}.{rest}"
        if not _ID_RE.fullmatch(key):
            raise InputError(
                f"{source}: {key!r} is not a check id such as 'special.nan_block_codes'"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise InputError(f"{source}: deviation {key!r} needs a reason (a non-empty string)")
        out[key] = reason.strip()
    return out


def load_deviations(path: PathLike) -> dict[str, str]:
    """Read a deviations file: JSON, or TOML when its name ends in ``.toml``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to str
        See :func:`parse_deviations`.

    Raises
    ------
    InputError
        The file is missing, unreadable or malformed.
    """
    p = Path(path)
    return parse_deviations(read_deviations_file(p), str(p))


def read_deviations_file(path: PathLike) -> object:
    """The deviations file's contents: JSON, or TOML when its name ends in ``.toml``.

    Raises
    ------
    InputError
        The file is missing, unreadable or malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the deviations file ({exc})") from None
    try:
        return tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{p}: not valid {p.suffix.lstrip('.').upper() or 'JSON'}: {exc}"
        ) from None


def _declared(check_id: str, deviations: Mapping[str, str]) -> str | None:
    for pattern, reason in deviations.items():
        if fnmatch.fnmatchcase(check_id, pattern):
            return reason
    return None
