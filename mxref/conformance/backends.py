"""The implementation under test: a Python callable or an external ``--command``.

And what counts as a valid answer from either.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mxref.array import MXArray
from mxref.conformance.checks import DEFAULT_TIMEOUT, Config, NVConfig
from mxref.formats import DEFAULT_BLOCK_SIZE, ElementFormat, get_format
from mxref.io import InputError
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.testing.backend import BackendContractError, backend_output, nv_backend_output


# --------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------
class BackendError(Exception):
    """The backend raised, crashed, timed out or wrote malformed output.

    This fails the cases of that run; it is not bad input.
    """


@dataclasses.dataclass(frozen=True)
class BackendOutput:
    """What a backend returned for a batch of rows, validated.

    Attributes
    ----------
    codes : np.ndarray
        Integer codes, ``(rows, block_size)``.
    scales : np.ndarray
        Integer scale bytes, ``(rows,)``.
    packed : np.ndarray or None
        uint8 ``(rows, bytes_per_row)``, when the backend provides packing.
    """

    codes: np.ndarray
    scales: np.ndarray
    packed: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class NVOutput:
    """What a backend returned for one NVFP4 tensor, validated.

    Attributes
    ----------
    codes : np.ndarray
        uint8 E2M1 codes, the tensor's shape ``(rows, cols)``.
    scales : np.ndarray
        uint8 E4M3 bytes, ``(rows, ceil(cols / 16))``.
    tensor_scale : np.ndarray
        float32, ``(1,)``, or ``(rows,)`` per row.
    """

    codes: np.ndarray
    scales: np.ndarray
    tensor_scale: np.ndarray


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


def _protocol_output(codes: Any, scales: Any, packed: Any, shape: tuple[int, ...],
                     code_count: int) -> BackendOutput:  # fmt: skip
    """The ``{out}`` arrays, checked by the one backend contract.

    The protocol writes one scale per row, ``(rows,)``; the contract keeps
    the blocked axis, ``(rows, 1)``.
    """
    scales = np.asarray(scales)
    per_row = scales.shape == (shape[0],)
    try:
        codes, scales = backend_output((codes, scales.reshape(-1, 1) if per_row else scales),
                                       shape, -1, shape[-1], code_count)  # fmt: skip
    except BackendContractError as exc:
        if str(exc).startswith("scales have shape"):  # in the protocol's words
            raise BackendError(f"{{out}} scales have shape {scales.shape}; the protocol wants "
                               f"({shape[0]},), one byte per row") from None  # fmt: skip
        raise BackendError(f"{{out}} {exc}") from None
    if packed is not None:
        packed = np.asarray(packed)
        if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[0] != shape[0]:
            raise BackendError(
                f"packed must be uint8 of shape ({shape[0]}, bytes_per_row); "
                f"got {packed.dtype} {packed.shape}"
            )
    return BackendOutput(codes.astype(np.int64), scales.reshape(-1).astype(np.int64), packed)


class CallableBackend:
    """A Python callable with :func:`mxref.quantize`'s signature.

    It is called as ``quantize(x, fmt_name, axis=-1, block_size=bs,
    scale_rule=..., rounding=..., overflow=...)`` (plus ``seed=`` with
    stochastic rounding) on float32 rows of blocks, and its answer is checked
    by :func:`mxref.testing.backend.backend_output`, the contract every
    harness uses: codes of ``x``'s shape, scales ``(rows, 1)``.

    Parameters
    ----------
    quantize : callable
    name : str, optional
        Shown in the report.
    """

    def __init__(self, quantize: Callable[..., Any], name: str | None = None) -> None:
        self.quantize = quantize
        self.name: str = name or str(getattr(quantize, "__qualname__", repr(quantize)))

    def run(self, x: np.ndarray, config: Config) -> BackendOutput:
        """Quantize rows of blocks under ``config``.

        Raises
        ------
        BackendError
            The callable raised, or returned something malformed.
        """
        try:
            result = self.quantize(x.copy(), config.fmt, **config.kwargs())
        except Exception as exc:  # the backend's own bug: a result, not a crash of ours
            raise BackendError(f"raised {type(exc).__name__}: {_one_line(exc)}") from None
        try:
            codes, scales = backend_output(result, x.shape, -1, config.block_size,
                                           get_format(config.fmt).code_count)  # fmt: skip
        except BackendContractError as exc:
            raise BackendError(str(exc)) from None
        return BackendOutput(codes.astype(np.int64), scales.reshape(-1).astype(np.int64))

    def run_nv(self, x: np.ndarray, config: NVConfig,
               given: np.ndarray | None = None) -> list[NVOutput | str]:  # fmt: skip
        """Quantize NVFP4 tensors ``x[t]`` (each 2-D), one call each.

        Returns
        -------
        list
            Per tensor its :class:`NVOutput`, or why there is none (the
            callable raised or broke the contract).
        """
        out: list[NVOutput | str] = []
        for t in range(x.shape[0]):
            g = None if given is None else np.float32(given[t])
            try:
                result = self.quantize(x[t].copy(), "nvfp4", **config.kwargs(g))
            except Exception as exc:  # the backend's own bug: a result, not a crash of ours
                out.append(f"raised {type(exc).__name__}: {_one_line(exc)}")
                continue
            try:
                out.append(NVOutput(*nv_backend_output(result, x[t].shape, config.per_row)))
            except BackendContractError as exc:
                out.append(str(exc))
        return out


def _tail(data: bytes, lines: int = 5) -> str:
    text = data.decode("utf-8", "replace").strip()
    if not text:
        return ""
    return "; stderr: " + " | ".join(text.splitlines()[-lines:])[-800:]


class CommandBackend:
    """An external program speaking the ``--command`` protocol (module docstring).

    Parameters
    ----------
    command : str
        Split with :func:`shlex.split`; must contain ``{in}`` and ``{out}``.
    timeout : float
        Seconds per run.

    Raises
    ------
    InputError
        The command is empty, unbalanced or lacks a placeholder.
    """

    def __init__(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise InputError(f"--command {command!r}: {exc}") from None
        if not argv:
            raise InputError("--command is empty")
        for placeholder in ("{in}", "{out}"):
            if not any(placeholder in a for a in argv):
                raise InputError(
                    f"--command must contain {placeholder}, where the {placeholder[1:-1]}put "
                    "file's path goes (e.g. 'sim --in {in} --out {out}')"
                )
        if not timeout > 0:
            raise InputError(f"--timeout must be positive; got {timeout}")
        self.argv = argv
        self.timeout = timeout
        self.name = command

    def run_nv(self, x: np.ndarray, config: NVConfig,
               given: np.ndarray | None = None) -> list[NVOutput | str]:  # fmt: skip
        """Quantize NVFP4 tensors ``x[t]`` (all of one shape) in one run of the command.

        ``{in}`` holds ``x`` (float32, ``(tensors, rows, cols)``), ``meta``
        and, with a given tensor scale, ``tensor_scale`` (float32,
        ``(tensors,)``); ``{out}`` must hold ``codes`` ``(tensors, rows,
        cols)``, ``scales`` ``(tensors, rows, ceil(cols / 16))`` and
        ``tensor_scale`` (float32, ``(tensors,)``, or ``(tensors, rows)``
        per row).

        Returns
        -------
        list
            Per tensor its :class:`NVOutput`, or why there is none.
        """
        arrays = {"x": np.ascontiguousarray(x, np.float32)}
        if given is not None:
            arrays["tensor_scale"] = np.ascontiguousarray(given, np.float32)
        try:
            z = self._exchange(arrays, config.meta(), ("codes", "scales", "tensor_scale"))
        except BackendError as exc:
            return [str(exc)] * x.shape[0]
        out: list[NVOutput | str] = []
        for t in range(x.shape[0]):
            try:
                parts = tuple(np.asarray(z[k])[t] for k in ("codes", "scales", "tensor_scale"))
                out.append(NVOutput(*nv_backend_output(parts, x[t].shape, config.per_row)))
            except (BackendContractError, IndexError) as exc:
                out.append(f"{{out}} {exc}")
        return out

    def _exchange(self, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                  wanted: tuple[str, ...]) -> dict[str, np.ndarray]:  # fmt: skip
        """Write ``arrays`` and ``meta`` to ``{in}``, run the command, return ``{out}``'s arrays.

        Raises
        ------
        BackendError, InputError
            As :meth:`run`.
        """
        with tempfile.TemporaryDirectory(prefix="mxref-conform-") as tmp:
            inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            with inp.open("wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]
            self._call(inp, out)
            try:
                with np.load(out, allow_pickle=False) as z:
                    missing = [k for k in wanted if k not in z.files]
                    if missing:
                        raise BackendError(
                            f"{{out}} has no {' or '.join(repr(m) for m in missing)} array "
                            f"(it has {sorted(z.files)})"
                        )
                    return {k: z[k] for k in z.files}
            except BackendError:
                raise
            except Exception as exc:  # whatever a corrupt file makes numpy raise
                raise BackendError(f"{{out}} is not a readable .npz: {_one_line(exc)}") from None

    def _call(self, inp: Path, out: Path) -> None:
        """Run the command on ``inp`` and ``out``; raise unless it exits 0, ``out`` written."""
        argv = [a.replace("{in}", str(inp)).replace("{out}", str(out)) for a in self.argv]
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout, check=False)  # fmt: skip
        except FileNotFoundError:
            raise InputError(f"--command: program {argv[0]!r} not found") from None
        except PermissionError:
            raise InputError(f"--command: program {argv[0]!r} cannot be executed") from None
        except subprocess.TimeoutExpired:
            raise BackendError(f"command timed out after {self.timeout:g} s") from None
        if proc.returncode != 0:
            raise BackendError(f"command exited with status {proc.returncode}{_tail(proc.stderr)}")
        if not out.is_file():
            raise BackendError(
                f"command exited with status 0 but wrote no {{out}} file{_tail(proc.stderr)}"
            )

    def run(self, x: np.ndarray, config: Config) -> BackendOutput:
        """Write ``{in}``, run the command, read ``{out}``.

        Raises
        ------
        BackendError
            The command failed, timed out, or wrote no or malformed output.
        InputError
            The program does not exist or cannot be executed.
        """
        z = self._exchange({"x": np.ascontiguousarray(x, np.float32)}, config.meta(),
                           ("codes", "scales"))  # fmt: skip
        codes, scales, packed = z["codes"], z["scales"], z.get("packed")
        return _protocol_output(codes, scales, packed, x.shape,
                                get_format(config.fmt).code_count)  # fmt: skip


Backend = CallableBackend | CommandBackend


def _command_nv(backend: CommandBackend, x: Any, rounding: str | Rounding, per_row: bool,
                given: Any) -> MXArray:  # fmt: skip
    """One 2-D float32 NVFP4 tensor through the ``--command`` protocol, as an MXArray."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.dtype != np.float32:
        raise ValueError("the --command protocol carries 2-D float32 NVFP4 tensors only")
    config = NVConfig(Rounding.parse(rounding).value, per_row, given is not None)
    g = None if given is None else np.array([given], np.float32)
    out = backend.run_nv(arr[None], config, g)[0]
    if isinstance(out, str):
        raise ValueError(out)
    return MXArray(codes=out.codes, scales=out.scales, fmt=get_format("nvfp4", two_level=True),
                   axis=1, block_size=16,
                   tensor_scale=out.tensor_scale if per_row else out.tensor_scale.reshape(()))


