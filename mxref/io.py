"""Reading input tensors and writing and reading MX results, with clear errors.

Inputs (:func:`read_tensor`)
    ``.npy`` (loaded without pickle), ``.safetensors`` (parsed here, so mxref
    does not depend on the safetensors package) and raw little-endian ``.bin``
    (its dtype and shape given by the caller).

MX results (:func:`write_mx`, :func:`read_mx`)
    ``.npz`` (:data:`NPZ_VERSION`)
        Keys ``codes`` (uint8, one code per element, the input's shape),
        ``scales`` (uint8 E8M0 bytes), ``version``, ``format``, ``axis``,
        ``block_size``, ``shape``, ``scale_rule``, ``rounding``, ``overflow``
        and, after stochastic rounding, ``seed``.
    packed ``.bin`` (:data:`PACKED_VERSION`)
        ``NAME.bin`` holds the packed element codes from
        :func:`mxref.packing.pack`, ``NAME.scales.bin`` the scale bytes, and the
        JSON sidecar ``NAME.json`` everything needed to read them back (see
        :func:`write_packed`).

Every problem the user can fix raises :class:`InputError` with a message that
names the file and, where there is one, the field.  No writer replaces an
existing file unless it is given ``force=True``, and every writer writes to a
temporary file first, so that a failed write never leaves half a file behind.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mxref.dtypes import BFLOAT16
from mxref.inputs import ACCEPTED_DTYPES, ACCEPTED_NAMES

PathLike = str | os.PathLike[str]


#: dtype names accepted for raw input and decoded output, all little-endian.
DTYPES: dict[str, np.dtype[Any]] = {
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}


#: safetensors dtype tags mxref reads; the spec stores every tensor little-endian.
_SAFETENSORS_DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}


if BFLOAT16 is not None:  # bfloat16 needs ml_dtypes for a numpy dtype
    DTYPES["bfloat16"] = BFLOAT16
    _SAFETENSORS_DTYPES["BF16"] = BFLOAT16


#: The safetensors reference implementation refuses headers above 100 MB; so do
#: we, so that a corrupt length field cannot make us allocate gigabytes.
_SAFETENSORS_MAX_HEADER = 100_000_000


class InputError(ValueError):
    """A problem with a file or argument that the user can fix.

    A ``ValueError`` subclass, so that callers catching ``ValueError`` from
    the rest of mxref also catch this.
    """


# --------------------------------------------------------------------------
# argument parsing shared with the CLI
# --------------------------------------------------------------------------
def parse_dtype(name: object) -> np.dtype[Any]:
    """Return the little-endian numpy dtype called ``name``.

    Parameters
    ----------
    name : str or dtype-like
        ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``
        (case-insensitive), or the dtype itself.

    Returns
    -------
    np.dtype

    Raises
    ------
    InputError
        For any other name, listing the accepted ones.
    """
    if isinstance(name, str):
        key = name.strip().lower()
        if key in DTYPES:
            return DTYPES[key]
    else:
        try:
            dt = np.dtype(name)  # type: ignore[call-overload]
        except TypeError:
            dt = None
        if dt is not None:
            for known in DTYPES.values():
                if dt == known:
                    return known
    raise InputError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")


def parse_shape(shape: object) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of non-negative ints.

    Parameters
    ----------
    shape : str or sequence of int
        ``"4,64"`` (comma-separated, as the CLI takes it) or ``(4, 64)``.

    Returns
    -------
    tuple of int

    Raises
    ------
    InputError
        For anything that is not a list of one or more non-negative integers.
    """
    if isinstance(shape, str):
        parts = [p.strip() for p in shape.split(",")]
        # a trailing comma, as in Python's "(256,)", is harmless
        if len(parts) > 1 and parts[-1] == "":
            parts.pop()
        if parts and all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
        raise InputError(
            f"bad shape {shape!r}: expected comma-separated non-negative integers, e.g. 4,64"
        )
    if not isinstance(shape, Iterable):
        raise InputError(f"bad shape {shape!r}: expected a sequence of integers")
    dims = tuple(shape)
    if not dims or not all(_is_int(d) and d >= 0 for d in dims):
        raise InputError(f"bad shape {shape!r}: expected one or more non-negative integers")
    return tuple(int(d) for d in dims)


def _is_int(value: object) -> bool:
    # bool is an int subclass, and True is no dimension or offset
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


