"""The compressed-tensors preset against compressed-tensors itself, and its documented quirks."""

from __future__ import annotations

import numpy as np
import pytest

import mxref

BLOCK = 32


def grid_codes(q: np.ndarray, fmt: mxref.ElementFormat) -> np.ndarray:
    """The codes of values already on ``fmt``'s grid (sign bit included)."""
    table = mxref.codec._table(fmt, np.float64)[: fmt.code_count // 2]
    mag = np.searchsorted(table, np.abs(q.astype(np.float64)))
    assert np.array_equal(table[mag], np.abs(q.astype(np.float64)))
    return (mag | (np.signbit(q).astype(np.int64) << (fmt.bits - 1))).astype(np.uint8)


def test_documented_facts():
    """The two quirks as the issue measured them (independent of the package)."""
    x = np.ones((3, BLOCK), np.float32)
    x[0, 0] = np.float32(1.75 * 2.0**127)  # amax >= 1.75 * 2**127: byte 255, a NaN block
    x[1, 0] = np.nextafter(np.float32(1.75 * 2.0**127), np.float32(0))  # just below: finite
    x[2, 3] = -0.0  # -0.0 gives +0.0
    mx = mxref.quantize(x, "mxfp4", preset="compressed-tensors")
    assert mx.scales[:, 0].tolist() == [255, 252, 125]
    assert mxref.quantize(x, "mxfp4", scale_rule="even").scales[0, 0] == 253
    assert np.isnan(mxref.dequantize(mx)[0]).all()
    assert mx.codes[2, 3] == 0
    assert mxref.quantize(x, "mxfp4", scale_rule="even").codes[2, 3] == 8
    # elsewhere it is scale_rule="even" with keep_negative_zero=False
    rng = np.random.default_rng(1)
    y = (rng.standard_normal((64, 64)) * np.exp2(rng.integers(-40, 40, (64, 1)))).astype(np.float32)
    a = mxref.quantize(y, "mxfp4", preset="compressed-tensors")
    b = mxref.quantize(y, "mxfp4", scale_rule="even")
    assert np.array_equal(a.scales, b.scales)
    assert np.array_equal(a.codes, b.codes)


def test_the_overflow_quirk_follows_the_input_dtype():
    x = np.ones((2, BLOCK), np.float16)
    x[0, 0] = np.float16(57344.0)  # 1.75 * 2**15: float16's rounded amax is Inf
    x[1, 0] = np.float16(57312.0)
    mx = mxref.quantize(x, "mxfp4", preset="compressed-tensors")
    assert mx.scales[:, 0].tolist() == [255, 140]
    with pytest.raises(ValueError, match="preset: 'compressed-tensors' has no mxint8"):
        mxref.quantize(x, "mxint8", preset="compressed-tensors")


torch = pytest.importorskip("torch")
pytest.importorskip("compressed_tensors")
from compressed_tensors.quantization.lifecycle.forward import quantize as ct_quantize  # noqa: E402
from compressed_tensors.quantization.quant_scheme import MXFP4  # noqa: E402
from compressed_tensors.quantization.utils.helpers import calculate_qparams  # noqa: E402


def compressed_tensors(x: np.ndarray, num_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """compressed-tensors' MX scale bytes and quantized grid values of 2-d ``x``."""
    args = MXFP4["weights"].model_copy(update={"num_bits": num_bits})
    xt = torch.from_numpy(x)
    groups = xt.reshape(x.shape[0], -1, BLOCK)
    scale, zp = calculate_qparams(groups.amin(-1), groups.amax(-1), args)
    q = ct_quantize(xt, scale, zp, args)
    with np.errstate(divide="ignore"):
        byte = np.log2(scale.to(torch.float64).numpy()) + 127
    return np.where(np.isinf(byte), 255, byte).astype(np.uint8), q.numpy()


def inputs(dtype: type) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    top = float(np.finfo(dtype).max)
    out = [
        (rng.standard_normal((16, 128)) * 0.02).astype(dtype),
        (rng.standard_t(3, (16, 128)) * 0.05).astype(dtype),  # heavy-tailed, weight-like
    ]
    edge = np.ones((6, BLOCK), dtype)
    for i, v in enumerate((top, top * 0.875, top * 0.87, 1.5, 1.4999, 0.0)):
        edge[i, 0] = dtype(v)
    edge[5, :] = 0.0
    edge[5, 1] = -0.0
    edge[4, 2] = -0.0
    edge[3, 5] = -3.0
    out.append(edge)
    return out


# float32 only: with float16 inputs compressed-tensors also stores its scale in float16,
# where 2**(byte - 127) underflows below byte 103 and is replaced by 1 (an all-zero
# block gets byte 127); mxref does not model that (docs/semantics.md section 8a)
@pytest.mark.parametrize("dtype", [np.float32])
@pytest.mark.parametrize(("name", "bits"), [("mxfp4", 4), ("mxfp6_e2m3", 6)])
def test_the_preset_is_compressed_tensors(dtype, name, bits):
    fmt = mxref.get_format(name)
    for x in inputs(dtype):
        want_bytes, q = compressed_tensors(x, bits)
        mx = mxref.quantize(x, fmt, preset="compressed-tensors")
        assert np.array_equal(mx.scales, want_bytes)
        finite = mx.scales != 255
        rows = np.repeat(finite, BLOCK, axis=1)
        assert np.array_equal(mx.codes[rows], grid_codes(q[rows], fmt))
        # a NaN block: compressed-tensors divides by an Inf scale, so every element is +0
        assert not mx.codes[~rows].any()
        assert not q[~rows].any()
