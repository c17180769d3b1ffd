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

import dataclasses
import io
import json
import math
import os
import secrets
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray, scales_shape
from mxref.dtypes import BFLOAT16
from mxref.formats import FORMATS, get_format
from mxref.inputs import ACCEPTED_DTYPES, ACCEPTED_NAMES
from mxref.policies import Overflow, Rounding, ScaleRule

PathLike = str | os.PathLike[str]

#: Version string stored in every ``.npz`` result.
NPZ_VERSION = "mxref-npz-1"
#: Version string stored in every packed-binary sidecar.
PACKED_VERSION = "mxref-packed-1"
#: Scale layouts a packed result may use (see :mod:`mxref.packing`).
SCALE_LAYOUTS = ("plain", "nvidia_blocked")

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

_NPZ_REQUIRED = (
    "version",
    "format",
    "axis",
    "block_size",
    "shape",
    "codes",
    "scales",
    "scale_rule",
    "rounding",
    "overflow",
)


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
def check_new(paths: Iterable[PathLike], *, force: bool = False) -> None:
    """Raise unless every path may be written.

    Parameters
    ----------
    paths : iterable of path
        Every file a write would create.
    force : bool
        Allow replacing existing files.

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
            raise InputError(f"{p}: already exists; pass force=True (--force) to replace it")
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
    try:
        for p, data in contents.items():
            tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp")
            # O_EXCL: never clobber anything; 0o666 lets the umask decide, as
            # for any ordinary new file (tempfile would force 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            temps[p] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for p, tmp in temps.items():
            os.replace(tmp, p)
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


def _policy_meta(
    scale_rule: str | ScaleRule, rounding: str | Rounding, overflow: str | Overflow
) -> dict[str, str]:
    return {
        "scale_rule": ScaleRule.parse(scale_rule, "scale_rule").value,
        "rounding": Rounding.parse(rounding, "rounding").value,
        "overflow": Overflow.parse(overflow, "overflow").value,
    }


def write_npz(
    path: PathLike,
    mx: MXArray,
    *,
    scale_rule: str | ScaleRule = ScaleRule.FLOOR,
    rounding: str | Rounding = Rounding.RNE,
    overflow: str | Overflow = Overflow.SATURATE,
    seed: int | None = None,
    force: bool = False,
) -> None:
    """Write an MXArray as an uncompressed ``.npz``.

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly as given (numpy would otherwise append ``.npz``).
    mx : MXArray
    scale_rule, rounding, overflow, seed
        The policies ``mx`` was encoded with, recorded for the reader; the
        defaults are :func:`mxref.quantize`'s.
    force : bool
        Replace an existing file.

    Notes
    -----
    Keys: ``codes``, ``scales`` (uint8), ``version`` (:data:`NPZ_VERSION`),
    ``format``, ``scale_rule``, ``rounding``, ``overflow`` (0-d str),
    ``axis``, ``block_size`` (0-d int64), ``shape`` (1-d int64) and, if given,
    ``seed`` (0-d uint64).  Every key loads with ``allow_pickle=False``.
    """
    if not isinstance(mx, MXArray):
        raise TypeError(f"mx must be an MXArray; got {type(mx).__name__}")
    arrays: dict[str, np.ndarray] = {
        "codes": mx.codes,
        "scales": mx.scales,
        "version": np.array(NPZ_VERSION),
        "format": np.array(mx.fmt.name),
        "axis": np.array(mx.axis, np.int64),
        "block_size": np.array(mx.block_size, np.int64),
        "shape": np.array(mx.shape, np.int64),
    }
    arrays.update({k: np.array(v) for k, v in _policy_meta(scale_rule, rounding, overflow).items()})
    if seed is not None:
        arrays["seed"] = np.array(seed, np.uint64)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    _write_files({Path(path): buf.getvalue()}, force=force)


def packed_paths(path: PathLike) -> tuple[Path, Path, Path]:
    """The three files of a packed result: data, scales and sidecar.

    ``name.bin`` gives ``(name.bin, name.scales.bin, name.json)``; a sidecar
    ``name.json`` gives the same three.
    """
    p = Path(path)
    stem = p.with_suffix("")
    return p.with_suffix(".bin"), stem.with_name(stem.name + ".scales.bin"), p.with_suffix(".json")


def _packing_description(bits: int) -> str:
    """How :func:`mxref.packing.pack` lays codes of ``bits`` bits out, for the sidecar."""
    per_width = {
        4: "two codes per byte, code 2j in the low nibble",
        6: "four codes per 3 bytes, b0 | b1<<8 | b2<<16 = c0 | c1<<6 | c2<<12 | c3<<18",
        8: "one code per byte",
    }
    return (
        f"{bits}-bit codes packed along the blocked axis moved last: each row of shape[axis] "
        "codes is an LSB-first bitstream, zero padded to whole bytes; "
        f"{per_width.get(bits, f'code i at bits [{bits}*i, {bits}*i+{bits})')}; "
        "rows in C order (mxref.packing)"
    )


def write_packed(
    path: PathLike,
    mx: MXArray,
    *,
    scale_layout: str = "plain",
    scale_rule: str | ScaleRule = ScaleRule.FLOOR,
    rounding: str | Rounding = Rounding.RNE,
    overflow: str | Overflow = Overflow.SATURATE,
    seed: int | None = None,
    force: bool = False,
) -> None:
    """Write an MXArray as packed raw binary plus a JSON sidecar.

    Parameters
    ----------
    path : str or os.PathLike
        ``name.bin``; also writes ``name.scales.bin`` and ``name.json``.
    mx : MXArray
    scale_layout : {"plain", "nvidia_blocked"}
        Passed to :func:`mxref.packing.pack`.
    scale_rule, rounding, overflow, seed
        Recorded in the sidecar, as for :func:`write_npz`.
    force : bool
        Replace existing files; without it, any of the three existing is an error.

    Notes
    -----
    Sidecar fields: ``version`` (:data:`PACKED_VERSION`), ``format``,
    ``element_bits``, ``shape``, ``axis``, ``block_size``, ``scale_layout``,
    ``packing`` (a description), ``data_file``, ``data_bytes``,
    ``scales_file``, ``scales_bytes`` (file names relative to the sidecar),
    ``scale_rule``, ``rounding``, ``overflow`` and, if given, ``seed``.
    """
    from mxref.packing import pack

    if not isinstance(mx, MXArray):
        raise TypeError(f"mx must be an MXArray; got {type(mx).__name__}")
    p = Path(path)
    if p.suffix.lower() != ".bin":
        raise InputError(f"{p}: packed output must end in .bin")
    _, scales_path, side_path = packed_paths(p)
    data_path = p  # as the user spelt it, ".BIN" included
    # check before packing: a refusal should not wait for the work
    check_new((data_path, scales_path, side_path), force=force)
    layout = _check_layout(scale_layout, "scale_layout")
    packed = pack(mx, scale_layout=layout)
    data, scales = packed.data.tobytes(), packed.scales.tobytes()
    sidecar: dict[str, Any] = {
        "version": PACKED_VERSION,
        "format": mx.fmt.name,
        "element_bits": mx.fmt.bits,
        "shape": list(mx.shape),
        "axis": mx.axis,
        "block_size": mx.block_size,
        "scale_layout": layout,
        "packing": _packing_description(mx.fmt.bits),
        "data_file": data_path.name,
        "data_bytes": len(data),
        "scales_file": scales_path.name,
        "scales_bytes": len(scales),
        **_policy_meta(scale_rule, rounding, overflow),
    }
    if seed is not None:
        sidecar["seed"] = int(seed)
    text = json.dumps(sidecar, indent=2) + "\n"
    _write_files(
        {data_path: data, scales_path: scales, side_path: text.encode("utf-8")}, force=force
    )


def write_mx(
    path: PathLike,
    mx: MXArray,
    *,
    scale_layout: str | None = None,
    scale_rule: str | ScaleRule = ScaleRule.FLOOR,
    rounding: str | Rounding = Rounding.RNE,
    overflow: str | Overflow = Overflow.SATURATE,
    seed: int | None = None,
    force: bool = False,
) -> None:
    """Write an MXArray to ``.npz`` or packed ``.bin``, chosen by the suffix.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.npz`` (:func:`write_npz`) or ``.bin`` (:func:`write_packed`).
    mx : MXArray
    scale_layout : {"plain", "nvidia_blocked"}, optional
        Packed output only; default ``"plain"``.
    scale_rule, rounding, overflow, seed, force
        As for :func:`write_npz`.

    Raises
    ------
    InputError
        Other suffix, a scale layout with ``.npz``, existing files without ``force``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    policies = {"scale_rule": scale_rule, "rounding": rounding, "overflow": overflow}
    if suffix == ".npz":
        if scale_layout not in (None, "plain"):
            raise InputError(
                f"{p}: a scale layout other than 'plain' applies only to packed .bin output"
            )
        write_npz(p, mx, seed=seed, force=force, **policies)
    elif suffix == ".bin":
        write_packed(
            p, mx, scale_layout=scale_layout or "plain", seed=seed, force=force, **policies
        )
    else:
        raise InputError(
            f"{p}: output must end in .npz or .bin (packed), not {p.suffix or '(none)'!r}"
        )


