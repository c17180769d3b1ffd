"""Throughput and memory of mxref's codec, with same-run baselines.

Run ``python benchmarks/bench_codec.py`` (``make bench``).  It encodes a
4096 x 4096 float32 standard-normal array (seed 0) in mxfp4 and mxfp8_e4m3 and
reports elements per second, as the median of repeated calls, for

- ``mxref.quantize``, ``mxref.dequantize`` and ``mxref.quantize_dequantize``;
- ``np.copyto(dst, x)`` on the same array: the memory-bandwidth yardstick every
  ratio is taken against, measured in this run because the machine's speed
  drifts between runs;
- a plain numpy + ml_dtypes quantize-dequantize (scale from ``np.frexp``
  exponents, clip, ``astype`` to the ml_dtypes element type and back);
- torchao's ``to_mx`` (quantize only), when torchao imports.

It also reports the peak memory ``mxref.quantize`` allocates (tracemalloc)
relative to the size of its outputs, and checks the baselines agree with
mxref where they should (FLOOR scales, RNE, saturation).  The last lines are
PASS/FAIL per target: quantize and quantize_dequantize at least 0.5x copyto,
peak memory of quantize at most 1.5x its outputs.  The exit status is 0
either way; this is a measurement, not a test.

Every operation is called once before anything is timed (that compiles the
numba kernels and lets the allocator settle) and once more right before its
own timed calls.  mxref's calls allocate their outputs on every call (64 MiB
of float32 for dequantize and quantize_dequantize, 16 MiB of codes for
quantize), while copyto writes into a preallocated buffer; that cost is part
of the figures.  Two rows show how much it is: ``np.copyto`` into a fresh
``np.empty_like(x)`` (the same copy, plus the kernel's page faults and
zeroing of 64 MiB it has never touched), and
``quantize_dequantize(x, fmt, out=buffer)`` into a preallocated buffer, the
same conditions as the baseline.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tracemalloc
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numba
import numpy as np
from timing import cpu_model, median_seconds  # beside this script

import mxref

FORMATS = ("mxfp4", "mxfp8_e4m3")
#: two-level formats: E4M3 block scales under a float32 tensor scale
TWO_LEVEL = ("nvfp4",)
NV_SPEED_TARGET = 0.8  # x np.copyto, quantize_dequantize with out=
ML_DTYPES_ELEMENT = {"mxfp4": ml_dtypes.float4_e2m1fn, "mxfp8_e4m3": ml_dtypes.float8_e4m3fn}
TORCH_THREADS = 2
SPEED_TARGET = 0.5  # x np.copyto
MEMORY_TARGET = 1.5  # x bytes of codes + scales


def ml_dtypes_qdq(x: np.ndarray, fmt_name: str, block_size: int = 32) -> np.ndarray:
    """Quantize-dequantize with numpy and an ml_dtypes cast: the straightforward baseline.

    The shared exponent is ``floor(log2(amax)) - emax`` read from ``np.frexp``
    (exact), clamped to [-127, 127]; elements are clipped to max normal before
    the cast, because ml_dtypes' float8_e4m3fn turns overflow into NaN.

    Spec: OCP MX v1.0 section 6.3.
    """
    fmt = mxref.get_format(fmt_name)
    xb = x.reshape(-1, block_size)
    amax = np.max(np.abs(xb), axis=1, keepdims=True)
    _, e = np.frexp(amax)  # amax = m * 2**e with 0.5 <= m < 1
    shared = np.clip(e - 1 - fmt.emax, -127, 127)
    one = np.float32(1.0)
    top = np.float32(fmt.max_normal)
    y = np.clip(xb * np.ldexp(one, -shared), -top, top)
    q = y.astype(ML_DTYPES_ELEMENT[fmt_name]).astype(np.float32)
    return (q * np.ldexp(one, shared)).reshape(x.shape)


def load_torchao() -> tuple[Any, Any] | str:
    """Return ``(torch, to_mx)``, or the reason they are unavailable."""
    try:
        import torch
        from torchao.prototype.mx_formats.mx_tensor import to_mx
    except Exception as exc:  # any import failure means "no baseline", not a crash
        return f"{type(exc).__name__}: {exc}"
    torch.set_num_threads(TORCH_THREADS)
    return torch, to_mx


def torchao_elem_dtype(torch: Any, fmt_name: str) -> Any:
    """torchao's element dtype for ``fmt_name`` (fp4 is packed two per byte)."""
    return {"mxfp4": torch.float4_e2m1fn_x2, "mxfp8_e4m3": torch.float8_e4m3fn}[fmt_name]


