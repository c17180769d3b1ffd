"""Disk offload: calibrate a model that is never materialised in memory.

A model loaded with ``batquant.load_model(folder, offload="disk")`` is
transformers' own disk offload: built on the meta device, with accelerate
hooks that read each module's weights from the checkpoint's safetensors
files when it runs (embeddings and the LM head included) and drop them
after.  :func:`batquant.quantize_model` with ``offload="disk"`` then, for each
decoder layer in turn:

1. **materialises** it (:func:`materialise`): its weights are read from the
   checkpoint through the hooks' own weight maps and its hooks removed, so the
   layer is an ordinary in-memory module while it is calibrated;
2. calibrates it as always;
3. writes its quantized state to the run folder (the layer checkpoint every
   resumable run writes) and **offloads** it (:func:`offload_to_file`): its
   tensors go back to the meta device, and one accelerate hook reads the whole
   layer from that file whenever it runs.

So memory holds one decoder layer, its optimiser state and the activation
cache's working batch (the cache itself is on disk), whatever the number of
layers.  The returned model runs (perplexity, generation) through the hooks,
one layer at a time; :func:`layer_tensors` reads an offloaded layer's state
for :func:`batquant.save_quantized`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn


def _hook(module: nn.Module) -> object | None:
    return getattr(module, "_hf_hook", None)


def is_offloaded(module: nn.Module) -> bool:
    """Whether ``module`` or a submodule keeps its weights on disk (an offload hook)."""
    from accelerate.utils import has_offloaded_params

    return any(has_offloaded_params(m) for m in module.modules())


def check_offload(offload: str | None, layers_offloaded: list[bool], cache_dir: object,
                  inplace: bool) -> bool:  # fmt: skip
    """Whether a run offloads to disk; every inconsistent combination is an error.

    ``layers_offloaded``: for each decoder layer, whether it is offloaded.
    """
    if offload not in (None, "disk"):
        raise ValueError(f"offload must be None or 'disk'; got {offload!r}")
    offloaded = any(layers_offloaded)
    if offload is None and offloaded:
        raise ValueError("the model's layers are offloaded to disk (loaded with "
                         "offload='disk'); pass offload='disk' and a cache_dir")  # fmt: skip
    if offload is None:
        return False
    if not offloaded:
        raise ValueError("offload='disk': the model is in memory; load it with "
                         "batquant.load_model(folder, offload='disk')")  # fmt: skip
    if cache_dir is None:
        raise ValueError("offload='disk' writes each calibrated layer to cache_dir and reads "
                         "it from there; give a cache_dir")  # fmt: skip
    if not inplace:
        raise ValueError("offload='disk' quantizes the offloaded model itself (a copy would "
                         "share its files); pass inplace=True")  # fmt: skip
    return True


def tensor_of(module: nn.Module, name: str) -> torch.Tensor:
    """``module``'s own tensor ``name``, read from disk when ``module`` is offloaded."""
    tensor = module.get_parameter(name) if name in dict(module.named_parameters(recurse=False)) \
        else module.get_buffer(name)  # fmt: skip
    hook = _hook(module)
    if tensor.device.type == "meta" and hook is not None:
        return hook.weights_map[name]  # type: ignore[attr-defined]
    return tensor


