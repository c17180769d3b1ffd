"""What the benchmark scripts share: median timing, peak memory, the CPU's name, the commit."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def median_seconds(fn: Callable[[], Any], reps: int) -> float:
    """Return the median wall time of ``reps`` calls of ``fn``, after one untimed call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_model() -> str:
    """The CPU model name where the platform tells it, else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def full_precision_layer_costs(layer: Any, x: Any, rope: Any, reps: int) -> tuple[float, float]:
    """The same-run baselines of a decoder layer: median forward+backward and forward seconds.

    The forward+backward trains every weight of the layer on an MSE against a
    random target (what a calibration step is compared with); the layer's
    weights are left not requiring grad afterwards.
    """
    import torch

    target = torch.randn_like(x)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        out = layer(x, position_embeddings=rope, attention_mask=None)
        torch.nn.functional.mse_loss(out, target).backward()

    for p in layer.parameters():
        p.requires_grad_(True)
    step_s = median_seconds(step, reps)
    layer.zero_grad(set_to_none=True)
    for p in layer.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        forward_s = median_seconds(lambda: layer(x, position_embeddings=rope,
                                                 attention_mask=None), reps)  # fmt: skip
    return step_s, forward_s


class PeakRSS:
    """The peak resident memory of this process within a ``with`` block (``mib``).

    ``ru_maxrss`` only grows over a process's life, so a later run could not
    be told from an earlier one; a thread samples ``/proc/self/statm`` every
    20 ms instead (a spike shorter than that can be missed).  The figure is
    the whole process's, model and allocator caches included: a difference
    from the start would undercount a run that reuses memory an earlier run
    freed, so none is taken.
    """

    def __init__(self) -> None:
        self.mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.mib = max(self.mib, self._rss())

    def __enter__(self) -> PeakRSS:
        self.mib = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mib = max(self.mib, self._rss())


def commit() -> str:
    """The checkout's short commit, with ``+local changes`` when tracked files differ from it."""
    here = Path(__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=here).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, cwd=here).stdout.strip()  # fmt: skip
    return (head or "unknown") + ("+local changes" if dirty else "")
