"""torchao 0.18's NVFP4 recipe as the oracle models it, against torchao itself, bit for bit."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nvfp4_tensor = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")

from torchao.prototype.mx_formats.kernels import unpack_uint4  # noqa: E402

from mxref.ref import nvfp4 as oracle  # noqa: E402

BLOCK = oracle.NV_BLOCK_SIZE


def inputs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 64)) * np.exp2(rng.integers(-12, 12, (4, 1)))
    x[0, :16] *= 1e-4  # a block tiny beside the others: torchao's 2**-6 scale floor
    x[1, 16:32] = 0.0  # an all-zero block
    x[2, 0] = -0.0
    x[3, 5:9] = [0.25, 0.75, 5.0, -3.5]  # E2M1 midpoints under a unit scale
    return x.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_the_torchao_recipe_is_torchaos_nvfp4(seed):
    x = torch.from_numpy(inputs(seed))
    t = nvfp4_tensor.per_tensor_amax_to_scale(x.abs().max())
    scales, packed = nvfp4_tensor.nvfp4_quantize(x, BLOCK, t)
    codes = unpack_uint4(packed).view(x.shape)
    decoded = nvfp4_tensor.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=t).dequantize(torch.float32)
    want_t = oracle.torchao_tensor_scale(Fraction(float(x.abs().max())))
    assert Fraction(float(t)) == want_t
    for r, row in enumerate(x.numpy()):
        for b in range(row.size // BLOCK):
            block = row[b * BLOCK:(b + 1) * BLOCK]
            values = [(int(np.signbit(v)), Fraction(float(abs(v)))) for v in block]
            byte, want = oracle.torchao_quantize_nv_block(values, want_t)
            assert int(scales[r, b].view(torch.uint8)) == byte, (r, b)
            assert codes[r, b * BLOCK:(b + 1) * BLOCK].tolist() == want, (r, b)
            bits = decoded[r, b * BLOCK:(b + 1) * BLOCK].numpy().view(np.uint32).tolist()
            assert bits == oracle.torchao_dequantize_nv_block(byte, want, want_t), (r, b)


def test_where_the_torchao_recipe_differs_from_the_exact_default():
    # the all-zero and the tiny block: torchao's scale floor against the exact rounding
    x = inputs(0)
    amax = Fraction(float(np.abs(x).max()))
    g, t = oracle.tensor_scale(amax), oracle.torchao_tensor_scale(amax)
    zero = [(0, Fraction(0))] * BLOCK
    assert oracle.quantize_nv_block(zero, g)[0] == 0
    assert oracle.decode_block_scale(oracle.torchao_quantize_nv_block(zero, t)[0]) == 2**-6
