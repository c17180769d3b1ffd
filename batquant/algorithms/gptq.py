"""MX-GPTQ: GPTQ with static E8M0 groups, as the weight quantizer of any method.

GPTQ (Frantar et al., 2022) rounds a weight's columns one at a time and
spreads each column's rounding error over the columns not yet rounded, in
proportion to the inverse Hessian ``H = X^T X`` of the linear's inputs.  For
MX the groups are **static**: every 32-element block's E8M0 scale is fixed
from the transformed, clipped weight before the sweep (FP-Quant and
llm-compressor do the same), so the blocks stay contiguous as hardware
needs, and each column is rounded against its block's given scale
(:func:`mxref.torch.quantize_dequantize` with ``scales=``).  The result is
valid MX by construction: re-encoding it with those scales gives back its
codes.

The Hessian is that of the **transformed, clipped** inputs a quantized
linear consumes, gathered at the observer point
(:func:`batquant.algorithms.observers.observing_transformed`; for a fused
MoE expert's gate/up, :meth:`RoutedInputs.routed_inputs` on its own routed
tokens), accumulated in float64.

:class:`LayerHessians` gathers them for a whole layer under calibration and
is the ``rounding`` its linears and experts freeze with; nothing here names
a model family or a method.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from batquant.algorithms.layer import InputQuantizer
from batquant.algorithms.observers import InputStatistics, Statistic, observing_transformed
from batquant.algorithms.rounding import round_to_nearest, round_with_scales, static_scales
from batquant.config import GPTQ_DAMPING_RETRIES, GPTQSpec, TensorQuant


@dataclass(frozen=True)
class GPTQResult:
    """One weight rounded by :func:`gptq_quantize`.

    Attributes
    ----------
    weight : torch.Tensor
        The fake-quantized weight ``[out, in]`` (float32): valid MX under ``scales``.
    scales : torch.Tensor
        The static E8M0 bytes ``[out, in / block]`` (uint8).
    damping : float
        The damping factor that factorised (``spec.damping`` unless raised).
    error : float
        ``tr((W - Q) H (W - Q)^T)``: the layer-output error on the calibration inputs.
    rtn_error : float
        The same for round-to-nearest with the same scales (what GPTQ improves on).
    """

    weight: torch.Tensor
    scales: torch.Tensor
    damping: float
    error: float
    rtn_error: float


def _round_column(column: torch.Tensor, scales: torch.Tensor, quant: TensorQuant
                  ) -> torch.Tensor:  # fmt: skip
    """One column ``[out, 1]`` rounded against its rows' given E8M0 bytes ``[out, 1]``.

    With the scale given, an element's rounding depends only on itself and
    that scale, so each element is passed as a block of one: the same bits as
    in its 32-element block, without padding every column to a whole block.
    """
    from mxref.torch import quantize_dequantize

    return quantize_dequantize(column, quant.fmt, axis=-1, block_size=1, rounding=quant.rounding,
                               overflow=quant.overflow, scales=scales)  # fmt: skip


def _output_error(delta: torch.Tensor, hessian: torch.Tensor) -> float:
    d = delta.double()
    return float(((d @ hessian) * d).sum())


def _inverse_factor(hessian: torch.Tensor, spec: GPTQSpec, where: str
                    ) -> tuple[torch.Tensor, float]:  # fmt: skip
    """The upper Cholesky factor of ``(H + damping * mean(diag H) I)^-1``, and the damping used."""
    mean_diag = float(torch.diagonal(hessian).mean())
    eye = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
    damping = spec.damping
    for _ in range(GPTQ_DAMPING_RETRIES + 1):
        lower, info = torch.linalg.cholesky_ex(hessian + damping * mean_diag * eye)
        if int(info) == 0:
            # L^-T L^-1 by one triangular solve: torch's CPU cholesky_inverse is 30x slower
            eye_lower = torch.linalg.solve_triangular(lower, eye, upper=False)
            inverse = eye_lower.T @ eye_lower
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0:
                return upper, damping
        damping *= 10
    raise ValueError(f"{where}: GPTQ's Hessian is not positive definite even with damping "
                     f"{damping / 10:g} * mean(diag H); use weight_quantizer='rtn' here")


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, quant: TensorQuant,
                  spec: GPTQSpec, where: str = "linear") -> GPTQResult:  # fmt: skip
    """Round ``weight`` to MX by GPTQ with static E8M0 groups.

    Parameters
    ----------
    weight : torch.Tensor
        The transformed, clipped weight ``[out, in]``, blocked along ``in``.
    hessian : torch.Tensor
        ``X^T X`` ``[in, in]`` of the inputs (transformed and clipped alike),
        float64; its scale does not matter.
    quant : TensorQuant
        The weight's format and policies.
    spec : GPTQSpec
    where : str
        Names the linear in errors.

    Returns
    -------
    GPTQResult

    Raises
    ------
    ValueError
        Shapes that do not fit, or a Hessian that no damping makes positive definite.

    Spec: OCP MX v1.0 section 6.3 (each column rounded against its block's scale).
    """
    if weight.ndim != 2 or hessian.shape != (weight.shape[1], weight.shape[1]):
        raise ValueError(f"{where}: GPTQ needs a weight [out, in] and a Hessian [in, in]; got "
                         f"{tuple(weight.shape)} and {tuple(hessian.shape)}")  # fmt: skip
    w = weight.detach().to(torch.float32).clone()
    rows, cols = w.shape
    bs = quant.block_size
    scales = static_scales(w, quant)
    h = hessian.detach().to(w.device, torch.float64).clone()
    rtn = round_with_scales(w, scales, quant)
    rtn_error = _output_error(w - rtn, h)
    # an input that never fires: its column cannot matter, so it becomes 0 (GPTQ's rule)
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = torch.arange(cols, device=w.device)
    if spec.act_order:
        order = torch.argsort(torch.diagonal(h), descending=True, stable=True)
    upper, damping = _inverse_factor(h[order][:, order], spec, where)
    # the sweep runs in float64, as the Hessian is accumulated: the propagated errors stay
    # far below the MX rounding (on these CPUs it costs no time against float32), and each
    # column is rounded once from its float64 value
    hinv = upper
    work = w[:, order].to(torch.float64)
    column_scales = scales[:, order // bs]  # each column keeps its own block's scale
    out = torch.empty_like(work)
    for i1 in range(0, cols, spec.block):
        i2 = min(i1 + spec.block, cols)
        chunk = work[:, i1:i2].clone()
        errors = torch.empty_like(chunk)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = chunk[:, i : i + 1]
            q = _round_column(col, column_scales[:, i1 + i : i1 + i + 1], quant)
            out[:, i1 + i : i1 + i + 1] = q
            err = (col - q) / h1[i, i]
            chunk[:, i:] -= err * h1[i : i + 1, i:]
            errors[:, i : i + 1] = err
        work[:, i2:] -= errors @ hinv[i1:i2, i2:]
    result = torch.empty_like(w)
    result[:, order] = out.to(torch.float32)  # MX values: exact in float32
    return GPTQResult(result, scales, damping, _output_error(weight.float() - result, hessian),
                      rtn_error)  # fmt: skip


@runtime_checkable
class RoutedInputs(Protocol):
    """Experts that share one activation side ``up`` and route tokens to each expert."""

    up: InputQuantizer

    @property
    def num_experts(self) -> int:
        """The number of experts."""
        ...

    def routed_inputs(self, hidden: torch.Tensor, top_k_index: torch.Tensor
                      ) -> dict[int, torch.Tensor]:  # fmt: skip
        """Each hit expert's ``clip(T(x))`` rows (before fake quantization)."""
        ...


class LayerHessians:
    """The Hessians of one layer's weights, gathered while calibration data passes.

    Each :class:`~batquant.algorithms.layer.InputQuantizer` of the layer gets a
    Gram observer on its transformed, clipped output; fused experts
    (:class:`RoutedInputs`) also get one per expert on the tokens routed to it.  Used as a
    :class:`WeightRounding`, it rounds each weight by :func:`gptq_quantize`
    and keeps a report per weight.

    Parameters
    ----------
    layer : nn.Module
        The layer under calibration.
    spec : GPTQSpec
    """

    def __init__(self, layer: nn.Module, spec: GPTQSpec) -> None:
        self.layer, self.spec = layer, spec
        self.quantizers = [m for m in layer.modules() if isinstance(m, InputQuantizer)]
        self.grams: dict[tuple[int, int | None], InputStatistics] = {}
        #: name -> damping, output error and RTN's, filled as weights are rounded
        self.reports: dict[str, dict[str, Any]] = {}

    def _stream(self, quantizer: nn.Module, expert: int | None) -> InputStatistics:
        key = (id(quantizer), expert)
        if key not in self.grams:
            self.grams[key] = InputStatistics({Statistic.GRAM})
        return self.grams[key]

    @contextmanager
    def gathering(self) -> Iterator[LayerHessians]:
        """Observe every input stream of the layer while the block runs it."""
        names = {f"stream {i}": q for i, q in enumerate(self.quantizers)}
        with ExitStack() as stack:
            streams = stack.enter_context(observing_transformed(names, {Statistic.GRAM}))
            for name, quantizer in names.items():
                self.grams[(id(quantizer), None)] = streams[name]
            for module in self.layer.modules():
                if not isinstance(module, RoutedInputs):
                    continue

                # a forward hook, not a pre-hook: it sees the arguments after every
                # pre-hook, the routing a calibration replays included
                def per_expert(mod: nn.Module, args: tuple[Any, ...], _: Any) -> None:
                    assert isinstance(mod, RoutedInputs)
                    for e, h in mod.routed_inputs(args[0], args[1]).items():
                        self._stream(mod.up, e).update(h)

                stack.enter_context(module.register_forward_hook(per_expert))
            yield self

    def streams(self) -> list[InputStatistics]:
        """Every stream of the layer in one fixed order (each expert's, seen or not).

        The order depends only on the layer's structure, so that the ranks of a
        data-parallel run reduce the same streams together
        (:func:`~batquant.algorithms.observers.reduce_statistics`).
        """
        keys: list[tuple[nn.Module, int | None]] = [(q, None) for q in self.quantizers]
        for module in self.layer.modules():
            if isinstance(module, RoutedInputs):
                keys += [(module.up, e) for e in range(module.num_experts)]
        return [self._stream(quantizer, expert) for quantizer, expert in keys]

    def __call__(self, weight: torch.Tensor, quant: TensorQuant, inputs: nn.Module,
                 expert: int | None, where: str) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        stream = self.grams.get((id(inputs), expert))
        if stream is None or stream.gram is None or stream.tokens == 0:
            # no calibration token reached this weight: nothing for GPTQ to weigh errors by
            self.reports[where] = {"rounding": "rtn", "reason": "no calibration tokens"}
            return round_to_nearest(weight, quant, inputs, expert, where)
        result = gptq_quantize(weight, stream.gram, quant, self.spec, where)
        self.reports[where] = {"rounding": "gptq", "tokens": stream.tokens,
                               "damping": result.damping, "error": result.error,
                               "rtn_error": result.rtn_error}  # fmt: skip
        return result.weight, result.scales