def materialise(layer: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Read every offloaded tensor of ``layer`` into memory on ``device`` and drop its hooks.

    Returns ``layer`` itself, now an ordinary module.
    """
    from accelerate.hooks import remove_hook_from_module
    from accelerate.utils import has_offloaded_params, set_module_tensor_to_device

    for module in layer.modules():
        if not has_offloaded_params(module):
            continue
        hook = _hook(module)
        weights = hook.weights_map  # type: ignore[attr-defined]
        for name, tensor in [*module.named_parameters(recurse=False),
                             *module.named_buffers(recurse=False)]:  # fmt: skip
            if tensor.device.type == "meta":
                set_module_tensor_to_device(module, name, device, value=weights[name])
    remove_hook_from_module(layer, recurse=True)
    for module in layer.modules():
        # accelerate puts the class's forward back as an instance attribute: a bound method
        # that refers to its module, a cycle that would keep the layer (and its weights)
        # alive until the garbage collector next runs
        forward = module.__dict__.get("forward")
        if getattr(forward, "__self__", None) is module and \
                getattr(forward, "__func__", None) is type(module).forward:  # fmt: skip
            del module.__dict__["forward"]
    return layer


class _LayerFile:
    """A read-only mapping from a layer's tensor names to their tensors in its safetensors file.

    A module shared by two parents (one input quantizer for q, k and v) has
    its tensors once in the state dict, under one name; ``aliases`` maps the
    other names to it, so the hook finds the tensors under every name.
    """

    def __init__(self, path: Path, aliases: dict[str, str]) -> None:
        self.path, self.aliases = path, aliases
        with safe_open(str(path), framework="pt") as f:
            self.stored = list(f.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        with safe_open(str(self.path), framework="pt") as f:
            return f.get_tensor(self.aliases.get(key, key))

    def __contains__(self, key: object) -> bool:
        return key in self.aliases or key in self.stored

    def __iter__(self) -> Iterator[str]:
        return iter([*self.stored, *self.aliases])

    def __len__(self) -> int:
        return len(self.stored) + len(self.aliases)

    def keys(self) -> list[str]:
        return [*self.stored, *self.aliases]


def _aliases(layer: nn.Module) -> dict[str, str]:
    """Every tensor name of ``layer`` outside its state dict -> the state-dict name it shares."""
    state = layer.state_dict()
    by_storage = {(v.data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype): k
                  for k, v in state.items() if v.numel()}  # fmt: skip
    named = [*layer.named_parameters(remove_duplicate=False),
             *layer.named_buffers(remove_duplicate=False)]  # fmt: skip
    aliases = {}
    for name, tensor in named:
        if name in state:
            continue
        key = (tensor.data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        if key not in by_storage:
            raise ValueError(f"offload: the layer's tensor {name!r} is not in its state dict "
                             "(a non-persistent buffer?), so it cannot be read back from "
                             "disk")  # fmt: skip
        aliases[name] = by_storage[key]
    return aliases


def offload_to_file(layer: nn.Module, path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """Move ``layer``'s tensors to the meta device and read them from ``path`` when it runs.

    ``path`` holds the layer's whole state (its checkpoint); one hook on the
    layer loads all of it on ``device`` before each call and drops it after.
    """
    from accelerate.hooks import attach_align_device_hook

    state = _LayerFile(path, _aliases(layer))
    missing = sorted(set(layer.state_dict()) - set(state.stored))
    if missing:
        raise ValueError(f"{path}: no tensors for {missing[:4]} of the layer")
    layer.to("meta")
    attach_align_device_hook(layer, execution_device=torch.device(device), offload=True,
                             weights_map=state, offload_buffers=True,
                             preload_module_classes=[type(layer).__name__])  # fmt: skip
    return layer


def release_freed_memory() -> None:
    """Hand the memory of freed tensors back to the system (glibc's ``malloc_trim``).

    A layer's weights are a few MB per tensor: glibc's dynamic mmap threshold
    soon serves such blocks from its heap, and freed heap memory is kept by
    the process, so without a trim the resident memory of an offloaded run
    grows by about a layer per layer although nothing is alive (measured:
    +12 MB per layer of 13.6 MB).  Elsewhere than glibc this does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:
        trim(0)


def layer_tensors(layer: nn.Module) -> dict[str, torch.Tensor] | None:
    """An offloaded layer's state read from its file (None: ``layer`` is in memory)."""
    hook = _hook(layer)
    weights = getattr(hook, "weights_map", None)
    if weights is None:
        return None
    source = getattr(weights, "dataset", weights)
    if not isinstance(source, _LayerFile):
        return None
    return load_file(str(source.path))  # one read of the file, not one open per tensor
