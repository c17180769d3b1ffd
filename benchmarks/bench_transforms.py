"""Speed of the activation-side transforms against the matmul they precede.

Run ``python benchmarks/bench_transforms.py`` (``make bench``).  With torch on
2 threads, X is 2048 x 4096 float32 and W 4096 x 4096 float32 (standard
normal, seed 0).  It reports the median time of ``forward(X)`` for GPK
(g1 = 8, g2 = 4), BlockHadamard, GlobalHadamard, GlobalKronecker (64 x 64) and
BlockAffine (32 x 32 blocks), each as a ratio of ``X @ W.T`` timed in the same
run (the machine's speed drifts between runs, so only same-run ratios mean
anything).  These forwards run under ``torch.no_grad()``: the inference path,
where GPK and BlockAffine reuse the guarded blocks that their first (untimed)
call built; the other transforms run their condition guard (float64 singular
values of every factor) on every call.  A last row times GPK's calibration
path, grad enabled with learnable factors (Algorithm 1's two einsums, guard
included, no backward).  The last line is PASS/FAIL for GPK's inference
forward at most 0.1x the matmul, the cost the paper's Table 1 calls
O(SN(g1 + g2)) against the matmul's O(SNM).  The exit status is 0 either way;
this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable

import torch
from timing import cpu_model, median_seconds  # beside this script

from batquant.algorithms.transforms import (
    GPK,
    BlockAffine,
    BlockHadamard,
    GlobalHadamard,
    GlobalKronecker,
    Transform,
)

TORCH_THREADS = 2
GPK_TARGET = 0.1  # x the matmul X @ W.T


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures, ratios and the PASS/FAIL line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="rows of X (default 2048)")
    parser.add_argument("--size", type=int, default=4096, help="N = columns of X and W")
    parser.add_argument("--reps", type=int, default=7, help="timed calls per figure (>= 7)")
    args = parser.parse_args(argv)
    s, n, reps = args.tokens, args.size, max(args.reps, 7)

    torch.set_num_threads(TORCH_THREADS)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(s, n, generator=gen)
    w = torch.randn(n, n, generator=gen)
    transforms: list[tuple[str, Transform]] = [
        ("GPK (g1=8, g2=4)", GPK(n, 8, 4, init="orthogonal")),
        ("BlockHadamard (g=32)", BlockHadamard(n, 32)),
        ("GlobalHadamard", GlobalHadamard(n)),
        ("GlobalKronecker", GlobalKronecker(n, init="orthogonal")),
        ("BlockAffine (g=32)", BlockAffine(n, 32, init="orthogonal")),
    ]

    print(f"transform benchmark: X {s} x {n}, W {n} x {n}, float32 standard normal (seed 0)")
    print(f"cpu: {cpu_model()}; Python {platform.python_version()}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"median of {reps} calls after a warm-up call; forward under torch.no_grad()")
    print("except the last row (grad enabled, factors requiring grad)\n")

    def matmul() -> torch.Tensor:
        return x @ w.T

    cases: list[tuple[str, Callable[[], torch.Tensor]]] = [
        (name, lambda t=t: t(x)) for name, t in transforms
    ]
    gpk = transforms[0][1]

    def gpk_with_grad() -> torch.Tensor:
        with torch.enable_grad():
            return gpk(x)

    cases.append(("GPK, grad on (calibration)", gpk_with_grad))
    with torch.no_grad():
        for _, fn in cases:  # one pass first so the allocator and BLAS settle
            fn()
        mm_first = median_seconds(matmul, reps)
        rows = [(name, median_seconds(fn, reps)) for name, fn in cases]
        mm_last = median_seconds(matmul, reps)
    mm = statistics.median([mm_first, mm_last])

    print(f"{'operation':<36}{'median s':>10}{'x matmul':>10}")
    print(f"{'X @ W.T':<36}{mm:>10.4f}{1.0:>10.3f}")
    for name, seconds in rows:
        print(f"{name + ' forward':<36}{seconds:>10.4f}{seconds / mm:>10.3f}")
    drift = abs(mm_first - mm_last) / min(mm_first, mm_last)
    print(
        f"\nmatmul at start {mm_first:.4f} s, at end {mm_last:.4f} s"
        + (" (more than 20% apart: noisy run, rerun)" if drift > 0.2 else "")
    )
    ratio = rows[0][1] / mm
    verdict = "PASS" if ratio <= GPK_TARGET else "FAIL"
    print(f"\n{verdict}  GPK inference forward: {ratio:.3f}x X @ W.T (target <= {GPK_TARGET}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
