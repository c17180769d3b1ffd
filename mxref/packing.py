"""Byte packing of MX and NVFP4 element codes, and NVIDIA's blocked scale-factor layout.

An :class:`~mxref.array.MXArray` keeps one code per ``uint8``, whatever the
element width.  :func:`pack` turns it into a :class:`PackedMX` holding the dense
bytes a kernel or a file would hold, and :func:`unpack` inverts it exactly.

The OCP MX v1.0 spec defines the element encodings and the block structure (a
block is one shared scale X and k elements P_i, section 5; element widths in
section 5.2, Table 1) but no memory layout for packed elements or scales.  This
module follows the conventions of PyTorch and NVIDIA, written out below.

Packing order
-------------
Elements are packed along the blocked axis: the codes are viewed with the
blocked axis moved last, ``rows = np.moveaxis(codes, axis, -1)``, and each row
(one 1-D run of ``n = shape[axis]`` codes along the blocked axis) is packed on
its own and padded with zero codes to a whole number of bytes.  ``data`` has
shape ``(*rows.shape[:-1], bytes_per_row)``.  A row never shares a byte with
the next one, and with the spec's block size of 32 every block starts on a byte
boundary (32 codes are 16, 24 or 32 bytes), so a block can be sliced out.

Bit order
---------
A row is an LSB-first bitstream: code ``i`` of width ``b = fmt.bits`` occupies
bits ``[b*i, b*i + b)`` of the little-endian integer formed by the row's bytes.
Codes are grouped so that a group fills whole bytes (``lcm(b, 8)`` bits), and a
row is padded with zero codes to a whole number of groups:

* 4-bit (mxfp4): two codes per byte, code ``2j`` in the LOW nibble and code
  ``2j+1`` in the high nibble, ``byte_j = c[2j] | c[2j+1] << 4`` -- the order of
  PyTorch ``float4_e2m1fn_x2`` and NVIDIA's fp4x2 (e2m1x2) types.
* 6-bit (mxfp6_e2m3, mxfp6_e3m2): four codes in three bytes; code ``i`` of the
  group occupies bits ``[6i, 6i+6)`` of the 24-bit little-endian integer
  ``b0 | b1<<8 | b2<<16 = c0 | c1<<6 | c2<<12 | c3<<18``, that is::

      byte0 = c0        | (c1 & 0x3) << 6
      byte1 = (c1 >> 2) | (c2 & 0xF) << 4
      byte2 = (c2 >> 4) | c3 << 2

* 8-bit (mxfp8_e4m3, mxfp8_e5m2, mxint8): one code per byte, unchanged.

Scale layouts
-------------
``"plain"``: the E8M0 scale bytes exactly as :class:`MXArray` holds them.

``"nvidia_blocked"``: the tiled layout cuBLAS and the Blackwell tensor cores
(``tcgen05.mma ... block_scale``) read for 1-D block scaling; see
:func:`pack` for the definition and its sources.

NVFP4 packs the same way: its E2M1 codes two per byte as mxfp4's, its E4M3
scale bytes plain or in the same 128x4 tiles (the layout is the same for
16-element blocks: CUTLASS's ``SfKMajorAtom`` with ``SFVecSize`` 16, cuBLAS's
NVFP4 scale factors), and its float32 tensor scale travels beside them.

Spec: OCP MX v1.0 sections 5 and 5.2 (blocks and element widths); the spec does
not define packing or a scale layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mxref.array import (
    MXArray,
    check_preset_field,
    check_tensor_scale,
    scales_shape,
    zero_allowed,
)
from mxref.formats import ElementFormat, get_format
from mxref.policies import Policy

__all__ = ["PackedMX", "ScaleLayout", "pack", "unpack"]

#: Rows and scale columns of one tile of the NVIDIA blocked layout.
NV_TILE_ROWS = 128
NV_TILE_COLS = 4
#: Bytes per tile: 128 rows x 4 scale bytes.
NV_TILE_BYTES = NV_TILE_ROWS * NV_TILE_COLS


class ScaleLayout(Policy):
    """How :class:`PackedMX` stores the E8M0 scale bytes.

    Spec: OCP MX v1.0 section 5 defines the scales, not their memory layout.
    """

    #: The scales array as :class:`MXArray` holds it.
    PLAIN = "plain"
    #: cuBLAS / tcgen05 128x4-tiled layout for 2-D arrays blocked along the last axis.
    NVIDIA_BLOCKED = "nvidia_blocked"


# --- element bitstream ------------------------------------------------------


def _group(bits: int) -> tuple[int, int]:
    """Codes and bytes in the smallest run of codes that fills whole bytes."""
    if not 1 <= bits <= 8:
        # codes live in uint8, so no MX format is wider; a wider one needs a new packer
        raise ValueError(f"cannot pack {bits}-bit codes; widths 1..8 are supported")
    group_bits = math.lcm(bits, 8)
    return group_bits // bits, group_bits // 8


def _word_dtype(group_bytes: int) -> type[np.unsignedinteger]:
    """Smallest unsigned integer type holding one group as a little-endian word."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if np.dtype(dtype).itemsize >= group_bytes:
            return dtype
    raise AssertionError("a group of at most 8 bytes always fits in uint64")


