"""Data-parallel calibration: the ranks of a torch.distributed process group.

When the default process group is initialised (``torchrun``, or the caller's
own :func:`torch.distributed.init_process_group`), :func:`batquant.quantize_model`
splits the calibration samples across its ranks and keeps every rank's copy
of the layer under calibration identical.  The one rule:

- **The split.**  Sample ``i`` belongs to rank ``i % world``.  The batches
  stay those of a single process (``CalibSpec.batch_size`` consecutive
  samples); each rank runs its own samples of every batch, and holds their
  activations only.
- **The reductions.**  Whatever decides a parameter is summed over the ranks
  before it is used:

  - every optimiser step's loss and gradients (each rank's loss is its
    share of the batch's mean, so that the sum is the single-process loss);
  - the statistics the methods and GPTQ read: max |x| (a max), the sampled
    rows (gathered and merged in the single-process order), ``X^T X`` and
    the tokens of every stream, and so of every expert (sums);
  - the summary's output errors (sums of squares).

  So every rank ends each layer with the same parameters, bit for bit, and
  a single process differs from them only by float32 summation order.
- **Bit for bit with one process** under ``CalibSpec.gradient_order="sample"``:
  every forward runs one sample, each step's per-sample gradients are
  gathered (:meth:`Ranks.rows`, no arithmetic) and every rank adds them in
  sample order, as a single process does; GPTQ's float64 ``X^T X`` sums stay
  in rank order (a last-bit float64 difference; no weight differed in our runs).
- **One writer.**  Rank 0 alone writes the checkpoints, the log and the
  output; the others read what it wrote when they resume.

A collective that waits longer than the process group's timeout raises
:class:`RankError` naming the rank that waited and what it waited for, so no
rank waits forever; a rank that fails exits, which breaks its connections
and stops the others at their next collective (``torchrun`` then reports the
failed rank's message).  With no process group, :data:`SINGLE` does nothing.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


class RankError(RuntimeError):
    """A collective failed: another rank stopped, or did not answer within the timeout."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the calibration's process group.

    Attributes
    ----------
    rank, world : int
        This process's rank and the number of ranks (``world == 1``: no group).
    """

    rank: int = 0
    world: int = 1

    @classmethod
    def of_process_group(cls) -> Ranks:
        """The default process group's ranks, or :data:`SINGLE` when there is none."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return SINGLE
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def parallel(self) -> bool:
        """Whether there is more than one rank."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one writer."""
        return self.rank == 0

    def owns(self, sample: int) -> bool:
        """Whether calibration sample ``sample`` is this rank's."""
        return sample % self.world == self.rank

    def own(self, samples: Sequence[int]) -> list[int]:
        """This rank's samples among ``samples``, in order."""
        return [i for i in samples if self.owns(i)]

    # -- collectives ----------------------------------------------------------------------

    def _run(self, where: str, call: Any, *args: Any) -> Any:
        import torch.distributed as dist

        try:
            return call(*args)
        except (RuntimeError, dist.DistError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if "timed out" in first.lower() or "timeout" in first.lower():
                raise RankError(f"rank {self.rank}: no answer from the other ranks within the "
                                f"process group's timeout at {where}; a rank hangs or is "
                                f"slower than the timeout allows ({first})") from None  # fmt: skip
            raise RankError(f"rank {self.rank}: another rank stopped before {where}; its "
                            "own message says why") from None  # fmt: skip

    def _comm(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` where the backend reduces (CUDA for NCCL, CPU for gloo), contiguous."""
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) \
            if dist.get_backend() == "nccl" else torch.device("cpu")  # fmt: skip
        return tensor.detach().to(device).contiguous()

    def reduce(self, tensor: torch.Tensor, op: str, where: str) -> torch.Tensor:
        """``tensor`` summed (``op="sum"``) or maxed (``"max"``) over the ranks, where it was."""
        if not self.parallel:
            return tensor
        import torch.distributed as dist

        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        buffer = self._comm(tensor)
        self._run(where, dist.all_reduce, buffer, ops[op])
        return buffer.to(tensor.device)

    def gather(self, value: Any, where: str) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order."""
        if not self.parallel:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        self._run(where, dist.all_gather_object, out, value)
        return out

    def broadcast(self, value: Any, where: str) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.parallel:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        self._run(where, dist.broadcast_object_list, box, 0)
        return box[0]

    def barrier(self, where: str) -> None:
        """Wait for every rank; on gloo, a late rank is named."""
        if not self.parallel:
            return
        import torch.distributed as dist

        if dist.get_backend() == "gloo":
            self._run(where, lambda: dist.monitored_barrier(wait_all_ranks=True))
        else:
            self._run(where, dist.barrier)

    def agree(self, value: Any, what: str) -> None:
        """Raise ``ValueError`` on every rank unless every rank has the same ``value``."""
        if not self.parallel:
            return
        values = self.gather(pickle.dumps(value), f"the check of {what}")
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise ValueError(f"{what} differs between rank 0 and rank(s) {odd}; every rank "
                             "must be started with the same arguments and data")  # fmt: skip

    # -- the training loop's reductions ----------------------------------------------------

    def loss(self, value: float, parts: dict[str, float], where: str
             ) -> tuple[float, dict[str, float], list[int]]:  # fmt: skip
        """The batch's loss and its named parts, summed over the ranks' shares (the single
        process's values up to summation order), and the ranks whose share is not finite."""
        if not self.parallel:
            return value, parts, ([] if math.isfinite(value) else [0])
        names = sorted(parts)
        mine = torch.zeros(self.world, 1 + len(names), dtype=torch.float64)
        mine[self.rank] = torch.tensor([value, *(parts[n] for n in names)], dtype=torch.float64)
        shares = self.reduce(mine, "sum", where)
        bad = [r for r in range(self.world) if not math.isfinite(float(shares[r, 0]))]
        total = shares.sum(0)
        return (float(total[0]) if not bad else math.nan,
                {n: float(total[1 + names.index(n)]) for n in parts}, bad)  # fmt: skip

    def gradients(self, params: Sequence[torch.Tensor], where: str) -> None:
        """Sum every parameter's gradient over the ranks, in one collective.

        A gradient a rank lacks counts as 0; a parameter that no rank's loss
        reached keeps none, as in a single process, so that AdamW leaves it
        alone (an expert no token of the batch was routed to).
        """
        if not self.parallel or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        reached = torch.tensor([float(p.grad is not None) for p in params],
                               dtype=grads[0].dtype, device=grads[0].device)  # fmt: skip
        flat = self.reduce(torch.cat([*(g.reshape(-1) for g in grads), reached]), "sum", where)
        offset = 0
        for k, p in enumerate(params):
            n = p.numel()
            reached_by_any = bool(flat[flat.numel() - len(params) + k] > 0)
            p.grad = flat[offset: offset + n].view_as(p).to(p.dtype).clone() \
                if reached_by_any else None  # fmt: skip
            offset += n

    def rows(self, rows: torch.Tensor, where: str) -> list[torch.Tensor]:
        """Every rank's ``[n, ...]`` ``rows`` (``n`` may differ between ranks), in rank
        order and bit for bit (a gather, no arithmetic)."""
        if not self.parallel:
            return [rows]
        import torch.distributed as dist

        counts = torch.zeros(self.world, dtype=torch.int64)
        counts[self.rank] = rows.shape[0]
        counts = self.reduce(counts, "sum", where)
        most = int(counts.max())
        padded = torch.zeros(most, *rows.shape[1:], dtype=rows.dtype, device=rows.device)
        padded[: rows.shape[0]] = rows
        buffer = self._comm(padded)
        out = [torch.empty_like(buffer) for _ in range(self.world)]
        self._run(where, dist.all_gather, out, buffer)
        return [o[: int(c)].to(rows.device) for o, c in zip(out, counts, strict=True)]


#: One process, no group: every reduction is the identity.
SINGLE = Ranks()
