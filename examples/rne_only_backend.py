"""An MX quantize that implements only the spec's required conversion: FLOOR scale, RNE.

It refuses every other scale rule and rounding, as a real kernel that offers
only those would.  Declared with claims it passes the conformance battery::

    mxref conform --backend rne_only_backend:quantize --rounding all --scale-rule all \\
        --claims 'roundings=rne;scale_rules=floor'
    pytest spec_tests --mx-backend rne_only_backend:quantize \\
        --mx-claims 'roundings=rne;scale_rules=floor'

Without the claims, every check under another rule or rounding fails.
"""

from __future__ import annotations

from typing import Any

import mxref


def quantize(x: Any, fmt: str, *, scale_rule: str = "floor", rounding: str = "rne",
             overflow: str = "saturate", **kwargs: Any) -> mxref.MXArray:  # fmt: skip
    """:func:`mxref.quantize` for FLOOR/RNE only; anything else raises NotImplementedError."""
    if str(scale_rule) != "floor" or str(rounding) != "rne":
        raise NotImplementedError(f"{scale_rule}/{rounding}: only floor/rne is implemented")
    return mxref.quantize(x, fmt, scale_rule=scale_rule, rounding=rounding, overflow=overflow,
                          **kwargs)  # fmt: skip
