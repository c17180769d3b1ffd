"""Frozen configurations: how each tensor role is quantized, and how calibration runs.

- :class:`TensorQuant`: the format (MX or NVFP4) and policies of one tensor
  role (weight, activation, K and V).
- :class:`QuantConfig`: one :class:`TensorQuant` per role, with the named
  presets of the paper in :data:`CONFIGS`: ``W4A4KV16`` and ``W4A8KV16``
  (MXFP4 weights; MXFP4 or MXFP8 E4M3 activations; the KV cache in full
  precision), ``W4A8KV8`` and ``W4A8KV4`` (K and V in MXFP8 E4M3 or MXFP4, in
  blocks along head_dim).  ``W4A4`` and ``W4A8`` are the KV16 configs under
  their layer-level names.  ``W4A16KV16`` is weight-only MXFP4, what most
  deployments run first.  ``NVW4A4KV16`` and ``NVW4A8KV16`` are their NVFP4
  counterparts: NVFP4 weights (blocks of 16, E4M3 block scales, a float32
  tensor scale), NVFP4 or MXFP8 E4M3 activations.
- :class:`TensorScale`: what one NVFP4 tensor scale covers, the whole tensor
  or each row.
- :class:`CalibSpec`: the optimiser and schedule of layer calibration, with
  the BATQuant paper's defaults (appendix A.5: AdamW, lr 2e-3, cosine decay,
  5 epochs, batch 4).
- :class:`GPTQSpec` and :func:`get_weight_quantizer`: how the weights are
  rounded once the transforms are fixed, to nearest (``"rtn"``) or by MX-GPTQ
  (``"gptq"``).

Every field is checked at construction; a bad value raises ``ValueError`` or
``TypeError`` naming the class and the field (``TensorQuant.fmt``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from mxref.formats import DEFAULT_BLOCK_SIZE, get_format
from mxref.policies import Overflow, Policy, Rounding, ScaleRule
from mxref.registry import Registry


def _check_int(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}; got {value}")


def _check_float(owner: str, name: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{name} must be a number; got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{owner}.{name} must be finite and {bound}; got {value}")


class TensorScale(Policy):
    """How much of a tensor one NVFP4 float32 tensor scale covers (computed at each call).

    The scale is dynamic: ``G = RN32(448 * 6 / amax)`` of the values being
    quantized, at each forward (docs/batquant.md, "NVFP4").
    """

    #: One scale for the whole tensor of the call: a weight matrix (what NVFP4
    #: checkpoints store), or every token of an activation batch (a dynamic
    #: stand-in for the static calibrated input scale deployed runtimes use).
    TENSOR = "tensor"
    #: One scale per row along the blocked axis: per output channel of a weight,
    #: per token of an activation.
    ROW = "row"


@dataclass(frozen=True)
class TensorQuant:
    """The fake quantization of one tensor role: an MX format, or NVFP4.

    Attributes
    ----------
    fmt : str
        An mxref format name (``"mxfp4"``, ``"mxfp8_e4m3"``, ..., ``"nvfp4"``).
    block_size : int
        Elements per shared scale along the reduction (last) dimension.
        None (the default) is the format's own block: 32 for the MX formats,
        16 for ``"nvfp4"``; an explicit value is kept as given (mxref takes
        any positive block for either).
    scale_rule : str or ScaleRule
        How an MX format's E8M0 block scale is chosen; None (the default) is
        the spec's FLOOR.  NVFP4's E4M3 block scales are rounded to nearest,
        so ``"nvfp4"`` refuses any scale rule and keeps None.
    rounding, overflow : str or the mxref policy enums
        Default: RNE, saturate.  ``rounding="stochastic"`` is rejected:
        calibration needs a deterministic quantizer.
    tensor_scale : str or TensorScale
        ``"nvfp4"`` only: ``"tensor"`` (the default) or ``"row"``
        (:class:`TensorScale`); an MX format has no tensor scale and refuses it.

    Spec: OCP MX v1.0 section 6.3 (the MX formats); NVFP4 as mxref defines it
    (docs/semantics.md section 8c).
    """

    fmt: str = "mxfp4"
    # None until __post_init__ resolves it: every constructed TensorQuant holds an int
    block_size: int = None  # type: ignore[assignment]
    scale_rule: ScaleRule | None = None
    rounding: Rounding = Rounding.RNE
    overflow: Overflow = Overflow.SATURATE
    tensor_scale: TensorScale | None = None

    def __post_init__(self) -> None:
        try:
            found = get_format(self.fmt, two_level=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"TensorQuant.fmt: {exc}") from None
        object.__setattr__(self, "fmt", found.name)
        if self.block_size is None:
            object.__setattr__(self, "block_size", found.block_size)
        _check_int("TensorQuant", "block_size", self.block_size, 1)
        if found.two_level:
            if self.scale_rule is not None:
                raise ValueError(
                    f"TensorQuant.scale_rule: {found.name}'s E4M3 block scales are rounded to "
                    f"nearest; a scale rule chooses E8M0 scales (MX formats); got "
                    f"{self.scale_rule!r}"
                )
            scope = TensorScale.TENSOR if self.tensor_scale is None else self.tensor_scale
            object.__setattr__(self, "tensor_scale",
                               TensorScale.parse(scope, "TensorQuant.tensor_scale"))  # fmt: skip
        else:
            if self.tensor_scale is not None:
                raise ValueError(f"TensorQuant.tensor_scale: {found.name} has no tensor scale "
                                 f"(only nvfp4 has); got {self.tensor_scale!r}")  # fmt: skip
            rule = ScaleRule.FLOOR if self.scale_rule is None else self.scale_rule
            object.__setattr__(self, "scale_rule",
                               ScaleRule.parse(rule, "TensorQuant.scale_rule"))  # fmt: skip
        for attr, policy in (("rounding", Rounding), ("overflow", Overflow)):
            parsed = policy.parse(getattr(self, attr), f"TensorQuant.{attr}")
            object.__setattr__(self, attr, parsed)
        if self.rounding is Rounding.STOCHASTIC:
            raise ValueError(
                "TensorQuant.rounding: 'stochastic' is not supported for calibration "
                "(its straight-through gradient would change from step to step)"
            )

    @property
    def two_level(self) -> bool:
        """Whether the format has a tensor scale above its block scales (NVFP4)."""
        return self.tensor_scale is not None

    def codec_options(self) -> dict[str, Any]:
        """The keyword arguments of :mod:`mxref.torch`'s calls for this role (``axis=-1``).

        Every field reaches the codec: an MX format's ``scale_rule``, NVFP4's
        ``per_row`` (from ``tensor_scale``).
        """
        options: dict[str, Any] = {
            "axis": -1,
            "block_size": self.block_size,
            "rounding": self.rounding,
            "overflow": self.overflow,
        }
        if self.two_level:
            options["per_row"] = self.tensor_scale is TensorScale.ROW
        else:
            options["scale_rule"] = self.scale_rule
        return options

    def fake_quantize(self, x: Any) -> Any:
        """Quantize-dequantize ``x`` (a torch tensor) along its last dimension.

        Differentiable: straight-through for rounding, zero gradient where an
        element saturates (see :mod:`mxref.torch`).  An NVFP4 tensor scale is
        computed from ``x`` itself (the whole tensor, or each row).

        Spec: OCP MX v1.0 sections 5.1 and 6.3.
        """
        from mxref.torch import quantize_dequantize

        return quantize_dequantize(x, self.fmt, **self.codec_options())

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (inverse of :meth:`from_dict`).

        An MX format's dict has no ``tensor_scale``, NVFP4's no ``scale_rule``.
        """
        out: dict[str, Any] = {"fmt": self.fmt, "block_size": self.block_size}
        if self.scale_rule is not None:
            out["scale_rule"] = self.scale_rule.value
        out |= {"rounding": self.rounding.value, "overflow": self.overflow.value}
        if self.tensor_scale is not None:
            out["tensor_scale"] = self.tensor_scale.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "TensorQuant") -> TensorQuant:
        """Build from :meth:`to_dict`'s output; unknown keys are errors naming ``where``."""
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object; got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def describe(self) -> str:
        """A short human-readable form, e.g. ``mxfp4/32`` or ``nvfp4/16/row``."""
        extra = [
            p.value
            for p, default in ((self.scale_rule, ScaleRule.FLOOR), (self.rounding, Rounding.RNE),
                               (self.overflow, Overflow.SATURATE),
                               (self.tensor_scale, TensorScale.TENSOR))  # fmt: skip
            if p is not None and p is not default
        ]
        return "/".join([self.fmt, str(self.block_size), *extra])


