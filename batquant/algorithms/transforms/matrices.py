"""Fixed matrices the transforms are built from: Hadamard constructions and random orthogonals.

Everything here is computed in float64 on the CPU and returned as float64; the
transforms cast to their own dtype and device.  Construction is deterministic:
the Hadamard matrices depend only on their order, the random orthogonals only
on the ``torch.Generator`` passed in.

Hadamard matrices (entries +-1, ``H @ H.T == n * I``) of order ``n`` come from

- Sylvester's construction for ``n`` a power of two: ``H_1 = [1]``,
  ``H_2n = kron(H_2, H_n)``, hence ``kron(H_a, H_b) == H_ab`` and every one is
  symmetric;
- Paley's first construction for ``n = q + 1`` with ``q`` a prime, ``q = 3 (mod 4)``
  (orders 4, 8, 12, 20, 24, 32, 44, 48, ...);
- Paley's second construction for ``n = 2 (q + 1)`` with ``q`` a prime,
  ``q = 1 (mod 4)`` (orders 12, 28, 36, 60, 76, ...);
- the Kronecker product of a Sylvester matrix with one of the two Paley ones,
  for ``n = 2^a * m``.

Other orders raise ``ValueError``; :class:`~batquant.algorithms.transforms.GlobalHadamard`
documents its fallback for those.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "hadamard_core",
    "hadamard_matrix",
    "is_power_of_two",
    "paley_hadamard",
    "random_orthogonal",
    "sylvester_hadamard",
]


def is_power_of_two(n: int) -> bool:
    """Return whether ``n`` is a positive power of two (1 included)."""
    return n > 0 and n & (n - 1) == 0


def sylvester_hadamard(n: int) -> Tensor:
    """The Sylvester Hadamard matrix of order ``n`` (a power of two), float64, unnormalised.

    Parameters
    ----------
    n : int
        Order; a power of two.

    Returns
    -------
    Tensor
        ``[n, n]`` float64 with entries +-1; symmetric, ``H @ H == n * I``.

    Raises
    ------
    ValueError
        If ``n`` is not a power of two.
    """
    if not is_power_of_two(n):
        raise ValueError(f"n must be a power of two for Sylvester's construction; got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.kron(h2, h)
    return h


def _is_prime(q: int) -> bool:
    if q < 2:
        return False
    return all(q % d for d in range(2, math.isqrt(q) + 1))


def _jacobsthal(q: int) -> Tensor:
    """Q[i, j] = chi(j - i), chi the quadratic character mod the prime ``q`` (chi(0) = 0)."""
    chi = torch.full((q,), -1.0, dtype=torch.float64)
    chi[0] = 0.0
    for a in range(1, q):
        chi[a * a % q] = 1.0
    idx = torch.arange(q)
    return chi[(idx[None, :] - idx[:, None]) % q]


def paley_hadamard(m: int) -> Tensor | None:
    """A Paley Hadamard matrix of order ``m``, or ``None`` when neither construction applies.

    Parameters
    ----------
    m : int
        Order.  Paley I needs ``m - 1`` a prime ``= 3 (mod 4)``; Paley II needs
        ``m / 2 - 1`` a prime ``= 1 (mod 4)``.  Paley I is preferred when both apply.

    Returns
    -------
    Tensor or None
        ``[m, m]`` float64 with entries +-1 and ``H @ H.T == m * I``.
    """
    q = m - 1
    if _is_prime(q) and q % 4 == 3:
        # I + S with S = [[0, 1^T], [-1, Q]] skew-symmetric (Q is, for q = 3 mod 4)
        s = torch.zeros(m, m, dtype=torch.float64)
        s[0, 1:] = 1.0
        s[1:, 0] = -1.0
        s[1:, 1:] = _jacobsthal(q)
        return torch.eye(m, dtype=torch.float64) + s
    if m % 2 == 0:
        q = m // 2 - 1
        if _is_prime(q) and q % 4 == 1:
            # symmetric conference matrix C = [[0, 1^T], [1, Q]] (Q symmetric for q = 1 mod 4),
            # then H = C (x) [[1, 1], [1, -1]] + I (x) [[1, -1], [-1, -1]]
            c = torch.zeros(q + 1, q + 1, dtype=torch.float64)
            c[0, 1:] = 1.0
            c[1:, 0] = 1.0
            c[1:, 1:] = _jacobsthal(q)
            plus = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
            minus = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
            return torch.kron(c, plus) + torch.kron(torch.eye(q + 1, dtype=torch.float64), minus)
    return None


def hadamard_core(n: int) -> tuple[int, Tensor | None]:
    """Split ``n = 2^b * c`` so that ``c`` is the smallest order with a Paley matrix.

    Parameters
    ----------
    n : int
        Positive order.

    Returns
    -------
    tuple of (int, Tensor or None)
        ``(2^b, core)``: ``core`` is ``None`` when ``n`` is a power of two (the
        whole matrix is Sylvester), else a ``[c, c]`` Paley Hadamard matrix.  When
        no such split exists the result is ``(2^a, None)`` with ``2^a`` the
        largest power of two dividing ``n`` and ``2^a < n``; callers tell the two
        ``None`` cases apart by ``2^b == n``.
    """
    if n < 1:
        raise ValueError(f"n must be positive; got {n}")
    two_a = n & -n  # the largest power of two dividing n
    if two_a == n:
        return n, None
    odd = n // two_a
    two_j = 4  # Hadamard orders above 2 are multiples of 4
    while two_j <= two_a:
        core = paley_hadamard(odd * two_j)
        if core is not None:
            return two_a // two_j, core
        two_j *= 2
    return two_a, None


def hadamard_matrix(n: int) -> Tensor:
    """A Hadamard matrix of order ``n``: Sylvester, Paley, or Sylvester (x) Paley; float64.

    Parameters
    ----------
    n : int
        Order.

    Returns
    -------
    Tensor
        ``[n, n]`` float64 with entries +-1 and ``H @ H.T == n * I``; the
        Sylvester matrix whenever ``n`` is a power of two.

    Raises
    ------
    ValueError
        If ``n`` is not an order these constructions reach.
    """
    two_b, core = hadamard_core(n)
    if core is None:
        if two_b != n:
            raise ValueError(
                f"no Hadamard matrix of order {n} is constructible here (Sylvester 2^a, "
                "Paley I for prime q = 3 mod 4, Paley II for prime q = 1 mod 4, and their "
                "Kronecker products)"
            )
        return sylvester_hadamard(n)
    return torch.kron(sylvester_hadamard(two_b), core)


def random_orthogonal(n: int, generator: torch.Generator, batch: tuple[int, ...] = ()) -> Tensor:
    """Haar-random orthogonal ``n x n`` matrices from QR of a seeded Gaussian, float64.

    The signs of R's diagonal are moved into Q (Mezzadri's fix), so the result
    is Haar-distributed and depends only on the generator's state.

    Parameters
    ----------
    n : int
        Order.
    generator : torch.Generator
        CPU generator; advanced by ``prod(batch) * n * n`` normal draws.
    batch : tuple of int, optional
        Leading batch shape.

    Returns
    -------
    Tensor
        ``[*batch, n, n]`` float64 orthogonal matrices.
    """
    g = torch.randn(*batch, n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    signs = torch.where(d < 0, -1.0, 1.0).to(torch.float64)
    return (q * signs[..., None, :]).contiguous()
