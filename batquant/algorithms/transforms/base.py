"""The interface every transform implements, and what the transforms share.

A transform is an invertible ``N x N`` matrix ``P`` acting on the last dim:
activations become ``x @ P`` (:meth:`Transform.forward`) and a weight ``W``
of shape ``[M, N]`` (rows are output features) becomes ``W @ P^{-T}``
(:meth:`Transform.weight_transform`), so that
``forward(x) @ weight_transform(W).T == x @ W.T`` up to rounding.  No
transform forms the dense ``P`` except :meth:`Transform.materialize`.

Inverses in float64
    Every factor that gets inverted is inverted with ``torch.linalg.inv`` on
    its float64 copy and cast back to the parameter dtype
    (:func:`inverse_float64`), inside the autograd graph, so calibration
    differentiates through the weight side.

Condition guard
    Before a transform uses its learnable factors (``A``, ``B_i``, ``A_i``,
    the blocks ``P_i``, ``L``, ``R``, the scales ``s``) it computes each
    factor's 2-norm condition number in float64 (``torch.linalg.svdvals``).
    A factor with ``cond > max_condition`` (or a singular one) is replaced by
    its nearest matrix whose singular values are clamped below at
    ``sigma_max / max_condition`` (``U diag(max(sigma, sigma_max / max_condition)) V^T``,
    computed in float64).  The replacement is used on the activation side and
    on the weight side alike, so the equivalence above still holds, and the
    call emits one ``RuntimeWarning`` naming the transform class, each
    factor, its block index and its condition number.  The replacement
    enters the graph as ``F + (F_clamped - F).detach()``: its value is the
    clamped matrix and the gradient reaches ``F`` unchanged (the SVD's own
    backward divides by differences of singular values and is not finite
    for the repeated singular values of orthogonal factors).  A factor with
    a non-finite entry or a zero ``sigma_max`` cannot be repaired and raises
    ``ValueError``.

The fixed transforms (Hadamard) are orthogonal and skip the guard.

Why :data:`DEFAULT_MAX_CONDITION` is ``1e3``
    The parameters are float32 (unit roundoff ``u = 2^-24``, about ``6e-8``).
    Casting a float64 inverse to float32 perturbs ``F @ inv(F)`` by up to
    about ``cond(F) * u``: at ``1e3`` that is ``6e-5`` per factor, about
    ``1e-4`` for GPK's two factors per block, far below the relative
    rounding of the MX elements the transforms feed (``2^-4`` for FP8 E4M3,
    ``2^-2`` for FP4 E2M1).  Float32 products through ``P`` and then
    ``P^{-T}`` can lose up to ``cond(P) * u``, and a Kronecker block's
    condition number is the product of its factors': at most ``1e6``
    (``6e-2``, worst case) with ``1e3``, but ``1e8`` with ``1e4``, where
    float32 keeps no correct digit.  Transforms start orthogonal or at the
    identity (condition 1); one that drifts past ``1e3`` during calibration
    is degenerate for quantization anyway.  The threshold is per instance
    (``max_condition=``).  :class:`~batquant.algorithms.transforms.SmoothScale` uses a
    looser default: inverting a diagonal is exact to ``u`` per entry,
    whatever its spread.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from batquant.algorithms.transforms.matrices import hadamard_matrix, random_orthogonal
from mxref.policies import Policy

__all__ = [
    "DEFAULT_MAX_CONDITION",
    "Transform",
    "TransformInit",
    "init_factors",
    "inverse_float64",
]

#: Largest accepted 2-norm condition number of an inverted factor (module docstring).
DEFAULT_MAX_CONDITION = 1e3


class TransformInit(Policy):
    """Initial value of a learnable transform's factors."""

    #: Every factor the identity: the transform starts as a no-op.
    IDENTITY = "identity"
    #: Haar-random orthogonal factors from a seeded ``torch.Generator`` (FlatQuant's start).
    ORTHOGONAL = "orthogonal"
    #: Normalised Hadamard factors ``H_n / sqrt(n)``; block transforms then start at
    #: BRQ's block Hadamard rotation.
    HADAMARD = "hadamard"