@dataclass(frozen=True)
class QuantConfig:
    """One :class:`TensorQuant` per tensor role; ``None`` leaves that role in full precision.

    Attributes
    ----------
    weight, activation : TensorQuant or None
        The linear layer's weight (blocked along in_features) and input.
    key, value : TensorQuant or None
        The KV cache, blocked along head_dim: keys after RoPE (and the
        method's P_k), values after P_v.  Only :func:`batquant.quantize_model`
        can honour them; :func:`batquant.calibrate` and
        :func:`batquant.quantize_linear` reject a config that sets them.
    name : str
        Shown in reports.
    """

    weight: TensorQuant | None = field(default_factory=TensorQuant)
    activation: TensorQuant | None = field(default_factory=TensorQuant)
    key: TensorQuant | None = None
    value: TensorQuant | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "name":
                if not isinstance(self.name, str):
                    raise TypeError(f"QuantConfig.name must be a str; got {self.name!r}")
                continue
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, TensorQuant):
                raise TypeError(
                    f"QuantConfig.{f.name} must be a TensorQuant or None; "
                    f"got {type(value).__name__}"
                )

    def describe(self) -> str:
        """The name, or the roles' formats when the config is unnamed."""
        if self.name:
            return self.name
        parts = [f"{label}[{q.describe() if q else 'fp'}]" for label, q in (
            ("W", self.weight), ("A", self.activation), ("K", self.key), ("V", self.value))]
        return " ".join(parts)

    @property
    def transform_block(self) -> int:
        """The block a method's block-wise transforms align to, over a linear's input.

        The largest size that divides the weight's and the activation's block
        sizes (both are blocked along in_features), so that no transform block
        straddles a quantization block of either: 32 for the MX presets, 16
        for NVFP4's, 16 for NVFP4 weights under MXFP8 activations.  With
        neither role quantized, the MX block.
        """
        sizes = [q.block_size for q in (self.weight, self.activation) if q is not None]
        return math.gcd(*sizes) if sizes else DEFAULT_BLOCK_SIZE

    @property
    def quantizes_kv(self) -> bool:
        """Whether the key or the value cache is quantized."""
        return self.key is not None or self.value is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {"name": self.name}
        for role in ROLES:
            q = getattr(self, role)
            out[role] = None if q is None else q.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantConfig:
        """Build from :meth:`to_dict`'s output; unknown keys are errors naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"QuantConfig must be an object; got {type(data).__name__}")
        unknown = sorted(set(data) - {"name", *ROLES})
        if unknown:
            raise ValueError(f"QuantConfig: unknown field(s) {', '.join(unknown)}")
        roles = {
            role: None if data.get(role) is None
            else TensorQuant.from_dict(data[role], f"QuantConfig.{role}")
            for role in ROLES
        }  # fmt: skip
        return cls(**roles, name=data.get("name", ""))


#: The tensor roles of a QuantConfig, in order.
ROLES = ("weight", "activation", "key", "value")


def _preset(name: str, act: str, kv: str | None, weight: str = "mxfp4") -> QuantConfig:
    kv_quant = None if kv is None else TensorQuant(kv)
    return QuantConfig(TensorQuant(weight), TensorQuant(act), kv_quant, kv_quant, name=name)


#: The named configurations of the paper's experiments (section 4.1.3), and their
#: NVFP4 counterparts (NVFP4 weights; NVFP4 or MXFP8 E4M3 activations).
CONFIGS: Registry[QuantConfig] = Registry(
    "config",
    QuantConfig,
    (
        _preset("W4A4KV16", "mxfp4", None),
        # weight-only MXFP4: what most deployments run first
        QuantConfig(TensorQuant("mxfp4"), None, None, None, name="W4A16KV16"),
        _preset("W4A8KV16", "mxfp8_e4m3", None),
        _preset("W4A8KV8", "mxfp8_e4m3", "mxfp8_e4m3"),
        _preset("W4A8KV4", "mxfp8_e4m3", "mxfp4"),
        # the layer-level names: a single linear has no KV cache
        _preset("W4A4", "mxfp4", None),
        _preset("W4A8", "mxfp8_e4m3", None),
        # NVFP4: blocks of 16, E4M3 block scales, one dynamic float32 scale per tensor
        _preset("NVW4A4KV16", "nvfp4", None, weight="nvfp4"),
        _preset("NVW4A8KV16", "mxfp8_e4m3", None, weight="nvfp4"),
    ),
    unknown="{kind} must be a QuantConfig or one of {known}; got {name}",
)


def get_config(config: str | QuantConfig) -> QuantConfig:
    """Return the named configuration (case-insensitive), or ``config`` itself.

    Raises
    ------
    ValueError
        Naming ``config`` and listing the known names.
    """
    if not isinstance(config, str | QuantConfig):
        known = ", ".join(map(repr, CONFIGS))
        raise ValueError(f"config must be a QuantConfig or one of {known}; got {config!r}")
    return CONFIGS.resolve(config)


class GradientOrder(Policy):
    """How one optimiser step's gradient is summed over the samples of its batch."""

    #: One forward and backward over the whole batch (the default, and the fastest):
    #: the sum's float32 order is the matmuls', so it depends on how the batch is split
    #: between data-parallel ranks.
    BATCH = "batch"
    #: One forward and backward per sample, the gradients summed in sample order: the
    #: same bits for one process and for any number of data-parallel ranks.
    SAMPLE = "sample"


