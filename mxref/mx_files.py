"""MX-encoded arrays in files: ``.npz``, packed ``.bin`` with a JSON sidecar, and raw device dumps.

Written without replacing anything unless asked; read back with every size and
field checked, naming the file and field at fault.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray, scales_shape
from mxref.formats import FORMATS, ElementFormat, get_format
from mxref.io import (
    InputError,
    PathLike,
    _check_readable,
    _fmt_shape,
    _is_int,
    _write_files,
    check_new,
    parse_shape,
)
from mxref.nv_files import tensor_scale_from_json, tensor_scale_to_json
from mxref.policies import Overflow, Rounding, ScaleRule

#: Version string stored in every ``.npz`` result.
NPZ_VERSION = "mxref-npz-1"


#: Version string stored in every packed-binary sidecar.
PACKED_VERSION = "mxref-packed-1"


#: Scale layouts a packed result may use (see :mod:`mxref.packing`).
SCALE_LAYOUTS = ("plain", "nvidia_blocked")


_NPZ_COMMON = ("version", "format", "axis", "block_size", "shape", "codes", "scales")
#: Keys an MX .npz must have beyond the common ones.
_NPZ_MX = ("scale_rule", "rounding", "overflow")
#: Keys an NVFP4 .npz must have beyond the common ones (it records rounding and preset
#: where known; it has no scale rule and always saturates).
_NPZ_NV = ("tensor_scale",)
#: Policy fields a two-level (NVFP4) file must not carry: nothing in it follows them.
_NOT_NV = ("scale_rule", "overflow")


def _policy_meta(
    fmt: ElementFormat,
    scale_rule: str | ScaleRule | None,
    rounding: str | Rounding | None,
    overflow: str | Overflow | None,
) -> dict[str, str]:
    """The policy fields recorded for ``fmt``: an MX format's three, NVFP4's rounding only."""
    if fmt.two_level:
        for name, value in (("scale_rule", scale_rule), ("overflow", overflow)):
            if value is not None:
                raise InputError(f"{name}: {fmt.name} has no {name.replace('_', ' ')} to "
                                 "record; leave it None")  # fmt: skip
        return {"rounding": _parse(Rounding, rounding, Rounding.RNE, "rounding")}
    return {
        "scale_rule": _parse(ScaleRule, scale_rule, ScaleRule.FLOOR, "scale_rule"),
        "rounding": _parse(Rounding, rounding, Rounding.RNE, "rounding"),
        "overflow": _parse(Overflow, overflow, Overflow.SATURATE, "overflow"),
    }


def _parse(enum: Any, value: object, default: Any, name: str) -> str:
    """A policy's recorded name: ``value`` parsed, or ``default`` where it is None."""
    return str(enum.parse(default if value is None else value, name).value)


def write_npz(
    path: PathLike,
    mx: MXArray,
    *,
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
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
        The policies ``mx`` was encoded with, recorded for the reader; None
        records :func:`mxref.quantize`'s defaults.  NVFP4 records its
        rounding only: a scale rule or overflow for it is an error.
    force : bool
        Replace an existing file.

    Notes
    -----
    Keys: ``codes``, ``scales`` (uint8), ``version`` (:data:`NPZ_VERSION`),
    ``format``, ``scale_rule``, ``rounding``, ``overflow`` (0-d str),
    ``axis``, ``block_size`` (0-d int64), ``shape`` (1-d int64) and, if given,
    ``seed`` (0-d uint64).  NVFP4 (docs/semantics.md section 8c): ``scales``
    are E4M3 bytes, ``tensor_scale`` is the float32 tensor scale (0-d, or one
    per row: ``shape`` without ``axis``), ``preset`` (0-d str) the NVFP4
    preset if one encoded it, and of the policies only ``rounding``.  Every
    key loads with ``allow_pickle=False``.
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
    policies = _policy_meta(mx.fmt, scale_rule, rounding, overflow)
    arrays.update({k: np.array(v) for k, v in policies.items()})
    if mx.tensor_scale is not None:
        arrays["tensor_scale"] = mx.tensor_scale
    if mx.preset is not None:
        arrays["preset"] = np.array(mx.preset)
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
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
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
    NVFP4 records ``rounding`` only, and ``tensor_scale`` (a number, or
    nested lists of one per row) and, under a preset, ``preset``.
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
        **_policy_meta(mx.fmt, scale_rule, rounding, overflow),
    }
    if mx.tensor_scale is not None:
        sidecar["tensor_scale"] = tensor_scale_to_json(mx.tensor_scale)
    if mx.preset is not None:
        sidecar["preset"] = mx.preset
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
    scale_rule: str | ScaleRule | None = None,
    rounding: str | Rounding | None = None,
    overflow: str | Overflow | None = None,
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


