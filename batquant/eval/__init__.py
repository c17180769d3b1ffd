"""Evaluation of full-precision and quantized models."""

from batquant.eval.perplexity import perplexity

__all__ = ["perplexity"]
