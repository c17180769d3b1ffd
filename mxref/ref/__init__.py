"""The exact oracle: slow, obviously correct, never optimised.

Everything here works on Python integers and :class:`fractions.Fraction`; no
floating-point arithmetic touches a value.  The numba kernels in
:mod:`mxref.kernels` mirror these modules name for name and are tested against
them bit for bit.

- :mod:`mxref.ref.element`: one element, encode and decode, plus the IEEE host
  formats (binary16/32/64, bfloat16) so inputs and outputs are exact too.
- :mod:`mxref.ref.scale`: the shared E8M0 exponent under every scale rule.
- :mod:`mxref.ref.block`: one block, quantize and dequantize.
- :mod:`mxref.ref.stochastic`: the counter-based random bits of stochastic rounding.
- :mod:`mxref.ref.array`: the same over whole arrays, for tests.
- :mod:`mxref.ref.nvfp4`: NVFP4's two-level scaling (a float32 tensor scale, E4M3
  block scales), each stored value rounded once.
"""
