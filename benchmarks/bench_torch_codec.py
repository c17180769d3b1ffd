"""Throughput of mxref.torch against torchao's MX cast, with same-run baselines.

Run ``python benchmarks/bench_torch_codec.py``.  On a 4096 x 4096 float32
standard-normal tensor (numpy seed 0, as in ``bench_codec.py``), with torch
limited to 2 threads, it reports elements per second for mxfp4 and
mxfp8_e4m3 (each figure the better of two medians of repeated calls, timed
in opposite orders over the cases) of

- ``mxref.torch.quantize_dequantize`` (the fake quantization a calibration loop
  calls) and, for information, ``mxref.torch.encode``;
- torchao 0.18's ``MXTensor.to_mx(x, elem_dtype, 32).dequantize(torch.float32)``:
  the same round trip in torchao, the baseline of the speed target;
- ``dst.copy_(x)`` on the same tensor: the memory-bandwidth yardstick, measured
  in this run because the machine's speed drifts between runs.

It checks that mxref.torch equals ``mxref.quantize_dequantize`` bit for bit on
the array, and reports whether torchao's round trip equals mxref.torch's with
``preset="torchao"`` (FLOOR, RNE, saturation, torchao's 2**-126 divisor
floor).  The last lines are PASS/FAIL for the target: quantize_dequantize at
least 1x torchao's round trip.  With CUDA, the same figures are printed for
the GPU.  The exit status is 0 either way; this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from timing import cpu_model, median_seconds  # beside this script

import mxref
from mxref.torch import encode, quantize_dequantize

FORMATS = ("mxfp4", "mxfp8_e4m3")
TORCH_THREADS = 2
SPEED_TARGET = 1.0  # x torchao to_mx + dequantize


def load_torchao() -> tuple[Any, str] | str:
    """Return ``(MXTensor, version)``, or the reason torchao is unavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchao
            from torchao.prototype.mx_formats.mx_tensor import MXTensor
    except Exception as exc:  # any import failure means "no baseline", not a crash
        return f"{type(exc).__name__}: {exc}"
    return MXTensor, torchao.__version__


def torchao_elem_dtype(fmt_name: str) -> torch.dtype:
    """torchao's element dtype for ``fmt_name`` (fp4 is packed two per byte)."""
    return {"mxfp4": torch.float4_e2m1fn_x2, "mxfp8_e4m3": torch.float8_e4m3fn}[fmt_name]


