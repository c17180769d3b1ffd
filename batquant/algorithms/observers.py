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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn

from mxref.policies import Policy

#: Most calibration rows a data-fitted transform sees (``Statistic.ROWS``).
FIT_ROWS = 4096

#: Sort keys of placed rows: ``call * _CALL_KEY + position`` (positions stay below it).
_CALL_KEY = 1 << 40


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
        self._keys: list[torch.Tensor] = []
        self._kept = 0
        self._place: tuple[int, torch.Tensor] | None = None

    def place(self, call: int, positions: torch.Tensor) -> None:
        """Say where the rows of the next update sit in a single process's run.

        A data-parallel rank sees only its own samples of every batch.  Given
        the batch (``call``) and each row's position in that batch's flattened
        rows, a fixed-stride ``ROWS`` sample keeps exactly the rows a single
        process would keep, with keys that :func:`reduce_statistics` merges in
        its order.
        """
        self._place = (call, positions.reshape(-1).to("cpu", torch.int64))

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
        elif Statistic.ROWS in self.wanted and self._place is not None:
            call, positions = self._place
            if positions.numel() != flat.shape[0]:
                raise ValueError(f"InputStatistics.place: {positions.numel()} positions for "
                                 f"{flat.shape[0]} rows")  # fmt: skip
            keep = positions % self.stride == 0
            self._rows.append(flat[keep.to(flat.device)].cpu())
            self._keys.append(call * _CALL_KEY + positions[keep])
            self._kept += self._rows[-1].shape[0]
        elif Statistic.ROWS in self.wanted and self._kept < self.limit:
            rows = flat[:: self.stride][: self.limit - self._kept].cpu()
            self._rows.append(rows)
            self._kept += rows.shape[0]
        self._place = None
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
        if self._keys:
            rows = rows[torch.cat(self._keys).argsort(stable=True)][: self.limit]
        if self.adaptive and rows.shape[0] > self.limit:
            rows = rows[:: -(-rows.shape[0] // self.limit)]
        return rows

    @property
    def channels(self) -> int:
        """The stream's width, once a row was seen (0 before)."""
        for value in (self.absmax, self.gram, *self._rows):
            if value is not None:
                return int(value.shape[-1])
        return 0


class Collective(Protocol):
    """Reductions over the ranks of a data-parallel run (:class:`batquant.pipeline.ranks.Ranks`)."""

    def reduce(self, tensor: torch.Tensor, op: str, where: str) -> torch.Tensor:
        """``tensor`` summed (``"sum"``) or maxed (``"max"``) over the ranks."""

    def gather(self, value: Any, where: str) -> list[Any]:
        """Every rank's ``value``, in rank order."""


def reduce_statistics(stats: Sequence[InputStatistics], ranks: Collective, where: str) -> None:
    """Turn every rank's statistics of the same streams into those of all their rows.

    Every rank passes its statistics of the same streams in the same order.
    Token counts and ``X^T X`` are summed, max |x| is maxed, and sampled rows
    are gathered: rows placed by :meth:`InputStatistics.place` merge into
    exactly the sample a single process keeps; an adaptive (routed) stream's
    rows are concatenated in rank order and thinned to the limit, a sample as
    evenly spread but not the single process's own.  Afterwards every rank
    holds the same statistics.
    """
    if not stats:
        return
    local = torch.tensor([[s.tokens, s.channels] for s in stats], dtype=torch.int64)
    tokens = ranks.reduce(local[:, 0].clone(), "sum", where).tolist()
    channels = ranks.reduce(local[:, 1].clone(), "max", where).tolist()
    for s, count, width in zip(stats, tokens, channels, strict=True):
        s.tokens = int(count)
        if width == 0:  # no rank saw a row of this stream
            continue
        if Statistic.ABSMAX in s.wanted:
            mine = s.absmax if s.absmax is not None else torch.zeros(width)
            s.absmax = ranks.reduce(mine, "max", where)
        if Statistic.GRAM in s.wanted:
            gram = s.gram if s.gram is not None else torch.zeros(width, width,
                                                                  dtype=torch.float64)
            s.gram = ranks.reduce(gram, "sum", where)
    sampled = [s for s in stats if Statistic.ROWS in s.wanted]
    if not sampled:
        return
    rows = [(torch.cat(s._rows) if s._rows else None,
             torch.cat(s._keys) if s._keys else None) for s in sampled]  # fmt: skip
    everyone = ranks.gather(rows, where)
    for k, s in enumerate(sampled):
        parts = [rank[k] for rank in everyone if rank[k][0] is not None]
        s._rows = [p[0] for p in parts]
        s._keys = [p[1] for p in parts if p[1] is not None]
        if s._keys and len(s._keys) != len(s._rows):
            raise ValueError(f"{where}: some ranks placed their sampled rows and others did not")
        s._kept = sum(r.shape[0] for r in s._rows)


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