def _row_bytes(n: int, bits: int) -> int:
    """Bytes one packed row of ``n`` codes takes (padded to a whole group)."""
    codes_per_group, group_bytes = _group(bits)
    return -(-n // codes_per_group) * group_bytes


def _pack_rows(rows: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``(..., n)`` codes into ``(..., row_bytes)`` as an LSB-first bitstream."""
    codes_per_group, group_bytes = _group(bits)
    lead, n = rows.shape[:-1], rows.shape[-1]
    groups = -(-n // codes_per_group)
    word = _word_dtype(group_bytes)
    padded = np.zeros((*lead, groups * codes_per_group), dtype=word)
    padded[..., :n] = rows  # the zero tail is the padding the format promises
    grouped = padded.reshape(*lead, groups, codes_per_group)
    code_shifts = (np.arange(codes_per_group) * bits).astype(word)
    # codes are < 2**bits, so the shifted fields never overlap and OR is exact
    words = np.bitwise_or.reduce(grouped << code_shifts, axis=-1)
    byte_shifts = (np.arange(group_bytes) * 8).astype(word)
    out = (words[..., None] >> byte_shifts) & word(0xFF)
    return out.astype(np.uint8).reshape(*lead, groups * group_bytes)


def _unpack_rows(data: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Invert :func:`_pack_rows`; raise if a padding code is not zero."""
    codes_per_group, group_bytes = _group(bits)
    lead = data.shape[:-1]
    groups = data.shape[-1] // group_bytes
    word = _word_dtype(group_bytes)
    grouped = data.reshape(*lead, groups, group_bytes).astype(word)
    byte_shifts = (np.arange(group_bytes) * 8).astype(word)
    words = np.bitwise_or.reduce(grouped << byte_shifts, axis=-1)
    code_shifts = (np.arange(codes_per_group) * bits).astype(word)
    codes = (words[..., None] >> code_shifts) & word((1 << bits) - 1)
    codes = codes.astype(np.uint8).reshape(*lead, groups * codes_per_group)
    if codes[..., n:].any():
        # pack() always writes zero padding: anything else means the bytes are
        # not what pack() produced for this shape (misaligned, corrupt, or foreign)
        raise ValueError(
            f"PackedMX.data has nonzero padding after code {n - 1} of a row; "
            "it was not produced by pack() for this shape and format"
        )
    return codes[..., :n]


# --- NVIDIA blocked scales --------------------------------------------------


def _check_nvidia_shape(shape: tuple[int, ...], axis: int) -> None:
    if len(shape) != 2 or axis != 1:
        raise ValueError(
            "scale_layout='nvidia_blocked' needs a 2-d array blocked along its last axis "
            f"(scales of shape (rows, ceil(K / block_size))); got a {len(shape)}-d array "
            f"of shape {shape} blocked along axis {axis}. Use scale_layout='plain', or "
            "reshape / move the blocked axis last first"
        )


def _nvidia_tiles(rows: int, cols: int) -> tuple[int, int]:
    return -(-rows // NV_TILE_ROWS), -(-cols // NV_TILE_COLS)


def _to_nvidia_blocked(scales: np.ndarray) -> np.ndarray:
    """Lay a ``(rows, cols)`` scale matrix out in 128x4 tiles, zero padded, flat."""
    rows, cols = scales.shape
    row_tiles, col_tiles = _nvidia_tiles(rows, cols)
    padded = np.zeros((row_tiles * NV_TILE_ROWS, col_tiles * NV_TILE_COLS), dtype=np.uint8)
    padded[:rows, :cols] = scales
    # row r of a tile is 32*q + p (q = r // 32, p = r % 32); the tile stores
    # [p][q][c] so byte (r, c) lands at p*16 + q*4 + c
    tiled = padded.reshape(row_tiles, 4, 32, col_tiles, NV_TILE_COLS)
    return np.ascontiguousarray(tiled.transpose(0, 3, 2, 1, 4)).reshape(-1)


def _from_nvidia_blocked(blocked: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Invert :func:`_to_nvidia_blocked`; raise if a padding byte is not zero."""
    row_tiles, col_tiles = _nvidia_tiles(rows, cols)
    tiled = blocked.reshape(row_tiles, col_tiles, 32, 4, NV_TILE_COLS)
    padded = tiled.transpose(0, 3, 2, 1, 4).reshape(
        row_tiles * NV_TILE_ROWS, col_tiles * NV_TILE_COLS
    )
    if padded[rows:, :].any() or padded[:, cols:].any():
        raise ValueError(
            "PackedMX.scales has a nonzero padding byte in its nvidia_blocked tiles; "
            f"it was not produced by pack() for {rows}x{cols} scales"
        )
    return np.ascontiguousarray(padded[:rows, :cols])


# --- the packed container ---------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class PackedMX:
    """An MX array with its codes packed into dense bytes.

    Attributes
    ----------
    data : np.ndarray of uint8
        Packed codes, shape ``(*other_dims, bytes_per_row)``: the element shape
        with the blocked axis moved last, each row of ``shape[axis]`` codes
        packed LSB-first and zero padded to whole bytes (see the module docstring).
    scales : np.ndarray of uint8
        E8M0 scale bytes.  ``"plain"``: shape ``shape`` with ``axis`` cut into
        ``ceil(n / block_size)`` blocks, as in :class:`MXArray`.
        ``"nvidia_blocked"``: 1-D, ``ceil(rows/128) * ceil(cols/4) * 512`` bytes.
    fmt : ElementFormat
        Element format (a name is accepted and resolved).
    shape : tuple of int
        The logical element shape (the shape of ``MXArray.codes``).
    axis : int
        The blocked axis, stored non-negative.
    block_size : int
        Elements per scale.
    scale_layout : ScaleLayout
        How ``scales`` is laid out (a string is accepted and parsed).
    tensor_scale : np.ndarray of float32, optional
        NVFP4's tensor scale, as in :class:`~mxref.array.MXArray`.
    preset : str, optional
        NVFP4's preset, as in :class:`~mxref.array.MXArray`.

    Spec: OCP MX v1.0 section 5 (block structure); packing is not defined by the
    spec, see the module docstring for the convention followed.
    """

    data: np.ndarray
    scales: np.ndarray
    fmt: ElementFormat
    shape: tuple[int, ...]
    axis: int
    block_size: int
    scale_layout: ScaleLayout = ScaleLayout.PLAIN
    tensor_scale: np.ndarray | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        fmt = get_format(self.fmt, two_level=True)
        object.__setattr__(self, "fmt", fmt)
        object.__setattr__(self, "preset", check_preset_field("PackedMX", fmt, self.preset))
        layout = ScaleLayout.parse(self.scale_layout, "scale_layout")
        object.__setattr__(self, "scale_layout", layout)
        for name in ("data", "scales"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
                got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                raise TypeError(f"PackedMX.{name} must be a uint8 numpy array; got {got}")

        shape = self.shape
        if not isinstance(shape, tuple | list) or not all(_is_int(d) for d in shape):
            raise TypeError(f"PackedMX.shape must be a tuple of ints; got {shape!r}")
        shape = tuple(int(d) for d in shape)
        if not shape or min(shape) < 0:
            raise ValueError(
                f"PackedMX.shape must have at least one dimension, none negative; got {shape}"
            )
        object.__setattr__(self, "shape", shape)

        if not _is_int(self.block_size):
            raise TypeError("PackedMX.block_size must be an int")
        if self.block_size < 1:
            raise ValueError(f"PackedMX.block_size must be >= 1; got {self.block_size}")
        object.__setattr__(self, "block_size", int(self.block_size))
        if not _is_int(self.axis):
            raise TypeError("PackedMX.axis must be an int")
        if not -len(shape) <= self.axis < len(shape):
            raise ValueError(f"PackedMX.axis {self.axis} is out of range for shape {shape}")
        axis = int(self.axis) % len(shape)
        object.__setattr__(self, "axis", axis)

        other = shape[:axis] + shape[axis + 1 :]
        want = (*other, _row_bytes(shape[axis], fmt.bits))
        if self.data.shape != want:
            raise ValueError(
                f"PackedMX.data has shape {self.data.shape}; {fmt.name} codes ({fmt.bits}-bit) "
                f"of shape {shape} packed along axis {axis} need {want} "
                "(truncated or mismatched data?)"
            )

        plain = scales_shape(shape, axis, self.block_size)
        if self.scale_layout is ScaleLayout.PLAIN:
            want_scales = plain
        else:
            _check_nvidia_shape(shape, axis)
            row_tiles, col_tiles = _nvidia_tiles(*plain)
            want_scales = (row_tiles * col_tiles * NV_TILE_BYTES,)
        if self.scales.shape != want_scales:
            raise ValueError(
                f"PackedMX.scales has shape {self.scales.shape}; shape {shape} blocked by "
                f"{self.block_size} along axis {axis} with scale_layout="
                f"{self.scale_layout.value!r} needs {want_scales}"
            )
        check_tensor_scale("PackedMX", fmt, self.tensor_scale, shape, axis, self.scales,
                           allow_zero=zero_allowed(fmt, self.preset))  # fmt: skip

    @property
    def nbytes(self) -> int:
        """Bytes of ``data`` plus ``scales``."""
        return int(self.data.nbytes + self.scales.nbytes)

    def __repr__(self) -> str:
        return (
            f"PackedMX(fmt={self.fmt.name}, shape={self.shape}, axis={self.axis}, "
            f"block_size={self.block_size}, scale_layout={self.scale_layout.value!r}, "
            f"nbytes={self.nbytes})"
        )


def pack(mx: MXArray, *, scale_layout: str | ScaleLayout = "plain") -> PackedMX:
    """Pack an MXArray's codes into dense bytes, choosing a scale layout.

    Codes are packed along the blocked axis (moved last), each row zero padded
    to whole bytes, LSB first: two 4-bit codes per byte (element ``2j`` in the
    low nibble), four 6-bit codes per three bytes, 8-bit codes unchanged.  The
    exact bit formulas are in the module docstring.

    ``scale_layout="nvidia_blocked"`` applies to 2-D arrays blocked along the
    last axis, i.e. ``(rows, K)`` with scales ``(rows, cols)``, ``cols =
    ceil(K / block_size)``.  Rows are padded to a multiple of 128 and scale
    columns to a multiple of 4 with zero bytes; the padded matrix is cut into
    128x4 tiles stored one after another, row-major over (row_tile, col_tile),
    512 bytes each; inside a tile the scale of row ``r`` and column ``c``
    (``0 <= r < 128``, ``0 <= c < 4``) is at byte
    ``(r % 32) * 16 + (r // 32) * 4 + c``.  So the scale at ``(R, C)`` is at
    ``((R // 128) * ceil(cols / 4) + C // 4) * 512 + (R % 32) * 16
    + (R % 128 // 32) * 4 + C % 4``.  Sources: cuBLAS documentation, "1D Block
    Scaling Factors Layout"
    (https://docs.nvidia.com/cuda/cublas/index.html#d-block-scaling-factors-layout);
    PTX ISA, tcgen05 "Scale factor A/B layout"
    (https://docs.nvidia.com/cuda/parallel-thread-execution/#tcgen05-mma-scale-factor-a-layout-1x);
    CUTLASS ``include/cutlass/detail/sm100_blockscaled_layout.hpp``, whose
    ``SfKMajorAtom`` is ``Shape<Shape<_32,_4>, Shape<SFVecSize,_4>>`` with
    ``Stride<Stride<_16,_4>, Stride<_0,_1>>`` -- the same offset formula; and
    NVIDIA cuDNN frontend, "MXFP8 scale factor 128x4 layout"
    (https://nvidia.github.io/cudnn-frontend/mxfp8-scale-factor-128x4-layout/).

    Parameters
    ----------
    mx : MXArray
        The encoded array.
    scale_layout : {"plain", "nvidia_blocked"} or ScaleLayout
        Layout of the returned scales.

    Returns
    -------
    PackedMX
        New arrays; nothing is shared with ``mx``.

    Raises
    ------
    TypeError
        If ``mx`` is not an MXArray.
    ValueError
        If ``scale_layout`` is unknown, or is ``"nvidia_blocked"`` for an array
        that is not 2-D blocked along its last axis.

    Spec: OCP MX v1.0 sections 5 and 5.2 define the elements and blocks; the
    spec does not define packing.  Convention followed: PyTorch
    ``float4_e2m1fn_x2`` / NVIDIA fp4x2 nibble order, extended to an LSB-first
    bitstream for 6-bit codes; NVIDIA's cuBLAS / tcgen05 tiled scale layout.
    """
    if not isinstance(mx, MXArray):
        raise TypeError(f"pack() needs an MXArray; got {type(mx).__name__}")
    layout = ScaleLayout.parse(scale_layout, "scale_layout")
    if layout is ScaleLayout.NVIDIA_BLOCKED:
        _check_nvidia_shape(mx.shape, mx.axis)
        scales = _to_nvidia_blocked(mx.scales)
    else:
        scales = np.array(mx.scales, dtype=np.uint8, copy=True)
    data = _pack_rows(np.moveaxis(mx.codes, mx.axis, -1), mx.fmt.bits)
    return PackedMX(
        data=data,
        scales=scales,
        fmt=mx.fmt,
        shape=mx.shape,
        axis=mx.axis,
        block_size=mx.block_size,
        scale_layout=layout,
        tensor_scale=None if mx.tensor_scale is None else mx.tensor_scale.copy(),
        preset=mx.preset,
    )


def unpack(packed: PackedMX) -> MXArray:
    """Recover the MXArray that :func:`pack` packed, byte for byte.

    Parameters
    ----------
    packed : PackedMX
        The packed array, as :func:`pack` returns it.

    Returns
    -------
    MXArray
        Codes and scales identical to the packed array's, same format, axis,
        block size and shape; new arrays.

    Raises
    ------
    TypeError
        If ``packed`` is not a PackedMX.
    ValueError
        If a padding code of ``data`` or a padding byte of ``nvidia_blocked``
        scales is not zero: pack() never writes such bytes, so they are not a
        packing of this shape and format.  (Wrong sizes and dtypes are already
        rejected when the PackedMX is built.)

    Spec: OCP MX v1.0 sections 5 and 5.2; the spec does not define packing, see
    :func:`pack` for the convention followed.
    """
    if not isinstance(packed, PackedMX):
        raise TypeError(f"unpack() needs a PackedMX; got {type(packed).__name__}")
    axis, shape = packed.axis, packed.shape
    rows = _unpack_rows(packed.data, packed.fmt.bits, shape[axis])
    codes = np.ascontiguousarray(np.moveaxis(rows, -1, axis))
    if packed.scale_layout is ScaleLayout.NVIDIA_BLOCKED:
        rows_, cols = scales_shape(shape, axis, packed.block_size)
        scales = _from_nvidia_blocked(packed.scales, rows_, cols)
    else:
        scales = np.array(packed.scales, dtype=np.uint8, copy=True)
    return MXArray(
        codes=codes,
        scales=scales,
        fmt=packed.fmt,
        axis=axis,
        block_size=packed.block_size,
        tensor_scale=None if packed.tensor_scale is None else packed.tensor_scale.copy(),
        preset=packed.preset,
    )
