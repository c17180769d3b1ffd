"""The registry of quantization methods: each one a transform, a clipping kind and a flag.

A :class:`Method` says how to build the activation-side transform of a group
of linears that share an input, whether learnable clipping is attached (and
of which kind), and whether :func:`batquant.calibrate` optimises the
parameters.  Methods are looked up by name in :data:`METHODS`; new ones are
added with :func:`register`, never by string ``if`` chains.

=======================  ==============================  ========  ==========
name                     transform                       clipping  calibrated
=======================  ==============================  ========  ==========
``rtn``                  none                            none      no
``smoothquant``          SmoothQuant diagonal, alpha 0.5  none      no
``quarot``               randomized Hadamard over N      none      no
``brq``                  Hadamard per 32-block           none      no
``flatquant``            diagonal x (L kron R) over N    global    yes
``batquant``             GPK (g1 = 8, g2 = 4)            block     yes
``batquant-full``        full 32 x 32 per block          block     yes
``batquant-naive``       B_i kron A_i per block          block     yes
``batquant-globalclip``  GPK                             global    yes
``batquant-smooth``      diagonal x GPK (our extension)  block     yes
``torq``                 block Hadamard x Schur-Horn     none      no (fitted)
                         balance x guarded max-entropy
                         block rotation (reconstruction)
``torq-abstract``        Schur-Horn balance x max-       none      no (fitted)
                         entropy block rotation
=======================  ==============================  ========  ==========

Each method also says how to build the per-head transforms of the KV cache
(``build_kv_transform``, over head_dim): P_k on keys after RoPE (its inverse
transpose on queries) and P_v fused into v_proj's rows and o_proj's columns.
They exist only where the config quantizes K or V:

=======================  ==================================================
name                     P_k and P_v (one per KV head, over head_dim)
=======================  ==================================================
``rtn``, ``smoothquant``  none
``quarot``               randomized Hadamard over head_dim (fixed)
``brq``, ``torq``, ...   Hadamard per 32-block (fixed)
``flatquant``            a learnable dense head_dim x head_dim matrix
``batquant``, variants   the method's block transform over head_dim
=======================  ==================================================

"32-block" and "32 x 32" are the MX block; every block transform is built over
the config's block (``TransformContext.block_size``: 16 under NVFP4).

``batquant-smooth`` is not in the paper: it puts a learnable per-channel
diagonal, initialised as SmoothQuant's with alpha 0.5, before GPK.  The
product is still block-diagonal and aligned to the MX blocks (each block is
``D_i kron(B_i^T, A)``), but the diagonal adds N parameters to GPK's
g1^2 + k g2^2; ``docs/batquant.md`` shows where it helps (channels that
dominate their block, which no rotation inside the block can shrink).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from batquant.algorithms.clipping import ClipGroups
from batquant.algorithms.observers import Statistic
from batquant.algorithms.transforms import (
    GPK,
    BlockAffine,
    BlockHadamard,
    ComposedTransform,
    GlobalHadamard,
    GlobalKronecker,
    MaxEntropyBlockRotation,
    NaiveKronecker,
    SchurHornBalance,
    SmoothScale,
    Transform,
)
from batquant.config import CalibSpec
from mxref.registry import Registry

#: The method every other one must beat: round to nearest, nothing transformed or
#: learned.  The pipeline measures each layer against it (``baseline_relative_mse``).
BASELINE = "rtn"
#: The method the README recommends (ours, not the paper's; docs/batquant.md says why).
RECOMMENDED = "batquant-smooth-full"
#: initialisation of every learnable block transform: the block Hadamard
#: (BRQ's rotation, exactly representable by GPK since H_32 = H_4 kron H_8),
#: so calibration starts where BRQ ends (docs/batquant.md, "Initialisation").
BLOCK_INIT = "hadamard"
#: FlatQuant's own initialisation of its Kronecker factors.
FLATQUANT_INIT = "orthogonal"
#: FlatQuant's SmoothQuant-style initialisation of its diagonal (alpha = 0.3).
FLATQUANT_ALPHA = 0.3
#: FlatQuant's clipping start, sigmoid(4) = 0.982 of each group's range.
FLATQUANT_CLIP_INIT = 4.0
#: The BATQuant methods' clipping start, sigmoid(8) = 0.9997: the paper leaves it
#: open, and starting at 0.982 cost accuracy on every measured layer (docs/batquant.md).
BLOCK_CLIP_INIT = 8.0


@dataclass(frozen=True)
class TransformContext:
    """What a method may use to build a group's transform.

    Attributes
    ----------
    size : int
        in_features N of the group (head_dim for a KV transform).
    block_size : int
        The block the block transforms align to: ``QuantConfig.transform_block``
        (32 under MX, 16 under NVFP4), or the K/V block for a KV transform.
    seed : int
    act_absmax : torch.Tensor
        Per input channel max |x| over the calibration tokens, float32 [N]
        (ones for a KV transform, which no method initialises from statistics).
    weight_absmax : torch.Tensor
        Per input channel max |W| over every output row of the group, float32 [N]
        (ones for a KV transform).
    inputs : torch.Tensor or None
        Calibration inputs ``[rows, N]`` (at most :data:`FIT_ROWS` rows), for the
        methods that fit a transform to data without training (``Statistic.ROWS``
        in ``Method.statistics``); None when the structure is rebuilt to load a
        saved state, or when the stream saw too few tokens (a rarely routed expert).
    """

    size: int
    block_size: int
    seed: int
    act_absmax: torch.Tensor
    weight_absmax: torch.Tensor
    inputs: torch.Tensor | None = None


#: What a data-fitted method observes: the channel maxima and a sample of rows.
FITTED = frozenset({Statistic.ABSMAX, Statistic.ROWS})

TransformFactory = Callable[[TransformContext], Transform | None]

def clip_init_of(method: Method, spec: CalibSpec) -> float:
    """The clipping logits' start: ``spec.clip_init`` when set, else the method's own."""
    return method.clip_init if spec.clip_init is None else spec.clip_init


def _none(ctx: TransformContext) -> None:
    return None


@dataclass(frozen=True)
class Method:
    """One registered quantization method.

    Attributes
    ----------
    name : str
    summary : str
    build_transform : callable
        ``TransformContext -> Transform | None`` (None: no transform).
    clip : ClipGroups or None
        Learnable clipping of both activations and weights, or none.
    calibrated : bool
        Whether :func:`batquant.calibrate` optimises the parameters; the
        others are training-free.
    build_kv_transform : callable
        ``TransformContext -> Transform | None`` over head_dim, for P_k and P_v.
    statistics : frozenset of Statistic
        What the calibration inputs must be observed for (the observer point,
        :mod:`batquant.algorithms.observers`): ``ABSMAX`` always; ``ROWS`` when
        ``build_transform`` fits the transform to ``TransformContext.inputs``.
    clip_init : float
        The clipping logits' start when ``CalibSpec.clip_init`` is None:
        sigmoid(4) = 0.982 of each group's range is FlatQuant's; the BATQuant
        methods start at sigmoid(8) = 0.9997, no clipping to speak of
        (docs/batquant.md, "Block-wise learnable clipping", says why).
    """

    name: str
    summary: str
    build_transform: TransformFactory
    clip: ClipGroups | None
    calibrated: bool
    build_kv_transform: TransformFactory = _none
    statistics: frozenset[Statistic] = frozenset({Statistic.ABSMAX})
    clip_init: float = FLATQUANT_CLIP_INIT

    @property
    def needs_inputs(self) -> bool:
        """Whether ``build_transform`` fits the transform to calibration rows."""
        return Statistic.ROWS in self.statistics


#: Every registered method, by name.
METHODS: Registry[Method] = Registry("method", Method)


def register(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to :data:`METHODS`.

    Parameters
    ----------
    method : Method
    replace : bool
        Needed to overwrite an existing name.

    Returns
    -------
    Method
        ``method`` itself.

    Raises
    ------
    TypeError, ValueError
        Not a Method, or a name already registered without ``replace=True``.
    """
    if not isinstance(method, Method):
        raise TypeError(f"method must be a Method; got {type(method).__name__}")
    return METHODS.register(method, replace=replace)


