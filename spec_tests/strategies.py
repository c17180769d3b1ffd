"""Hypothesis strategies for MX blocks that stress the corner cases.

Blocks mix raw float32 bit patterns, subnormals, signed zeros, exact ties on
the element grid, NaN and Inf, and an amax forced to the predecessor or
successor of a power of two or above the format's max-normal significand.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import mxref
from mxref.ref.element import pow2

F32_BITS = st.integers(0, 2**32 - 1)


def f32(bits: int) -> np.float32:
    """The float32 with these bits."""
    return np.array([bits], np.uint32).view(np.float32)[0]


@st.composite
def forced_amax(draw, fmt: mxref.ElementFormat) -> float:
    """A positive amax at a hard spot: pred/succ/at 2**k, or above max normal's significand."""
    k = draw(st.integers(-149, 127))
    kind = draw(st.sampled_from(["pow2", "pred", "succ", "above_max_sig", "sig_pattern"]))
    p = np.float32(2.0**k) if k >= -149 else np.float32(0)
    if kind == "pow2":
        return float(p)
    if kind == "pred":
        return float(np.nextafter(p, np.float32(0)))
    if kind == "succ":
        return float(np.nextafter(p, np.float32(np.inf)))
    if kind == "above_max_sig":
        sig = fmt.max_normal / pow2(fmt.emax)  # in [1, 2)
        frac = draw(st.floats(0, 1, exclude_min=True, exclude_max=True))
        v = np.float32((float(sig) + (2 - float(sig)) * frac) * 2.0 ** min(k, 126))
        return float(v) if np.isfinite(v) and v > 0 else 1.0
    bits = draw(st.integers(0, (1 << 23) - 1)) | (max(min(k + 127, 254), 1) << 23)
    return float(f32(bits))


@st.composite
def element_value(draw, fmt: mxref.ElementFormat, amax: float) -> float:
    """One element no larger than amax in magnitude, from a mix of hard cases."""
    kind = draw(st.sampled_from(["bits", "fraction", "tie", "zero", "subnormal", "amax", "tiny"]))
    if kind == "bits":
        v = float(f32(draw(F32_BITS)))
        return v if np.isfinite(v) and abs(v) <= amax else amax * 0.5
    if kind == "fraction":
        return float(np.float32(amax * draw(st.floats(-1, 1, width=32))))
    if kind == "tie":
        # an odd multiple of half a quantum of the binade below amax
        q = float(fmt.min_subnormal) * draw(st.integers(1, 2 * fmt.code_count)) + 0.5 * float(
            fmt.min_subnormal
        )
        exp = draw(st.integers(-130, 120))
        v = float(np.float32(q * 2.0**exp))
        sign = draw(st.sampled_from([1.0, -1.0]))
        return sign * v if abs(v) <= amax else 0.0
    if kind == "zero":
        return draw(st.sampled_from([0.0, -0.0]))
    if kind == "subnormal":
        return float(f32(draw(st.integers(1, (1 << 23) - 1)) | (draw(st.integers(0, 1)) << 31)))
    if kind == "amax":
        return draw(st.sampled_from([amax, -amax]))
    return float(np.float32(amax * 2.0 ** -draw(st.integers(1, 40))))


@st.composite
def mx_input(draw, fmt: mxref.ElementFormat, max_rows: int = 3, max_len: int = 70):
    """A (rows, n) float32 array whose blocks each have a forced amax and hard elements."""
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, max_len))
    out = np.empty((rows, n), np.float32)
    for r in range(rows):
        amax = draw(forced_amax(fmt))
        for j in range(n):
            out[r, j] = draw(element_value(fmt, amax))
    special = draw(st.sampled_from([None, None, None, "nan", "inf", "-inf"]))
    if special is not None:
        r, j = draw(st.integers(0, rows - 1)), draw(st.integers(0, n - 1))
        out[r, j] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[special]
    return out
