"""mxref: a bit-exact reference for the OCP Microscaling (MX) formats.

Public API::

    quantize, dequantize, quantize_dequantize, MXArray, save, load
    pack, unpack, PackedMX, ScaleLayout
    matmul, dot, parse_accum, Exact, BlockFP32, FixedPoint, PROFILES
    get_format, FORMATS, ElementFormat
    ScaleRule, Rounding, Overflow

Spec: OCP Microscaling Formats (MX) v1.0.
"""

from mxref.accum import PROFILES, AlignRounding, BlockFP32, Exact, FixedPoint, parse_accum
from mxref.array import MXArray
from mxref.codec import dequantize, quantize, quantize_dequantize
from mxref.formats import (
    FORMATS,
    ElementFormat,
    SignEncoding,
    Specials,
    get_format,
    mx_format_names,
)
from mxref.gemm import dot, matmul
from mxref.mx_files import read_mx as load
from mxref.mx_files import write_mx as save
from mxref.packing import PackedMX, ScaleLayout, pack, unpack
from mxref.policies import Overflow, Rounding, ScaleRule

__all__ = [
    "PROFILES",
    "AlignRounding",
    "BlockFP32",
    "Exact",
    "FixedPoint",
    "dot",
    "matmul",
    "parse_accum",
    "FORMATS",
    "ElementFormat",
    "MXArray",
    "Overflow",
    "PackedMX",
    "Rounding",
    "ScaleLayout",
    "ScaleRule",
    "SignEncoding",
    "Specials",
    "dequantize",
    "get_format",
    "mx_format_names",
    "load",
    "pack",
    "quantize",
    "quantize_dequantize",
    "save",
    "unpack",
]
__version__ = "0.1.0"