def get_method(method: str | Method) -> Method:
    """Return the registered method named ``method`` (case-insensitive), or ``method`` itself.

    Raises
    ------
    ValueError
        Naming ``method`` and listing the registered names.
    """
    if not isinstance(method, str | Method):
        known = ", ".join(map(repr, METHODS))
        raise ValueError(f"method must be one of {known}; got {method!r}")
    return METHODS.resolve(method)


def _smoothquant(ctx: TransformContext) -> Transform:
    smooth = SmoothScale(ctx.size, alpha=0.5)
    smooth.init_from_stats(ctx.act_absmax, ctx.weight_absmax)
    return smooth


def _quarot(ctx: TransformContext) -> Transform:
    return GlobalHadamard(ctx.size, seed=ctx.seed)


def _brq(ctx: TransformContext) -> Transform:
    return BlockHadamard(ctx.size, block_size=ctx.block_size)


def _flatquant(ctx: TransformContext) -> Transform:
    smooth = SmoothScale(ctx.size, alpha=FLATQUANT_ALPHA, learnable=True)
    smooth.init_from_stats(ctx.act_absmax, ctx.weight_absmax)
    return ComposedTransform(smooth, GlobalKronecker(ctx.size, init=FLATQUANT_INIT, seed=ctx.seed))


