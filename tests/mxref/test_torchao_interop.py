"""MXArray to and from torchao's MXTensor: the same bytes in both containers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")

from torchao.prototype.mx_formats.mx_tensor import MXTensor  # noqa: E402

import mxref  # noqa: E402
from mxref.torch.torchao import TORCHAO_ELEMENTS, from_mxtensor, to_mxtensor  # noqa: E402


@pytest.mark.parametrize("name", list(TORCHAO_ELEMENTS))
def test_torchaos_encoding_reads_as_the_torchao_preset(name):
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    mx = from_mxtensor(MXTensor.to_mx(x, TORCHAO_ELEMENTS[name], 32))
    want = mxref.quantize(x.numpy(), name, preset="torchao")
    assert mx.fmt.name == name
    assert mx.codes.tobytes() == want.codes.tobytes()
    assert mx.scales.tobytes() == want.scales.tobytes()


@pytest.mark.parametrize("name", list(TORCHAO_ELEMENTS))
def test_mxref_arrays_become_mxtensors_that_dequantize_alike(name):
    x = np.random.default_rng(1).standard_normal((8, 96)).astype(np.float32)
    mx = mxref.quantize(x, name)
    tensor = to_mxtensor(mx)
    got = tensor.dequantize(torch.float32).numpy()
    assert got.tobytes() == mxref.dequantize(mx).tobytes()
    back = from_mxtensor(tensor)
    assert back.codes.tobytes() == mx.codes.tobytes()
    assert back.scales.tobytes() == mx.scales.tobytes()


def test_what_torchao_cannot_hold_is_refused_by_name():
    with pytest.raises(ValueError, match="has no mxint8"):
        to_mxtensor(mxref.quantize(np.ones((2, 32), np.float32), "mxint8"))
    with pytest.raises(ValueError, match="blocks the last axis"):
        to_mxtensor(mxref.quantize(np.ones((64, 2), np.float32), "mxfp4", axis=0))
