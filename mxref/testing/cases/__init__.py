"""The one case generator: every quantize and packing case mxref's harnesses run.

Cases come from structure, not only from randomness (Berkeley TestFloat),
and every case is a :class:`BlockCase` of float32 bit patterns with the spec
area it exercises (:mod:`mxref.testing.areas`).  Three consumers, one source:

- the golden files (:mod:`mxref.conformance.golden`) are :func:`encode_blocks`
  and :func:`pack_rows`, graded by area;
- ``mxref conform`` runs :func:`checked_blocks`, whose blocks also name the
  check they feed, at any block size;
- the pytest battery (``spec_tests/``) runs both on the backend under test,
  through the golden files and ``test_checked_blocks.py``, and draws its
  structured inputs (:func:`boundary_values`, :func:`adjacent_pairs`) from here.

Modules:

- :mod:`~mxref.testing.cases.float32`: float32 bit patterns and element grids;
- :mod:`~mxref.testing.cases.blocks`: the case type, levels and block cutting;
- :mod:`~mxref.testing.cases.structured`: the TestFloat-style structured set;
- :mod:`~mxref.testing.cases.checked`: the per-check set.

Spec: OCP MX v1.0 sections 5 (encodings) and 6.3 (conversion).
"""

from mxref.testing.cases.blocks import AREAS, LEVELS, BlockCase, blocks_of, check_level, cut_rows
from mxref.testing.cases.checked import CHECKED_GROUPS, case_rng, checked_blocks
from mxref.testing.cases.float32 import (
    F32_INF,
    F32_MAX,
    F32_MIN_NORMAL,
    F32_MIN_SUBNORMAL,
    F32_QNAN,
    F32_SIGN,
    FRACTION_BITS,
    adjacent_pairs,
    bits_of,
    f32_bits,
    f32_pow2,
    f32_value,
    finite_codes,
    float32_from_fields,
    float32_of,
    midpoints,
    negate,
    next_down,
    next_up,
    positive_grid,
    signed_code,
)
from mxref.testing.cases.structured import (
    CodeRow,
    amax_block,
    body,
    boundary_anchor_exponents,
    boundary_blocks,
    boundary_values,
    corner_blocks,
    encode_blocks,
    midpoint_blocks,
    midpoint_scale_exponents,
    midpoint_values,
    pack_rows,
    power_of_two_blocks,
    power_of_two_exponents,
    random_blocks,
    saturation_amaxes,
    saturation_blocks,
    significand_patterns,
    special_blocks,
    tiny_blocks,
)

__all__ = [
    "AREAS",
    "CHECKED_GROUPS",
    "F32_INF",
    "F32_MAX",
    "F32_MIN_NORMAL",
    "F32_MIN_SUBNORMAL",
    "F32_QNAN",
    "F32_SIGN",
    "FRACTION_BITS",
    "LEVELS",
    "BlockCase",
    "CodeRow",
    "adjacent_pairs",
    "amax_block",
    "bits_of",
    "blocks_of",
    "body",
    "boundary_anchor_exponents",
    "boundary_blocks",
    "boundary_values",
    "case_rng",
    "check_level",
    "checked_blocks",
    "corner_blocks",
    "cut_rows",
    "encode_blocks",
    "f32_bits",
    "f32_pow2",
    "f32_value",
    "finite_codes",
    "float32_from_fields",
    "float32_of",
    "midpoint_blocks",
    "midpoint_scale_exponents",
    "midpoint_values",
    "midpoints",
    "negate",
    "next_down",
    "next_up",
    "pack_rows",
    "positive_grid",
    "power_of_two_blocks",
    "power_of_two_exponents",
    "random_blocks",
    "saturation_amaxes",
    "saturation_blocks",
    "signed_code",
    "significand_patterns",
    "special_blocks",
    "tiny_blocks",
]
