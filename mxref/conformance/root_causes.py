"""Failing checks grouped by the root cause of their first difference.

One bug in an implementation usually fails many checks: a scale one too high
fails every scale, rounding and golden check it touches.  ``mxref conform``
therefore leads its report with the causes, each with the checks it
explains, read from every failing check's first failing case:

- ``backend error``: the backend raised, crashed, timed out or gave no
  usable output;
- ``NaN/Inf policy``: a NaN scale byte on one side (saying whether the
  block holds a NaN, an Inf or neither), or a code that differs on a NaN or
  Inf input;
- ``scale high by k`` / ``scale low by k``: the E8M0 byte differs by ``k``;
- ``sign``: a code that differs only in its sign bit;
- ``elements encoded under 2^k x the stored scale``: the scale byte is
  right, but the codes are exactly the oracle's under the byte ``+ k``
  (``k`` in +-1, +-2): the divisor differs from the stored scale, e.g. a
  divisor clamped at 2^-126 in blocks whose byte 0x00 means 2^-127;
- ``element rounding``: any other code difference under the same scale;
- ``packing``, ``GEMM``, or the golden file's area for the other checks.

NVFP4 cases (their ``expected`` has a ``tensor_scale``) read in NVFP4's
words: ``tensor scale differs`` first (it moves every block), then ``block
scale high by k E4M3 steps`` (positive E4M3 bytes are ordered by value, so
the byte difference counts steps) with the number of blocks that differ in
the checks' first failing cases, the E4M3 NaN byte 0x7F on one side, then
the element causes above; a decoding case is ``decoding``, a packing case
``packing`` or ``packing (swizzled scale layout)``.
"""

from __future__ import annotations

import numpy as np

from mxref.conformance.failures import CaseFailure
from mxref.formats import FORMATS, SignEncoding
from mxref.policies import Overflow, Rounding

#: hex digits of an input -> (exponent shift, all-ones exponent field) of its float type
_SPECIAL_EXPONENTS = {4: (10, 0x1F), 8: (23, 0xFF), 16: (52, 0x7FF)}


def _nan_or_inf(word: str) -> bool:
    """Whether an input's hex bits (float16, float32 or float64) are a NaN or an Inf."""
    shift, ones = _SPECIAL_EXPONENTS.get(len(word), (23, 0xFF))
    return (int(word, 16) >> shift) & ones == ones


def _is_nan(word: str) -> bool:
    """Whether a NaN-or-Inf input's hex bits have a nonzero fraction (a NaN)."""
    shift, _ = _SPECIAL_EXPONENTS.get(len(word), (23, 0xFF))
    return int(word, 16) & ((1 << shift) - 1) != 0


def root_cause(failure: CaseFailure) -> str:
    """The root cause of one failing case, as a short label (see the module docstring)."""
    if failure.error:
        return "backend error (raised, crashed or no usable output)"
    expected, got = failure.expected, failure.got
    if "tensor_scale" in expected and "tensor_scale" in got:
        return _nv_cause(failure)
    if "values" in expected:
        return "decoding"
    if "blocked_scales" in expected:
        swizzled = any(d.startswith("swizzled") for d in failure.differs)
        data = any(d.startswith("data") for d in failure.differs)
        return "packing (swizzled scale layout)" if swizzled and not data else "packing"
    if "scale" in expected and "scale" in got and expected["scale"] != got["scale"]:
        want, have = int(expected["scale"][0], 16), int(got["scale"][0], 16)
        if 0xFF in (want, have):
            x = failure.inputs.get("x", [])
            held = "NaN" if any(_nan_or_inf(w) and _is_nan(w) for w in x) else \
                "Inf" if any(_nan_or_inf(w) for w in x) else "neither"  # fmt: skip
            return f"NaN/Inf policy (a NaN scale byte on one side; the block holds {held})"
        k = have - want
        return f"scale {'high' if k > 0 else 'low'} by {abs(k)}"
    if "codes" in expected and "codes" in got:
        return _code_cause(failure)
    encoded = _golden_encode_case(failure)
    if encoded is not None:
        return root_cause(encoded)
    if "packed" in expected:
        return "packing"
    if failure.area == "gemm":
        return "GEMM"
    return f"{failure.area} (see its first case)"


def _golden_encode_case(failure: CaseFailure) -> CaseFailure | None:
    """A golden encode case as a battery case: its scale byte, codes and inputs.

    An encode line's outputs are the scale byte then the codes
    (docs/golden_format.md); the format comes from the file name
    (``encode_<format>_...``), or from the line's ``format=`` key (the
    regressions file, whose case tokens start ``encode key=value...``).
    """
    name = failure.where.split(":", 1)[0]
    tokens = failure.inputs.get("case", [])
    keys = dict(t.split("=", 1) for t in tokens if "=" in t)
    if "outputs" not in failure.expected or "outputs" not in failure.got:
        return None
    if name.startswith("encode_"):
        rest = name[len("encode_"):]
        fmt = max((f for f in FORMATS if rest.startswith(f + "_")), key=len, default=None)
    elif tokens[:1] == ["encode"]:
        fmt = keys.get("format")
    else:
        return None  # a GEMM line
    want, have = failure.expected["outputs"], failure.got["outputs"]
    if fmt is None or not want or not have:
        return None
    x = [t for t in tokens if t != "encode" and "=" not in t]
    policy = "/".join(keys[k] for k in ("scale_rule", "rounding", "overflow") if k in keys)
    return CaseFailure(
        check=failure.check, where=f"{fmt} {policy} {name}".replace("  ", " "), inputs={"x": x},
        expected={"scale": want[:1], "codes": want[1:]}, got={"scale": have[:1], "codes": have[1:]},
        differs=failure.differs,
    )  # fmt: skip


