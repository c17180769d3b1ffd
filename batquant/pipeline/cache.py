"""The activation cache: one tensor per calibration sample (``[seq_len, hidden]`` activations).

In memory (``directory=None``) the tensors are CPU float32; on disk each one
is a safetensors file under ``directory``, written to a temporary name and
renamed, so a file that exists is complete.  Either way the compute device
holds only the batch in use, so memory stays bounded by one decoder layer
plus the batch, whatever the number of samples.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class ActivationCache:
    """Per-sample activations in CPU memory or in a folder.

    Parameters
    ----------
    directory : path or None
        None keeps the tensors in memory; otherwise one file per sample there
        (created if missing).
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._memory: dict[int, torch.Tensor] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, index: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{index:06d}.safetensors"

    def put(self, index: int, tensor: torch.Tensor) -> None:
        """Store sample ``index`` (copied to CPU; floating point as float32, ids as they are)."""
        value = tensor.detach().to("cpu")
        value = (value.float() if value.is_floating_point() else value).contiguous()
        if self.directory is None:
            self._memory[index] = value.clone()
            return
        final = self._path(index)
        partial = final.with_suffix(".partial")
        save_file({"x": value}, str(partial))
        os.replace(partial, final)

    def get(self, index: int) -> torch.Tensor:
        """Sample ``index`` as a CPU tensor."""
        if self.directory is None:
            return self._memory[index]
        path = self._path(index)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: activation cache entry {index} is missing")
        return load_file(str(path))["x"]

    def batch(self, indices: list[int], device: torch.device) -> torch.Tensor:
        """Samples ``indices`` stacked into ``[len(indices), seq_len, hidden]`` on ``device``."""
        return torch.stack([self.get(i) for i in indices]).to(device)

    def complete(self, indices: Iterable[int]) -> bool:
        """Whether every sample of ``indices`` is stored."""
        if self.directory is None:
            return all(i in self._memory for i in indices)
        return all(self._path(i).is_file() for i in indices)

    def clear(self) -> None:
        """Drop every stored sample (and the folder, on disk)."""
        self._memory.clear()
        if self.directory is not None and self.directory.exists():
            shutil.rmtree(self.directory)
