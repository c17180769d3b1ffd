"""FlatQuant's Kronecker transform over the whole dim: ``P = kron(L, R)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from batquant.algorithms.transforms.base import (
    DEFAULT_MAX_CONDITION,
    Transform,
    TransformInit,
    check_dtype,
    check_size,
    init_factors,
    inverse_float64,
    make_generator,
    parse_init,
)

__all__ = ["GlobalKronecker", "balanced_factors", "kron_matmul"]


def kron_matmul(x: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """``x @ kron(left, right)`` over the last dim without forming the Kronecker product.

    FlatQuant's ``kronecker_matmul``: the last dim is reshaped row-major to
    ``X`` of shape ``[n1, n2]`` and ``left^T X right`` is read back row-major.

    Parameters
    ----------
    x : Tensor
        ``[..., n1 * n2]``.
    left : Tensor
        ``[n1, n1]``.
    right : Tensor
        ``[n2, n2]``.

    Returns
    -------
    Tensor
        Same shape as ``x``.
    """
    n1, n2 = left.shape[0], right.shape[0]
    v = x.reshape(-1, n1, n2)
    # (Y = L^T X R)[r, c] = sum_{s, d} L[s, r] X[s, d] R[d, c] = (x @ kron(L, R))[r n2 + c]
    v = torch.matmul(v.reshape(-1, n2), right).reshape(-1, n1, n2)
    # a contiguous copy of the small L^T: a transposed view of a parameter that requires
    # grad sends the broadcast matmul down a path about twice as slow (torch 2.13, CPU)
    v = torch.matmul(left.T.contiguous(), v)
    return v.reshape(x.shape)


def balanced_factors(n: int) -> tuple[int, int]:
    """``(n1, n2)``, ``n1 * n2 == n``, ``n1 <= n2``, ``n2 - n1`` smallest (64 x 64 for 4096)."""
    n1 = math.isqrt(n)
    while n % n1:
        n1 -= 1
    return n1, n // n1


class GlobalKronecker(Transform):
    """FlatQuant's learnable affine transform over all N: ``P = kron(L, R)``.

    ``n1^2 + n2^2`` parameters (8,192 at N = 4096 with 64 x 64).  Applied as
    FlatQuant's ``kronecker_matmul`` (:func:`kron_matmul`); the weight side is
    ``kron(L^{-T}, R^{-T})`` and the inverse ``kron(L^{-1}, R^{-1})``, each
    factor inverted in float64.  FlatQuant's per-channel diagonal is a
    separate :class:`~batquant.algorithms.transforms.SmoothScale`, composed in front
    with :class:`~batquant.algorithms.transforms.ComposedTransform`.

    Parameters
    ----------
    size : int
        N.
    n1, n2 : int, optional
        Orders of ``L`` and ``R``, ``n1 * n2 == N``; the most balanced pair when
        both are omitted, the complement when one is given.
    init : TransformInit or str
        ``"identity"``, ``"orthogonal"`` (``L`` then ``R``, seeded; FlatQuant's
        start) or ``"hadamard"`` (``L = H_n1 / sqrt(n1)``, ``R = H_n2 / sqrt(n2)``;
        for powers of two ``P`` is the Sylvester ``H_N / sqrt(N)``).
    seed : int
    dtype : torch.dtype
    device : torch.device or str, optional
    max_condition : float

    Attributes
    ----------
    L : nn.Parameter
        ``[n1, n1]``.
    R : nn.Parameter
        ``[n2, n2]``.
    """

    def __init__(
        self,
        size: int,
        n1: int | None = None,
        n2: int | None = None,
        init: TransformInit | str = TransformInit.IDENTITY,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        max_condition: float = DEFAULT_MAX_CONDITION,
    ) -> None:
        super().__init__(check_size(size), max_condition=max_condition)
        self.n1, self.n2 = _resolve_factors(size, n1, n2)
        how, gen = parse_init(init), make_generator(seed)
        dtype = check_dtype(dtype)
        self.L = nn.Parameter(init_factors(how, self.n1, (), gen).to(dtype=dtype, device=device))
        self.R = nn.Parameter(init_factors(how, self.n2, (), gen).to(dtype=dtype, device=device))

    @classmethod
    def from_factors(
        cls, left: Tensor, right: Tensor, *, max_condition: float = DEFAULT_MAX_CONDITION
    ) -> GlobalKronecker:
        """A GlobalKronecker with detached copies of ``left`` ``[n1, n1]`` and ``right``."""
        n1, n2 = left.shape[0], right.shape[0]
        out = cls(
            n1 * n2, n1, n2, dtype=left.dtype, device=left.device, max_condition=max_condition
        )
        with torch.no_grad():
            out.L.copy_(left)
            out.R.copy_(right)
        return out

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(L, R)`` after the condition guard: what every method uses."""
        left, right = self._guard([("L", self.L, False), ("R", self.R, False)])
        return left, right

    def forward(self, x: Tensor) -> Tensor:
        """``x @ kron(L, R)``; see :meth:`Transform.forward`."""
        x = self._check_input(x, "x")
        return kron_matmul(x, *self.factors())

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ kron(L^{-T}, R^{-T})``, inverses in float64."""
        weight = self._check_input(weight, "weight")
        left, right = self.factors()
        return kron_matmul(weight, inverse_float64(left).mT, inverse_float64(right).mT)

    def materialize(self) -> Tensor:
        """The dense ``P = kron(L, R)``, ``[N, N]``."""
        left, right = self.factors()
        return torch.kron(left.contiguous(), right.contiguous())

    def inverse(self) -> GlobalKronecker:
        """GlobalKronecker with ``(L^{-1}, R^{-1})`` (float64 inverses, detached)."""
        left, right = (f.detach() for f in self.factors())
        return GlobalKronecker.from_factors(
            inverse_float64(left), inverse_float64(right), max_condition=self.max_condition
        )

    def extra_repr(self) -> str:
        return f"size={self.size}, n1={self.n1}, n2={self.n2}, num_params={self.num_params}"


def _resolve_factors(size: int, n1: int | None, n2: int | None) -> tuple[int, int]:
    for name, v in (("n1", n1), ("n2", n2)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None; got {v!r}")
    if n1 is None and n2 is None:
        return balanced_factors(size)
    # one given: the other is its complement (the product check below rejects a non-divisor)
    r1 = size // n2 if n1 is None else n1  # type: ignore[operator]
    r2 = size // r1 if n2 is None else n2
    n1, n2 = r1, r2
    if n1 * n2 != size:
        raise ValueError(f"n1 * n2 must equal size: n1={n1}, n2={n2}, size={size}")
    return n1, n2
