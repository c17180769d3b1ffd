"""Plain-integer parameter tuples for the kernels, derived from the dataclasses.

Kernels take tuples of integers and floats, never dataclasses or enums; this
module is the one place that turns a format and policies into those tuples.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from mxref.formats import ElementFormat, SignEncoding, Specials
from mxref.kernels import element as el
from mxref.policies import SCALE_RULE_CODES, Overflow, Rounding, ScaleRule

#: host float dtype -> (mantissa bits, exponent bits, bias)
HOST_LAYOUT = {
    np.dtype(np.float32): (23, 8, 127),
    np.dtype(np.float64): (52, 11, 1023),
}

SPECIALS_CODE = {Specials.NONE: 0, Specials.NAN_ONLY: 1, Specials.IEEE: 2}


def _pow2_bits(k: int, host_mbits: int, host_bias: int) -> int:
    """Host bits of the normal number 2**k."""
    return (k + host_bias) << host_mbits


@cache
def element_params(
    fmt: ElementFormat,
    rounding: Rounding,
    overflow: Overflow,
    host: np.dtype,
    keep_negative_zero: bool = True,
):
    """Return ``(ip, fp)`` for :func:`mxref.kernels.element.encode_element`.

    ``fp`` is ``(overflow_value, max_normal, input_zero_addend)`` as host
    floats; adding the last to every input is the identity when -0.0 inputs
    keep their sign (-0.0) and turns -0.0 into +0.0 otherwise (+0.0).
    """
    host_mbits, host_ebits, host_bias = HOST_LAYOUT[np.dtype(host)]
    width = 1 + host_ebits + host_mbits
    ieee = overflow is Overflow.IEEE and rounding is not Rounding.ZERO
    overflow_code = fmt.overflow_code if ieee and fmt.overflow_code is not None else fmt.max_code
    if overflow_code == fmt.max_code:
        overflow_value = float(fmt.max_normal)
    elif overflow_code == fmt.inf_code:
        overflow_value = float("inf")
    else:
        overflow_value = float("nan")
    twos = fmt.sign is SignEncoding.TWOS_COMPLEMENT
    fields = {
        el.IP_PMIN_BITS: _pow2_bits(fmt.emin, host_mbits, host_bias),
        el.IP_EXP_MASK: ((1 << host_ebits) - 1) << host_mbits,
        el.IP_RNE_OFFSET: (host_mbits - fmt.mbits) << host_mbits,
        el.IP_INVERSE_BASE: (host_bias + fmt.mbits) << host_mbits,
        el.IP_QUANTUM_OFFSET: fmt.mbits << host_mbits,
        el.IP_TWO_POW_MBITS: 1 << fmt.mbits,
        el.IP_OVERFLOW_CODE: overflow_code,
        el.IP_SIGN_XOR: fmt.code_count - 1 if twos else fmt.sign_bit,
        el.IP_SIGN_ADD: 1 if twos else 0,
        el.IP_CODE_MASK: fmt.code_count - 1,
        el.IP_NEGATIVE_ZERO: 0 if twos else 1,
        el.IP_CLAMP_BITS: _pow2_bits(fmt.emax + 1, host_mbits, host_bias),
        el.IP_ABS_MASK: (1 << (width - 1)) - 1,
        el.IP_ONE_BITS: host_bias << host_mbits,
    }
    assert sorted(fields) == list(range(el.IP_COUNT))
    ip = [fields[i] for i in range(el.IP_COUNT)]
    uint = np.uint32 if width == 32 else np.uint64
    hf = np.dtype(host).type
    zero_addend = hf(-0.0 if keep_negative_zero else 0.0)
    return tuple(uint(v) for v in ip), (hf(overflow_value), hf(float(fmt.max_normal)), zero_addend)


@cache
def scale_params(
    fmt: ElementFormat,
    rule: ScaleRule,
    host: np.dtype,
    divisor_min_exponent: int = -127,
    overflow_nan: bool = False,
    input_emax: int = 127,
):
    """Return the scale tuple of :func:`mxref.kernels.block.quantize_block`.

    The first six entries are :func:`mxref.kernels.scale.encode_scale`'s; the
    seventh is the smallest E8M0 byte used as the element divisor (1 for
    torchao 0.18, which divides by at least 2**-126 whatever the byte says);
    the eighth is 1 for the scale-byte overflow quirk (compressed-tensors:
    a rounded amax beyond the input format's largest binade ``2**input_emax``,
    the ninth entry, or a shared exponent above 127, gives byte 0xFF).
    """
    host_mbits, _, host_bias = HOST_LAYOUT[np.dtype(host)]
    return (
        np.int64(host_mbits),
        np.int64(host_bias),
        np.int64(fmt.emax),
        np.int64(fmt.mbits),
        np.int64(fmt.max_significand_mantissa),
        np.int64(SCALE_RULE_CODES[rule]),
        np.int64(divisor_min_exponent + 127),
        np.int64(1 if overflow_nan else 0),
        np.int64(input_emax),
    )


def decode_params(fmt: ElementFormat):
    """Return the arguments of :func:`mxref.kernels.element.decode_table`."""
    return (
        fmt.ebits,
        fmt.mbits,
        fmt.bias,
        SPECIALS_CODE[fmt.specials],
        fmt.sign is SignEncoding.TWOS_COMPLEMENT,
    )
