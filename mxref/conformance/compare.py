"""Compare an accelerator's output with mxref's, bit for bit and in ULPs.

::

    mxref compare REFERENCE ACTUAL [--dtype float32|float16|bfloat16|float64]
                  [--shape M,N] [--max-ulp N] [--show N] [--k K --block-size BS]
                  [--json report.json] [--force]

Inputs
    ``.npy`` files are opened with ``np.load(mmap_mode="r")`` and raw
    little-endian ``.bin`` files with :class:`numpy.memmap` (``--dtype`` and
    ``--shape`` required, and the file size must match them exactly).  Both
    files must have the same shape and the same dtype: float16, bfloat16,
    float32 or float64.  numpy saves bfloat16 as 2-byte void; such a ``.npy``
    needs ``--dtype bfloat16``.  The comparison works on bit patterns only,
    so bfloat16 needs no ml_dtypes here.

Streaming
    The flattened (C order) arrays are compared ``chunk_size`` elements at a
    time, so memory stays bounded by the chunk, not by the file; a file larger
    than memory is paged in by the operating system as it is read.

ULP distance
    Each bit pattern maps to a monotonic integer: the magnitude bits for a
    positive float, minus them for a negative one.  The distance of a pair is
    the difference of those keys, so adjacent floats are 1 apart, ``+0`` and
    ``-0`` are 0 apart, and the smallest negative and positive subnormals are
    2 apart.  Distances are only taken between two finite values.

Classes of element pairs (they partition the array)
    finite pair
        Both finite: has a ULP distance and goes into the histogram.  A pair
        of zeros of opposite sign is a *signed-zero mismatch*: distance 0, but
        not bit-exact, and a failure.
    NaN match
        Both NaN, with any payloads; different payloads are counted as
        *NaN-payload differences*, which are reported but do not fail.
    NaN mismatch
        Exactly one NaN.
    Inf match
        The same infinity on both sides.
    Inf mismatch
        Neither NaN, at least one infinite, and the bits differ (Inf against a
        finite value, or against the other infinity).  No ULP distance.

A *mismatch* is an element pair that fails: a finite pair more than
``max_ulp`` apart, a signed-zero mismatch, a NaN mismatch or an Inf mismatch.
The report lists the first ``show`` of them.  The exit status of
``mxref compare`` is 0 when there are none, 1 when there are some, and 2 for
bad input (:class:`~mxref.io.InputError`, raised to the CLI).

Where the output came from (``Mismatch.source``)
    For a 2-D output ``D`` of shape ``(M, N)`` read as a GEMM ``D = A @ B``,
    element ``(i, j)`` depends on row ``i`` of ``A`` and column ``j`` of
    ``B``: ``{"a_row": i, "b_col": j}``.  Given the reduction length ``K``
    and the MX block size along it (``--k``, ``--block-size``), it also lists
    the K-blocks ``{"k_blocks": [0, ceil(K / block_size) - 1]}``: every block
    of that row of A (scales ``(i, kb)``) and of that column of B (scales
    ``(kb, j)``) contributes, so a bad element implicates all of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mxref.conformance.float_bits import (
    _BUCKET_HI,
    LAYOUTS,
    DecodedValue,
    FloatLayout,
    _layout,
    bucket_bounds,
    bucket_label,
    decode_bits,
    percent_text,
)
from mxref.dtypes import BFLOAT16
from mxref.io import InputError, PathLike, parse_shape, write_new_text

#: Default number of elements compared at a time.  Each chunk needs about 90
#: bytes of temporaries per element; 1 << 18 (about 23 MiB) is as fast as 1 << 20
#: (measured: both about 40 M float32 elements/s) with a quarter of the memory.
DEFAULT_CHUNK_SIZE = 1 << 18


#: Default number of mismatches listed in a report.
DEFAULT_SHOW = 10


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One failing element pair.

    Attributes
    ----------
    index : int
        Flat index in C order.
    multi_index : tuple of int
        The same element's index in the array's shape.
    kind : str
        ``"ulp"`` (finite pair beyond the allowed distance), ``"signed_zero"``,
        ``"nan"`` or ``"inf"``.
    reference, actual : DecodedValue
    ulp : int or None
        ULP distance; None for NaN and Inf mismatches, where it means nothing.
    source : dict or None
        Where the element came from, when known (see the module docstring):
        ``{"a_row": i, "b_col": j}`` for a 2-D output, plus ``"k_blocks":
        [first, last]`` when ``k`` and ``block_size`` are given.
    """

    index: int
    multi_index: tuple[int, ...]
    kind: str
    reference: DecodedValue
    actual: DecodedValue
    ulp: int | None
    source: dict[str, Any] | None


