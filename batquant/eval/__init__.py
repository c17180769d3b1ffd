"""Evaluation of full-precision and quantized models."""

from batquant.eval.harness import lm_eval_model
from batquant.eval.perplexity import perplexity

__all__ = ["lm_eval_model", "perplexity"]