def _gpk(ctx: TransformContext) -> Transform:
    g1, g2 = _gpk_factors(ctx.block_size)
    return GPK(ctx.size, g1=g1, g2=g2, init=BLOCK_INIT, seed=ctx.seed)


def _smooth_gpk(ctx: TransformContext) -> Transform:
    smooth = SmoothScale(ctx.size, alpha=0.5, learnable=True)
    smooth.init_from_stats(ctx.act_absmax, ctx.weight_absmax)
    return ComposedTransform(smooth, _gpk(ctx))


def _smooth_block_affine(ctx: TransformContext) -> Transform:
    smooth = SmoothScale(ctx.size, alpha=0.5, learnable=True)
    smooth.init_from_stats(ctx.act_absmax, ctx.weight_absmax)
    return ComposedTransform(smooth, _block_affine(ctx))


def _naive(ctx: TransformContext) -> Transform:
    g1, g2 = _gpk_factors(ctx.block_size)
    return NaiveKronecker(ctx.size, g1=g1, g2=g2, init=BLOCK_INIT, seed=ctx.seed)


def _block_affine(ctx: TransformContext) -> Transform:
    return BlockAffine(ctx.size, block_size=ctx.block_size, init=BLOCK_INIT, seed=ctx.seed)


def _torq(ctx: TransformContext) -> Transform:
    """TORQ (our reconstruction): block Hadamard, Schur-Horn balance, guarded max-entropy R.

    The micro level's data-free start (BRQ's block Hadamard) comes first, so
    that the macro level balances the Hadamard-mixed lanes; the max-entropy
    refinement then starts from the identity and keeps only Givens steps that
    do not raise the calibration blocks' MX error (both ours; docs/methods/torq.md).
    """
    start = BlockHadamard(ctx.size, block_size=ctx.block_size)
    balance = SchurHornBalance(ctx.size, ctx.block_size)
    micro = MaxEntropyBlockRotation(ctx.size, ctx.block_size, init="identity")
    if ctx.inputs is not None:
        with torch.no_grad():
            mixed = start(ctx.inputs.to(start.dtype))
            balance.fit(mixed)
            micro.fit(balance(mixed), seed=ctx.seed, guard=True)
    return ComposedTransform(start, balance, micro)


