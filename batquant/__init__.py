"""batquant: BATQuant calibration for MX formats, built on mxref.

- :mod:`batquant.mx_torch`: MX fake quantization in torch, bit-exact with mxref.
- :mod:`batquant.transforms`: block-wise affine (GPK and ablations) and the
  baselines' transforms, as ``nn.Module`` objects with one interface.
- :mod:`batquant.clipping`: block-wise learnable clipping.
- :func:`calibrate` / :func:`quantize_linear`: layer-wise calibration.
- :data:`METHODS`: the registry (rtn, smoothquant, quarot, brq, flatquant,
  batquant and its ablations).
"""

from batquant.calibration import CalibratedGroup, calibrate, quantize_linear
from batquant.clipping import ClipGroups, LearnableClip
from batquant.config import CONFIGS, CalibSpec, QuantConfig, TensorQuant, get_config
from batquant.layer import QuantizedLinear
from batquant.methods import METHODS, Method, TransformContext, get_method, register

__all__ = [
    "CONFIGS",
    "METHODS",
    "CalibSpec",
    "CalibratedGroup",
    "ClipGroups",
    "LearnableClip",
    "Method",
    "QuantConfig",
    "QuantizedLinear",
    "TensorQuant",
    "TransformContext",
    "calibrate",
    "get_config",
    "get_method",
    "quantize_linear",
    "register",
]
