"""batquant: BATQuant calibration for MX formats, built on mxref.

- MX fake quantization comes from :mod:`mxref.torch` (bit-exact with mxref).
- :mod:`batquant.algorithms.transforms`: block-wise affine (GPK and ablations) and the
  baselines' transforms, as ``nn.Module`` objects with one interface.
- :mod:`batquant.algorithms.clipping`: block-wise learnable clipping.
- :func:`calibrate` / :func:`quantize_linear`: layer-wise calibration.
- :data:`METHODS`: the registry (rtn, smoothquant, quarot, brq, flatquant,
  batquant and its ablations).
- :func:`quantize_model`: whole transformers causal LMs (Qwen3, Llama, and
  any family with an adapter in :mod:`batquant.models`), with KV-cache
  quantization, sequential calibration, resume and progress;
  :func:`perplexity`, :func:`save_quantized` and :func:`load_quantized`.
- ``weight_quantizer="gptq"``: MX-GPTQ for any method (:mod:`batquant.algorithms.gptq`).
- :func:`export` / :func:`load_export` / :func:`dump_layer`: a packed, deployable
  export that loads without the original checkpoint, and one-layer reference
  dumps for device checks (:mod:`batquant.deploy`).
"""

from batquant.algorithms.calibration import CalibratedGroup, calibrate, quantize_linear
from batquant.algorithms.clipping import ClipGroups, LearnableClip
from batquant.algorithms.layer import QuantizedLinear
from batquant.algorithms.methods import (
    METHODS,
    Method,
    TransformContext,
    get_method,
    register,
)
from batquant.algorithms.methods import (
    RECOMMENDED as RECOMMENDED_METHOD,
)
from batquant.config import (
    CONFIGS,
    CalibSpec,
    GPTQSpec,
    GradientOrder,
    QuantConfig,
    TensorQuant,
    get_config,
)
from batquant.deploy import dump_layer, export, load_export
from batquant.eval import perplexity
from batquant.pipeline import quantize_model
from batquant.pipeline.saving import load_quantized, save_quantized

__all__ = [
    "CONFIGS",
    "METHODS",
    "RECOMMENDED_METHOD",
    "CalibSpec",
    "CalibratedGroup",
    "GPTQSpec",
    "GradientOrder",
    "ClipGroups",
    "LearnableClip",
    "Method",
    "QuantConfig",
    "QuantizedLinear",
    "TensorQuant",
    "TransformContext",
    "calibrate",
    "dump_layer",
    "export",
    "get_config",
    "get_method",
    "load_export",
    "load_quantized",
    "perplexity",
    "quantize_linear",
    "quantize_model",
    "register",
    "save_quantized",
]
