"""Failing checks grouped by the root cause of their first difference.

One bug in an implementation usually fails many checks: a scale one too high
fails every scale, rounding and golden check it touches.  ``mxref conform``
therefore leads its report with the causes, each with the checks it
explains, read from every failing check's first failing case:

- ``backend error``: the backend raised, crashed, timed out or gave no
  usable output;
- ``NaN/Inf policy``: a NaN scale byte on one side, or a code that differs
  on a NaN or Inf input;
- ``scale high by k`` / ``scale low by k``: the E8M0 byte differs by ``k``;
- ``sign``: a code that differs only in its sign bit;
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

from mxref.conformance.failures import CaseFailure
from mxref.formats import FORMATS, SignEncoding

#: hex digits of an input -> (exponent shift, all-ones exponent field) of its float type
_SPECIAL_EXPONENTS = {4: (10, 0x1F), 8: (23, 0xFF), 16: (52, 0x7FF)}


def _nan_or_inf(word: str) -> bool:
    """Whether an input's hex bits (float16, float32 or float64) are a NaN or an Inf."""
    shift, ones = _SPECIAL_EXPONENTS.get(len(word), (23, 0xFF))
    return (int(word, 16) >> shift) & ones == ones


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
            return "NaN/Inf policy (a NaN scale byte on one side)"
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
    return CaseFailure(
        check=failure.check, where=f"{fmt} {name}", inputs={"x": x},
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
    return "element rounding"


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