def _torq_abstract(ctx: TransformContext) -> Transform:
    """TORQ in the abstract's order: Schur-Horn balance, then max-entropy R (entropy alone)."""
    balance = SchurHornBalance(ctx.size, ctx.block_size)
    micro = MaxEntropyBlockRotation(ctx.size, ctx.block_size, init="best")
    if ctx.inputs is not None:
        balance.fit(ctx.inputs)
        with torch.no_grad():
            micro.fit(balance(ctx.inputs.to(balance.dtype)), seed=ctx.seed, guard=False)
    return ComposedTransform(balance, micro)


def _dense(ctx: TransformContext) -> Transform:
    """FlatQuant's KV-cache transform: one learnable dense matrix over the whole size."""
    return BlockAffine(ctx.size, block_size=ctx.size, init=FLATQUANT_INIT, seed=ctx.seed)


def _gpk_factors(block_size: int) -> tuple[int, int]:
    """g1 x g2 = g with g2 the largest power of two whose g1 = g / g2 is at least 2 g2.

    That is the paper's 8 x 4 for g = 32 (and 16 x 8 for 128, 4 x 2 for 8).
    """
    g2 = 1
    while (2 * g2) ** 2 * 2 <= block_size and block_size % (2 * g2) == 0:
        g2 *= 2
    return block_size // g2, g2


for _method in (
    Method("rtn", "round to nearest, no transform", _none, None, calibrated=False),
    Method("smoothquant", "SmoothQuant diagonal smoothing, alpha 0.5", _smoothquant, None,
           calibrated=False),
    Method("quarot", "QuaRot randomized Hadamard rotation over N", _quarot, None,
           calibrated=False, build_kv_transform=_quarot),
    Method("brq", "BRQ fixed Hadamard rotation per 32-block", _brq, None, calibrated=False,
           build_kv_transform=_brq),
    Method("flatquant", "FlatQuant learnable diagonal x Kronecker affine over N, "
           "per-tensor/per-row clipping", _flatquant, ClipGroups.ROW, calibrated=True,
           build_kv_transform=_dense),
    Method("batquant", "BATQuant: GPK block affine + block-wise clipping", _gpk,
           ClipGroups.BLOCK, calibrated=True, build_kv_transform=_gpk,
           clip_init=BLOCK_CLIP_INIT),
    Method("batquant-full", "BATQuant ablation: full 32x32 affine per block", _block_affine,
           ClipGroups.BLOCK, calibrated=True, build_kv_transform=_block_affine,
           clip_init=BLOCK_CLIP_INIT),
    Method("batquant-naive", "BATQuant ablation: naive Kronecker B_i kron A_i per block",
           _naive, ClipGroups.BLOCK, calibrated=True, build_kv_transform=_naive,
           clip_init=BLOCK_CLIP_INIT),
    Method("batquant-globalclip", "BATQuant ablation: GPK with per-tensor/per-row clipping",
           _gpk, ClipGroups.ROW, calibrated=True, build_kv_transform=_gpk,
           clip_init=BLOCK_CLIP_INIT),
    Method("batquant-smooth", "BATQuant + a learnable SmoothQuant-initialised diagonal "
           "(not in the paper)", _smooth_gpk, ClipGroups.BLOCK, calibrated=True,
           build_kv_transform=_gpk, clip_init=BLOCK_CLIP_INIT),
    Method("batquant-smooth-full", "ours: a learnable SmoothQuant-initialised diagonal x a "
           "full 32x32 affine per block + block-wise clipping (not in the paper)",
           _smooth_block_affine, ClipGroups.BLOCK, calibrated=True,
           build_kv_transform=_block_affine, clip_init=BLOCK_CLIP_INIT),
    Method("torq", "TORQ (our reconstruction): block Hadamard, Schur-Horn inter-block balance, "
           "error-guarded max-entropy intra-block rotation, training-free", _torq, None,
           calibrated=False, build_kv_transform=_brq, statistics=FITTED),
    Method("torq-abstract", "TORQ ablation in the abstract's order: Schur-Horn balance, then "
           "max-entropy rotation by entropy alone, training-free", _torq_abstract, None,
           calibrated=False, build_kv_transform=_brq, statistics=FITTED),
):  # fmt: skip
    register(_method)
