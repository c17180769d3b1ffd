"""Layer-wise calibration of a group of linears that share one input.

:func:`calibrate` learns the transform and clipping parameters of one group
(q/k/v share P_qkv, up/gate share P_up, a lone linear is a group of one) by
minimising the mean squared error between the full-precision outputs and the
quantized ones (BATQuant paper, equation 5 and Algorithm 2):

1. the activation side: ``x -> clip_a(T(x)) -> Q_a``;
2. the weight side: ``W -> clip_w(W P^{-T}) -> Q_w``;
3. the loss: ``mean((x W^T + b - Q_a(...) Q_w(...)^T - b)^2)`` over every
   output of the group;
4. AdamW with cosine decay (:class:`~batquant.config.CalibSpec`).

Training runs in float32 on the device of the linears' weights.  The run is
deterministic under ``seed``: the transforms' random initialisations are
seeded, the batches are taken in order, and no other randomness is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from batquant.algorithms.clipping import LearnableClip, make_clip
from batquant.algorithms.gptq import LayerHessians
from batquant.algorithms.layer import InputQuantizer, QuantizedLinear, frozen_weight, weight_side
from batquant.algorithms.methods import Method, TransformContext, clip_init_of, get_method
from batquant.algorithms.observers import InputStatistics, row_stride
from batquant.algorithms.training import SampleTerm, Training, train
from batquant.algorithms.transforms import Transform
from batquant.config import (
    CalibSpec,
    GPTQSpec,
    QuantConfig,
    check_weight_quantizer,
    get_config,
    get_weight_quantizer,
)


@dataclass
class CalibratedGroup:
    """The outcome of :func:`calibrate`: shared parameters and the loss history.

    Attributes
    ----------
    name : str
    method : Method
    config : QuantConfig
    linears : list of nn.Linear
        The original full-precision modules (left unchanged).
    transform : Transform or None
        The activation-side transform shared by the group (frozen).
    act_clip, weight_clip : LearnableClip or None
        ``weight_clip`` covers the rows of every linear, stacked in order.
    losses : list of float
        The training loss of every step (empty for training-free methods).
    device : torch.device
        Where the group was calibrated and its parameters live.
    """

    name: str
    method: Method
    config: QuantConfig
    linears: list[nn.Linear]
    transform: Transform | None
    act_clip: LearnableClip | None
    weight_clip: LearnableClip | None
    losses: list[float]
    device: torch.device

    def quantized_linears(self, weight_quantizer: str | GPTQSpec = "rtn",
                          inputs: torch.Tensor | None = None) -> list[QuantizedLinear]:  # fmt: skip
        """One :class:`~batquant.algorithms.layer.QuantizedLinear` per linear, in order.

        The weight side (transform, clipping, rounding) is applied once here,
        in float32, and stored; the activation side runs online.

        Parameters
        ----------
        weight_quantizer : {"rtn", "gptq"} or GPTQSpec
            Round the transformed, clipped weights to nearest, or by MX-GPTQ
            (:mod:`batquant.algorithms.gptq`) with the Hessian of ``inputs``.
        inputs : torch.Tensor, optional
            The calibration inputs (as :func:`calibrate` took them); GPTQ
            needs them, RTN rejects them.
        """
        gptq = get_weight_quantizer(weight_quantizer)
        check_weight_quantizer(gptq, self.config)
        if (gptq is None) != (inputs is None):
            raise ValueError("inputs: weight_quantizer 'gptq' needs the calibration inputs and "
                             "'rtn' takes none")  # fmt: skip
        weight, bias = _stacked(self.linears, self.device)
        shared = InputQuantizer(self.transform, self.act_clip, self.config.activation)
        rounding = None
        if gptq is not None and self.config.weight is not None:
            assert inputs is not None
            hessians = LayerHessians(shared, gptq)
            with torch.no_grad(), hessians.gathering():
                n = weight.shape[1]
                for x in _as_samples(inputs, n, CalibSpec(), self.name):
                    shared(x.to(self.device))
                    shared.forget()
            rounding = hessians
        fused, scales = frozen_weight(weight, self.transform, self.weight_clip, self.config.weight,
                                      shared, rounding, None, self.name)  # fmt: skip
        out = []
        start = 0
        for lin in self.linears:
            rows = slice(start, start + lin.out_features)
            start += lin.out_features
            out.append(
                QuantizedLinear(
                    fused[rows].clone(),
                    None if lin.bias is None else bias[rows].clone(),
                    shared,
                    weight_scale=None if scales is None else scales[rows].clone(),
                    description=f"{self.method.name}, {self.config.describe()}",
                )
            )
        return out


def _as_linears(module_group: nn.Linear | Iterable[nn.Linear]) -> list[nn.Linear]:
    group = [module_group] if isinstance(module_group, nn.Linear) else list(module_group)
    if not group:
        raise ValueError("module_group is empty; pass one nn.Linear or several")
    for i, lin in enumerate(group):
        if not isinstance(lin, nn.Linear):
            raise TypeError(f"module_group[{i}] must be an nn.Linear; got {type(lin).__name__}")
    n = group[0].in_features
    for i, lin in enumerate(group):
        if lin.in_features != n:
            raise ValueError(
                f"module_group[{i}] has in_features {lin.in_features}, but module_group[0] "
                f"has {n}: a group shares one input"
            )
    return group


def _stacked(linears: list[nn.Linear], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every linear's weight rows stacked ([sum M, N] float32) and its bias (zeros if none)."""
    weight = torch.cat([lin.weight.detach().to(device, torch.float32) for lin in linears])
    bias = torch.cat([
        torch.zeros(lin.out_features, device=device) if lin.bias is None
        else lin.bias.detach().to(device, torch.float32)
        for lin in linears
    ])  # fmt: skip
    return weight, bias


