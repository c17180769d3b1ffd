"""Pictures of what a method does: block magnitudes before and after its transform, and loss curves.

:func:`block_view` gathers the data of the BATQuant paper's Fig. 2 and 5 for
one quantized linear: the input activations it receives, and the same
activations after the method's transform and clipping, with

- the magnitude of every MX block (max |x| over the block's elements), token
  by token: a heat map shows where the outliers sit and whether the
  transform spread them;
- the values of two blocks divided by their E8M0 scale (what the element
  format rounds): one block that holds the layer's largest outlier and one
  whose magnitude is the median's.

The scales are mxref's (:func:`mxref.torch.encode` with the module's own
activation format, block and scale rule), so the scaled values are the
elements' pre-rounding values exactly.  :func:`loss_curves` reads a run's
``calibration.jsonl``.  The ``plot_*`` functions draw with matplotlib's
object API (no pyplot state, no display needed) and write a PNG.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from batquant.algorithms.layer import QuantizedLinear
from batquant.config import TensorQuant
from batquant.models import get_adapter
from mxref.formats import get_format

#: Tokens shown in a heat map (the first ones of the text).
HEATMAP_TOKENS = 256


@dataclass(frozen=True)
class BlockView:
    """The data behind :func:`plot_blocks`.

    Attributes
    ----------
    title : str
        ``"layer 3 mlp.down_proj (batquant, W4A4KV16)"``.
    block_size : int
        The activation's MX block.
    before, after : torch.Tensor
        float32 ``[tokens, blocks]``: max |x| of every block, of the input and
        of the transformed, clipped input.
    outlier_block, plain_block : int
        The block holding the largest input magnitude, and the block whose
        largest input magnitude over the tokens is the median block's.
    scaled_before, scaled_after : dict of int to torch.Tensor
        For those two blocks, every token's values divided by the block's
        E8M0 scale, flattened: what the element format rounds.
    element_max : float
        The element format's largest finite magnitude (6 for FP4).
    """

    title: str
    block_size: int
    before: torch.Tensor
    after: torch.Tensor
    outlier_block: int
    plain_block: int
    scaled_before: dict[int, torch.Tensor]
    scaled_after: dict[int, torch.Tensor]
    element_max: float


def find_linear(model: nn.Module, layer: int, module: str) -> tuple[str, QuantizedLinear]:
    """The quantized linear ``module`` (a name or its last part) of decoder layer ``layer``.

    Raises
    ------
    ValueError
        Naming ``layer`` or ``module`` and what exists.
    """
    layers = get_adapter(model).decoder_layers(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(layers):
        raise ValueError(f"layer must be in 0..{len(layers) - 1}; got {layer!r}")
    linears = {name: m for name, m in layers[layer].named_modules()
               if isinstance(m, QuantizedLinear)}  # fmt: skip
    found = [n for n in linears if n == module or n.endswith("." + module)]
    if len(found) != 1:
        known = ", ".join(sorted(linears)) or "none (is the model quantized?)"
        what = "no" if not found else "more than one"
        raise ValueError(f"module {module!r}: {what} quantized linear of layer {layer} has that "
                         f"name; its quantized linears: {known}")  # fmt: skip
    return found[0], linears[found[0]]


def _block_magnitudes(x: torch.Tensor, block_size: int) -> torch.Tensor:
    return x.abs().unflatten(-1, (x.shape[-1] // block_size, block_size)).amax(dim=-1)


def _scaled(x: torch.Tensor, blocks: tuple[int, ...], quant: TensorQuant
            ) -> dict[int, torch.Tensor]:  # fmt: skip
    """The values of each of ``blocks`` divided by their E8M0 scale, as mxref encodes them."""
    from mxref.torch import encode

    size = quant.block_size
    _, scales = encode(x, quant.fmt, block_size=size, scale_rule=quant.scale_rule,
                       rounding=quant.rounding, overflow=quant.overflow)  # fmt: skip
    out = {}
    for block in blocks:
        values = x[:, block * size : (block + 1) * size]
        exponent = scales[:, block].to(torch.int32) - 127  # E8M0 bias: the byte's power of two
        # ldexp by the negated exponent is exact: a division by a power of two
        out[block] = torch.ldexp(values, -exponent[:, None]).flatten().float().cpu()
    return out


def block_view(model: nn.Module, token_ids: torch.Tensor, *, layer: int, module: str
               ) -> BlockView:  # fmt: skip
    """The activations of one quantized linear before and after its method's transform.

    Parameters
    ----------
    model : quantized transformers causal LM
        As :func:`batquant.load_quantized` or :func:`batquant.quantize_model` return it.
    token_ids : torch.LongTensor
        ``[sequences, tokens]`` (or 1-D, one sequence) run through the model.
    layer : int
        Decoder layer index.
    module : str
        The linear, by name or its last part (``"down_proj"``, ``"self_attn.q_proj"``).

    Returns
    -------
    BlockView

    Raises
    ------
    ValueError
        A module that is not a quantized linear, or one whose activations
        are not quantized (nothing is scaled) or are NVFP4 (no E8M0 scale).
    """
    name, linear = find_linear(model, layer, module)
    quant = linear.input_quantizer.quant
    if quant is None:
        raise ValueError(f"module {module!r}: its activations are not quantized, so it has no "
                         "activation blocks to draw")  # fmt: skip
    if quant.two_level:
        raise ValueError(f"module {module!r}: its activations are {quant.describe()}; the figures "
                         "draw values over E8M0 block scales (MX formats only)")  # fmt: skip
    ids = token_ids[None] if token_ids.ndim == 1 else token_ids
    seen: list[torch.Tensor] = []
    hook = linear.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().flatten(0, -2)))
    try:
        with torch.no_grad():
            for row in ids:
                model(input_ids=row[None].to(linear.weight.device), use_cache=False)
    finally:
        hook.remove()
    x = torch.cat(seen).to(linear.input_quantizer.dtype)
    with torch.no_grad():
        h = linear.input_quantizer.unquantized(x)
    size = quant.block_size
    before, after = _block_magnitudes(x, size), _block_magnitudes(h, size)
    peak = before.amax(dim=0)
    outlier = int(peak.argmax())
    plain = int((peak - peak.median()).abs().argmin())
    fmt = get_format(quant.fmt)
    description = getattr(linear, "description", "")
    return BlockView(
        title=f"layer {layer} {name}" + (f" ({description})" if description else ""),
        block_size=size, before=before.float().cpu(), after=after.float().cpu(),
        outlier_block=outlier, plain_block=plain,
        scaled_before=_scaled(x, (outlier, plain), quant),
        scaled_after=_scaled(h, (outlier, plain), quant),
        element_max=float(fmt.max_normal),
    )  # fmt: skip


def plot_blocks(view: BlockView, out: str | os.PathLike[str]) -> Path:
    """Draw ``view``: two heat maps of log2 block magnitude and four histograms; write a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 8), layout="constrained")
    grid = fig.add_gridspec(2, 4)
    shown = slice(0, HEATMAP_TOKENS)
    maps = [view.before[shown], view.after[shown]]
    tiny = torch.finfo(torch.float32).tiny
    logs = [torch.log2(m.clamp(min=tiny)) for m in maps]
    lo = min(float(m.min()) for m in logs)
    hi = max(float(m.max()) for m in logs)
    for col, (label, data) in enumerate(zip(("input", "after the transform"), logs,
                                            strict=True)):  # fmt: skip
        ax = fig.add_subplot(grid[0, 2 * col : 2 * col + 2])
        image = ax.imshow(data.numpy(), aspect="auto", cmap="magma", vmin=lo, vmax=hi,
                          interpolation="nearest")  # fmt: skip
        ax.set_title(f"{label}: log2 max|x| per {view.block_size}-block")
        ax.set_xlabel("block")
        ax.set_ylabel("token")
        fig.colorbar(image, ax=ax)
    for col, (block, kind) in enumerate(((view.outlier_block, "outlier"),
                                         (view.plain_block, "median"))):  # fmt: skip
        pair = (("input", view.scaled_before[block]), ("transformed", view.scaled_after[block]))
        for side, (label, values) in enumerate(pair):
            ax = fig.add_subplot(grid[1, 2 * col + side])
            ax.hist(values.numpy(), bins=61, color="tab:blue" if side == 0 else "tab:orange")
            for edge in (-view.element_max, view.element_max):
                ax.axvline(edge, color="black", linewidth=0.8, linestyle="--")
            ax.set_yscale("log")
            ax.set_title(f"block {block} ({kind}), {label}")
            ax.set_xlabel("x / 2^scale (before rounding)")
    fig.suptitle(view.title)
    return _save(fig, out)