@dataclasses.dataclass(frozen=True)
class CompareReport:
    """Result of comparing two tensors; see the module docstring for the terms.

    The classes partition the elements::

        total == finite_pairs + nan_matches + nan_mismatches
                 + inf_matches + inf_mismatches

    and ``sum(histogram) == finite_pairs``.

    Attributes
    ----------
    reference, actual : str
        The two inputs, as given.
    dtype : str
        Their element type.
    shape : tuple of int
    max_ulp_allowed : int
        The tolerance the pass/fail verdict used.
    total : int
        Number of elements.
    bit_exact : int
        Elements whose bit patterns are equal (NaNs with equal payloads too).
    finite_pairs : int
        Pairs of two finite values.
    max_ulp : int
        Largest ULP distance among finite pairs; 0 when there are none.
    histogram : tuple of int
        Counts of finite pairs per distance bucket (:func:`bucket_label`);
        ``dtype``'s width + 2 buckets, so every distance has one.
    nan_matches, nan_mismatches, nan_payload_diffs : int
    inf_matches, inf_mismatches : int
    signed_zero_mismatches : int
    ulp_exceeded : int
        Finite pairs more than ``max_ulp_allowed`` apart.
    mismatches : int
        All failing pairs: ``ulp_exceeded + signed_zero_mismatches +
        nan_mismatches + inf_mismatches``.
    first_mismatches : tuple of Mismatch
        The first ``show`` failing pairs, in flat-index order.
    k, block_size : int or None
        The GEMM reduction length and MX block size, if given.
    """

    reference: str
    actual: str
    dtype: str
    shape: tuple[int, ...]
    max_ulp_allowed: int
    total: int
    bit_exact: int
    finite_pairs: int
    max_ulp: int
    histogram: tuple[int, ...]
    nan_matches: int
    nan_mismatches: int
    nan_payload_diffs: int
    inf_matches: int
    inf_mismatches: int
    signed_zero_mismatches: int
    ulp_exceeded: int
    mismatches: int
    first_mismatches: tuple[Mismatch, ...]
    k: int | None = None
    block_size: int | None = None

    @property
    def passed(self) -> bool:
        """True when no element pair fails."""
        return self.mismatches == 0

    @property
    def exit_status(self) -> int:
        """0 when :attr:`passed`, else 1: the status of ``mxref compare``."""
        return 0 if self.passed else 1

    def histogram_buckets(self) -> list[dict[str, Any]]:
        """Return the histogram up to its last non-empty bucket.

        Returns
        -------
        list of dict
            ``{"ulp": label, "lo": lo, "hi": hi, "count": n}`` per bucket,
            from bucket 0; empty buckets before the last non-empty one are
            kept, so that gaps show.
        """
        used = [k for k, n in enumerate(self.histogram) if n]
        last = used[-1] if used else 0
        out = []
        for k in range(last + 1):
            lo, hi = bucket_bounds(k)
            out.append({"ulp": bucket_label(k), "lo": lo, "hi": hi, "count": self.histogram[k]})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready builtins.

        Returns
        -------
        dict
            Every attribute, with ``histogram`` as :meth:`histogram_buckets`,
            plus ``passed`` and ``exit_status``.
        """
        out = dataclasses.asdict(self)
        out["shape"] = list(self.shape)
        out["histogram"] = self.histogram_buckets()
        out["first_mismatches"] = [
            {**dataclasses.asdict(m), "multi_index": list(m.multi_index)}
            for m in self.first_mismatches
        ]
        out["passed"] = self.passed
        out["exit_status"] = self.exit_status
        return out

    def to_json(self) -> str:
        """Return :meth:`to_dict` as indented JSON text, ending in a newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(d) for d in shape))  # "(3,)" for 1-d, as Python writes it