def as_quantize(backend: Backend) -> Callable[..., MXArray]:
    """A callable with :func:`mxref.quantize`'s signature running ``backend``.

    For a :class:`CommandBackend` the input is cut into blocks along ``axis``
    (the last block zero padded, which does not change it), sent as rows and
    put back; only inputs that are exactly float32 can be sent.

    Parameters
    ----------
    backend : CallableBackend or CommandBackend

    Returns
    -------
    callable
        Raises ``ValueError`` when the backend fails.
    """
    if isinstance(backend, CallableBackend):
        return backend.quantize

    def quantize(
        x: Any,
        fmt: str | ElementFormat,
        *,
        axis: int = -1,
        block_size: int = DEFAULT_BLOCK_SIZE,
        scale_rule: str | ScaleRule = ScaleRule.FLOOR,
        rounding: str | Rounding = Rounding.RNE,
        overflow: str | Overflow = Overflow.SATURATE,
        seed: int | None = None,
        per_row: bool = False,
        tensor_scale: Any = None,
    ) -> MXArray:
        if get_format(fmt, two_level=True).two_level:
            return _command_nv(backend, x, rounding, per_row, tensor_scale)
        arr = np.asarray(x)
        f32 = arr.astype(np.float32)
        same = f32.astype(arr.dtype)
        if not np.array_equal(same, arr, equal_nan=True):
            raise ValueError("the --command protocol carries float32 inputs only")
        f = get_format(fmt)
        ax = axis % arr.ndim
        moved = np.moveaxis(f32, ax, -1)
        n = moved.shape[-1]
        nblk = -(-n // block_size)
        padded = np.zeros((*moved.shape[:-1], nblk * block_size), np.float32)
        padded[..., :n] = moved
        config = Config(
            f.name,
            ScaleRule.parse(scale_rule).value,
            Rounding.parse(rounding).value,
            Overflow.parse(overflow).value,
            block_size,
            seed,
        )
        try:
            out = backend.run(padded.reshape(-1, block_size), config)
        except BackendError as exc:
            raise ValueError(str(exc)) from None
        codes = out.codes.reshape(padded.shape)[..., :n]
        scales = out.scales.reshape(*moved.shape[:-1], nblk)
        return MXArray(
            codes=np.ascontiguousarray(np.moveaxis(codes, -1, ax)).astype(np.uint8),
            scales=np.ascontiguousarray(np.moveaxis(scales, -1, ax)).astype(np.uint8),
            fmt=f,
            axis=ax,
            block_size=block_size,
        )

    return quantize