def init_factors(
    init: TransformInit,
    n: int,
    batch: tuple[int, ...],
    generator: torch.Generator,
    *,
    transpose: bool = False,
) -> Tensor:
    """Initial float64 factors of order ``n`` with leading shape ``batch``.

    Parameters
    ----------
    init : TransformInit
    n : int
        Order of each factor.
    batch : tuple of int
        Leading shape (``()`` for one shared factor, ``(k,)`` for one per block).
    generator : torch.Generator
        Drawn from only for ``ORTHOGONAL``.
    transpose : bool
        For ``HADAMARD``, return ``H^T / sqrt(n)`` (the same matrix for Sylvester
        orders): what a factor entering the block as its transpose needs.

    Returns
    -------
    Tensor
        ``[*batch, n, n]`` float64.

    Raises
    ------
    ValueError
        For ``HADAMARD`` when no Hadamard matrix of order ``n`` is constructible,
        naming ``init``.
    """
    if init is TransformInit.IDENTITY:
        return torch.eye(n, dtype=torch.float64).expand(*batch, n, n).clone()
    if init is TransformInit.ORTHOGONAL:
        return random_orthogonal(n, generator, batch)
    try:
        h = hadamard_matrix(n)
    except ValueError as exc:
        raise ValueError(f"init='hadamard' needs a Hadamard matrix of order {n}: {exc}") from None
    h = (h.T if transpose else h) / torch.sqrt(torch.tensor(float(n), dtype=torch.float64))
    # contiguous: a transposed layout would make the parameter unsaveable by safetensors
    return h.expand(*batch, n, n).contiguous()


def inverse_float64(m: Tensor) -> Tensor:
    """``inv(m)`` computed in float64 and cast back to ``m``'s dtype; differentiable.

    Parameters
    ----------
    m : Tensor
        ``[..., n, n]`` invertible matrices.

    Returns
    -------
    Tensor
        Same shape and dtype as ``m``.
    """
    return torch.linalg.inv(m.double()).to(m.dtype)


