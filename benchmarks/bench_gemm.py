"""Speed and memory of ``mxref.matmul``, against ``np.matmul`` in the same run.

Run ``python benchmarks/bench_gemm.py`` (``make bench`` runs it after
``bench_codec.py``).  A and B are 2048 x 2048 float32 standard normal arrays
(seed 0), quantized with ``mxref.quantize`` (A blocked along its last axis,
B along axis 0, block 32, default policies; NVFP4 with its block of 16 and one
tensor scale per operand).  It reports, each as the median of
``--reps`` (at least 3) timed calls after one untimed warm-up call:

- ``np.matmul(A, B)`` in float32 on the same shape: the baseline every ratio
  is taken against, timed before and after the mxref figures (the median of
  both is used), because this machine's speed drifts between runs;
- ``mxref.matmul`` at 2048^3 for mxfp4 x mxfp4 ``exact`` (target <= 4x the
  baseline time), mxfp8_e4m3 x mxfp8_e4m3 ``exact`` (target <= 6x), mxfp4
  ``block_fp32`` (target <= 4x), mxfp8_e4m3 ``block_fp32`` (no target) and
  nvfp4 x nvfp4 ``exact`` (block 16, a per-tensor scale each; target <= 3x),
  beside the same run's mxfp4 rows;
- ``mxref.matmul`` at 256^3 (``--small``) for mxfp8_e4m3 ``block_fp32`` and
  mxfp4 ``fixed_point:25:32``, against ``np.matmul`` at 256^3, with the time
  scaled by (2048 / 256)^3 to 2048^3.  That figure is an extrapolation (it
  assumes time linear in M * N * K), not a measurement, and is labelled so;
  for mxfp8_e4m3 ``block_fp32`` the measured 2048^3 row shows how far off it is.

It also reports the peak memory of each 2048^3 ``mxref.matmul`` call: the
tracemalloc peak during the call minus the memory traced before it (numpy's
array allocations are traced; memory numba's runtime allocates inside a
kernel is not), against the float32 size of A + B + D (target <= 3x).  As a
cross-check that also sees numba's and OpenBLAS's allocations, it reports the
rise of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) during the same call, where Linux allows it.

The last lines are PASS/FAIL per target.  The exit status is 0 either way;
this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import statistics
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
from timing import cpu_model, median_seconds  # beside this script

import mxref

#: (format, accum, target: at most this many times the np.matmul time, or None)
FULL_CASES: tuple[tuple[str, str, float | None], ...] = (
    ("mxfp4", "exact", 4.0),
    ("nvfp4", "exact", 3.0),  # beside the same run's mxfp4 exact
    ("mxfp8_e4m3", "exact", 6.0),
    ("mxfp4", "block_fp32", 4.0),
    ("mxfp8_e4m3", "block_fp32", None),  # measured here too: about 1 s, cheap enough
)
#: (format, accum) timed on the small shape only
SMALL_CASES = (
    ("mxfp8_e4m3", "block_fp32"),
    ("mxfp4", "fixed_point:25:32"),
)
MEMORY_TARGET = 3.0  # x float32 bytes of A + B + D
#: every format quantized (A and B once each)
FORMATS = ("mxfp4", "mxfp8_e4m3", "nvfp4")


def openblas_threads() -> str:
    """How many threads numpy's OpenBLAS uses, asked of the loaded library itself."""
    env = ", ".join(
        f"{k}={os.environ[k]}"
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        if k in os.environ
    )
    note = f" ({env})" if env else ""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            libs = {line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line}
    except OSError:
        libs = set()
    for lib in sorted(libs):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for symbol in (
            "scipy_openblas_get_num_threads64_",
            "openblas_get_num_threads64_",
            "openblas_get_num_threads",
        ):
            fn = getattr(handle, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                return f"{fn()} threads ({Path(lib).name}){note}"
    return f"unknown{note}"


def _vm_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return True


def peak_memory(fn: Callable[[], Any]) -> tuple[int, int | None]:
    """Return (tracemalloc peak bytes during ``fn()``, rise of peak RSS in bytes or None)."""
    fn()  # compiled and warm before measuring
    gc.collect()
    rss_ok = _reset_peak_rss()
    rss_before = _vm_kib("VmRSS")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    hwm = _vm_kib("VmHWM")
    del result
    if not rss_ok or rss_before is None or hwm is None:
        return peak, None
    return peak, (hwm - rss_before) * 1024


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures, ratios and PASS/FAIL lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="M = N = K (default 2048)")
    parser.add_argument(
        "--small", type=int, default=256, help="M = N = K of the small cases (default 256)"
    )
    parser.add_argument("--reps", type=int, default=3, help="timed calls per figure (>= 3)")
    args = parser.parse_args(argv)
    n, s, reps = args.size, args.small, max(args.reps, 3)
    load_start = os.getloadavg()[0]

    rng = np.random.default_rng(0)
    a32 = rng.standard_normal((n, n), dtype=np.float32)
    b32 = rng.standard_normal((n, n), dtype=np.float32)
    ops = {
        f: (mxref.quantize(a32, f), mxref.quantize(b32, f, axis=0)) for f in FORMATS
    }
    small32 = (np.ascontiguousarray(a32[:s, :s]), np.ascontiguousarray(b32[:s, :s]))
    small_ops = {
        f: (mxref.quantize(small32[0], f), mxref.quantize(small32[1], f, axis=0))
        for f in FORMATS
    }
    # compile every kernel (and start numba's and OpenBLAS's threads) on the small shape
    for f, accum, _ in FULL_CASES:
        mxref.matmul(*small_ops[f], accum=accum)
    for f, accum in SMALL_CASES:
        mxref.matmul(*small_ops[f], accum=accum)
    np.matmul(*small32)

    print(
        f"mxref GEMM benchmark: {n} x {n} x {n} (and {s}^3), A and B float32 standard normal "
        "(seed 0), quantized with mxref.quantize (A axis -1, B axis 0, block 32; nvfp4 "
        "block 16 with a per-tensor scale)"
    )
    print(f"cpu: {cpu_model()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}")
    print(
        f"numba {numba.__version__}: threading layer {numba.threading_layer()}, "
        f"{numba.get_num_threads()} threads; numpy {np.__version__}, OpenBLAS "
        f"{openblas_threads()}"
    )
    print(f"load average (1 min) at start: {load_start:.2f}")
    print(f"median of {reps} calls, each after one untimed call\n")

    base_first = median_seconds(lambda: np.matmul(a32, b32), reps)
    full = []
    for f, accum, target in FULL_CASES:
        a, b = ops[f]
        t = median_seconds(lambda a=a, b=b, acc=accum: mxref.matmul(a, b, accum=acc), reps)
        full.append((f, accum, target, t))
    base_last = median_seconds(lambda: np.matmul(a32, b32), reps)
    base = statistics.median([base_first, base_last])

    small_base = median_seconds(lambda: np.matmul(*small32), max(reps, 21))
    small = []
    for f, accum in SMALL_CASES:
        a, b = small_ops[f]
        t = median_seconds(lambda a=a, b=b, acc=accum: mxref.matmul(a, b, accum=acc), reps)
        small.append((f, accum, t))

    macs = float(n) ** 3
    head = f"{'shape':<8}{'operation':<52}{'median s':>10}{'GMAC/s':>9}{'x np.matmul':>13}"
    print(head)
    print(f"{n}^3".ljust(8) + f"{'np.matmul float32 (baseline)':<52}{base:>10.4f}"
          f"{macs / base / 1e9:>9.2f}{1.0:>13.2f}")  # fmt: skip
    for f, accum, _, t in full:
        op = f"mxref.matmul {f} x {f} {accum}"
        print(f"{n}^3".ljust(8) + f"{op:<52}{t:>10.4f}{macs / t / 1e9:>9.2f}{t / base:>13.2f}")
    smacs = float(s) ** 3
    print(f"{s}^3".ljust(8) + f"{'np.matmul float32 (baseline)':<52}{small_base:>10.6f}"
          f"{smacs / small_base / 1e9:>9.2f}{1.0:>13.2f}")  # fmt: skip
    for f, accum, t in small:
        op = f"mxref.matmul {f} x {f} {accum}"
        print(
            f"{s}^3".ljust(8) + f"{op:<52}{t:>10.4f}{smacs / t / 1e9:>9.3f}{t / small_base:>13.1f}"
        )
    scale = macs / smacs
    print(f"\nextrapolated to {n}^3 (x{scale:.0f}; assumes time linear in M*N*K, not measured):")
    measured = {(f, accum): t for f, accum, _, t in full}
    for f, accum, t in small:
        actual = measured.get((f, accum))
        print(
            f"  mxref.matmul {f} x {f} {accum}: ~{t * scale:.1f} s, "
            f"~{t * scale / base:.0f}x this run's {n}^3 np.matmul"
            + ("" if actual is None else f" (measured above: {actual:.2f} s)")
        )
    drift = abs(base_first - base_last) / min(base_first, base_last)
    print(
        f"\nnp.matmul {n}^3 at start {base_first:.4f} s, at end {base_last:.4f} s"
        + (" (more than 20% apart: noisy run, rerun)" if drift > 0.2 else "")
    )

    ref_bytes = 4 * (n * n + n * n + n * n)  # float32 A + B + D
    print(f"\npeak memory during the {n}^3 call (float32 A + B + D = {ref_bytes / 2**20:.0f} MiB):")
    mem = []
    for f, accum, _ in FULL_CASES:
        a, b = ops[f]
        peak, rss = peak_memory(lambda a=a, b=b, acc=accum: mxref.matmul(a, b, accum=acc))
        mem.append((f, accum, peak))
        rss_text = "n/a" if rss is None else f"{rss / 2**20:.0f} MiB"
        print(
            f"  mxref.matmul {f} {accum}: tracemalloc peak {peak / 2**20:.0f} MiB "
            f"({peak / ref_bytes:.2f}x); peak RSS rise {rss_text}"
        )
    peak, rss = peak_memory(lambda: np.matmul(a32, b32))
    rss_text = "n/a" if rss is None else f"{rss / 2**20:.0f} MiB"
    print(
        f"  np.matmul float32: tracemalloc peak {peak / 2**20:.0f} MiB "
        f"({peak / ref_bytes:.2f}x); peak RSS rise {rss_text}"
    )
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")

    print()
    for f, accum, target, t in full:
        ratio = t / base
        if target is None:
            continue
        print(
            f"{'PASS' if ratio <= target else 'FAIL'}  {n}^3 mxref.matmul {f} {accum}: "
            f"{ratio:.2f}x np.matmul time (target <= {target:g}x)"
        )
    for f, accum, peak in mem:
        ratio = peak / ref_bytes
        print(
            f"{'PASS' if ratio <= MEMORY_TARGET else 'FAIL'}  {n}^3 mxref.matmul {f} {accum} "
            f"peak memory: {ratio:.2f}x float32 A + B + D (target <= {MEMORY_TARGET:g}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
