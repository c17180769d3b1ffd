"""The router's choices of an MoE layer: recorded in the full-precision pass, replayed in training.

Each expert learns from the tokens that the **full-precision** model routes
to it: the full-precision pass records, per sample, the top-k experts and
weights that the experts module receives, and while the quantized twin
trains its experts get exactly those (:func:`routing_fixed`) instead of the
choice its router makes from the quantized attention's output.  Once
frozen, the quantized layer routes live, with its full-precision router, as
any model does.

Only fused experts (called as ``experts(hidden, top_k_index, top_k_weights)``)
receive the choice as arguments; per-expert linears are called by the MoE
block itself, so they train on the routing of the quantized layer's own
router (docs/models.md, "MoE").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

#: What each recorded call gives: ``(top_k_index [T, k], top_k_weights [T, k])``.
Routing = tuple[torch.Tensor, torch.Tensor]


@contextmanager
def recording(modules: dict[str, nn.Module]) -> Iterator[dict[str, list[Routing]]]:
    """Record the routing every experts module in ``modules`` receives, call by call."""
    seen: dict[str, list[Routing]] = {name: [] for name in modules}
    hooks = []
    for name, module in modules.items():
        def record(module: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            index, weights = _routing_arguments(module, args)
            seen[name].append((index.detach(), weights.detach().float()))

        hooks.append(module.register_forward_pre_hook(record))
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def _routing_arguments(module: nn.Module, args: tuple[Any, ...]) -> Routing:
    if len(args) != 3:
        raise ValueError(
            f"{type(module).__name__} was called with {len(args)} positional argument(s); fused "
            "experts must be called as experts(hidden, top_k_index, top_k_weights)"
        )
    return args[1], args[2]


@contextmanager
def routing_fixed(modules: dict[str, nn.Module], routing: dict[str, Routing]) -> Iterator[None]:
    """Call each experts module with the given routing instead of its caller's."""
    with ExitStack() as stack:
        for name, module in modules.items():
            index, weights = routing[name]

            def replay(module: nn.Module, args: tuple[Any, ...], index: torch.Tensor = index,
                       weights: torch.Tensor = weights) -> tuple[Any, ...]:  # fmt: skip
                live, _ = _routing_arguments(module, args)
                if live.shape != index.shape:
                    raise ValueError(
                        f"{type(module).__name__}: the recorded routing has shape "
                        f"{tuple(index.shape)}, the call {tuple(live.shape)}"
                    )
                return args[0], index, weights.to(args[2].dtype)

            stack.enter_context(module.register_forward_pre_hook(replay))
        yield
