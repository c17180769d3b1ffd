"""Fixed Hadamard rotations: per MX block (BRQ) and over the whole dim (QuaRot).

Both are orthogonal, so the weight side is the activation side
(``P^{-T} = P``) and the inverse is the transpose; neither has parameters.
Their matrices are stored as buffers (in ``state_dict``), built in float64
and cast to ``dtype``: the normalisation ``1 / sqrt(n)`` is then rounded, so
``P`` is orthogonal to the dtype's precision, not exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from batquant.algorithms.transforms.base import Transform, check_dtype, check_size, make_generator
from batquant.algorithms.transforms.kronecker import kron_matmul
from batquant.algorithms.transforms.matrices import (
    hadamard_core,
    hadamard_matrix,
    random_orthogonal,
    sylvester_hadamard,
)

__all__ = ["BlockHadamard", "GlobalHadamard"]


def _random_signs(n: int, generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2.0 - 1.0


class BlockHadamard(Transform):
    """BRQ's rotation: the normalised Hadamard ``H_g / sqrt(g)`` on every MX block.

    ``P = D diag(H_g, ..., H_g) / sqrt(g)`` with ``D = diag(d)``, ``d`` random +-1
    when ``random_signs`` else all ones; ``H_g`` is Sylvester's for a power of
    two ``g`` (symmetric), else the Paley-based matrix of
    :func:`~batquant.algorithms.transforms.matrices.hadamard_matrix`.  ``transpose=True``
    gives ``P^T = diag(H_g^T, ...) D / sqrt(g)``, which is what :meth:`inverse`
    returns.  0 parameters.

    Parameters
    ----------
    size : int
        N; a multiple of ``block_size``.
    block_size : int
        g.
    random_signs : bool
        Multiply by seeded random +-1 per channel before the rotation.
    seed : int
        Seeds the signs.
    transpose : bool
        Build ``P^T`` instead of ``P``.
    dtype : torch.dtype
    device : torch.device or str, optional
    """

    hadamard: Tensor
    signs: Tensor | None

    def __init__(
        self,
        size: int,
        block_size: int = 32,
        random_signs: bool = False,
        seed: int = 0,
        *,
        transpose: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(check_size(size, block_size))
        dtype = check_dtype(dtype)
        self.block_size, self.num_blocks = block_size, size // block_size
        self.random_signs, self.seed, self.transpose = bool(random_signs), seed, bool(transpose)
        h = hadamard_matrix(block_size) / math.sqrt(block_size)
        self.register_buffer("hadamard", h.to(dtype=dtype, device=device))
        signs = _random_signs(size, make_generator(seed)) if random_signs else None
        self.register_buffer(
            "signs", None if signs is None else signs.to(dtype=dtype, device=device)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P``; see :meth:`Transform.forward`."""
        return self._matmul(self._check_input(x, "x"))

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P^{-T} = W @ P`` (``P`` is orthogonal)."""
        return self._matmul(self._check_input(weight, "weight"))

    def materialize(self) -> Tensor:
        """The dense ``P``, ``[N, N]``."""
        h = self.hadamard.T if self.transpose else self.hadamard
        p = torch.block_diag(*[h] * self.num_blocks)
        if self.signs is None:
            return p
        return p * self.signs[None, :] if self.transpose else self.signs[:, None] * p

    def inverse(self) -> BlockHadamard:
        """``P^{-1} = P^T``: the same signs, ``transpose`` flipped."""
        return BlockHadamard(
            self.size,
            self.block_size,
            self.random_signs,
            self.seed,
            transpose=not self.transpose,
            dtype=self.dtype,
            device=self.device,
        )

    def _matmul(self, x: Tensor) -> Tensor:
        if self.signs is not None and not self.transpose:
            x = x * self.signs
        h = self.hadamard.T if self.transpose else self.hadamard
        y = torch.matmul(x.reshape(-1, self.block_size), h).reshape(x.shape)
        if self.signs is not None and self.transpose:
            y = y * self.signs
        return y

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, block_size={self.block_size}, random_signs={self.random_signs}, "
            f"transpose={self.transpose}"
        )


class GlobalHadamard(Transform):
    """QuaRot's randomized Hadamard rotation over all N: ``P = D H_N / sqrt(N)``.

    ``D`` is a diagonal of seeded random +-1 and ``H_N`` a Hadamard matrix of
    order N, applied as a Kronecker product of two factors
    (``P = D kron(L, R)``, :func:`~batquant.algorithms.transforms.kronecker.kron_matmul`),
    never as an ``N x N`` matmul:

    - N a power of two: Sylvester, ``H_N = kron(H_n1, H_n2)`` with the most
      balanced split (64 x 64 for 4096).
    - ``N = 2^a m``: ``H_N = kron(H_2^b, H_c)`` with ``H_c`` the Paley matrix of
      the smallest order ``c = m 2^j`` that Paley I (``c - 1`` a prime
      ``= 3 mod 4``: 12, 20, 24, 32, 44, ...) or Paley II (``c / 2 - 1`` a prime
      ``= 1 mod 4``: 12, 28, 36, 60, ...) reaches, e.g. 96 = 8 x 12,
      160 = 8 x 20, 14336 = 512 x 28.

    **Deviation from QuaRot.**  When neither Paley construction reaches any
    ``c`` (e.g. N = 11008 = 256 x 43), the odd part ``m`` gets a seeded random
    orthogonal ``m x m`` factor instead: ``P = D kron(H_2^a / sqrt(2^a), Q_m)``.
    ``P`` is still orthogonal, so the equivalence is exact, but it is not a
    Hadamard matrix: its entries are not all ``+-1 / sqrt(N)``, so a spike in one
    channel is spread evenly over the ``2^a`` Sylvester positions but unevenly
    over the ``m`` positions of the random factor.
    QuaRot instead uses hand-listed Hadamard matrices of more orders.
    :attr:`is_hadamard` tells which case applies.

    ``transpose=True`` gives ``P^T = kron(L^T, R^T) D``, which :meth:`inverse`
    returns.  0 parameters.

    Parameters
    ----------
    size : int
        N.
    seed : int
        Seeds the signs (then the fallback factor, if any).
    transpose : bool
        Build ``P^T`` instead of ``P``.
    dtype : torch.dtype
    device : torch.device or str, optional

    Attributes
    ----------
    is_hadamard : bool
        Whether ``sqrt(N) P`` is a Hadamard matrix (False only in the fallback).
    n1, n2 : int
        Orders of the Kronecker factors ``L`` and ``R``.
    signs, L, R : Tensor
        Buffers: the diagonal of ``D``, and the normalised factors.
    """

    signs: Tensor
    L: Tensor
    R: Tensor

    def __init__(
        self,
        size: int,
        seed: int = 0,
        *,
        transpose: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(check_size(size))
        dtype = check_dtype(dtype)
        self.seed, self.transpose = seed, bool(transpose)
        gen = make_generator(seed)
        signs = _random_signs(size, gen)
        two_b, core = hadamard_core(size)
        self.is_hadamard = core is not None or two_b == size
        if core is not None:
            core = core / math.sqrt(core.shape[0])
        elif two_b == size:
            core = torch.ones(1, 1, dtype=torch.float64)
        else:
            core = random_orthogonal(size // two_b, gen)
        # split the Sylvester part 2^b = 2^e * 2^(b - e) so that n1 + n2 is smallest:
        # the matmul cost of x @ kron(L, R) is N (n1 + n2) per row
        c = core.shape[0]
        e = min(range(two_b.bit_length()), key=lambda e: 2**e + (two_b >> e) * c)
        self.n1, self.n2 = 2**e, (two_b >> e) * c
        left = sylvester_hadamard(self.n1) / math.sqrt(self.n1)
        rest = two_b >> e
        right = torch.kron(sylvester_hadamard(rest) / math.sqrt(rest), core)
        self.register_buffer("signs", signs.to(dtype=dtype, device=device))
        self.register_buffer("L", left.to(dtype=dtype, device=device))
        self.register_buffer("R", right.to(dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P``; see :meth:`Transform.forward`."""
        return self._matmul(self._check_input(x, "x"))

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P^{-T} = W @ P`` (``P`` is orthogonal)."""
        return self._matmul(self._check_input(weight, "weight"))

    def materialize(self) -> Tensor:
        """The dense ``P``, ``[N, N]``."""
        if self.transpose:
            return torch.kron(self.L, self.R).T * self.signs[None, :]
        return self.signs[:, None] * torch.kron(self.L, self.R)

    def inverse(self) -> GlobalHadamard:
        """``P^{-1} = P^T``: the same signs and factors, ``transpose`` flipped."""
        return GlobalHadamard(
            self.size,
            self.seed,
            transpose=not self.transpose,
            dtype=self.dtype,
            device=self.device,
        )

    def _matmul(self, x: Tensor) -> Tensor:
        if self.transpose:
            return kron_matmul(x, self.L.T, self.R.T) * self.signs
        return kron_matmul(x * self.signs, self.L, self.R)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, n1={self.n1}, n2={self.n2}, is_hadamard={self.is_hadamard}, "
            f"transpose={self.transpose}"
        )
