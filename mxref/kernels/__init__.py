"""numba kernels, mirroring :mod:`mxref.ref` name for name.

- :mod:`mxref.kernels.element` mirrors :mod:`mxref.ref.element`;
- :mod:`mxref.kernels.scale` mirrors :mod:`mxref.ref.scale`;
- :mod:`mxref.kernels.block` mirrors :mod:`mxref.ref.block`;
- :mod:`mxref.kernels.stochastic` mirrors :mod:`mxref.ref.stochastic`;
- :mod:`mxref.kernels.array` mirrors :mod:`mxref.ref.array` (parallel over blocks);
- :mod:`mxref.kernels.nvfp4` mirrors :mod:`mxref.ref.nvfp4` (two-level NVFP4 scaling).

Rules every kernel keeps: ``@njit(cache=True)``, never ``fastmath`` (it would
allow reassociation and flush subnormals), exponents read from bit fields,
and plain integers or tuples as arguments, never the dataclasses.
"""