@dataclass(frozen=True)
class CalibSpec:
    """How :func:`batquant.calibrate` optimises a group's parameters.

    The defaults are the BATQuant paper's (appendix A.5): AdamW, learning
    rate 2e-3 with cosine annealing, 5 epochs, batch size 4.

    Attributes
    ----------
    epochs : int
    batch_size : int
        Calibration samples per optimiser step.
    lr : float
        Learning rate of the transform parameters.
    clip_lr : float or None
        Learning rate of the clipping parameters; ``None`` uses ``lr``.
    weight_decay : float
        AdamW's decoupled weight decay (0: a decay would shrink P and grow
        P^-1, which only moves the power-of-two scales).
    min_lr_ratio : float
        The cosine schedule ends at ``lr * min_lr_ratio``.
    samples : int
        A 2-D input ``[tokens, N]`` is cut into this many equal samples of
        consecutive tokens (the paper calibrates on 128 sequences), so that
        the number of optimiser steps does not depend on the token count.  A
        3-D input ``[samples, seq, N]`` keeps its own samples.
    clip_init : float or None
        Initial clipping logit alpha, sigmoid(alpha) of each group's range;
        None (default): the method's own (``Method.clip_init``: 4, that is
        0.982, for FlatQuant as its LWC starts; 8, that is 0.9997, for the
        BATQuant methods).
    gradient_order : GradientOrder or str
        ``"batch"`` (default) or ``"sample"``: each sample's gradient on its own,
        summed in sample order, so that a data-parallel run equals a single
        process bit for bit (``docs/scaling.md``), at the cost of batches of one.
    """

    epochs: int = 5
    batch_size: int = 4
    lr: float = 2e-3
    clip_lr: float | None = None
    weight_decay: float = 0.0
    min_lr_ratio: float = 0.0
    samples: int = 128
    clip_init: float | None = None
    gradient_order: GradientOrder = GradientOrder.BATCH

    def __post_init__(self) -> None:
        _check_int("CalibSpec", "epochs", self.epochs, 1)
        object.__setattr__(self, "gradient_order", GradientOrder.parse(
            self.gradient_order, "CalibSpec.gradient_order"))
        _check_int("CalibSpec", "batch_size", self.batch_size, 1)
        _check_int("CalibSpec", "samples", self.samples, 1)
        _check_float("CalibSpec", "lr", self.lr, positive=True)
        if self.clip_lr is not None:
            _check_float("CalibSpec", "clip_lr", self.clip_lr, positive=True)
        _check_float("CalibSpec", "weight_decay", self.weight_decay, positive=False)
        _check_float("CalibSpec", "min_lr_ratio", self.min_lr_ratio, positive=False)
        if self.min_lr_ratio > 1:
            raise ValueError(f"CalibSpec.min_lr_ratio must be <= 1; got {self.min_lr_ratio}")
        if self.clip_init is not None and (
            isinstance(self.clip_init, bool) or not isinstance(self.clip_init, int | float)
            or not math.isfinite(self.clip_init)
        ):
            raise ValueError(f"CalibSpec.clip_init must be a finite number; got {self.clip_init!r}")


