"""Statistics of the inputs of a linear, gathered while the calibration data passes.

A method (or a weight quantizer) asks for what it needs by
:class:`Statistic`; the pipeline attaches one :class:`InputStatistics` per
input stream (a group of linears, one expert's down projection) and feeds it
every batch.  The statistics:

- ``ABSMAX``: the max ``|x|`` of every input channel (the methods that
  initialise from statistics: SmoothQuant, FlatQuant's diagonal);
- ``ROWS``: at most :data:`FIT_ROWS` rows, evenly strided (the methods that
  fit a transform to data: TORQ);
- ``GRAM``: ``X^T X`` summed over every row in float64 (a Hessian for GPTQ);
- the number of rows seen (tokens; for an expert, the tokens routed to it)
  is always counted.

:func:`observing` hooks streams onto modules' inputs (their first positional
argument, before the module runs: raw inputs; hooked on an
:class:`~batquant.algorithms.layer.InputQuantizer`, the inputs before the
transform).  :func:`observing_transformed` hooks the transformed, clipped
activations a quantized linear consumes, before their fake quantization.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mxref.policies import Policy

#: Most calibration rows a data-fitted transform sees (``Statistic.ROWS``).
FIT_ROWS = 4096


class Statistic(Policy):
    """What an input stream accumulates."""

    #: per-channel max |x|
    ABSMAX = "absmax"
    #: a strided sample of at most FIT_ROWS rows
    ROWS = "rows"
    #: X^T X in float64
    GRAM = "gram"


class InputStatistics:
    """Accumulates the statistics of one input stream ``[..., N]``.

    Parameters
    ----------
    wanted : iterable of Statistic
    stride : int or None
        ``ROWS`` keeps every ``stride``-th row of each update (so the sample
        spreads over the calibration set, whose size is known:
        :func:`row_stride`).  None, for a stream whose size is not known in
        advance (the tokens routed to an expert): every row is kept until
        ``2 * limit`` are, then every other one, with the stride doubling each
        time, so that the sample spreads evenly over the whole stream.
    limit : int
        Most rows kept.
    """

    def __init__(self, wanted: Iterable[Statistic | str], stride: int | None = 1,
                 limit: int = FIT_ROWS) -> None:  # fmt: skip
        self.wanted = frozenset(Statistic.parse(w, "statistic") for w in wanted)
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int)
                                   or stride < 1):  # fmt: skip
            raise ValueError(f"stride must be a positive int or None; got {stride!r}")
        self.adaptive = stride is None
        self.stride = 1 if stride is None else stride
        self.limit = limit
        self.tokens = 0
        self.absmax: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None
        self._rows: list[torch.Tensor] = []
        self._kept = 0

    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (any leading shape, channels last)."""
        flat = x.detach().flatten(0, -2).float()
        seen = self.tokens
        self.tokens += flat.shape[0]
        if flat.shape[0] == 0:
            return
        if Statistic.ABSMAX in self.wanted:
            amax = flat.abs().amax(0)
            self.absmax = amax if self.absmax is None else torch.maximum(self.absmax, amax)
        if Statistic.ROWS in self.wanted and self.adaptive:
            self._sample_evenly(flat, seen)
        elif Statistic.ROWS in self.wanted and self._kept < self.limit:
            rows = flat[:: self.stride][: self.limit - self._kept].cpu()
            self._rows.append(rows)
            self._kept += rows.shape[0]
        if Statistic.GRAM in self.wanted:
            x64 = flat.double()
            gram = x64.T @ x64
            self.gram = gram if self.gram is None else self.gram + gram

    def _sample_evenly(self, flat: torch.Tensor, seen: int) -> None:
        """Keep the rows at stream positions that are multiples of the stride (adaptive)."""
        self._rows.append(flat[(-seen) % self.stride :: self.stride].cpu())
        self._kept += self._rows[-1].shape[0]
        while self._kept > 2 * self.limit:  # positions k*stride: the even k are 2*stride apart
            kept = torch.cat(self._rows)[::2]
            self._rows, self._kept, self.stride = [kept], kept.shape[0], 2 * self.stride

    @property
    def rows(self) -> torch.Tensor | None:
        """The sampled rows ``[rows, N]`` (None when not wanted or none seen)."""
        if not self._rows:
            return None
        rows = torch.cat(self._rows)
        if self.adaptive and rows.shape[0] > self.limit:
            rows = rows[:: -(-rows.shape[0] // self.limit)]
        return rows


def row_stride(tokens: int, limit: int = FIT_ROWS) -> int:
    """The stride that spreads ``limit`` rows over ``tokens`` calibration tokens."""
    return max(1, -(-tokens // limit))


@contextmanager
def observing(streams: dict[str, list[nn.Module]], wanted: Iterable[Statistic | str],
              stride: int = 1, routed: Iterable[str] = (),
              ) -> Iterator[dict[str, InputStatistics]]:  # fmt: skip
    """Hook one :class:`InputStatistics` per stream onto the inputs of its modules.

    Parameters
    ----------
    streams : dict
        Stream name -> the modules whose first positional inputs, together,
        are the stream (a group's first linear; every expert's first linear).
    wanted : iterable of Statistic
    stride : int
    routed : iterable of str
        Streams of routed tokens, whose size is not known in advance: they
        sample rows adaptively (``stride=None``).

    Yields
    ------
    dict
        Stream name -> its statistics, filled while the block runs.
    """
    wanted = frozenset(wanted)
    adaptive = set(routed)
    stats = {name: InputStatistics(wanted, None if name in adaptive else stride)
             for name in streams}  # fmt: skip
    hooks = []
    for name, modules in streams.items():
        def record(module: nn.Module, args: tuple[Any, ...],
                   stream: InputStatistics = stats[name]) -> None:  # fmt: skip
            stream.update(args[0])

        hooks += [m.register_forward_pre_hook(record) for m in modules]
    try:
        yield stats
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def observing_transformed(quantizers: Mapping[str, nn.Module], wanted: Iterable[Statistic | str],
                          stride: int = 1) -> Iterator[dict[str, InputStatistics]]:  # fmt: skip
    """As :func:`observing`, on what each :class:`InputQuantizer` hands its fake quantizer.

    That is the transformed, clipped activation of the linears that share the
    quantizer (what a Hessian for their transformed weights is built from).
    """
    wanted = frozenset(wanted)
    stats = {name: InputStatistics(wanted, stride) for name in quantizers}
    for name, quantizer in quantizers.items():
        quantizer.observer = stats[name]  # type: ignore[assignment]
    try:
        yield stats
    finally:
        for quantizer in quantizers.values():
            quantizer.observer = None  # type: ignore[assignment]
