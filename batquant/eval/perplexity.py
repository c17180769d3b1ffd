"""Perplexity as FlatQuant and QuaRot compute it.

The text is one 1-D array of token ids, cut into ``len // seq_len``
non-overlapping windows (the tail that does not fill one is dropped).  Each
window's loss is the mean cross-entropy of the logits at positions
``0 .. seq_len-2`` against the tokens ``1 .. seq_len-1``; the perplexity is
``exp`` of the mean over windows (every window weighs the same, as all have
``seq_len - 1`` predictions).

Windows are run ``batch_size`` at a time.  All windows have the same length,
so a batch needs no padding or attention mask, and every window's loss is the
one it has alone up to float32 rounding (a batched matmul may sum in another
order), except under NVFP4 activations with one tensor scale per tensor
(``TensorQuant.tensor_scale="tensor"``, the NVFP4 presets): the windows of a
batch share that scale, so a window's loss depends on its batch.  The logits
of one batch take ``batch_size x seq_len x vocab`` floats, which bounds a
useful batch size on large vocabularies.

This is not lm-eval's ``wikitext`` task, which reports word perplexity over
documents.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import nn
from tqdm.auto import tqdm


def perplexity(
    model: nn.Module,
    token_ids: torch.Tensor,
    *,
    seq_len: int = 2048,
    batch_size: int = 1,
    progress: bool = False,
) -> float:
    """Perplexity of ``model`` on ``token_ids`` in non-overlapping windows of ``seq_len``.

    Parameters
    ----------
    model : transformers causal LM
        Full precision or quantized; run on its own device, without grad.
    token_ids : torch.LongTensor
        1-D token ids (a ``[1, n]`` tensor is accepted too).
    seq_len : int
        Window length (2048 in the papers).
    batch_size : int
        Windows per forward pass (the last batch may be smaller).
    progress : bool
        A tqdm bar over the windows on stderr.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        Naming ``token_ids``, ``seq_len`` or ``batch_size``.
    """
    if not isinstance(token_ids, torch.Tensor) or token_ids.dtype not in (torch.int64,
                                                                          torch.int32):  # fmt: skip
        raise TypeError("token_ids must be a torch.LongTensor of token ids")
    ids = token_ids.flatten() if token_ids.ndim == 2 and token_ids.shape[0] == 1 else token_ids
    if ids.ndim != 1:
        raise ValueError(f"token_ids must be 1-D; got shape {tuple(token_ids.shape)}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2; got {seq_len!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    windows = ids.numel() // seq_len
    if windows == 0:
        raise ValueError(
            f"token_ids has {ids.numel()} tokens, fewer than one window of seq_len {seq_len}"
        )
    device = next(iter(model.parameters())).device
    chunks = ids[: windows * seq_len].view(windows, seq_len).to(torch.int64)
    total = 0.0
    with torch.no_grad(), tqdm(total=windows, desc="perplexity", unit="window",
                               disable=not progress, file=sys.stderr) as bar:  # fmt: skip
        for batch in chunks.split(batch_size):
            x = batch.to(device)
            logits = model(input_ids=x, use_cache=False).logits
            for row in range(x.shape[0]):
                # one window at a time in float32: a float copy of the whole batch's
                # logits would double the largest allocation of the pass
                loss = nn.functional.cross_entropy(logits[row, :-1].float(), x[row, 1:])
                if not math.isfinite(loss.item()):
                    raise ValueError("the model produced a non-finite loss (NaN or Inf logits)")
                total += loss.item()
            bar.update(x.shape[0])
    return math.exp(total / windows)