def peak_memory_ratio(x: np.ndarray, fmt_name: str) -> tuple[int, int]:
    """Return (peak bytes allocated during ``mxref.quantize``, bytes of its outputs)."""
    mxref.quantize(x, fmt_name)  # compiled and warm before measuring
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        mx = mxref.quantize(x, fmt_name)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, mx.codes.nbytes + mx.scales.nbytes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures, ratios and PASS/FAIL lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="rows = columns (default 4096)")
    parser.add_argument("--reps", type=int, default=7, help="timed calls per figure (>= 7)")
    args = parser.parse_args(argv)
    n, reps = args.size, max(args.reps, 7)

    torchao = load_torchao()
    x = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    dst = np.empty_like(x)
    count = x.size

    def copyto() -> None:
        np.copyto(dst, x)

    def copyto_fresh() -> None:
        np.copyto(np.empty_like(x), x)

    reused = np.empty_like(x)
    reused.fill(0.0)  # touched once, so its pages exist before anything is timed

    # the kernels' first call also starts numba's thread pool, which fixes the layer
    mxref.quantize(x[:1, :32], "mxfp4")
    print(f"mxref benchmark: {n} x {n} float32 standard normal (seed 0), block 32 on the last axis")
    print(
        f"cpu: {cpu_model()}, {numba.config.NUMBA_NUM_THREADS} hardware threads; "
        f"Python {platform.python_version()}"
    )
    print(
        f"numba {numba.__version__}: threading layer {numba.threading_layer()}, "
        f"{numba.get_num_threads()} threads; numpy {np.__version__} (copyto, baseline: 1 thread); "
        f"ml_dtypes {ml_dtypes.__version__}"
    )
    if isinstance(torchao, str):
        print(f"torchao: unavailable ({torchao})")
    else:
        import torchao as torchao_pkg

        torch = torchao[0]
        print(
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"torchao {torchao_pkg.__version__}"
        )
    print(f"median of {reps} calls after warm-up calls\n")

    cases: list[tuple[str, str, Callable[[], Any] | None]] = []
    checks: list[str] = []
    def mxref_cases(name: str) -> list[tuple[str, str, Callable[[], Any] | None]]:
        """mxref's four operations on ``name``, MX or NVFP4 alike."""
        encoded = mxref.quantize(x, name)
        return [
            (name, "mxref.quantize", lambda: mxref.quantize(x, name)),
            (name, "mxref.dequantize", lambda: mxref.dequantize(encoded)),
            (name, "mxref.quantize_dequantize", lambda: mxref.quantize_dequantize(x, name)),
            (name, "  ... out=buffer (reused)",
             lambda: mxref.quantize_dequantize(x, name, out=reused)),
        ]  # fmt: skip

    for name in FORMATS:
        mx = mxref.quantize(x, name)
        cases += mxref_cases(name)
        cases.append((name, "numpy + ml_dtypes qdq", lambda f=name: ml_dtypes_qdq(x, f)))
        ours = mxref.quantize_dequantize(x, name).view(np.uint32)
        base = ml_dtypes_qdq(x, name).view(np.uint32)
        checks.append(
            f"{name}: numpy + ml_dtypes qdq differs from mxref in "
            f"{int(np.count_nonzero(ours != base))} of {count} elements"
        )
        if isinstance(torchao, str):
            cases.append((name, "torchao to_mx", None))
            continue
        torch, to_mx = torchao
        t = torch.from_numpy(x)
        elem = torchao_elem_dtype(torch, name)
        cases.append((name, "torchao to_mx", lambda e=elem, tt=t, fn=to_mx: fn(tt, e, 32)))
        scale, _ = to_mx(t, elem, 32)
        theirs = scale.view(torch.uint8).numpy().reshape(mx.scales.shape)
        wrong = int(np.count_nonzero(theirs != mx.scales))
        checks.append(
            f"{name}: torchao to_mx scale bytes differ from mxref in "
            f"{wrong} of {mx.scales.size} blocks"
        )

    for name in TWO_LEVEL:
        cases += mxref_cases(name)
        if isinstance(torchao, str):
            cases.append((name, "torchao nvfp4_quantize", None))
            continue
        from torchao.prototype.mx_formats import nvfp4_tensor

        torch = torchao[0]
        t = torch.from_numpy(x)
        amax_scale = nvfp4_tensor.per_tensor_amax_to_scale(t.abs().max())
        quantize_nv = nvfp4_tensor.nvfp4_quantize
        cases.append((name, "torchao nvfp4_quantize",
                      lambda tt=t, s=amax_scale, fn=quantize_nv: fn(tt, 16, s)))  # fmt: skip

    # one pass over everything first: compiles every kernel and lets the
    # allocator and the OS settle before anything is timed
    for _, _, fn in cases:
        if fn is not None:
            fn()
    copy_first = median_seconds(copyto, 3 * reps)
    fresh_s = median_seconds(copyto_fresh, 3 * reps)
    rows = [(name, op, None if fn is None else median_seconds(fn, reps)) for name, op, fn in cases]
    copy_last = median_seconds(copyto, 3 * reps)
    copy_s = statistics.median([copy_first, copy_last])

    print(f"{'format':<12}{'operation':<28}{'median s':>10}{'elements/s':>13}{'x copyto':>10}")
    print(f"{'-':<12}{'np.copyto(dst, x)':<28}{copy_s:>10.4f}{count / copy_s:>13.3e}{1.0:>10.2f}")
    print(
        f"{'-':<12}{'  ... into a fresh array':<28}{fresh_s:>10.4f}{count / fresh_s:>13.3e}"
        f"{copy_s / fresh_s:>10.2f}"
    )
    for name, op, seconds in rows:
        if seconds is None:
            print(f"{name:<12}{op:<28}{'unavailable':>10}")
            continue
        print(
            f"{name:<12}{op:<28}{seconds:>10.4f}{count / seconds:>13.3e}{copy_s / seconds:>10.2f}"
        )
    drift = abs(copy_first - copy_last) / min(copy_first, copy_last)
    print(
        f"\ncopyto at start {copy_first:.4f} s, at end {copy_last:.4f} s"
        + (" (more than 20% apart: noisy run, rerun)" if drift > 0.2 else "")
    )
    for line in checks:
        print(line)

    print()
    verdicts = []
    for name, op, seconds in rows:
        if name in TWO_LEVEL and op == "  ... out=buffer (reused)" and seconds is not None:
            ratio = copy_s / seconds
            verdicts.append(
                f"{'PASS' if ratio >= NV_SPEED_TARGET else 'FAIL'}  {name} "
                f"mxref.quantize_dequantize out=: {ratio:.2f}x copyto "
                f"(target >= {NV_SPEED_TARGET}x)"
            )
        if name in TWO_LEVEL:
            continue
        if op in ("mxref.quantize", "mxref.quantize_dequantize") and seconds is not None:
            ratio = copy_s / seconds
            ok = ratio >= SPEED_TARGET
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'}  {name} {op}: {ratio:.2f}x copyto "
                f"(target >= {SPEED_TARGET}x)"
            )
    for name in FORMATS:
        peak, out_bytes = peak_memory_ratio(x, name)
        ratio = peak / out_bytes
        print(
            f"{name}: mxref.quantize peak allocation {peak / 2**20:.2f} MiB, "
            f"outputs (codes + scales) {out_bytes / 2**20:.2f} MiB"
        )
        verdicts.append(
            f"{'PASS' if ratio <= MEMORY_TARGET else 'FAIL'}  {name} mxref.quantize peak memory: "
            f"{ratio:.2f}x outputs (target <= {MEMORY_TARGET}x)"
        )
    print()
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