class WeightQuantizer(Policy):
    """How a weight is rounded to its MX codes once its transform and clipping are fixed."""

    #: To nearest, every element on its own (the methods' own rounding).
    RTN = "rtn"
    #: GPTQ with static MX groups (:mod:`batquant.algorithms.gptq`).
    GPTQ = "gptq"


@dataclass(frozen=True)
class GPTQSpec:
    """MX-GPTQ's settings; the defaults are GPTQ's and FP-Quant's.

    Attributes
    ----------
    damping : float
        ``damping * mean(diag H)`` is added to the Hessian's diagonal.  When
        its Cholesky factorisation fails, the damping is raised tenfold (at
        most :data:`GPTQ_DAMPING_RETRIES` times) and the raise is reported.
    block : int
        Columns whose errors are propagated together (lazy batch updates).
    act_order : bool
        Quantize the columns in order of decreasing ``H_jj``; each keeps the
        E8M0 scale of its own 32-column block (static groups).
    """

    damping: float = 0.01
    block: int = 128
    act_order: bool = False

    def __post_init__(self) -> None:
        _check_float("GPTQSpec", "damping", self.damping, positive=True)
        _check_int("GPTQSpec", "block", self.block, 1)
        if not isinstance(self.act_order, bool):
            raise TypeError(f"GPTQSpec.act_order must be a bool; got {self.act_order!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (inverse of :meth:`from_dict`)."""
        return {"damping": self.damping, "block": self.block, "act_order": self.act_order}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTQSpec:
        """Build from :meth:`to_dict`'s output; unknown keys are errors."""
        if not isinstance(data, dict):
            raise ValueError(f"GPTQSpec must be an object; got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"GPTQSpec: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


#: How many times a failed Cholesky factorisation raises GPTQ's damping tenfold.
GPTQ_DAMPING_RETRIES = 4


def get_weight_quantizer(value: object, argname: str = "weight_quantizer") -> GPTQSpec | None:
    """``"rtn"`` -> None; ``"gptq"`` -> the default :class:`GPTQSpec`; a GPTQSpec -> itself.

    Raises
    ------
    ValueError
        Naming ``argname`` and the accepted values.
    """
    if isinstance(value, GPTQSpec):
        return value
    try:
        choice = WeightQuantizer.parse(value, argname)
    except ValueError:
        raise ValueError(f"{argname} must be 'rtn', 'gptq' or a GPTQSpec; got {value!r}") from None
    return GPTQSpec() if choice is WeightQuantizer.GPTQ else None


def check_weight_quantizer(spec: GPTQSpec | None, config: QuantConfig,
                           argname: str = "weight_quantizer") -> None:  # fmt: skip
    """Refuse GPTQ for a config whose weights it cannot round: NVFP4's.

    MX-GPTQ rounds each column against its block's static scale, which mxref
    takes as given scale bytes; mxref's NVFP4 codec takes no given E4M3 block
    scales (only a given tensor scale), so NVFP4 weights are rounded to nearest.

    Raises
    ------
    ValueError
        Naming ``argname`` and the config.
    """
    if spec is not None and config.weight is not None and config.weight.two_level:
        raise ValueError(
            f"{argname}: 'gptq' needs static E8M0 block scales, and config "
            f"{config.describe()!r} has {config.weight.fmt} weights (mxref's NVFP4 codec takes "
            "no given block scales); use weight_quantizer='rtn'"
        )


def describe_weight_quantizer(spec: GPTQSpec | None) -> dict[str, Any]:
    """The weight quantizer as saved in a run's settings (read by :func:`weight_quantizer_of`)."""
    if spec is None:
        return {"name": WeightQuantizer.RTN.value}
    return {"name": WeightQuantizer.GPTQ.value, **spec.to_dict()}


def weight_quantizer_of(data: object, where: str) -> GPTQSpec | None:
    """Inverse of :func:`describe_weight_quantizer`; a bad entry is an error naming ``where``."""
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"{where}: weight_quantizer must be an object with a name; got {data!r}")
    rest = {k: v for k, v in data.items() if k != "name"}
    spec = get_weight_quantizer(data["name"], f"{where}: weight_quantizer.name")
    if spec is None:
        if rest:
            raise ValueError(f"{where}: weight_quantizer 'rtn' takes no settings; got "
                             f"{', '.join(sorted(rest))}")  # fmt: skip
        return None
    try:
        return GPTQSpec.from_dict(rest)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
