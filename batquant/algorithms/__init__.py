"""The algorithms: how to transform, clip and quantize the linears that share an input.

Transforms (:mod:`~batquant.algorithms.transforms`), learnable clipping, the
method registry, the quantized modules (linears, experts, KV heads), the
observers that gather input statistics, and the one training loop.  Nothing
here names a model family or knows how a model is walked layer by layer.
"""