def recorded_scale_rule(path: PathLike) -> ScaleRule | None:
    """The scale rule an MX file records, or None where it records none.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz``, or a packed ``.bin`` or its ``.json`` sidecar, that
        :func:`read_mx` has read; only the small policy field is read again.

    Returns
    -------
    ScaleRule or None
    """
    p = Path(path)
    if p.suffix.lower() == ".npz":
        with p.open("rb") as f, np.load(f, allow_pickle=False) as z:
            value: object = str(z["scale_rule"]) if "scale_rule" in z.files else None
    else:
        side = p if p.suffix.lower() == ".json" else packed_paths(p)[2]
        value = json.loads(side.read_text(encoding="utf-8")).get("scale_rule")
    return None if value is None else ScaleRule.parse(value, "scale_rule")


def _known_format(p: Path, name: object, field: str = "format") -> str:
    names = list(FORMATS)
    if not isinstance(name, str) or name.strip().lower() not in names:
        raise InputError(
            f"{p}: field {field!r} is {name!r}, not a known format ({', '.join(names)})"
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
            missing = [k for k in _NPZ_COMMON if k not in z.files]
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
    two_level = get_format(fmt, two_level=True).two_level
    missing = [k for k in (_NPZ_NV if two_level else _NPZ_MX) if k not in meta]
    if missing:
        raise InputError(f"{p}: a {fmt} .npz needs keys {', '.join(missing)}; missing")
    _refuse_foreign_fields(p, fmt, two_level, meta)
    policy_keys = [k for k in ("scale_rule", "rounding", "overflow") if k in meta]
    _check_policies(p, {k: _npz_str(p, meta, k) for k in policy_keys})
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
    tensor_scale, preset = None, None
    if two_level:
        tensor_scale = meta["tensor_scale"]
        if tensor_scale.dtype != np.float32:
            raise InputError(f"{p}: field 'tensor_scale' must be float32; got {tensor_scale.dtype}")
        preset = _npz_str(p, meta, "preset") if "preset" in meta else None
    return _make_mx(p, codes, scales, fmt, axis, block_size, tensor_scale, preset)


def _refuse_foreign_fields(p: Path, fmt: str, two_level: bool, meta: Mapping[str, Any]) -> None:
    """Refuse fields the format has no use for: no field is silently ignored."""
    foreign = [k for k in _NOT_NV if k in meta] if two_level else \
        [k for k in ("tensor_scale", "preset") if k in meta]  # fmt: skip
    if foreign:
        raise InputError(f"{p}: field {foreign[0]!r} does not apply to {fmt}")


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
    p: Path,
    codes: np.ndarray,
    scales: np.ndarray,
    fmt: str,
    axis: int,
    block_size: int,
    tensor_scale: np.ndarray | None = None,
    preset: str | None = None,
) -> MXArray:
    try:
        return MXArray(codes=codes, scales=scales, fmt=get_format(fmt, two_level=True),
                       axis=axis, block_size=block_size, tensor_scale=tensor_scale,
                       preset=preset)  # fmt: skip
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
    fmt = get_format(_known_format(side, _sidecar_field(side, meta, "format", str)), two_level=True)
    _refuse_foreign_fields(side, fmt.name, fmt.two_level, meta)
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
    tensor_scale, preset = None, None
    if fmt.two_level:
        if "tensor_scale" not in meta:
            raise InputError(f"{side}: missing field 'tensor_scale' ({fmt.name}'s float32 "
                             "tensor scale: a number, or a list of one per row)")  # fmt: skip
        tensor_scale = tensor_scale_from_json(
            f"{side}: field 'tensor_scale'", meta["tensor_scale"], shape, axis % len(shape)
        )
        preset = _sidecar_field(side, meta, "preset", str) if "preset" in meta else None
    return _read_packed_files(
        data_path, scales_path, fmt, shape, axis, block_size, layout,
        source=f"its sidecar {side.name}", recorded={"data": data_bytes, "scales": scales_bytes},
        tensor_scale=tensor_scale, preset=preset,
    )  # fmt: skip


