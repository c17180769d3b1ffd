"""A quantized (or full-precision) model as an lm-eval model, for users who have task data.

lm-eval (EleutherAI's lm-evaluation-harness, 0.4.x) is an optional extra:
``pip install "mxref[lm-eval]"``.  :func:`lm_eval_model` wraps the model object
itself in lm-eval's ``HFLM``, so the evaluation runs the fake-quantized
linears and the quantized KV cache exactly as :func:`batquant.perplexity`
does; nothing is reloaded by name from a hub.  Then::

    import lm_eval
    results = lm_eval.simple_evaluate(model=lm, tasks=["arc_easy"])

Offline, a task defined in a local YAML file with a local JSONL dataset
runs through ``lm_eval.tasks.TaskManager(include_path=FOLDER)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def lm_eval_model(model: nn.Module, tokenizer: Any, *, batch_size: int = 1,
                  max_length: int | None = None) -> Any:  # fmt: skip
    """Wrap ``model`` and ``tokenizer`` as an ``lm_eval.models.huggingface.HFLM``.

    Parameters
    ----------
    model : transformers PreTrainedModel
        A causal LM, as :func:`batquant.quantize_model`, :func:`batquant.load_quantized`
        or :func:`batquant.load_export` return it (or the full-precision one).
        It is evaluated in place, on its own device.
    tokenizer : transformers tokenizer
        The model's tokenizer (:func:`batquant.loading.load_tokenizer`).
    batch_size : int
        Requests per forward pass.
    max_length : int, optional
        The longest context lm-eval gives the model; the model's
        ``max_position_embeddings`` when omitted.

    Returns
    -------
    lm_eval.models.huggingface.HFLM

    Raises
    ------
    ImportError
        lm-eval is not installed (naming the extra that installs it).
    TypeError, ValueError
        Naming ``model``, ``tokenizer``, ``batch_size`` or ``max_length``.
    """
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as err:
        raise ImportError(
            "batquant.eval.lm_eval_model needs lm-eval 0.4.x: pip install 'mxref[lm-eval]'"
        ) from err
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"model must be a transformers PreTrainedModel; got "
                        f"{type(model).__name__}")  # fmt: skip
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(f"tokenizer must be a transformers tokenizer; got "
                        f"{type(tokenizer).__name__}")  # fmt: skip
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                   or max_length < 2):  # fmt: skip
        raise ValueError(f"max_length must be an int >= 2; got {max_length!r}")
    model.eval()
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                max_length=max_length)  # fmt: skip