_ByteOrder = Literal["<", ">", "="]


def _dtype_layout(
    p: Path, dt: np.dtype[Any], want: FloatLayout | None
) -> tuple[FloatLayout, _ByteOrder]:
    """The layout of an ``.npy``'s dtype, and the byte order of its data."""
    order: _ByteOrder = ">" if dt.byteorder == ">" else "<" if dt.byteorder == "<" else "="
    found: FloatLayout | None = None
    if dt.kind == "f":
        found = {2: LAYOUTS["float16"], 4: LAYOUTS["float32"], 8: LAYOUTS["float64"]}.get(
            dt.itemsize
        )
    elif dt.itemsize == 2 and (dt.name == "bfloat16" or (BFLOAT16 is not None and dt == BFLOAT16)):
        found = LAYOUTS["bfloat16"]
    elif dt.kind == "V" and dt.itemsize == 2 and dt.names is None:
        # np.save writes bfloat16 as '<V2': the bytes are little-endian bfloat16
        if want is not None and want.name == "bfloat16":
            return want, "<"
        raise InputError(
            f"{p}: holds 2-byte void values, which is how numpy saves bfloat16; "
            "pass --dtype bfloat16 to read them as bfloat16"
        )
    if found is None:
        raise InputError(f"{p}: holds {dt} values; mxref compare reads {', '.join(LAYOUTS)}")
    if want is not None and want is not found:
        raise InputError(f"{p}: holds {found.name} values, not {want.name} (--dtype)")
    return found, order


def _open_npy(p: Path, want: FloatLayout | None) -> tuple[np.ndarray, FloatLayout]:
    try:
        # mmap: nothing is read until a chunk is touched, so files larger than
        # memory work.  Truncation shows up here, since mmap needs the length.
        loaded = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"{p}: not a readable .npy file (truncated or corrupt: {exc})") from None
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise InputError(f"{p}: is a .npz archive, not a .npy array")
    lay, order = _dtype_layout(p, loaded.dtype, want)
    # a view, not a copy: same item size, so any strides (Fortran order) work
    return loaded.view(lay.uint.newbyteorder(order)), lay