#: The NaN byte of NVFP4's E4M3 block scales.
_E4M3_NAN = 0x7F


def _nv_cause(failure: CaseFailure) -> str:
    """An NVFP4 case's cause: tensor scale, then block scale, then the element causes."""
    expected, got = failure.expected, failure.got
    if expected["tensor_scale"] != got["tensor_scale"]:
        return "tensor scale differs"
    want, have = int(expected["scale"][0], 16), int(got["scale"][0], 16)
    if want != have:
        if _E4M3_NAN in (want, have):
            return "NaN/Inf policy (the E4M3 NaN byte 0x7F on one side)"
        k = have - want
        return f"block scale {'high' if k > 0 else 'low'} by {abs(k)} E4M3 step{'s' * (abs(k) > 1)}"
    return _code_cause(failure)


def _code_cause(failure: CaseFailure) -> str:
    want = [int(c, 16) for c in failure.expected["codes"]]
    have = [int(c, 16) for c in failure.got["codes"]]
    lanes = [j for j, (a, b) in enumerate(zip(want, have, strict=False)) if a != b]
    if not lanes:
        return "element rounding"
    x = failure.inputs.get("x", [])
    if any(j < len(x) and _nan_or_inf(x[j]) for j in lanes):
        return "NaN/Inf policy (codes of a NaN or Inf input)"
    name = failure.where.split(" ", 1)[0]
    fmt = FORMATS.get(name)
    if fmt is not None and fmt.sign is SignEncoding.SIGN_MAGNITUDE and all(
        want[j] ^ have[j] == fmt.sign_bit for j in lanes
    ):
        return "sign"
    shift = _divisor_shift(failure, have)
    if shift is not None:
        k, byte = shift
        clamp = f" (blocks with scale byte 0x00: the divisor is clamped at 2^{k - 127})"
        return f"elements encoded under 2^{k} x the stored scale" + (clamp if byte == 0 else "")
    return "element rounding"


#: hex digits of an input -> its numpy dtype
_INPUT_DTYPES = {4: np.uint16, 8: np.uint32, 16: np.uint64}
_FLOATS = {4: np.float16, 8: np.float32, 16: np.float64}


def _policy(where: str) -> tuple[Rounding, Overflow] | None:
    """The rounding and overflow a case ran under, from its ``where`` (None: stochastic)."""
    head = where.split(",", 1)[0].split(":", 1)[0]  # "mxfp4 floor/rne/saturate", not the note
    words = head.replace("/", " ").replace("_", " ").split()
    rounding = next((r for r in Rounding if r.value in words), Rounding.RNE)
    if rounding is Rounding.STOCHASTIC:
        return None  # the draws depend on the element's position; not re-encoded
    return rounding, Overflow.IEEE if "ieee" in words else Overflow.SATURATE


def block_values(failure: CaseFailure) -> np.ndarray | None:
    """A battery or golden encode case's inputs as a ``(1, n)`` float array (None: none)."""
    x = failure.inputs.get("x", [])
    digits = len(x[0]) if x else 0
    if digits not in _INPUT_DTYPES or any(len(w) != digits for w in x):
        return None
    bits = np.array([int(w, 16) for w in x], _INPUT_DTYPES[digits])
    return bits.view(_FLOATS[digits])[None, :]


def oracle_codes(failure: CaseFailure, values: np.ndarray, byte: int) -> list[int] | None:
    """The oracle's codes for ``values`` under the given scale byte, in the case's format
    and policies (:func:`mxref.ref.array.quantize_array`, never the kernels); None when
    that cannot be said (stochastic rounding, non-finite values, a byte outside 0..0xFE)."""
    from mxref.ref.array import quantize_array

    fmt = FORMATS.get(failure.where.split(" ", 1)[0])
    policy = _policy(failure.where)
    if fmt is None or policy is None or not 0 <= byte <= 0xFE or not np.isfinite(values).all():
        return None
    codes, _ = quantize_array(values, fmt, block_size=values.shape[1], rounding=policy[0],
                              overflow=policy[1], scales=np.array([[byte]], np.uint8))  # fmt: skip
    return [int(c) for c in codes[0]]


def _divisor_shift(failure: CaseFailure, have: list[int]) -> tuple[int, int] | None:
    """``(k, byte)`` when the codes are the oracle's under the stored byte ``+ k``."""
    values = block_values(failure)
    scale = failure.expected.get("scale", [])
    if values is None or len(scale) != 1 or values.shape[1] != len(have):
        return None
    byte = int(scale[0], 16)
    for k in (1, -1, 2, -2):
        if oracle_codes(failure, values, byte + k) == have:
            return k, byte
    return None


def group_by_cause(failures: list[tuple[str, CaseFailure]]) -> list[tuple[str, list[str]]]:
    """``(check id, first failure)`` pairs grouped by cause, the largest group first."""
    groups: dict[str, list[str]] = {}
    blocks: dict[str, int] = {}
    for check, failure in failures:
        cause = root_cause(failure)
        groups.setdefault(cause, []).append(check)
        if cause.startswith("block scale") and failure.blocks is not None:
            blocks[cause] = blocks.get(cause, 0) + failure.blocks
    named = {(f"{cause} in {blocks[cause]} block{'s' * (blocks[cause] != 1)}"
              if cause in blocks else cause): checks for cause, checks in groups.items()}
    return sorted(named.items(), key=lambda item: (-len(item[1]), item[0]))