# --------------------------------------------------------------------------
# input tensors
# --------------------------------------------------------------------------
def read_tensor(
    path: PathLike,
    *,
    dtype: object = None,
    shape: object = None,
    tensor: str | None = None,
) -> np.ndarray:
    """Read one float tensor from a ``.npy``, ``.safetensors`` or raw ``.bin`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its suffix picks the reader.
    dtype : str or dtype, optional
        Required for raw ``.bin`` (``float16``, ``bfloat16``, ``float32`` or
        ``float64``, little-endian).  For ``.npy`` and ``.safetensors`` it is
        checked against the file, except that ``bfloat16`` reads a ``.npy``
        whose dtype is 2-byte void, which is how numpy saves bfloat16.
    shape : str or sequence of int, optional
        Required for raw ``.bin``; checked against ``.npy`` and ``.safetensors``.
    tensor : str, optional
        Which tensor of a ``.safetensors`` file to read; needed when the file
        holds more than one.

    Returns
    -------
    np.ndarray
        float16, bfloat16, float32 or float64 in native byte order, at least 1-d.

    Raises
    ------
    InputError
        Missing, truncated or corrupt file, unsupported dtype, size that does
        not match ``dtype`` and ``shape``, unknown or ambiguous tensor name.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".safetensors", ".bin"):
        raise InputError(
            f"{p}: unsupported input file type {p.suffix or '(none)'!r}; "
            "expected .npy, .safetensors or raw .bin"
        )
    _check_readable(p)
    want_dtype = None if dtype is None else parse_dtype(dtype)
    want_shape = None if shape is None else parse_shape(shape)
    if tensor is not None and suffix != ".safetensors":
        raise InputError(f"{p}: a tensor name only applies to .safetensors input")
    if suffix == ".npy":
        arr = _read_npy(p, want_dtype)
    elif suffix == ".safetensors":
        arr = _read_safetensors(p, tensor)
    else:
        if want_dtype is None or want_shape is None:
            raise InputError(
                f"{p}: raw .bin input needs both a dtype and a shape (--dtype, --shape)"
            )
        return _check_float_array(p, _read_raw(p, want_dtype, want_shape))
    if want_dtype is not None and arr.dtype != want_dtype:
        raise InputError(
            f"{p}: holds {_dtype_name(arr.dtype)} values, not {_dtype_name(want_dtype)}"
        )
    if want_shape is not None and arr.shape != want_shape:
        raise InputError(f"{p}: has shape {_fmt_shape(arr.shape)}, not {_fmt_shape(want_shape)}")
    return _check_float_array(p, arr)


def _check_readable(p: Path) -> None:
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")


def _dtype_name(dt: np.dtype[Any]) -> str:
    for name, known in DTYPES.items():
        if dt == known:
            return name
    return str(dt)


def _fmt_shape(shape: Iterable[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _check_float_array(p: Path, arr: np.ndarray) -> np.ndarray:
    if arr.dtype not in ACCEPTED_DTYPES and arr.dtype.newbyteorder("=") in ACCEPTED_DTYPES:
        # big-endian .npy: same values, and the kernels want native order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype not in ACCEPTED_DTYPES:
        raise InputError(f"{p}: holds {arr.dtype} values; mxref reads {ACCEPTED_NAMES}")
    if arr.ndim == 0:
        raise InputError(f"{p}: holds a scalar; mxref needs an array of at least one dimension")
    return arr


def _read_npy(p: Path, want_dtype: np.dtype[Any] | None) -> np.ndarray:
    try:
        # our own handle: np.load leaks the one it opens when parsing fails
        with p.open("rb") as f:
            loaded = np.load(f, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        # numpy reports truncation and corruption as ValueError/EOFError with
        # messages that do not name the file; say what it means for the user
        raise InputError(f"{p}: not a readable .npy file (truncated or corrupt: {exc})") from None
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise InputError(f"{p}: is a .npz archive, not a .npy array")
    bf16 = DTYPES.get("bfloat16")
    if (
        bf16 is not None
        and want_dtype == bf16
        and loaded.dtype.kind == "V"
        and loaded.dtype.itemsize == 2
    ):
        return loaded.view(bf16)
    if loaded.dtype.kind == "V" and loaded.dtype.itemsize == 2:
        raise InputError(
            f"{p}: holds 2-byte void values, which is how numpy saves bfloat16; "
            "pass dtype bfloat16 (--dtype bfloat16) to read them as bfloat16"
        )
    return loaded


def _read_safetensors(p: Path, name: str | None) -> np.ndarray:
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InputError(f"{p}: truncated .safetensors file ({size} bytes, no header length)")
        n = int.from_bytes(head, "little")
        if n > _SAFETENSORS_MAX_HEADER:
            raise InputError(f"{p}: corrupt .safetensors file (header length {n} is implausible)")
        if 8 + n > size:
            raise InputError(
                f"{p}: truncated .safetensors file (header needs {8 + n} bytes, file has {size})"
            )
        raw_header = f.read(n)
        try:
            header = json.loads(raw_header.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{p}: corrupt .safetensors header: {exc}") from None
        if not isinstance(header, dict):
            raise InputError(f"{p}: corrupt .safetensors header: not a JSON object")
        names = sorted(k for k in header if k != "__metadata__")
        if name is None:
            if not names:
                raise InputError(f"{p}: holds no tensors")
            if len(names) > 1:
                raise InputError(
                    f"{p}: holds {len(names)} tensors ({', '.join(names)}); "
                    "choose one with tensor=NAME (--tensor NAME)"
                )
            name = names[0]
        elif name not in names:
            raise InputError(
                f"{p}: no tensor named {name!r}; it holds {', '.join(names) or 'none'}"
            )
        info = header[name]
        where = f"{p}: tensor {name!r}"
        if not isinstance(info, dict):
            raise InputError(f"{where}: corrupt header entry (not a JSON object)")
        tag = info.get("dtype")
        if tag not in _SAFETENSORS_DTYPES:
            raise InputError(
                f"{where}: unsupported dtype {tag!r}; mxref reads {', '.join(_SAFETENSORS_DTYPES)}"
            )
        dt = _SAFETENSORS_DTYPES[tag]
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise InputError(f"{where}: corrupt header field 'shape' ({shape!r})")
        offsets = info.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise InputError(f"{where}: corrupt header field 'data_offsets' ({offsets!r})")
        begin, end = offsets
        need = math.prod(shape) * dt.itemsize
        if end - begin != need:
            raise InputError(
                f"{where}: data_offsets span {end - begin} bytes, but {tag} of shape "
                f"{_fmt_shape(shape)} needs {need}"
            )
        if 8 + n + end > size:
            raise InputError(
                f"{where}: truncated .safetensors file (data ends at byte {8 + n + end}, "
                f"file has {size})"
            )
        f.seek(8 + n + begin)
        data = f.read(need)
    if len(data) != need:  # the file shrank between stat and read
        raise InputError(f"{where}: truncated .safetensors file")
    # copy: frombuffer over bytes is read-only, and callers may want to write
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


def _read_raw(p: Path, dt: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    need = math.prod(shape) * dt.itemsize
    size = p.stat().st_size
    if size != need:
        raise InputError(
            f"{p}: is {size} bytes, but {_dtype_name(dt)} of shape {_fmt_shape(shape)} "
            f"needs {need} bytes; check --dtype and --shape"
        )
    data = p.read_bytes()
    if len(data) != need:
        raise InputError(f"{p}: is {len(data)} bytes, expected {need}")
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


# --------------------------------------------------------------------------
# safe writing
# --------------------------------------------------------------------------
def check_new(
    paths: Iterable[PathLike], *, force: bool = False, option: str = "force=True"
) -> None:
    """Raise unless every path may be written.

    Parameters
    ----------
    paths : iterable of path
        Every file a write would create.
    force : bool
        Allow replacing existing files.
    option : str
        How the caller's user allows it, named in the error: ``force=True``
        in Python, ``--force`` on a command line.

    Raises
    ------
    InputError
        Naming the first path that exists (without ``force``), is a directory,
        or lies in a directory that does not exist.
    """
    for path in paths:
        p = Path(path)
        if p.is_dir():
            raise InputError(f"{p}: is a directory")
        if p.exists() and not force:
            raise InputError(f"{p}: already exists; pass {option} to replace it")
        parent = p.parent
        if not parent.is_dir():
            raise InputError(f"{p}: directory {parent} does not exist")


def write_new_text(path: PathLike, text: str, *, force: bool = False) -> None:
    """Write ``text`` to a new file, or over an existing one only with ``force``.

    Raises
    ------
    InputError
        ``path`` exists (without ``force``), is a directory, or its directory
        does not exist.
    """
    p = Path(path)
    check_new([p], force=force)
    try:
        # "x" refuses a file that appeared since the check, too
        with p.open("w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise InputError(f"{p}: already exists; pass --force to replace it") from None


def _write_files(contents: Mapping[Path, bytes], *, force: bool) -> None:
    """Write every file, or none: temporaries first, then renamed into place."""
    check_new(contents, force=force)
    temps: dict[Path, Path] = {}
    target = None
    try:
        for target, data in contents.items():
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
            # O_EXCL: never clobber anything; 0o666 lets the umask decide, as
            # for any ordinary new file (tempfile would force 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            temps[target] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for target, tmp in temps.items():
            os.replace(tmp, target)
    except OSError as exc:
        # name the file the user asked for, not the temporary beside it
        raise InputError(f"{target}: cannot write it: {exc.strerror or exc}") from None
    finally:
        for tmp in temps.values():
            if tmp.exists():
                tmp.unlink()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_array(path: PathLike, arr: np.ndarray, *, force: bool = False) -> None:
    """Write a decoded array as ``.npy`` or as raw little-endian ``.bin``.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.npy`` or ``.bin``.
    arr : np.ndarray
    force : bool
        Replace an existing file.

    Raises
    ------
    InputError
        Other suffix, or an existing file without ``force``.

    Notes
    -----
    numpy saves bfloat16 as 2-byte void; :func:`read_tensor` reads such a
    file back with ``dtype="bfloat16"``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        data = _npy_bytes(arr)
    elif suffix == ".bin":
        little = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        data = np.ascontiguousarray(arr, dtype=little).tobytes()
    else:
        raise InputError(f"{p}: output must end in .npy or .bin, not {p.suffix or '(none)'!r}")
    _write_files({p: data}, force=force)