def _open_raw(p: Path, lay: FloatLayout, shape: tuple[int, ...]) -> np.ndarray:
    need = math.prod(shape) * (lay.bits // 8)
    size = p.stat().st_size
    if size != need:
        raise InputError(
            f"{p}: is {size} bytes, but {lay.name} of shape {_fmt_shape(shape)} "
            f"needs {need} bytes; check --dtype and --shape"
        )
    dt = lay.uint.newbyteorder("<")
    if need == 0:  # mmap refuses empty files
        return np.empty(shape, dt)
    return np.memmap(p, dtype=dt, mode="r", shape=shape)


def open_bits(
    path: PathLike, *, dtype: object = None, shape: object = None
) -> tuple[np.ndarray, str]:
    """Open a ``.npy`` or raw ``.bin`` float tensor as a lazily read bit array.

    Parameters
    ----------
    path : str or os.PathLike
        The file; ``.npy`` or raw little-endian ``.bin``.
    dtype : str, optional
        ``float16``, ``bfloat16``, ``float32`` or ``float64``.  Required for
        ``.bin``; for ``.npy`` checked against the file, and needed to read a
        2-byte void ``.npy`` (numpy's bfloat16) as bfloat16.
    shape : str or sequence of int, optional
        Required for ``.bin``, whose size must match exactly; checked
        against a ``.npy``.

    Returns
    -------
    bits : np.ndarray
        Unsigned integers of the element width, memory-mapped (not read).
    dtype : str
        The element type's name.

    Raises
    ------
    InputError
        Missing, truncated or corrupt file, unsupported suffix or dtype, or a
        size or shape that does not match.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".bin"):
        raise InputError(
            f"{p}: unsupported file type {p.suffix or '(none)'!r}; expected .npy or raw .bin"
        )
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if not p.is_file():
        raise InputError(f"{p}: not a regular file")
    want = None if dtype is None else _layout(dtype, "--dtype")
    want_shape = None if shape is None else parse_shape(shape)
    if suffix == ".bin":
        if want is None or want_shape is None:
            raise InputError(f"{p}: raw .bin input needs both --dtype and --shape")
        return _open_raw(p, want, want_shape), want.name
    bits, lay = _open_npy(p, want)
    if want_shape is not None and bits.shape != want_shape:
        raise InputError(
            f"{p}: has shape {_fmt_shape(bits.shape)}, not {_fmt_shape(want_shape)} (--shape)"
        )
    return bits, lay.name


# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------
def _chunks(bits: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
    """Native-order copies of ``chunk_size`` consecutive elements in C order."""
    native = bits.dtype.newbyteorder("=")
    n = bits.size
    if bits.flags.c_contiguous:
        flat = bits.reshape(-1)  # a view for C-contiguous data
        for start in range(0, n, chunk_size):
            yield np.asarray(flat[start : start + chunk_size]).astype(native)
    else:
        # reshape(-1) would copy the whole array; gather each chunk instead
        for start in range(0, n, chunk_size):
            flat_idx = np.arange(start, min(start + chunk_size, n))
            yield np.asarray(bits[np.unravel_index(flat_idx, bits.shape)]).astype(native)


def _check_gemm(shape: tuple[int, ...], k: int | None, block_size: int | None) -> None:
    if (k is None) != (block_size is None):
        raise InputError("--k and --block-size go together: give both or neither")
    if k is None or block_size is None:
        return
    if k < 1:
        raise InputError(f"--k must be >= 1; got {k}")
    if block_size < 1:
        raise InputError(f"--block-size must be >= 1; got {block_size}")
    if len(shape) != 2:
        raise InputError(
            f"--k and --block-size describe a 2-D (M x N) GEMM output; "
            f"these arrays have shape {_fmt_shape(shape)}"
        )


def _source(multi: tuple[int, ...], k: int | None, block_size: int | None) -> dict[str, Any] | None:
    if len(multi) != 2:
        return None
    out: dict[str, Any] = {"a_row": multi[0], "b_col": multi[1]}
    if k is not None and block_size is not None:
        out["k_blocks"] = [0, -(-k // block_size) - 1]
    return out


def compare_bits(
    reference: np.ndarray,
    actual: np.ndarray,
    dtype: str,
    *,
    max_ulp: int = 0,
    show: int = DEFAULT_SHOW,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    k: int | None = None,
    block_size: int | None = None,
    names: tuple[str, str] = ("reference", "actual"),
) -> CompareReport:
    """Compare two arrays of bit patterns of the same float format.

    Parameters
    ----------
    reference, actual : np.ndarray
        Unsigned integers of ``dtype``'s width (any byte order, any strides,
        memory-mapped or not), of the same shape.
    dtype : str
        A name in :data:`LAYOUTS`: how to read the bits.
    max_ulp : int
        Largest ULP distance between finite values that passes.
    show : int
        How many mismatches to describe.
    chunk_size : int
        Elements compared at a time; bounds the memory used.  The report
        does not depend on it.
    k, block_size : int, optional
        GEMM reduction length and MX block size, for ``Mismatch.source``;
        both or neither, and only for 2-D arrays.
    names : tuple of str
        What to call the two inputs in the report and in errors.

    Returns
    -------
    CompareReport

    Raises
    ------
    InputError
        Different shapes, wrong bit width, or bad ``max_ulp``, ``show``,
        ``chunk_size``, ``k`` or ``block_size``.
    """
    lay = _layout(dtype)
    ref_name, act_name = names
    for name, arr in ((ref_name, reference), (act_name, actual)):
        if arr.dtype.kind != "u" or arr.dtype.itemsize * 8 != lay.bits:
            raise InputError(f"{name}: expected {lay.bits}-bit patterns; got dtype {arr.dtype}")
    if reference.shape != actual.shape:
        raise InputError(
            f"{ref_name} has shape {_fmt_shape(reference.shape)} but {act_name} has shape "
            f"{_fmt_shape(actual.shape)}; they must be the same"
        )
    for flag, value in (("--max-ulp", max_ulp), ("--show", show)):
        if value < 0:
            raise InputError(f"{flag} must be >= 0; got {value}")
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1; got {chunk_size}")
    shape = tuple(int(d) for d in reference.shape)
    _check_gemm(shape, k, block_size)

    top = lay.bits - 1
    mag_mask = np.uint64((1 << top) - 1)
    inf_bits = np.uint64(lay.inf_bits)
    limit = np.uint64(max_ulp) if max_ulp < (1 << 64) else np.uint64((1 << 64) - 1)
    hist = np.zeros(lay.n_buckets, dtype=np.int64)
    counts = dict.fromkeys(
        (
            "bit_exact",
            "finite_pairs",
            "nan_matches",
            "nan_mismatches",
            "nan_payload_diffs",
            "inf_matches",
            "inf_mismatches",
            "signed_zero_mismatches",
            "ulp_exceeded",
            "mismatches",
        ),
        0,
    )
    worst = 0
    found: list[Mismatch] = []
    start = 0
    for r_raw, a_raw in zip(
        _chunks(reference, chunk_size), _chunks(actual, chunk_size), strict=True
    ):
        n = r_raw.size
        # widened to uint64 so that the sum of two magnitudes cannot wrap, and
        # so that every constant below has the arrays' type
        r = r_raw.astype(np.uint64)
        a = a_raw.astype(np.uint64)
        equal = r == a
        mag_r = r & mag_mask
        if equal.all():
            # the common case for a passing compare: only classify one side
            nan = int(np.count_nonzero(mag_r > inf_bits))
            inf = int(np.count_nonzero(mag_r == inf_bits))
            counts["bit_exact"] += n
            counts["nan_matches"] += nan
            counts["inf_matches"] += inf
            counts["finite_pairs"] += n - nan - inf
            hist[0] += n - nan - inf
            start += n
            continue
        mag_a = a & mag_mask
        nan_r = mag_r > inf_bits
        nan_a = mag_a > inf_bits
        either_nan = nan_r | nan_a
        nan_mis = nan_r ^ nan_a
        both_nan = nan_r & nan_a
        either_inf = ~either_nan & ((mag_r == inf_bits) | (mag_a == inf_bits))
        inf_mis = either_inf & ~equal
        finite = ~(either_nan | either_inf)
        # key difference without signed overflow: same sign, the magnitudes'
        # difference; opposite signs, their sum (< 2**64 for finite values)
        same_sign = (r >> np.uint64(top)) == (a >> np.uint64(top))
        dist = np.where(
            same_sign, np.maximum(mag_r, mag_a) - np.minimum(mag_r, mag_a), mag_r + mag_a
        )
        dist = np.where(finite, dist, np.uint64(0))
        signed_zero = finite & ~equal & (mag_r == 0) & (mag_a == 0)
        exceeded = finite & (dist > limit)
        fail = exceeded | signed_zero | nan_mis | inf_mis

        finite_dist = dist[finite]
        hist += np.bincount(
            np.searchsorted(_BUCKET_HI, finite_dist, side="left"), minlength=lay.n_buckets
        )[: lay.n_buckets]
        if finite_dist.size:
            worst = max(worst, int(finite_dist.max()))
        counts["bit_exact"] += int(np.count_nonzero(equal))
        counts["finite_pairs"] += int(finite_dist.size)
        counts["nan_matches"] += int(np.count_nonzero(both_nan))
        counts["nan_mismatches"] += int(np.count_nonzero(nan_mis))
        counts["nan_payload_diffs"] += int(np.count_nonzero(both_nan & ~equal))
        counts["inf_matches"] += int(np.count_nonzero(either_inf & equal))
        counts["inf_mismatches"] += int(np.count_nonzero(inf_mis))
        counts["signed_zero_mismatches"] += int(np.count_nonzero(signed_zero))
        counts["ulp_exceeded"] += int(np.count_nonzero(exceeded))
        counts["mismatches"] += int(np.count_nonzero(fail))

        for i in np.flatnonzero(fail)[: show - len(found)]:
            multi = tuple(int(x) for x in np.unravel_index(start + int(i), shape))
            kind = (
                "nan"
                if nan_mis[i]
                else "inf"
                if inf_mis[i]
                else "signed_zero"
                if signed_zero[i]
                else "ulp"
            )
            found.append(
                Mismatch(
                    index=start + int(i),
                    multi_index=multi,
                    kind=kind,
                    reference=decode_bits(int(r[i]), lay.name),
                    actual=decode_bits(int(a[i]), lay.name),
                    ulp=int(dist[i]) if kind in ("ulp", "signed_zero") else None,
                    source=_source(multi, k, block_size),
                )
            )
        start += n

    return CompareReport(
        reference=ref_name,
        actual=act_name,
        dtype=lay.name,
        shape=shape,
        max_ulp_allowed=max_ulp,
        max_ulp=worst,
        histogram=tuple(int(c) for c in hist),
        first_mismatches=tuple(found),
        total=int(reference.size),
        k=k,
        block_size=block_size,
        **counts,
    )


def compare_arrays(
    reference: np.ndarray,
    actual: np.ndarray,
    *,
    max_ulp: int = 0,
    show: int = DEFAULT_SHOW,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    k: int | None = None,
    block_size: int | None = None,
) -> CompareReport:
    """Compare two float arrays of the same dtype and shape, bit for bit.

    Parameters
    ----------
    reference, actual : np.ndarray
        float16, float32, float64 or (ml_dtypes) bfloat16, of the same dtype.
    max_ulp, show, chunk_size, k, block_size
        As for :func:`compare_bits`.

    Returns
    -------
    CompareReport

    Raises
    ------
    InputError
        Unsupported or different dtypes, or anything :func:`compare_bits`
        refuses.
    """
    opened = []
    for name, arr in (("reference", reference), ("actual", actual)):
        lay, order = _dtype_layout(Path(name), arr.dtype, None)
        opened.append((arr.view(lay.uint.newbyteorder(order)), lay.name))
    (ref_bits, ref_dtype), (act_bits, act_dtype) = opened
    if ref_dtype != act_dtype:
        raise InputError(
            f"reference holds {ref_dtype} values but actual holds {act_dtype}; "
            "they must be the same"
        )
    return compare_bits(
        ref_bits,
        act_bits,
        ref_dtype,
        max_ulp=max_ulp,
        show=show,
        chunk_size=chunk_size,
        k=k,
        block_size=block_size,
    )


def compare_files(
    reference: PathLike,
    actual: PathLike,
    *,
    dtype: object = None,
    shape: object = None,
    max_ulp: int = 0,
    show: int = DEFAULT_SHOW,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    k: int | None = None,
    block_size: int | None = None,
) -> CompareReport:
    """Compare two ``.npy`` or raw ``.bin`` files, streaming through them.

    Parameters
    ----------
    reference, actual : str or os.PathLike
        The files; see :func:`open_bits`.  ``dtype`` and ``shape`` apply to
        both.
    dtype : str, optional
        Element type; required for raw ``.bin``.
    shape : str or sequence of int, optional
        Required for raw ``.bin``.
    max_ulp, show, chunk_size, k, block_size
        As for :func:`compare_bits`.

    Returns
    -------
    CompareReport

    Raises
    ------
    InputError
        Any problem with either file, naming it; different shapes or dtypes,
        naming both.
    """
    ref_bits, ref_dtype = open_bits(reference, dtype=dtype, shape=shape)
    act_bits, act_dtype = open_bits(actual, dtype=dtype, shape=shape)
    if ref_dtype != act_dtype:
        raise InputError(
            f"{reference} holds {ref_dtype} values but {actual} holds {act_dtype}; "
            "they must be the same"
        )
    return compare_bits(
        ref_bits,
        act_bits,
        ref_dtype,
        max_ulp=max_ulp,
        show=show,
        chunk_size=chunk_size,
        k=k,
        block_size=block_size,
        names=(str(reference), str(actual)),
    )


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def _describe(v: DecodedValue) -> str:
    exp = "-" if v.exponent is None else str(v.exponent)
    return f"{v.hex} ({v.value}; sign {v.sign}, exp {exp}, mant {v.mantissa})"


def format_report(report: CompareReport) -> str:
    """Return a human-readable summary of ``report``, ending in a newline.

    Parameters
    ----------
    report : CompareReport

    Returns
    -------
    str
    """
    r = report
    pct = percent_text(r.bit_exact, r.total)
    lines = [
        f"reference: {r.reference}",
        f"actual:    {r.actual}",
        f"{r.dtype}, shape {_fmt_shape(r.shape)}, {r.total} elements",
        f"bit-exact:               {r.bit_exact} / {r.total} ({pct})",
        f"max ULP distance:        {r.max_ulp} (finite pairs; allowed {r.max_ulp_allowed})",
        f"ULP histogram ({r.finite_pairs} finite pairs):",
    ]
    # empty buckets are left out here for brevity; the JSON keeps them
    lines += [f"  {b['ulp']:>12}  {b['count']}" for b in r.histogram_buckets() if b["count"]]
    lines += [
        f"beyond --max-ulp:        {r.ulp_exceeded}",
        f"signed-zero mismatches:  {r.signed_zero_mismatches}",
        f"NaN mismatches:          {r.nan_mismatches}",
        f"Inf mismatches:          {r.inf_mismatches}",
        f"NaN matches:             {r.nan_matches} "
        f"({r.nan_payload_diffs} with different payloads; not failures)",
        f"Inf matches:             {r.inf_matches}",
    ]
    if r.first_mismatches:
        lines.append(f"first {len(r.first_mismatches)} of {r.mismatches} mismatches:")
        for m in r.first_mismatches:
            where = ", ".join(str(i) for i in m.multi_index)
            ulp = "" if m.ulp is None else f", {m.ulp} ULP"
            lines.append(f"  [{m.index}] ({where}): {m.kind}{ulp}")
            lines.append(f"    reference {_describe(m.reference)}")
            lines.append(f"    actual    {_describe(m.actual)}")
            if m.source is not None:
                src = f"    from row {m.source['a_row']} of A, column {m.source['b_col']} of B"
                if "k_blocks" in m.source:
                    first, last = m.source["k_blocks"]
                    src += f", K-blocks {first}..{last}"
                lines.append(src)
    verdict = "PASS" if r.passed else "FAIL"
    lines.append(f"{verdict}: {r.mismatches} mismatches")
    return "\n".join(lines) + "\n"


def write_report_json(path: PathLike, report: CompareReport, *, force: bool = False) -> None:
    """Write ``report`` as JSON (:meth:`CompareReport.to_json`).

    Parameters
    ----------
    path : str or os.PathLike
    report : CompareReport
    force : bool
        Replace an existing file.

    Raises
    ------
    InputError
        ``path`` exists (without ``force``), is a directory, or its directory
        does not exist.
    """
    write_new_text(path, report.to_json(), force=force)
