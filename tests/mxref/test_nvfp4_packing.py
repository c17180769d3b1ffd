"""NVFP4 packing: E2M1 codes two per byte, E4M3 bytes plain or in NVIDIA's 128x4 tiles."""

from __future__ import annotations

import numpy as np
import pytest

import mxref


def nvfp4(shape: tuple[int, ...], axis: int = -1, per_row: bool = False) -> mxref.MXArray:
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    return mxref.quantize(x, "nvfp4", axis=axis, per_row=per_row)


CASES = [((3, 40), -1, False), ((40, 3), 0, True), ((2, 17, 2), 1, False)]


@pytest.mark.parametrize(("shape", "axis", "per_row"), CASES)
def test_pack_and_unpack_round_trip(shape, axis, per_row):
    mx = nvfp4(shape, axis, per_row)
    packed = mxref.pack(mx)
    assert packed.data.shape[-1] == -(-shape[axis] // 2)  # two codes per byte
    back = mxref.unpack(packed)
    assert np.array_equal(back.codes, mx.codes)
    assert np.array_equal(back.scales, mx.scales)
    assert back.tensor_scale.tobytes() == mx.tensor_scale.tobytes()
    assert back.tensor_scale.shape == mx.tensor_scale.shape


def test_codes_pack_as_mxfp4_codes_do():
    mx = nvfp4((4, 64))
    as_mx = mxref.MXArray(mx.codes, np.zeros((4, 2), np.uint8), "mxfp4", 1, 32)
    assert mxref.pack(mx).data.tobytes() == mxref.pack(as_mx).data.tobytes()
    # code 2j in the low nibble
    assert int(mxref.pack(mx).data[0, 0]) == int(mx.codes[0, 0]) | int(mx.codes[0, 1]) << 4


def test_the_nvidia_blocked_scale_layout():
    rows, k = 130, 16 * 6  # 130 x 6 scales: two row tiles, two column tiles, padded
    mx = nvfp4((rows, k))
    packed = mxref.pack(mx, scale_layout="nvidia_blocked")
    cols = mx.scales.shape[1]
    col_tiles = -(-cols // 4)
    assert packed.scales.shape == (2 * col_tiles * 512,)
    for r in range(rows):
        for c in range(cols):
            at = ((r // 128) * col_tiles + c // 4) * 512 + (r % 32) * 16 + (r % 128 // 32) * 4 \
                + c % 4  # fmt: skip
            assert packed.scales[at] == mx.scales[r, c]
    back = mxref.unpack(packed)
    assert np.array_equal(back.scales, mx.scales)
    assert back.tensor_scale == mx.tensor_scale


def test_a_packed_nvfp4_array_checks_its_tensor_scale():
    packed = mxref.pack(nvfp4((2, 32)))
    with pytest.raises(TypeError, match="PackedMX.tensor_scale must be a float32 numpy array"):
        mxref.PackedMX(packed.data, packed.scales, "nvfp4", (2, 32), 1, 16)
