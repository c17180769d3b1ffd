"""The whole-model pipeline: input capture, the activation cache and the sequential loop.

It names neither a method (they come from :data:`batquant.METHODS`) nor a
model family (the structure comes from the adapter in :mod:`batquant.models`).
"""

from batquant.pipeline.options import Objective, Propagation
from batquant.pipeline.sequential import quantize_model

__all__ = ["Objective", "Propagation", "quantize_model"]