def check_size(size: object, block_size: int | None = None) -> int:
    """Validate ``size`` (and that it is a multiple of ``block_size``); return it.

    Raises
    ------
    TypeError
        If ``size`` is not an int.
    ValueError
        If ``size`` is not positive or not a multiple of ``block_size``, naming both.
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int; got {size!r}")
    if size < 1:
        raise ValueError(f"size must be positive; got {size}")
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive int; got {block_size!r}")
        if size % block_size:
            raise ValueError(f"size={size} is not a multiple of block_size={block_size}")
    return size


@dataclass(frozen=True)
class IllConditioned:
    """One factor (or one block of a stacked factor) that the condition guard replaced."""

    #: The factor's name ("A", "B", "P", "L", "R", "s").
    factor: str
    #: "block 3", "channel 7", or "" for a single shared factor.
    where: str
    #: Its condition number (inf when singular).
    cond: float


class Transform(nn.Module, ABC):
    """An invertible linear map ``x -> x @ P`` on the last dim, with its weight-side twin.

    Subclasses implement :meth:`forward`, :meth:`weight_transform`,
    :meth:`materialize` and :meth:`inverse`; see the module docstring for the
    conventions, the float64 inverses and the condition guard.

    Parameters
    ----------
    size : int
        N, the size of the last dim the transform acts on.
    max_condition : float
        Condition-number threshold of the guard (module docstring).

    Attributes
    ----------
    size : int
    max_condition : float
    """

    size: int
    max_condition: float

    def __init__(self, size: int, *, max_condition: float = DEFAULT_MAX_CONDITION) -> None:
        super().__init__()
        self.size = size
        if not max_condition > 1.0:
            raise ValueError(f"max_condition must be > 1; got {max_condition!r}")
        self.max_condition = float(max_condition)

    # -- the interface -------------------------------------------------------------------------

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """The activation side: ``x @ P`` over the last dim.

        Parameters
        ----------
        x : Tensor
            ``[..., N]`` with the transform's dtype and device.

        Returns
        -------
        Tensor
            Same shape, dtype and device as ``x``.

        Raises
        ------
        TypeError
            If ``x`` is not a floating tensor of the transform's dtype.
        ValueError
            If ``x`` is on another device or its last dim is not N.
        """

    @abstractmethod
    def weight_transform(self, weight: Tensor) -> Tensor:
        """The weight side: ``W @ P^{-T}`` for ``W`` of shape ``[M, N]``; differentiable.

        Parameters
        ----------
        weight : Tensor
            ``[..., N]`` (rows are output features), the transform's dtype and device.

        Returns
        -------
        Tensor
            Same shape as ``weight``; ``forward(x) @ weight_transform(W).T`` equals
            ``x @ W.T`` up to rounding.

        Raises
        ------
        TypeError, ValueError
            As :meth:`forward`.
        """

    @abstractmethod
    def materialize(self) -> Tensor:
        """The dense ``[N, N]`` matrix ``P`` that :meth:`forward` applies (for tests)."""

    @abstractmethod
    def inverse(self) -> Transform:
        """A new, detached transform whose ``P`` is this one's ``P^{-1}`` (computed in float64)."""

    # -- shared properties ---------------------------------------------------------------------

    @property
    def num_params(self) -> int:
        """Number of learnable scalars (the elements of every ``nn.Parameter``)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def learnable(self) -> bool:
        """Whether the transform has learnable parameters."""
        return self.num_params > 0

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the transform's tensors (inputs must match it)."""
        return self._reference_tensor().dtype

    @property
    def device(self) -> torch.device:
        """The device of the transform's tensors (inputs must be on it)."""
        return self._reference_tensor().device

    def extra_repr(self) -> str:
        return f"size={self.size}, num_params={self.num_params}"

    # -- helpers for subclasses ----------------------------------------------------------------

    def _reference_tensor(self) -> Tensor:
        for param in self.parameters():
            return param
        for buf in self.buffers():
            return buf
        raise RuntimeError(f"{type(self).__name__} holds no tensors")

    def _check_input(self, x: object, name: str) -> Tensor:
        """Reject inputs of the wrong type, dtype, device or last dim; never cast."""
        cls = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{cls}: {name} must be a torch.Tensor; got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{cls}: {name} must be floating point; got dtype {x.dtype}")
        if x.dtype != self.dtype:
            raise TypeError(
                f"{cls}: {name} has dtype {x.dtype} but the transform's parameters are "
                f"{self.dtype}; convert one of them explicitly (no silent casting)"
            )
        if x.device != self.device:
            raise ValueError(
                f"{cls}: {name} is on device {x.device} but the transform's parameters are on "
                f"{self.device}; move one of them explicitly"
            )
        if x.ndim == 0 or x.shape[-1] != self.size:
            raise ValueError(
                f"{cls}: {name} must have last dim N={self.size} (the transform's size); "
                f"got shape {tuple(x.shape)}"
            )
        return x

    def _guard(self, factors: Sequence[tuple[str, Tensor, bool]]) -> list[Tensor]:
        """Return the factors with every ill-conditioned matrix replaced (module docstring).

        Parameters
        ----------
        factors : sequence of (name, tensor, batched)
            ``tensor`` is ``[n, n]`` (``batched`` False) or ``[k, n, n]`` with one
            matrix per block.

        Returns
        -------
        list of Tensor
            The factors to use, in order: the inputs themselves when well
            conditioned, else ``F + (F_clamped - F).detach()``.
        """
        out = []
        offenders: list[IllConditioned] = []
        for name, f, batched in factors:
            fixed, bad = self._clamp_condition(name, f, batched)
            out.append(fixed)
            offenders += bad
        if offenders:
            self._warn(offenders)
        return out

    def _clamp_condition(
        self, name: str, f: Tensor, batched: bool
    ) -> tuple[Tensor, list[IllConditioned]]:
        cls = type(self).__name__
        with torch.no_grad():
            f64 = f.detach().double()
            if not bool(torch.isfinite(f64).all()):
                raise ValueError(f"{cls}: factor {name} has a NaN or Inf entry")
            mats = f64 if batched else f64[None]
            sv = torch.linalg.svdvals(mats)
            top, bottom = sv[:, 0], sv[:, -1]
            if bool((top == 0).any()):
                block = int(torch.nonzero(top == 0)[0, 0])
                where = f" block {block}" if batched else ""
                raise ValueError(f"{cls}: factor {name}{where} is the zero matrix")
            cond = top / bottom  # inf for an exactly singular factor
            bad = cond > self.max_condition
            if not bool(bad.any()):
                return f, []
            idx = torch.nonzero(bad).flatten()
            u, s, vh = torch.linalg.svd(mats[idx])
            s = torch.maximum(s, s[:, :1] / self.max_condition)
            clamped = u @ (s[..., None] * vh)
            correction = torch.zeros_like(mats)
            correction[idx] = clamped - mats[idx]
            correction = correction if batched else correction[0]
        offenders = [
            IllConditioned(name, f"block {i}" if batched else "", float(cond[i]))
            for i in idx.tolist()
        ]
        return f + correction.to(f.dtype), offenders

    def _warn(self, offenders: list[IllConditioned]) -> None:
        """One RuntimeWarning for every factor the guard replaced in this call."""
        shown = ", ".join(
            " ".join(filter(None, (o.factor, o.where))) + f" (condition number {o.cond:.3g})"
            for o in offenders[:8]
        )
        more = f" and {len(offenders) - 8} more" if len(offenders) > 8 else ""
        warnings.warn(
            f"{type(self).__name__}: {len(offenders)} ill-conditioned factor(s) exceed "
            f"max_condition={self.max_condition:g}: {shown}{more}; each is replaced, on the "
            "activation and the weight side alike, by its nearest matrix with singular values "
            "clamped below at sigma_max / max_condition",
            RuntimeWarning,
            stacklevel=2,
        )


def parse_init(init: object) -> TransformInit:
    """Parse ``init`` (a :class:`TransformInit` or its string), naming ``init`` in errors."""
    return TransformInit.parse(init, "init")


def make_generator(seed: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (an int), naming ``seed`` in errors."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {seed!r}")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def check_dtype(dtype: object) -> torch.dtype:
    """Validate that ``dtype`` is a floating torch dtype; return it."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype; got {dtype!r}")
    return dtype