def read_raw_packed(
    data: PathLike,
    scales: PathLike,
    *,
    fmt: str,
    shape: object,
    axis: int = -1,
    block_size: int | None = None,
    scale_layout: str = "plain",
    tensor_scale: np.ndarray | None = None,
) -> MXArray:
    """Read a device's raw packed codes and scale bytes, described by the caller, not a sidecar.

    Parameters
    ----------
    data : str or os.PathLike
        The packed element codes, laid out as :func:`mxref.pack` writes them.
    scales : str or os.PathLike
        The E8M0 scale bytes (E4M3 for NVFP4), in ``scale_layout``.
    fmt : str
        The element format (any name :func:`mxref.get_format` accepts).
    shape : sequence of int or str
        The shape of the encoded array (``"4,64"`` or ``(4, 64)``).
    axis : int
        The blocked axis.
    block_size : int, optional
        The block size; by default the format's (32 for MX, 16 for NVFP4).
    scale_layout : {"plain", "nvidia_blocked"}
    tensor_scale : np.ndarray of float32, optional
        NVFP4's tensor scale (required there, refused for MX): 0-d, or one
        per row (``shape`` without ``axis``).

    Returns
    -------
    MXArray

    Raises
    ------
    InputError
        A missing file, a bad description, or a file whose size is not what
        the description implies (naming the file and both sizes).
    """
    try:
        fmt_obj = get_format(fmt, two_level=True)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if block_size is None:
        block_size = fmt_obj.block_size
    if fmt_obj.two_level and tensor_scale is None:
        raise InputError(f"a raw {fmt_obj.name} dump needs its float32 tensor scale "
                         "(tensor_scale)")  # fmt: skip
    if not fmt_obj.two_level and tensor_scale is not None:
        raise InputError(f"{fmt_obj.name} has no tensor scale; leave tensor_scale None")
    dims = parse_shape(shape)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -len(dims) <= axis < len(dims):
        raise InputError(f"axis {axis!r} is out of range for shape {_fmt_shape(dims)}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise InputError(f"block_size must be an integer >= 1; got {block_size!r}")
    layout = _check_layout(scale_layout, "scale_layout")
    paths = (Path(data), Path(scales))
    for path in paths:
        _check_readable(path)
    return _read_packed_files(*paths, fmt_obj, dims, axis, block_size, layout,
                              source="the description given",
                              tensor_scale=tensor_scale)  # fmt: skip


def _read_packed_files(
    data_path: Path,
    scales_path: Path,
    fmt: ElementFormat,
    shape: tuple[int, ...],
    axis: int,
    block_size: int,
    layout: str,
    *,
    source: str,
    recorded: dict[str, int] | None = None,
    tensor_scale: np.ndarray | None = None,
    preset: str | None = None,
) -> MXArray:
    """Unpack ``data_path`` and ``scales_path`` as ``source`` describes them, sizes checked."""
    from mxref.packing import pack, unpack

    # Padding only adds bytes, so a data file smaller than the bare codes is
    # wrong; checking that first keeps a corrupt shape from allocating the
    # template below at whatever size it claims.
    data_size = data_path.stat().st_size
    at_least = -(-math.prod(shape) * fmt.bits // 8)
    if data_size < at_least:
        raise InputError(
            f"{data_path}: is {data_size} bytes, but {math.prod(shape)} {fmt.bits}-bit codes "
            f"of shape {_fmt_shape(shape)}, as {source} says, need at least "
            f"{at_least} (truncated, or {source} does not match)"
        )

    ax = axis % len(shape)
    try:
        zero = MXArray(
            codes=np.zeros(shape, np.uint8),
            scales=np.zeros(scales_shape(shape, ax, block_size), np.uint8),
            fmt=fmt,
            axis=ax,
            block_size=block_size,
            # the real tensor scale already: its shape is checked here, before any byte is read
            tensor_scale=tensor_scale,
            preset=preset,
        )
        template = pack(zero, scale_layout=layout)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{source}: shape, axis, block_size, scale_layout"
            f"{'' if tensor_scale is None else ' and tensor_scale'} do not fit: {exc}"
        ) from None
    contents = {}
    for key, file, buf in (
        ("data", data_path, template.data),
        ("scales", scales_path, template.scales),
    ):
        want = buf.nbytes
        if recorded is not None and recorded[key] != want:
            raise InputError(
                f"{source}: field '{key}_bytes' is {recorded[key]}, but {fmt.name} of shape "
                f"{_fmt_shape(shape)} with block_size {block_size} and scale_layout "
                f"{layout!r} needs {want}"
            )
        size = file.stat().st_size
        if size != want:
            raise InputError(
                f"{file}: is {size} bytes, but {source} implies {want} "
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
