"""Local checkpoints and text files, as the command line and the benchmarks read them.

- :func:`load_model` / :func:`load_tokenizer`: a transformers checkpoint from a
  local folder, offline (``config.json`` + safetensors, or one ``.gguf`` file,
  which transformers dequantizes to float32 when ``gguf`` is installed).
- :func:`read_token_ids`: a UTF-8 text file as one 1-D array of token ids.
- :func:`calibration_windows`: ``samples`` non-overlapping windows of
  ``seq_len`` tokens, picked by a seeded permutation.

Every failure is a ``ValueError`` naming the folder or file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

#: Loggers of packages that transformers imports when it loads a checkpoint and that
#: warn about things batquant never uses: torchao's CUDA extensions missing on a CPU
#: machine, and torch's notice about the enums torchao registers with pytree.
_LOADING_NOISE = ("torchao", "torch.utils._pytree")


def _import_loading_quietly() -> None:
    """Import transformers' loading machinery with the noise of optional packages muted.

    transformers imports torchao (when it is installed) the first time it
    resolves a checkpoint's quantization config, and torchao then logs two
    warnings per missing CUDA extension and two pytree deprecations on every
    batquant command.  Importing that part of transformers once with those
    loggers raised to ERROR keeps real errors and silences the noise; other
    loggers, and every later message, are untouched.
    """
    loggers = [logging.getLogger(name) for name in _LOADING_NOISE]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import transformers.quantizers.auto  # noqa: F401 - imported here for its side imports
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _gguf_file(folder: Path) -> str | None:
    """The one ``.gguf`` file of a folder without ``config.json``, or None."""
    if (folder / "config.json").is_file():
        return None
    found = sorted(p.name for p in folder.glob("*.gguf"))
    if len(found) > 1:
        raise ValueError(f"{folder}: holds several .gguf files ({', '.join(found)}); keep one")
    return found[0] if found else None


def _check_folder(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"{path}: no such checkpoint folder")
    if not (path / "config.json").is_file() and _gguf_file(path) is None:
        raise ValueError(f"{path}: not a checkpoint (no config.json and no .gguf file)")
    return path


def architecture(folder: str | os.PathLike[str]) -> str:
    """The architecture a checkpoint folder declares (``config.json``'s ``architectures``).

    Returns ``""`` for a GGUF folder (its architecture is known only after loading).
    """
    path = _check_folder(folder)
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path / 'config.json'}: unreadable ({exc})") from None
        names = config.get("architectures") or []
        return str(names[0]) if names else ""
    return ""


def max_positions(folder: str | os.PathLike[str]) -> int | None:
    """The ``max_position_embeddings`` a checkpoint folder declares (its text model's), or None.

    None for a GGUF folder (known only after loading) or a config without one.
    """
    path = _check_folder(folder)
    if not (path / "config.json").is_file():
        return None
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path / 'config.json'}: unreadable ({exc})") from None
    for source in (config, config.get("text_config") or {}):
        value = source.get("max_position_embeddings")
        if isinstance(value, int):
            return value
    return None


def load_model(folder: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32,
               offload: str | None = None,
               offload_dir: str | os.PathLike[str] | None = None) -> Any:  # fmt: skip
    """A causal LM from a local folder, offline, in ``dtype``.

    Parameters
    ----------
    folder : path
        ``config.json`` + safetensors, or one ``.gguf`` file.
    dtype : torch.dtype
    offload : {None, "disk"}
        ``"disk"``: transformers' disk offload (``device_map={"": "disk"}``):
        the model is built on the meta device and every module reads its
        weights from the checkpoint's safetensors files when it runs, so it
        is never materialised in memory (for ``quantize_model(...,
        offload="disk")``).  Safetensors checkpoints only.
    offload_dir : path, optional
        Where transformers writes the weights it must convert first (the fused
        experts of an MoE model); a new temporary folder when omitted.

    Raises
    ------
    ValueError
        A missing folder, a folder that is no checkpoint, or one that transformers
        cannot load (a corrupt or truncated weight file), naming the folder; an
        offload other than None or "disk", or a GGUF folder with offload.
    """
    from transformers import AutoModelForCausalLM

    path = _check_folder(folder)
    gguf = _gguf_file(path)
    if offload not in (None, "disk"):
        raise ValueError(f"offload must be None or 'disk'; got {offload!r}")
    if offload is None and offload_dir is not None:
        raise ValueError("offload_dir: only used with offload='disk'")
    if offload and gguf:
        raise ValueError(f"{path}: a GGUF file is dequantized in memory as it loads; disk "
                         "offload needs a safetensors checkpoint")  # fmt: skip
    extra: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    if offload:
        folder_for_converted = offload_dir or tempfile.mkdtemp(prefix="batquant-offload-")
        extra.update(device_map={"": "disk"}, offload_folder=str(folder_for_converted))
    _import_loading_quietly()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=dtype, **extra)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot load the checkpoint ({first})") from None
    return model.eval()


def load_tokenizer(folder: str | os.PathLike[str]) -> Any:
    """The tokenizer saved with a local checkpoint, offline."""
    from transformers import AutoTokenizer

    path = _check_folder(folder)
    gguf = _gguf_file(path)
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                             **({"gguf_file": gguf} if gguf else {}))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - as load_model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot load the tokenizer ({first})") from None


def read_token_ids(tokenizer: Any, text_file: str | os.PathLike[str]) -> torch.Tensor:
    """The whole UTF-8 file tokenized once, as a 1-D int64 tensor (no special tokens added)."""
    path = Path(text_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such text file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable as UTF-8 text ({exc})") from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"{path}: holds no text")
    return torch.tensor(ids, dtype=torch.int64)


def calibration_windows(ids: torch.Tensor, samples: int, seq_len: int, seed: int,
                        source: str = "the calibration text") -> torch.Tensor:  # fmt: skip
    """``[samples, seq_len]`` distinct non-overlapping windows of ``ids``, chosen by ``seed``.

    Raises
    ------
    ValueError
        When ``ids`` holds fewer than ``samples * seq_len`` tokens, with both counts.
    """
    for name, value in (("samples", samples), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    available = ids.numel() // seq_len
    if available < samples:
        raise ValueError(
            f"{source} has {ids.numel()} tokens, too few for {samples} samples x {seq_len} "
            f"tokens = {samples * seq_len}; give more text or fewer samples / a shorter seq_len"
        )
    windows = ids[: available * seq_len].view(available, seq_len)
    order = torch.randperm(available, generator=torch.Generator().manual_seed(seed))
    return windows[order[:samples].sort().values].clone()