def loss_curves(run: str | os.PathLike[str]) -> dict[int, list[float]]:
    """Every layer's calibration loss per step (its groups' parts summed), from a run's log.

    Parameters
    ----------
    run : path
        A run folder (``calibration.jsonl`` inside: a ``batquant calibrate``
        output or its ``cache_dir``) or the log file itself.

    Raises
    ------
    ValueError
        No log, a log that is not JSON lines, or one without training steps.
    """
    path = Path(run)
    log = path / "calibration.jsonl" if path.is_dir() else path
    if not log.is_file():
        raise ValueError(f"{log}: no calibration log (calibration.jsonl) there")
    steps: dict[int, dict[int, float]] = {}
    for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{log}: line {number} is not JSON") from None
        if not isinstance(record, dict) or not {"group", "step", "loss"} <= record.keys():
            continue  # the other records: expert token counts, GPTQ reports
        layer = steps.setdefault(int(record["layer"]), {})
        layer[int(record["step"])] = layer.get(int(record["step"]), 0.0) + float(record["loss"])
    if not steps:
        raise ValueError(f"{log}: no training steps (a training-free method logs none)")
    return {layer: [v for _, v in sorted(s.items())] for layer, s in sorted(steps.items())}


def plot_losses(curves: dict[int, list[float]], out: str | os.PathLike[str],
                title: str = "calibration loss per layer") -> Path:  # fmt: skip
    """Draw every layer's loss against its step, coloured by depth; write a PNG."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    last = max(curves) or 1
    for layer, losses in curves.items():
        ax.plot(range(len(losses)), losses, color=cmap(layer / last), linewidth=1,
                label=f"layer {layer}" if len(curves) <= 12 else None)  # fmt: skip
    if all(v > 0 and math.isfinite(v) for c in curves.values() for v in c):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("output MSE (sum over the layer's groups)")
    ax.set_title(title)
    if len(curves) <= 12:
        ax.legend(fontsize="small")
    return _save(fig, out)


def plot_perplexities(ppls: dict[str, float], full_precision: float,
                      out: str | os.PathLike[str], title: str) -> Path:  # fmt: skip
    """A bar per method of its recovery (100 x PPL_fp / PPL), labelled with the PPL; a PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.6 * len(ppls) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    names = list(ppls)[::-1]  # the first method on top
    recovery = [100 * full_precision / ppls[n] for n in names]
    bars = ax.barh(names, recovery, color="tab:blue")
    ax.bar_label(bars, labels=[f"PPL {ppls[n]:.2f}" for n in names], padding=3)
    ax.axvline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 118)
    ax.set_xlabel(f"recovery, % (100 x PPL_fp / PPL; full precision {full_precision:.2f})")
    ax.set_title(title)
    return _save(fig, out)


def check_png_path(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path if a new PNG can be written there (checked before any long work).

    Raises
    ------
    ValueError
        Not a ``.png`` name, an existing file (never overwritten), or a missing folder.
    """
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--out {path}: the figure is written as PNG; name a .png file")
    if path.exists():
        raise ValueError(f"--out {path} exists; choose a new file")
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist")
    return path


def _save(fig: object, out: str | os.PathLike[str]) -> Path:
    path = check_png_path(out)
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=110)  # type: ignore[attr-defined]
    partial.replace(path)
    return path