def _as_samples(inputs: torch.Tensor, n: int, spec: CalibSpec, name: str) -> list[torch.Tensor]:
    """The calibration inputs as float32 samples ``[tokens_i, N]`` (see CalibSpec.samples)."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"calibrate({name!r}): inputs must be a torch.Tensor; "
                        f"got {type(inputs).__name__}")  # fmt: skip
    if not inputs.is_floating_point():
        raise TypeError(f"calibrate({name!r}): inputs must be floating point; got {inputs.dtype}")
    if inputs.ndim not in (2, 3) or inputs.shape[-1] != n or inputs.numel() == 0:
        raise ValueError(
            f"calibrate({name!r}): inputs must be [tokens, {n}] or [samples, tokens, {n}] "
            f"and not empty; got shape {tuple(inputs.shape)}"
        )
    x = inputs.to(torch.float32)
    if x.ndim == 3:
        return list(x.unbind(0))
    # consecutive runs whose lengths differ by at most one token; none is dropped
    return list(torch.tensor_split(x, min(spec.samples, x.shape[0])))


def _check_finite(samples: list[torch.Tensor], spec: CalibSpec, name: str) -> None:
    for sample, x in enumerate(samples):
        if bool(torch.isfinite(x).all()):
            continue
        raise ValueError(
            f"calibrate({name!r}): batch {sample // spec.batch_size} of the inputs "
            f"(sample {sample}) contains NaN or Inf"
        )


def calibrate(
    module_group: nn.Linear | Iterable[nn.Linear],
    inputs: torch.Tensor,
    spec: CalibSpec | None = None,
    *,
    method: str | Method = "batquant",
    config: str | QuantConfig = "W4A4",
    seed: int = 0,
    name: str = "group",
) -> CalibratedGroup:
    """Learn the transform and clipping parameters of a group of linears sharing ``inputs``.

    Parameters
    ----------
    module_group : nn.Linear or iterable of nn.Linear
        Linears with the same ``in_features`` N (q/k/v, or up/gate, or one).
        They are not modified.
    inputs : torch.Tensor
        Their input, ``[tokens, N]`` or ``[samples, tokens, N]``, any float dtype.
    spec : CalibSpec, optional
        Optimiser and schedule; the paper's defaults when omitted.
    method : str or Method
        A name registered in :data:`batquant.algorithms.methods.METHODS`.
    config : str or QuantConfig
        ``"W4A4"``, ``"W4A8"`` or a :class:`~batquant.config.QuantConfig`.
    seed : int
        Seeds the transforms' random initialisation; same seed, same result.
    name : str
        Names the group in errors (``"layers.3.qkv"``).

    Returns
    -------
    CalibratedGroup

    Raises
    ------
    ValueError
        A NaN or Inf in the inputs or in the loss (naming the group and the
        batch), or shapes that do not fit.
    TypeError
        Arguments of the wrong type, naming them.
    """
    linears = _as_linears(module_group)
    meth = get_method(method)
    cfg = get_config(config)
    reject_kv(cfg, "calibrate()")
    if spec is not None and not meth.calibrated:
        raise ValueError(
            f"spec: method {meth.name!r} is training-free, so a CalibSpec would be ignored; "
            "pass spec=None"
        )
    spec = CalibSpec() if spec is None else spec
    if not isinstance(spec, CalibSpec):
        raise TypeError(f"spec must be a CalibSpec; got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {seed!r}")
    n = linears[0].in_features
    device = linears[0].weight.device
    x = [s.to(device) for s in _as_samples(inputs, n, spec, name)]
    _check_finite(x, spec, name)
    weight, bias = _stacked(linears, device)
    if not torch.isfinite(weight).all():
        raise ValueError(f"calibrate({name!r}): the weights contain NaN or Inf")

    act_q, w_q = cfg.activation, cfg.weight
    block = cfg.transform_block
    tokens = torch.cat(x)
    stats = InputStatistics(meth.statistics, row_stride(tokens.shape[0]))  # the observer point
    stats.update(tokens)
    ctx = TransformContext(
        size=n,
        block_size=block,
        seed=seed,
        act_absmax=torch.ones(n, device=device) if stats.absmax is None else stats.absmax,
        weight_absmax=weight.abs().amax(dim=0),
        inputs=stats.rows,
    )
    try:
        transform = meth.build_transform(ctx)
    except ValueError as exc:
        raise ValueError(
            f"calibrate({name!r}): method {meth.name!r} cannot build its transform for "
            f"in_features {n} (block size {block}): {exc}"
        ) from None
    if transform is not None:
        transform = transform.to(device)
    act_clip = weight_clip = None
    if meth.clip is not None:
        start = clip_init_of(meth, spec)
        if act_q is not None:
            act_clip = make_clip(meth.clip, act_q, None, n, start, device, "activation")
        if w_q is not None:
            weight_clip = make_clip(meth.clip, w_q, weight.shape[0], n, start, device, "weight")

    losses: list[float] = []
    if meth.calibrated:
        losses = _train(x, weight, bias, transform, act_clip, weight_clip, cfg, spec, name)
    for module in (transform, act_clip, weight_clip):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    return CalibratedGroup(name, meth, cfg, linears, transform, act_clip, weight_clip, losses,
                           device)  # fmt: skip


def reject_kv(config: QuantConfig, caller: str) -> None:
    """Raise when ``config`` quantizes the KV cache, which ``caller`` cannot honour."""
    for role in ("key", "value"):
        if getattr(config, role) is not None:
            raise ValueError(
                f"QuantConfig.{role} is set ({config.describe()}), but {caller} quantizes "
                "linear layers only; the KV cache is quantized by batquant.quantize_model"
            )


def _train(
    x: list[torch.Tensor],
    weight: torch.Tensor,
    bias: torch.Tensor,
    transform: Transform | None,
    act_clip: LearnableClip | None,
    weight_clip: LearnableClip | None,
    cfg: QuantConfig,
    spec: CalibSpec,
    name: str,
) -> list[float]:
    """Algorithm 2 on one group, through the one training loop; the loss of every step."""
    transforms = [] if transform is None else [p for p in transform.parameters()
                                               if p.requires_grad]  # fmt: skip
    clips = [p for c in (act_clip, weight_clip) if c is not None for p in c.parameters()]
    activation_side = InputQuantizer(transform, act_clip, cfg.activation)
    per_epoch = math.ceil(len(x) / spec.batch_size)
    batches = [x[b * spec.batch_size : (b + 1) * spec.batch_size] for b in range(per_epoch)]

    def error(xb: torch.Tensor, mean: bool) -> torch.Tensor:
        with torch.no_grad():
            target = torch.addmm(bias, xb, weight.T)
        xq = activation_side(xb)
        wq = weight_side(weight, transform, weight_clip, cfg.weight)
        out = torch.addmm(bias, xq, wq.T)
        return torch.nn.functional.mse_loss(out, target) if mean else ((out - target) ** 2).sum()

    def loss_of(batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = error(torch.cat(batch), mean=True)
        return loss, {name: loss.item()}

    def sample_terms(batch: list[torch.Tensor]) -> list[SampleTerm]:
        # each sample's squared errors over the whole batch's element count
        count = sum(xb.shape[0] for xb in batch) * weight.shape[0]

        def term(xb: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            loss = error(xb, mean=False) / count
            return loss, {name: loss.item()}

        return [(i, partial(term, xb)) for i, xb in enumerate(batch)]

    # the samples are the same tensors every epoch, so the reused activation side
    # (and its freed graph) must be dropped after each backward
    return train(Training(transforms, clips, spec, batches, loss_of,
                          where=f"calibrate({name!r})",
                          after_step=activation_side.forget,
                          sample_terms=sample_terms))  # fmt: skip


def quantize_linear(
    linear: nn.Linear,
    x_calib: torch.Tensor,
    *,
    method: str,
    config: str | QuantConfig = "W4A4",
    calib: CalibSpec | None = None,
    seed: int = 0,
    weight_quantizer: str | GPTQSpec = "rtn",
) -> QuantizedLinear:
    """Quantize one linear layer with ``method``, calibrated on ``x_calib``.

    Parameters
    ----------
    linear : nn.Linear
        Left unchanged.
    x_calib : torch.Tensor
        Its input activations, ``[tokens, in_features]`` (or
        ``[samples, tokens, in_features]``).
    method : str
        Any name in :data:`batquant.algorithms.methods.METHODS` (``"rtn"``, ``"brq"``,
        ``"quarot"``, ``"batquant"``, ...).
    config : str or QuantConfig
        ``"W4A4"`` (default), ``"W4A8"`` or a :class:`~batquant.config.QuantConfig`.
    calib : CalibSpec, optional
        The paper's defaults when omitted; a training-free method rejects one.
    seed : int
    weight_quantizer : {"rtn", "gptq"} or GPTQSpec
        How the weight is rounded once its transform and clipping are fixed:
        to nearest, or by MX-GPTQ with the Hessian of the transformed,
        clipped ``x_calib``.

    Returns
    -------
    QuantizedLinear
        Computes transform, clipping, fake quantization of weight and
        activation, and the matmul.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear; got {type(linear).__name__}")
    gptq = get_weight_quantizer(weight_quantizer)
    check_weight_quantizer(gptq, get_config(config))
    group = calibrate(linear, x_calib, calib, method=method, config=config, seed=seed,
                      name="linear")  # fmt: skip
    return group.quantized_linears(gptq or "rtn", None if gptq is None else x_calib)[0]