def _check_layout(value: object, where: str) -> str:
    if isinstance(value, str) and value.strip().lower() in SCALE_LAYOUTS:
        return value.strip().lower()
    raise InputError(f"{where} must be one of {', '.join(SCALE_LAYOUTS)}; got {value!r}")


# --------------------------------------------------------------------------
# reading MX results
# --------------------------------------------------------------------------
def read_mx(path: PathLike) -> MXArray:
    """Read an MX result written by :func:`write_mx`.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz``, or a packed ``.bin`` or its ``.json`` sidecar.

    Returns
    -------
    MXArray

    Raises
    ------
    InputError
        Missing, truncated or inconsistent files, naming the file and field.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return read_npz(p)
    if suffix in (".bin", ".json"):
        return read_packed(p)
    raise InputError(
        f"{p}: MX input must be an .npz, or a packed .bin or its .json sidecar, "
        f"not {p.suffix or '(none)'!r}"
    )


def _known_format(p: Path, name: object, field: str = "format") -> str:
    if not isinstance(name, str) or name.strip().lower() not in FORMATS:
        raise InputError(
            f"{p}: field {field!r} is {name!r}, not a known format ({', '.join(FORMATS)})"
        )
    return name.strip().lower()


def _check_policies(p: Path, meta: Mapping[str, object]) -> None:
    for key, enum in (("scale_rule", ScaleRule), ("rounding", Rounding), ("overflow", Overflow)):
        if key in meta:
            try:
                enum.parse(meta[key], key)
            except ValueError as exc:
                raise InputError(f"{p}: field {key!r}: {exc}") from None


def read_npz(path: PathLike) -> MXArray:
    """Read and validate an ``.npz`` written by :func:`write_npz`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MXArray

    Raises
    ------
    InputError
        Missing or corrupt file, missing key, wrong version, unknown format,
        or codes and scales that do not match the metadata.
    """
    p = Path(path)
    _check_readable(p)
    try:
        # our own handle: np.load leaks the one it opens when parsing fails
        with p.open("rb") as f, np.load(f, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise InputError(f"{p}: not an .npz archive")
            missing = [k for k in _NPZ_REQUIRED if k not in z.files]
            if missing:
                raise InputError(f"{p}: not an mxref .npz; missing keys {', '.join(missing)}")
            meta = {k: z[k] for k in z.files}
    except InputError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, KeyError) as exc:
        # np.load raises ValueError for non-archives and BadZipFile or
        # ValueError for truncated members; none of them names the file
        raise InputError(f"{p}: not a readable .npz file (truncated or corrupt: {exc})") from None
    version = _npz_str(p, meta, "version")
    if version != NPZ_VERSION:
        raise InputError(f"{p}: field 'version' is {version!r}; this mxref reads {NPZ_VERSION!r}")
    fmt = _known_format(p, _npz_str(p, meta, "format"))
    _check_policies(p, {k: _npz_str(p, meta, k) for k in ("scale_rule", "rounding", "overflow")})
    axis = _npz_int(p, meta, "axis")
    block_size = _npz_int(p, meta, "block_size")
    shape_arr = meta["shape"]
    if shape_arr.ndim != 1 or shape_arr.dtype.kind not in "iu":
        raise InputError(f"{p}: field 'shape' must be a 1-d integer array")
    shape = tuple(int(d) for d in shape_arr)
    codes, scales = meta["codes"], meta["scales"]
    for key, arr in (("codes", codes), ("scales", scales)):
        if arr.dtype != np.uint8:
            raise InputError(f"{p}: field {key!r} must be uint8; got {arr.dtype}")
    if codes.shape != shape:
        raise InputError(
            f"{p}: field 'codes' has shape {_fmt_shape(codes.shape)}, "
            f"but field 'shape' says {_fmt_shape(shape)}"
        )
    return _make_mx(p, codes, scales, fmt, axis, block_size)


def _npz_str(p: Path, meta: Mapping[str, np.ndarray], key: str) -> str:
    arr = meta[key]
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise InputError(f"{p}: field {key!r} must be a string")
    return str(arr)


def _npz_int(p: Path, meta: Mapping[str, np.ndarray], key: str) -> int:
    arr = meta[key]
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise InputError(f"{p}: field {key!r} must be an integer")
    return int(arr)


def _make_mx(
    p: Path, codes: np.ndarray, scales: np.ndarray, fmt: str, axis: int, block_size: int
) -> MXArray:
    try:
        return MXArray(
            codes=codes, scales=scales, fmt=get_format(fmt), axis=axis, block_size=block_size
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{p}: inconsistent MX data: {exc}") from None


def _sidecar_field(
    side: Path, meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...]
) -> Any:
    if key not in meta:
        raise InputError(f"{side}: missing field {key!r}")
    value = meta[key]
    # bool is an int subclass; true is no size or axis
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{side}: field {key!r} must be {names}; got {value!r}")
    return value


def _sidecar_file(side: Path, meta: Mapping[str, Any], key: str) -> Path:
    name = _sidecar_field(side, meta, key, str)
    # a sidecar names files beside itself, never elsewhere on the machine
    if not name or Path(name).name != name or name in (".", ".."):
        raise InputError(f"{side}: field {key!r} must be a plain file name; got {name!r}")
    return side.with_name(name)


def read_packed(path: PathLike) -> MXArray:
    """Read and validate a packed result written by :func:`write_packed`.

    Parameters
    ----------
    path : str or os.PathLike
        The data ``name.bin`` (its sidecar is ``name.json``) or the sidecar.

    Returns
    -------
    MXArray

    Raises
    ------
    InputError
        Missing sidecar or data file, missing or mistyped field, unknown
        format or layout, or file sizes that differ from what the format,
        shape and layout imply.
    """
    from mxref.packing import pack, unpack

    p = Path(path)
    _check_readable(p)
    side = p if p.suffix.lower() == ".json" else packed_paths(p)[2]
    if not side.is_file():
        raise InputError(f"{p}: no sidecar {side.name} beside it; a packed .bin needs its .json")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{side}: not a valid JSON sidecar: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{side}: not a valid sidecar: expected a JSON object")
    version = _sidecar_field(side, meta, "version", str)
    if version != PACKED_VERSION:
        raise InputError(
            f"{side}: field 'version' is {version!r}; this mxref reads {PACKED_VERSION!r}"
        )
    fmt = get_format(_known_format(side, _sidecar_field(side, meta, "format", str)))
    shape_list = _sidecar_field(side, meta, "shape", list)
    if not shape_list or not all(_is_int(d) and d >= 0 for d in shape_list):
        raise InputError(f"{side}: field 'shape' must be a list of non-negative integers")
    shape = tuple(shape_list)
    axis = _sidecar_field(side, meta, "axis", int)
    if not -len(shape) <= axis < len(shape):
        raise InputError(
            f"{side}: field 'axis' is {axis}, out of range for shape {_fmt_shape(shape)}"
        )
    block_size = _sidecar_field(side, meta, "block_size", int)
    if block_size < 1:
        raise InputError(f"{side}: field 'block_size' must be >= 1; got {block_size}")
    layout = _check_layout(
        _sidecar_field(side, meta, "scale_layout", str), f"{side}: field 'scale_layout'"
    )
    if "element_bits" in meta:
        bits = _sidecar_field(side, meta, "element_bits", int)
        if bits != fmt.bits:
            raise InputError(
                f"{side}: field 'element_bits' is {bits}, but {fmt.name} codes have {fmt.bits} bits"
            )
    _check_policies(side, meta)
    data_path = _sidecar_file(side, meta, "data_file")
    scales_path = _sidecar_file(side, meta, "scales_file")
    data_bytes = _sidecar_field(side, meta, "data_bytes", int)
    scales_bytes = _sidecar_field(side, meta, "scales_bytes", int)
    if p != side and p.name != data_path.name:
        raise InputError(f"{p}: its sidecar {side.name} names {data_path.name} as the data file")
    for key, file in (("data", data_path), ("scales", scales_path)):
        if not file.is_file():
            raise InputError(f"{file}: no such file (named by {side.name} field '{key}_file')")
    # Padding only adds bytes, so a data file smaller than the bare codes is
    # wrong; checking that first keeps a corrupt shape from allocating the
    # template below at whatever size it claims.
    data_size = data_path.stat().st_size
    at_least = -(-math.prod(shape) * fmt.bits // 8)
    if data_size < at_least:
        raise InputError(
            f"{data_path}: is {data_size} bytes, but {math.prod(shape)} {fmt.bits}-bit codes "
            f"of shape {_fmt_shape(shape)}, as its sidecar {side.name} says, need at least "
            f"{at_least} (truncated, or the sidecar does not match)"
        )

    ax = axis % len(shape)
    zero = MXArray(
        codes=np.zeros(shape, np.uint8),
        scales=np.zeros(scales_shape(shape, ax, block_size), np.uint8),
        fmt=fmt,
        axis=ax,
        block_size=block_size,
    )
    try:
        template = pack(zero, scale_layout=layout)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{side}: shape, axis, block_size and scale_layout do not fit: {exc}"
        ) from None
    contents = {}
    for key, file, recorded, buf in (
        ("data", data_path, data_bytes, template.data),
        ("scales", scales_path, scales_bytes, template.scales),
    ):
        want = buf.nbytes
        if recorded != want:
            raise InputError(
                f"{side}: field '{key}_bytes' is {recorded}, but {fmt.name} of shape "
                f"{_fmt_shape(shape)} with block_size {block_size} and scale_layout "
                f"{layout!r} needs {want}"
            )
        size = file.stat().st_size
        if size != want:
            raise InputError(
                f"{file}: is {size} bytes, but its sidecar {side.name} implies {want} "
                f"({'truncated' if size < want else 'too long'})"
            )
        contents[key] = file.read_bytes()
    try:
        packed = dataclasses.replace(
            template,
            data=_frombytes(contents["data"], template.data),
            scales=_frombytes(contents["scales"], template.scales),
        )
        return unpack(packed)
    except (TypeError, ValueError) as exc:
        # sizes were checked above, so this is nonzero padding: bytes pack()
        # never writes, which means the file is corrupt or not for this shape
        bad = scales_path if "scales" in str(exc) else data_path
        raise InputError(f"{bad}: not a packing of this format and shape: {exc}") from None


def _frombytes(data: bytes, like: np.ndarray) -> np.ndarray:
    # a copy: frombuffer over bytes is read-only
    return np.frombuffer(data, dtype=np.uint8).reshape(like.shape).copy()
