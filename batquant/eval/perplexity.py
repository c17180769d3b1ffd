"""Perplexity as FlatQuant and QuaRot compute it.

The text is one 1-D array of token ids, cut into ``len // seq_len``
non-overlapping windows (the tail that does not fill one is dropped).  Each
window's loss is the mean cross-entropy of the logits at positions
``0 .. seq_len-2`` against the tokens ``1 .. seq_len-1``; the perplexity is
``exp`` of the mean over windows (every window weighs the same, as all have
``seq_len - 1`` predictions).  This is not lm-eval's ``wikitext`` task, which
reports word perplexity over documents.
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
    progress : bool
        A tqdm bar over the windows on stderr.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        Naming ``token_ids`` or ``seq_len``.
    """
    if not isinstance(token_ids, torch.Tensor) or token_ids.dtype not in (torch.int64,
                                                                          torch.int32):  # fmt: skip
        raise TypeError("token_ids must be a torch.LongTensor of token ids")
    ids = token_ids.flatten() if token_ids.ndim == 2 and token_ids.shape[0] == 1 else token_ids
    if ids.ndim != 1:
        raise ValueError(f"token_ids must be 1-D; got shape {tuple(token_ids.shape)}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2; got {seq_len!r}")
    windows = ids.numel() // seq_len
    if windows == 0:
        raise ValueError(
            f"token_ids has {ids.numel()} tokens, fewer than one window of seq_len {seq_len}"
        )
    device = next(iter(model.parameters())).device
    chunks = ids[: windows * seq_len].view(windows, seq_len).to(torch.int64)
    total = 0.0
    with torch.no_grad():
        for window in tqdm(chunks, desc="perplexity", unit="window", disable=not progress,
                           file=sys.stderr):  # fmt: skip
            x = window[None].to(device)
            logits = model(input_ids=x, use_cache=False).logits.float()
            loss = nn.functional.cross_entropy(logits[0, :-1], x[0, 1:])
            if not math.isfinite(loss.item()):
                raise ValueError("the model produced a non-finite loss (NaN or Inf logits)")
            total += loss.item()
    return math.exp(total / windows)
