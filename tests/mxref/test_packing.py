"""Tests for mxref.packing: exact round trips, hand-checked byte layouts, errors.

Every comparison is on bytes (np.array_equal on uint8 arrays); nothing here
uses a float tolerance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mxref
from mxref.array import MXArray, scales_shape
from mxref.packing import PackedMX, ScaleLayout, pack, unpack

FORMAT_NAMES = mxref.mx_format_names()


def make_mx(codes: object, fmt: str, *, axis: int = -1, block_size: int = 32) -> MXArray:
    """An MXArray with the given codes and arbitrary (seeded) scale bytes."""
    arr = np.asarray(codes, dtype=np.uint8)
    want = scales_shape(arr.shape, axis % arr.ndim, block_size)
    scales = np.random.default_rng(1234).integers(0, 256, want, dtype=np.uint8)
    return MXArray(
        codes=arr, scales=scales, fmt=mxref.get_format(fmt), axis=axis, block_size=block_size
    )


def random_mx(
    fmt: str, shape: tuple[int, ...], *, axis: int = -1, block_size: int = 32, seed: int = 0
) -> MXArray:
    """An MXArray with random codes of ``fmt`` and random scale bytes."""
    rng = np.random.default_rng(seed)
    f = mxref.get_format(fmt)
    codes = rng.integers(0, f.code_count, shape, dtype=np.uint8)
    scales = rng.integers(0, 256, scales_shape(shape, axis % len(shape), block_size), np.uint8)
    return MXArray(codes=codes, scales=scales, fmt=f, axis=axis, block_size=block_size)


def assert_same_mx(got: MXArray, want: MXArray) -> None:
    assert got.codes.dtype == np.uint8
    assert got.scales.dtype == np.uint8
    assert np.array_equal(got.codes, want.codes)
    assert np.array_equal(got.scales, want.scales)
    assert got.fmt is want.fmt
    assert got.axis == want.axis
    assert got.block_size == want.block_size
    assert got.shape == want.shape


def round_trip(mx: MXArray, layout: str) -> PackedMX:
    packed = pack(mx, scale_layout=layout)
    assert packed.data.dtype == np.uint8
    assert packed.scales.dtype == np.uint8
    assert packed.shape == mx.shape
    assert packed.fmt is mx.fmt
    assert packed.axis == mx.axis
    assert packed.block_size == mx.block_size
    assert packed.scale_layout is ScaleLayout(layout)
    assert_same_mx(unpack(packed), mx)
    return packed


# --- round trips --------------------------------------------------------------

SHAPES_AXES = [
    ((33,), 0),
    ((5,), -1),
    ((1,), 0),
    ((64,), -1),
    ((4, 33), -1),
    ((4, 33), 0),
    ((33, 4), 0),
    ((3, 5, 7), 1),
    ((2, 3, 40), -1),
    ((40, 3, 2), 0),
    ((0, 5), -1),
    ((5, 0), -1),
]


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize(("shape", "axis"), SHAPES_AXES)
def test_round_trip_plain(fmt: str, shape: tuple[int, ...], axis: int) -> None:
    mx = random_mx(fmt, shape, axis=axis, seed=len(shape) * 100 + shape[axis])
    packed = round_trip(mx, "plain")
    assert np.array_equal(packed.scales, mx.scales)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("block_size", [1, 7, 16, 32])
def test_round_trip_plain_block_sizes(fmt: str, block_size: int) -> None:
    round_trip(random_mx(fmt, (3, 45), block_size=block_size, seed=block_size), "plain")


NV_SHAPES = [(1, 1), (1, 32), (4, 33), (127, 100), (128, 128), (130, 64), (257, 300)]


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("shape", NV_SHAPES)
@pytest.mark.parametrize("block_size", [16, 32])
def test_round_trip_nvidia_blocked(fmt: str, shape: tuple[int, int], block_size: int) -> None:
    mx = random_mx(fmt, shape, axis=-1, block_size=block_size, seed=shape[0])
    packed = round_trip(mx, "nvidia_blocked")
    rows, cols = mx.scales.shape
    tiles = -(-rows // 128) * -(-cols // 4)
    assert packed.scales.shape == (tiles * 512,)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("layout", ["plain", "nvidia_blocked"])
def test_round_trip_of_quantize_output(fmt: str, layout: str) -> None:
    x = np.random.default_rng(0).standard_normal((130, 100)).astype(np.float32)
    mx = mxref.quantize(x, fmt)
    back = unpack(round_trip(mx, layout))
    want = mxref.dequantize(mx)
    got = mxref.dequantize(back)
    assert got.tobytes() == want.tobytes()


def test_pack_shares_nothing_with_input() -> None:
    mx = random_mx("mxfp8_e4m3", (2, 64))
    packed = pack(mx)
    assert not np.shares_memory(packed.data, mx.codes)
    assert not np.shares_memory(packed.scales, mx.scales)
    back = unpack(packed)
    assert not np.shares_memory(back.codes, packed.data)
    assert not np.shares_memory(back.scales, packed.scales)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    fmt=st.sampled_from(FORMAT_NAMES),
    dims=st.lists(st.integers(0, 40), min_size=1, max_size=3),
    axis_seed=st.integers(0, 2),
    block_size=st.sampled_from([1, 2, 7, 16, 32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_hypothesis(
    fmt: str, dims: list[int], axis_seed: int, block_size: int, seed: int
) -> None:
    shape = tuple(dims)
    axis = axis_seed % len(shape)
    mx = random_mx(fmt, shape, axis=axis, block_size=block_size, seed=seed)
    round_trip(mx, "plain")
    if len(shape) == 2 and axis == 1:
        round_trip(mx, "nvidia_blocked")


# --- byte layouts, checked by hand ----------------------------------------------


def test_mxfp4_nibble_order() -> None:
    # element 2j in the low nibble, 2j+1 in the high nibble; odd tail padded with 0
    packed = pack(make_mx([0x1, 0x2, 0x3], "mxfp4"))
    assert packed.data.tolist() == [0x21, 0x03]
    packed = pack(make_mx([0xF, 0x0, 0x0, 0xF, 0x8], "mxfp4"))
    assert packed.data.tolist() == [0x0F, 0xF0, 0x08]


def test_mxfp4_packs_along_the_blocked_axis() -> None:
    # blocked axis 0: the columns are the rows that get packed
    codes = [[1, 4], [2, 5], [3, 6]]
    packed = pack(make_mx(codes, "mxfp4", axis=0))
    assert packed.data.shape == (2, 2)
    assert packed.data.tolist() == [[0x21, 0x03], [0x54, 0x06]]
    # blocked axis -1 on the same codes: each row of 2 codes is one byte
    packed = pack(make_mx(codes, "mxfp4", axis=-1))
    assert packed.data.tolist() == [[0x41], [0x52], [0x63]]


@pytest.mark.parametrize("fmt", ["mxfp6_e2m3", "mxfp6_e3m2"])
def test_mxfp6_bit_order(fmt: str) -> None:
    # c0=0b000001, c1=0b000010, c2=0b000011, c3=0b000100:
    # byte0 = c0 | (c1 & 3) << 6       = 0b10_000001 = 0x81
    # byte1 = (c1 >> 2) | (c2 & 15) << 4 = 0b0011_0000 = 0x30
    # byte2 = (c2 >> 4) | c3 << 2       = 0b000100_00 = 0x10
    assert pack(make_mx([1, 2, 3, 4], fmt)).data.tolist() == [0x81, 0x30, 0x10]
    # one all-ones code in each slot shows every bit position of the group
    assert pack(make_mx([0x3F, 0, 0, 0], fmt)).data.tolist() == [0x3F, 0x00, 0x00]
    assert pack(make_mx([0, 0x3F, 0, 0], fmt)).data.tolist() == [0xC0, 0x0F, 0x00]
    assert pack(make_mx([0, 0, 0x3F, 0], fmt)).data.tolist() == [0x00, 0xF0, 0x03]
    assert pack(make_mx([0, 0, 0, 0x3F], fmt)).data.tolist() == [0x00, 0x00, 0xFC]
    # a row of 5 codes is padded with three zero codes to two whole groups
    packed = pack(make_mx([1, 2, 3, 4, 0x3F], fmt))
    assert packed.data.tolist() == [0x81, 0x30, 0x10, 0x3F, 0x00, 0x00]


@pytest.mark.parametrize("fmt", ["mxfp8_e4m3", "mxfp8_e5m2", "mxint8"])
def test_8bit_is_identity(fmt: str) -> None:
    codes = np.arange(256, dtype=np.uint8).reshape(4, 64)
    packed = pack(make_mx(codes, fmt))
    assert np.array_equal(packed.data, codes)
    packed = pack(make_mx(codes, fmt, axis=0))
    assert np.array_equal(packed.data, codes.T)


@pytest.mark.parametrize(
    ("fmt", "n", "row_bytes"),
    [
        ("mxfp4", 1, 1),
        ("mxfp4", 32, 16),
        ("mxfp4", 33, 17),
        ("mxfp6_e2m3", 1, 3),
        ("mxfp6_e2m3", 5, 6),
        ("mxfp6_e3m2", 32, 24),
        ("mxfp6_e3m2", 33, 27),
        ("mxfp8_e5m2", 33, 33),
        ("mxint8", 1, 1),
    ],
)
def test_row_bytes(fmt: str, n: int, row_bytes: int) -> None:
    packed = pack(random_mx(fmt, (3, n)))
    assert packed.data.shape == (3, row_bytes)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_rows_are_lsb_first_bitstreams(fmt: str) -> None:
    # independent oracle with Python ints: code i sits at bits [b*i, b*i + b) of
    # the row read as one little-endian integer
    mx = random_mx(fmt, (6, 37), seed=7)
    bits = mx.fmt.bits
    packed = pack(mx)
    for row_codes, row_bytes in zip(mx.codes, packed.data, strict=True):
        want = sum(int(c) << (bits * i) for i, c in enumerate(row_codes))
        assert int.from_bytes(row_bytes.tobytes(), "little") == want


# --- NVIDIA blocked scales ---------------------------------------------------------


def nv_offset(r: int, c: int, cols: int) -> int:
    """The documented offset of scale (r, c), written out independently."""
    col_tiles = -(-cols // 4)
    tile = (r // 128) * col_tiles + c // 4
    rr, cc = r % 128, c % 4
    return tile * 512 + (rr % 32) * 16 + (rr // 32) * 4 + cc


def mx_with_scales(scales: np.ndarray, block_size: int = 32) -> MXArray:
    rows, cols = scales.shape
    codes = np.zeros((rows, cols * block_size), dtype=np.uint8)
    return MXArray(
        codes=codes,
        scales=scales.astype(np.uint8),
        fmt=mxref.get_format("mxfp8_e4m3"),
        axis=-1,
        block_size=block_size,
    )


def test_nvidia_blocked_positions_by_hand() -> None:
    # rows=256, K=256 with block 32 -> 256x8 scales = 2x2 tiles of 128x4
    r_idx, c_idx = np.indices((256, 8))
    row_ids = pack(mx_with_scales(r_idx), scale_layout="nvidia_blocked").scales
    col_ids = pack(mx_with_scales(c_idx + 1), scale_layout="nvidia_blocked").scales
    assert row_ids.shape == col_ids.shape == (4 * 512,)
    # (r=33, c=5): tile (0, 1) -> 1*512; in-tile (33, 1): 1*16 + 1*4 + 1 = 21
    assert row_ids[533] == 33
    assert col_ids[533] == 5 + 1
    # (r=200, c=2): tile (1, 0) -> 2*512; in-tile (72, 2): 8*16 + 2*4 + 2 = 138
    assert row_ids[1162] == 200
    assert col_ids[1162] == 2 + 1
    # (r=127, c=3): last byte of tile 0: 31*16 + 3*4 + 3 = 511
    assert row_ids[511] == 127
    assert col_ids[511] == 3 + 1
    # (r=128, c=4): first byte of tile (1, 1) = tile 3
    assert row_ids[1536] == 128
    assert col_ids[1536] == 4 + 1
    # tile 0 begins with rows 0, 32, 64, 96 of column 0 ... then column 1 ...
    assert row_ids[:16].tolist() == [0, 0, 0, 0, 32, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 96]
    assert col_ids[:16].tolist() == [1, 2, 3, 4] * 4
    # and the whole map, position by position
    for r in range(256):
        for c in range(8):
            off = nv_offset(r, c, 8)
            assert (row_ids[off], col_ids[off]) == (r, c + 1)


def test_nvidia_blocked_pads_rows_and_columns_with_zeros() -> None:
    # 130 rows, K=64 -> 130x2 scales, padded to 256x4: two tiles, 1024 bytes
    rows, cols = 130, 2
    scales = (1 + np.arange(rows * cols) % 250).reshape(rows, cols).astype(np.uint8)
    blocked = pack(mx_with_scales(scales), scale_layout="nvidia_blocked").scales
    assert blocked.shape == (1024,)
    # (129, 1): tile (1, 0) -> 512; in-tile (1, 1): 1*16 + 0*4 + 1 = 17
    assert blocked[529] == scales[129, 1]
    mapped = np.zeros(blocked.shape, dtype=bool)
    for r in range(rows):
        for c in range(cols):
            off = nv_offset(r, c, cols)
            assert blocked[off] == scales[r, c]
            mapped[off] = True
    assert mapped.sum() == rows * cols
    assert not blocked[~mapped].any()  # every padding byte is zero
    assert_same_mx(
        unpack(pack(mx_with_scales(scales), scale_layout="nvidia_blocked")), mx_with_scales(scales)
    )


def test_nvidia_blocked_single_scale() -> None:
    blocked = pack(mx_with_scales(np.array([[0x7F]])), scale_layout="nvidia_blocked").scales
    assert blocked.shape == (512,)
    assert blocked[0] == 0x7F
    assert not blocked[1:].any()


def test_scale_layout_parse() -> None:
    assert ScaleLayout.parse("plain") is ScaleLayout.PLAIN
    assert ScaleLayout.parse(" NVIDIA-Blocked ") is ScaleLayout.NVIDIA_BLOCKED
    assert ScaleLayout.parse(ScaleLayout.NVIDIA_BLOCKED) is ScaleLayout.NVIDIA_BLOCKED
    packed = pack(random_mx("mxfp4", (2, 64)), scale_layout=ScaleLayout.NVIDIA_BLOCKED)
    assert packed.scale_layout is ScaleLayout.NVIDIA_BLOCKED


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_truncated_data_raises(fmt: str) -> None:
    packed = pack(random_mx(fmt, (4, 33)))
    with pytest.raises(ValueError, match=r"PackedMX\.data has shape"):
        dataclasses.replace(packed, data=packed.data[..., :-1])
    with pytest.raises(ValueError, match=r"PackedMX\.data has shape"):
        dataclasses.replace(packed, data=packed.data[:-1])
    with pytest.raises(ValueError, match=r"PackedMX\.data has shape"):
        dataclasses.replace(packed, data=packed.data.reshape(-1))


def test_mismatched_shape_raises() -> None:
    packed = pack(random_mx("mxfp4", (4, 33)))
    with pytest.raises(ValueError, match=r"PackedMX\.data has shape"):
        dataclasses.replace(packed, shape=(4, 40))
    with pytest.raises(ValueError, match=r"PackedMX\.data has shape"):
        dataclasses.replace(packed, fmt=mxref.get_format("mxfp8_e4m3"))
    with pytest.raises(ValueError, match=r"PackedMX\.data has shape"):
        dataclasses.replace(packed, axis=0)


def test_wrong_dtypes_raise() -> None:
    packed = pack(random_mx("mxfp6_e2m3", (4, 33)))
    with pytest.raises(TypeError, match=r"PackedMX\.data must be a uint8 numpy array"):
        dataclasses.replace(packed, data=packed.data.astype(np.uint16))
    with pytest.raises(TypeError, match=r"PackedMX\.data must be a uint8 numpy array"):
        dataclasses.replace(packed, data=packed.data.tolist())
    with pytest.raises(TypeError, match=r"PackedMX\.scales must be a uint8 numpy array"):
        dataclasses.replace(packed, scales=packed.scales.astype(np.int8))


def test_wrong_scales_size_raises() -> None:
    packed = pack(random_mx("mxfp4", (4, 65)))
    with pytest.raises(ValueError, match=r"PackedMX\.scales has shape"):
        dataclasses.replace(packed, scales=packed.scales[:, :-1])
    blocked = pack(random_mx("mxfp4", (4, 65)), scale_layout="nvidia_blocked")
    with pytest.raises(ValueError, match=r"PackedMX\.scales has shape"):
        dataclasses.replace(blocked, scales=blocked.scales[:-1])
    with pytest.raises(ValueError, match=r"PackedMX\.scales has shape"):
        dataclasses.replace(blocked, scales=blocked.scales.reshape(-1, 4))


def test_bad_metadata_raises() -> None:
    packed = pack(random_mx("mxfp4", (4, 33)))
    with pytest.raises(ValueError, match=r"PackedMX\.axis"):
        dataclasses.replace(packed, axis=2)
    with pytest.raises(ValueError, match=r"PackedMX\.block_size"):
        dataclasses.replace(packed, block_size=0)
    with pytest.raises(TypeError, match=r"PackedMX\.block_size"):
        dataclasses.replace(packed, block_size=32.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"PackedMX\.shape"):
        dataclasses.replace(packed, shape=(4.0, 33))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PackedMX\.shape"):
        dataclasses.replace(packed, shape=())
    with pytest.raises(ValueError, match="unknown format"):
        dataclasses.replace(packed, fmt="mxfp5")  # type: ignore[arg-type]


def test_unknown_scale_layout_raises() -> None:
    mx = random_mx("mxfp4", (4, 64))
    with pytest.raises(ValueError, match="scale_layout must be one of 'plain', 'nvidia_blocked'"):
        pack(mx, scale_layout="swizzled")
    with pytest.raises(ValueError, match="scale_layout must be one of"):
        pack(mx, scale_layout=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale_layout must be one of"):
        dataclasses.replace(pack(mx), scale_layout="bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "axis"), [((2, 4, 64), -1), ((2, 4, 64), 1), ((64, 4), 0), ((64,), 0)]
)
def test_nvidia_blocked_needs_2d_last_axis(shape: tuple[int, ...], axis: int) -> None:
    mx = random_mx("mxfp8_e4m3", shape, axis=axis)
    with pytest.raises(ValueError, match=r"scale_layout='nvidia_blocked' needs a 2-d array"):
        pack(mx, scale_layout="nvidia_blocked")
    plain = pack(mx)
    with pytest.raises(ValueError, match=r"scale_layout='nvidia_blocked' needs a 2-d array"):
        dataclasses.replace(plain, scale_layout="nvidia_blocked")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2"])
def test_nonzero_padding_code_raises(fmt: str) -> None:
    packed = pack(random_mx(fmt, (3, 33)))  # 33 codes: the last group is padded
    data = packed.data.copy()
    data[1, -1] |= 0x80  # the top bit of every row's last byte is a padding bit
    with pytest.raises(ValueError, match=r"PackedMX\.data has nonzero padding"):
        unpack(dataclasses.replace(packed, data=data))


def test_nonzero_nvidia_padding_byte_raises() -> None:
    packed = pack(random_mx("mxfp4", (130, 64)), scale_layout="nvidia_blocked")
    scales = packed.scales.copy()
    scales[nv_offset(200, 0, 2)] = 1  # row 200 is padding: only 130 rows exist
    with pytest.raises(ValueError, match=r"PackedMX\.scales has a nonzero padding byte"):
        unpack(dataclasses.replace(packed, scales=scales))
    scales = packed.scales.copy()
    scales[nv_offset(0, 3, 2)] = 1  # scale column 3 is padding: only 2 columns exist
    with pytest.raises(ValueError, match=r"PackedMX\.scales has a nonzero padding byte"):
        unpack(dataclasses.replace(packed, scales=scales))


def test_wrong_argument_types_raise() -> None:
    with pytest.raises(TypeError, match="pack\\(\\) needs an MXArray"):
        pack(np.zeros(4, np.uint8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unpack\\(\\) needs a PackedMX"):
        unpack(random_mx("mxfp4", (4,)))  # type: ignore[arg-type]


# --- cross-check against an independent implementation ------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 1), (130, 2), (256, 8), (300, 7)])
def test_nvidia_blocked_matches_torchao(shape: tuple[int, int]) -> None:
    # torchao's to_blocked cites the same cuBLAS section; it is written with
    # torch view/permute, independently of ours
    torch = pytest.importorskip("torch")
    utils = pytest.importorskip("torchao.prototype.mx_formats.utils")
    scales = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
    want = utils.to_blocked(torch.from_numpy(scales)).numpy()
    got = pack(mx_with_scales(scales), scale_layout="nvidia_blocked").scales
    assert np.array_equal(got, want)


@pytest.mark.slow
def test_mxfp4_matches_torchao_pack_uint4() -> None:
    torch = pytest.importorskip("torch")
    kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    mx = random_mx("mxfp4", (5, 64), seed=3)
    want = kernels.pack_uint4(torch.from_numpy(mx.codes)).numpy()
    assert np.array_equal(pack(mx).data, want)