def differing(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many elements of two float32 tensors differ in their bits."""
    return int((a.cpu().view(torch.int32) != b.cpu().view(torch.int32)).sum())


def synchronized(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """``fn`` followed by a device synchronisation, so that timings include the work."""
    if device.type != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def measure(x: torch.Tensor, reps: int, torchao: tuple[Any, str] | str, label: str) -> list[str]:
    """Print the table for ``x``'s device; return its PASS/FAIL lines."""
    device = x.device
    dst = torch.empty_like(x)
    count = x.numel()
    cases: list[tuple[str, str, Callable[[], Any] | None]] = []
    checks: list[str] = []
    for name in FORMATS:
        ours = quantize_dequantize(x, name)
        ref = mxref.quantize_dequantize(x.cpu(), name)
        checks.append(
            f"{name}: mxref.torch.quantize_dequantize differs from mxref in "
            f"{differing(ours, ref)} of {count} elements"
        )
        cases += [
            (name, "mxref.torch.quantize_dequantize", lambda f=name: quantize_dequantize(x, f)),
            (name, "mxref.torch.encode", lambda f=name: encode(x, f)),
        ]
        if isinstance(torchao, str):
            cases.append((name, "torchao to_mx + dequantize", None))
            continue
        mxtensor, elem = torchao[0], torchao_elem_dtype(name)

        def roundtrip(e: torch.dtype = elem, cls: Any = mxtensor) -> torch.Tensor:
            return cls.to_mx(x, e, 32).dequantize(torch.float32)

        cases.append((name, "torchao to_mx + dequantize", roundtrip))
        preset = quantize_dequantize(x, name, preset="torchao")
        checks.append(
            f"{name}: torchao's round trip differs from mxref.torch preset='torchao' in "
            f"{differing(roundtrip(), preset)} of {count} elements"
        )

    def copy() -> None:
        dst.copy_(x)

    copy_fn = synchronized(copy, device)
    # one pass over everything first: lets the allocator and the OS settle
    for _, _, fn in cases:
        if fn is not None:
            synchronized(fn, device)()
    copy_first = median_seconds(copy_fn, 3 * reps)
    # each figure is timed in a forward and a reversed pass over the cases and the
    # better median kept: a call runs faster or slower depending on what earlier
    # calls left in the allocator (torchao's e4m3 round trip takes about 2.5x
    # longer unless its fp4 call has just run), and the order should favour no one
    timed: dict[tuple[str, str], list[float]] = {(name, op): [] for name, op, _ in cases}
    for order in (cases, cases[::-1]):
        for name, op, fn in order:
            if fn is not None:
                timed[(name, op)].append(median_seconds(synchronized(fn, device), reps))
    rows = [(name, op, min(timed[(name, op)]) if fn else None)
            for name, op, fn in cases]  # fmt: skip
    copy_last = median_seconds(copy_fn, 3 * reps)
    copy_s = statistics.median([copy_first, copy_last])

    print(f"{label}")
    print(f"{'format':<12}{'operation':<32}{'median s':>10}{'elements/s':>13}{'x copy_':>9}")
    print(f"{'-':<12}{'dst.copy_(x)':<32}{copy_s:>10.4f}{count / copy_s:>13.3e}{1.0:>9.2f}")
    for name, op, seconds in rows:
        if seconds is None:
            print(f"{name:<12}{op:<32}{'unavailable':>10}")
            continue
        print(f"{name:<12}{op:<32}{seconds:>10.4f}{count / seconds:>13.3e}{copy_s / seconds:>9.2f}")
    drift = abs(copy_first - copy_last) / min(copy_first, copy_last)
    print(
        f"copy_ at start {copy_first:.4f} s, at end {copy_last:.4f} s"
        + (" (more than 20% apart: noisy run, rerun)" if drift > 0.2 else "")
    )
    for line in checks:
        print(line)
    print()

    seconds_of = {(name, op): seconds for name, op, seconds in rows}
    verdicts = []
    for name in FORMATS:
        ours = seconds_of[(name, "mxref.torch.quantize_dequantize")]
        theirs = seconds_of[(name, "torchao to_mx + dequantize")]
        if ours is None or theirs is None:
            verdicts.append(f"SKIP  {label} {name}: torchao unavailable")
            continue
        ratio = theirs / ours
        verdicts.append(
            f"{'PASS' if ratio >= SPEED_TARGET else 'FAIL'}  {label} {name} "
            f"mxref.torch.quantize_dequantize: {ratio:.2f}x torchao to_mx + dequantize "
            f"(target >= {SPEED_TARGET}x)"
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures, checks and PASS/FAIL lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="rows = columns (default 4096)")
    parser.add_argument("--reps", type=int, default=7, help="timed calls per figure (>= 7)")
    args = parser.parse_args(argv)
    n, reps = args.size, max(args.reps, 7)

    torch.set_num_threads(TORCH_THREADS)
    torchao = load_torchao()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))

    print(f"mxref.torch benchmark: {n} x {n} float32 standard normal (seed 0), block 32, last axis")
    print(f"cpu: {cpu_model()}; Python {platform.python_version()}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads)", end="")
    print(f", torchao {torchao[1]}" if not isinstance(torchao, str) else f"; torchao: {torchao}")
    print(f"best of two medians of {reps} calls (forward and reversed order), after warm-up\n")

    verdicts = measure(x, reps, torchao, "cpu")
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        verdicts += measure(x.to(gpu), reps, torchao, f"cuda ({torch.cuda.get_device_name(gpu)})")
    else:
        print("cuda: not available, no GPU figures\n")
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
