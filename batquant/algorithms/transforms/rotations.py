"""Data-fitted orthogonal rotations of TORQ (a reconstruction; docs/methods/torq.md).

Both act on ``x`` viewed as ``k`` blocks of ``g`` channels (``N = k g``, the MX
blocks), are orthogonal (``P^{-T} = P``, so the weight side is the same map),
and are fitted once from calibration inputs, without gradients:

- :class:`SchurHornBalance` (TORQ's macro level): for every position ``p`` in
  the block, one ``k x k`` rotation ``Q_p`` of the ``k`` channels
  ``{b g + p}`` (one per block).  ``Q_p`` is built from the calibration second
  moment ``S_p = E[x_p x_p^T]`` so that ``diag(Q_p^T S_p Q_p)`` is constant
  (:func:`schur_horn_rotation`): every channel at position ``p`` gets the
  same energy, hence every block the same total energy.
- :class:`MaxEntropyBlockRotation` (TORQ's micro level): one ``g x g``
  rotation ``R`` applied to every block, chosen by greedy Givens sweeps to
  maximise the Shannon entropy of the MXFP4 magnitude codes that the
  calibration blocks quantize to.

Spec: OCP MX v1.0 section 6.3 (the codes whose usage the micro level counts).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from batquant.algorithms.transforms.base import Transform, check_dtype, check_size
from batquant.algorithms.transforms.matrices import hadamard_matrix

__all__ = [
    "MaxEntropyBlockRotation",
    "SchurHornBalance",
    "code_entropy",
    "magnitude_codes",
    "schur_horn_rotation",
]


def schur_horn_rotation(second_moment: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """An orthogonal ``Q`` with ``diag(Q^T S Q)`` equal to ``trace(S) / n`` everywhere.

    The constructive Schur-Horn step in the manner of Chan and Li: while some
    diagonal entry is off the target ``c``, take the unfinished entry ``i``
    farthest from ``c`` and the unfinished entry ``j`` farthest on the other
    side, and rotate the plane ``(i, j)`` by the Givens angle that puts the new
    ``i``-th diagonal entry exactly at ``c``.  With ``t = tan(theta)`` that
    entry is ``(s_ii + 2 t s_ij + t^2 s_jj) / (1 + t^2)``, so ``t`` solves
    ``(s_jj - c) t^2 + 2 s_ij t + (s_ii - c) = 0``, whose roots are real
    because ``s_ii - c`` and ``s_jj - c`` have opposite signs (the smaller
    root is taken: the smaller rotation).  Entry ``i`` is then final; at most
    ``n - 1`` rotations finish every entry, the last by the trace.  (The Jacobi
    angle ``atan2(2 s_ij, s_ii - s_jj) / 2`` diagonalises the pair instead, and
    the pair-averaging angle only converges in the limit.)

    Parameters
    ----------
    second_moment : numpy.ndarray
        ``[n, n]`` symmetric positive semi-definite, float64.
    tol : float
        Entries within ``tol * c`` of the target count as done.

    Returns
    -------
    numpy.ndarray
        ``[n, n]`` float64 orthogonal ``Q`` (columns are the new basis).
    """
    s = np.array(second_moment, dtype=np.float64, copy=True)
    n = s.shape[0]
    q = np.eye(n)
    c = float(np.trace(s)) / n
    if n == 1 or c <= 0:
        return q
    done = np.zeros(n, dtype=bool)
    for _ in range(n - 1):
        dev = np.where(done, 0.0, np.diag(s) - c)
        i = int(np.argmax(np.abs(dev)))
        if abs(dev[i]) <= tol * c:
            break
        partner = np.where(done | (np.sign(dev) == np.sign(dev[i])), 0.0, dev)
        j = int(np.argmax(np.abs(partner)))
        if partner[j] == 0.0:
            break  # nothing left on the other side: rounding only
        a, b, off = s[i, i] - c, s[j, j] - c, s[i, j]
        # b t^2 + 2 off t + a = 0 with a b < 0: two real roots (the stable pair
        # q / b and a / q); the smaller |t| is the smaller rotation
        m = -(off + math.copysign(math.sqrt(off * off - a * b), off))
        t = min(m / b, a / m, key=abs)
        cos = 1.0 / math.sqrt(1.0 + t * t)
        sin = t * cos
        # columns i and j of the Givens matrix: (cos e_i + sin e_j), (-sin e_i + cos e_j)
        col_i = cos * s[:, i] + sin * s[:, j]
        col_j = -sin * s[:, i] + cos * s[:, j]
        s[:, i], s[:, j] = col_i, col_j
        row_i = cos * s[i, :] + sin * s[j, :]
        row_j = -sin * s[i, :] + cos * s[j, :]
        s[i, :], s[j, :] = row_i, row_j
        qi = cos * q[:, i] + sin * q[:, j]
        qj = -sin * q[:, i] + cos * q[:, j]
        q[:, i], q[:, j] = qi, qj
        done[i] = True
    return q


def _as_rows(inputs: Tensor, size: int) -> Tensor:
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        raise TypeError("inputs must be a floating-point torch.Tensor")
    if inputs.shape[-1] != size or inputs.numel() == 0:
        raise ValueError(f"inputs must be [..., {size}] and not empty; got {tuple(inputs.shape)}")
    rows = inputs.detach().reshape(-1, size).to("cpu", torch.float64)
    if not bool(torch.isfinite(rows).all()):
        raise ValueError("inputs contain NaN or Inf")
    return rows


class SchurHornBalance(Transform):
    """TORQ's inter-block rotation: ``Q_p`` over the ``k`` blocks at each block position ``p``.

    ``y[..., c g + p] = sum_b x[..., b g + p] Q_p[b, c]``.  Built as the identity;
    :meth:`fit` computes the rotations from calibration inputs.

    Parameters
    ----------
    size : int
        N, a multiple of ``block_size``.
    block_size : int
        g, the MX block (32).
    shared : bool
        One rotation for every position, from the second moment pooled over
        positions (what a public port does); it balances the pooled energy
        only.  Default False: one per position, which balances every block
        exactly.

    Attributes
    ----------
    rotations : Tensor
        ``[g, k, k]`` (``[1, k, k]`` when shared), float32 orthogonal.
    """

    rotations: Tensor

    def __init__(
        self,
        size: int,
        block_size: int = 32,
        *,
        shared: bool = False,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(check_size(size, block_size))
        self.block_size = block_size
        self.num_blocks = size // block_size
        self.shared = bool(shared)
        count = 1 if shared else block_size
        eye = torch.eye(self.num_blocks, dtype=check_dtype(dtype), device=device)
        self.register_buffer("rotations", eye.expand(count, -1, -1).contiguous())

    def second_moments(self, inputs: Tensor) -> np.ndarray:
        """``[g, k, k]`` (or ``[1, k, k]``) float64 ``E[x_p x_p^T]`` over the input rows."""
        rows = _as_rows(inputs, self.size)
        per_position = rows.view(-1, self.num_blocks, self.block_size).permute(2, 1, 0)
        moments = per_position @ per_position.transpose(1, 2) / rows.shape[0]
        if self.shared:
            moments = moments.mean(dim=0, keepdim=True)
        return moments.numpy()

    def fit(self, inputs: Tensor) -> SchurHornBalance:
        """Compute every ``Q_p`` from ``inputs`` (``[..., N]``); return ``self``."""
        return self._fit_moments(self.second_moments(inputs))

    def fit_covariance(self, covariance: Tensor | np.ndarray) -> SchurHornBalance:
        """Compute every ``Q_p`` from an ``[N, N]`` second moment (or covariance); return ``self``.

        ``Q_p`` depends only on the ``k x k`` sub-matrix of the channels
        ``{b g + p}``; the rotated data's per-channel energies are
        ``diag(P^T S P)``, equal within every position, so every block's sum is
        ``trace(S) / k``.
        """
        s = np.asarray(covariance.detach().cpu() if isinstance(covariance, Tensor) else covariance,
                       dtype=np.float64)  # fmt: skip
        if s.shape != (self.size, self.size) or not np.isfinite(s).all():
            raise ValueError(f"covariance must be a finite [{self.size}, {self.size}] matrix; "
                             f"got shape {s.shape}")  # fmt: skip
        g = self.block_size
        moments = np.stack([s[p::g, p::g] for p in range(g)])
        return self._fit_moments(moments.mean(axis=0, keepdims=True) if self.shared else moments)

    def _fit_moments(self, moments: np.ndarray) -> SchurHornBalance:
        q = np.stack([schur_horn_rotation(m) for m in moments])
        with torch.no_grad():
            self.rotations.copy_(torch.from_numpy(q))
        return self

    def block_energies(self, inputs: Tensor) -> Tensor:
        """Mean square of each block of ``forward(inputs)``, float64 ``[k]``."""
        rows = _as_rows(inputs, self.size)
        out = self._rotate(rows, self.rotations.double())
        return (out.view(-1, self.num_blocks, self.block_size) ** 2).mean(dim=(0, 2))

    def _rotate(self, x: Tensor, rotations: Tensor) -> Tensor:
        v = x.unflatten(-1, (self.num_blocks, self.block_size))
        if self.shared:
            return torch.einsum("...bp,bc->...cp", v, rotations[0]).flatten(-2)
        return torch.einsum("...bp,pbc->...cp", v, rotations).flatten(-2)

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P``; see :meth:`Transform.forward`."""
        return self._rotate(self._check_input(x, "x"), self.rotations)

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P^{-T} = W @ P`` (``P`` is orthogonal)."""
        return self._rotate(self._check_input(weight, "weight"), self.rotations)

    def materialize(self) -> Tensor:
        """The dense ``P``, ``[N, N]``."""
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        return self.forward(eye)

    def inverse(self) -> SchurHornBalance:
        """``P^{-1} = P^T``: every ``Q_p`` transposed."""
        out = SchurHornBalance(self.size, self.block_size, shared=self.shared,
                               dtype=self.dtype, device=self.device)  # fmt: skip
        with torch.no_grad():
            out.rotations.copy_(self.rotations.transpose(1, 2))
        return out

    def extra_repr(self) -> str:
        return f"size={self.size}, block_size={self.block_size}, shared={self.shared}"


#: Magnitude levels of MXFP4 (E2M1) whose usage the micro level counts.
MAGNITUDE_CODES = 8


def magnitude_codes(blocks: Tensor, fmt: str = "mxfp4") -> Tensor:
    """The MX magnitude code (sign dropped) of every element of ``blocks`` ``[..., g]``.

    Each row of ``g`` is one block, quantized with the spec's FLOOR scale and
    RNE (:func:`mxref.torch.encode`).

    Spec: OCP MX v1.0 section 6.3.
    """
    from mxref.formats import get_format
    from mxref.torch import encode

    g = blocks.shape[-1]
    codes, _ = encode(blocks.to(torch.float32).reshape(-1, g), fmt, block_size=g)
    sign = 1 << (get_format(fmt).bits - 1)
    return (codes.to(torch.int64) & (sign - 1)).view(blocks.shape)


def _entropy(codes: Tensor, levels: int) -> Tensor:
    """Shannon entropy (bits) of the codes along the last dim."""
    counts = torch.zeros(*codes.shape[:-1], levels, dtype=torch.float64)
    counts.scatter_add_(-1, codes, torch.ones_like(codes, dtype=torch.float64))
    p = counts / counts.sum(dim=-1, keepdim=True)
    return -(torch.where(p > 0, p * torch.log2(p), 0.0)).sum(dim=-1)


def _quantization_error(blocks: Tensor, fmt: str) -> Tensor:
    """Summed squared MX quantization error of ``[..., rows, g]`` blocks, one per leading index.

    The blocks are quantized as float32, as the layers quantize them; the
    error is summed in float64.
    """
    from mxref.torch import quantize_dequantize

    values = blocks.to(torch.float32)
    error = quantize_dequantize(values, fmt, block_size=blocks.shape[-1]).double() - values.double()
    return (error**2).sum(dim=(-2, -1))


def code_entropy(blocks: Tensor, fmt: str = "mxfp4") -> Tensor:
    """Shannon entropy (bits) of the MX magnitude codes of ``blocks``, one per leading index.

    Parameters
    ----------
    blocks : Tensor
        ``[..., rows, g]``: every row one MX block.
    fmt : str

    Returns
    -------
    Tensor
        ``[...]`` float64; at most ``log2(8) = 3`` bits for MXFP4.

    Spec: OCP MX v1.0 section 6.3.
    """
    from mxref.formats import get_format

    levels = 1 << (get_format(fmt).bits - 1)
    codes = magnitude_codes(blocks, fmt)
    return _entropy(codes.flatten(-2), levels)


class MaxEntropyBlockRotation(Transform):
    """TORQ's intra-block rotation: ``P = I_k kron R``, one ``g x g`` orthogonal ``R``.

    :meth:`fit` refines ``R`` on calibration inputs, starting from ``init``.

    Parameters
    ----------
    size : int
        N, a multiple of ``block_size``.
    block_size : int
        g, the MX block (32).
    init : {"hadamard", "identity", "best"}
        Where the search starts: the normalised Hadamard matrix (the identity
        when none exists for ``g``), the identity, or whichever of the two
        gives the calibration blocks the higher code entropy (decided by
        :meth:`fit`; the rotation is the Hadamard until then).

    Attributes
    ----------
    rotation : Tensor
        ``[g, g]`` float32 orthogonal.
    """

    rotation: Tensor

    INITS = ("hadamard", "identity", "best")

    def __init__(
        self,
        size: int,
        block_size: int = 32,
        *,
        init: str = "hadamard",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(check_size(size, block_size))
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}; got {init!r}")
        self.block_size = block_size
        self.num_blocks = size // block_size
        self.init = init
        eye = torch.eye(block_size, dtype=torch.float64)
        start = eye if init == "identity" else self.start(block_size)
        self.register_buffer("rotation", start.to(dtype=check_dtype(dtype), device=device))

    @staticmethod
    def start(g: int) -> Tensor:
        """The normalised Hadamard ``H_g / sqrt(g)`` where one exists, else ``I``."""
        try:
            return hadamard_matrix(g).double() / math.sqrt(g)
        except ValueError:
            return torch.eye(g, dtype=torch.float64)

    def fit(
        self,
        inputs: Tensor,
        *,
        fmt: str = "mxfp4",
        iterations: int = 10,
        pairs: int = 8,
        rows: int = 4096,
        seed: int = 0,
        guard: bool = True,
    ) -> MaxEntropyBlockRotation:
        """Refine ``R`` so that the calibration blocks use the MX codes more evenly.

        Greedy Givens sweeps, no gradients.  Starting from ``init``, for up to
        ``iterations`` rounds: take the ``2 pairs`` lanes whose code histograms
        are farthest from uniform, pair them in order of imbalance, and for
        each pair try the rotation angles ``m pi / 16`` (``m = 1..7``; a
        two-lane rotation's effect on a block's code multiset has period
        ``pi / 2`` up to swaps and signs).  An angle is a candidate where the
        entropy of all blocks' codes (:func:`code_entropy`) rises and, with
        ``guard``, the blocks' MX quantization error does not (entropy alone
        also rises when values saturate at the largest code); the candidate of
        highest entropy is kept.  A round that keeps nothing ends the search.

        Parameters
        ----------
        inputs : Tensor
            ``[..., N]`` calibration inputs (after the inter-block rotation).
        fmt : str
            The MX format whose code usage is counted (MXFP4: TORQ's target).
        iterations, pairs : int
        rows : int
            At most this many blocks, drawn with ``seed``, enter the search.
        seed : int
        guard : bool
            Keep only steps that do not raise the quantization error (ours;
            ``False`` follows the entropy alone).

        Returns
        -------
        MaxEntropyBlockRotation
            ``self``.
        """
        g = self.block_size
        blocks = _as_rows(inputs, self.size).view(-1, g)
        if blocks.shape[0] > rows:
            pick = torch.randperm(blocks.shape[0], generator=torch.Generator().manual_seed(seed))
            blocks = blocks[pick[:rows].sort().values]
        if self.init == "best":
            candidates = torch.stack([torch.eye(g, dtype=torch.float64), self.start(g)])
            r = candidates[int(torch.argmax(code_entropy(blocks[None] @ candidates, fmt)))]
        else:
            r = self.rotation.detach().to("cpu", torch.float64)
        best = float(code_entropy(blocks @ r, fmt))
        best_error = float(_quantization_error(blocks[None] @ r, fmt)) if guard else math.inf
        angles = torch.arange(1, 8, dtype=torch.float64) * math.pi / 16
        for _ in range(iterations):
            improved = False
            for i, j in self._imbalanced_pairs(blocks @ r, fmt, pairs):
                trial = r.expand(len(angles), g, g).clone()
                cos, sin = torch.cos(angles), torch.sin(angles)
                col_i, col_j = trial[:, :, i].clone(), trial[:, :, j].clone()
                trial[:, :, i] = cos[:, None] * col_i + sin[:, None] * col_j
                trial[:, :, j] = -sin[:, None] * col_i + cos[:, None] * col_j
                rotated = blocks[None] @ trial
                scores = code_entropy(rotated, fmt)
                ok = scores > best + 1e-12
                if guard:
                    errors = _quantization_error(rotated, fmt)
                    ok &= errors <= best_error
                if not bool(ok.any()):
                    continue
                k = int(torch.argmax(torch.where(ok, scores, -math.inf)))
                best, r, improved = float(scores[k]), trial[k], True
                if guard:
                    best_error = float(errors[k])
            if not improved:
                break
        with torch.no_grad():
            self.rotation.copy_(r)
        return self

    @staticmethod
    def _imbalanced_pairs(blocks: Tensor, fmt: str, pairs: int) -> list[tuple[int, int]]:
        """Lanes whose code histograms are farthest from uniform (least entropy), in pairs."""
        from mxref.formats import get_format

        g = blocks.shape[-1]
        codes = magnitude_codes(blocks, fmt)
        per_lane = _entropy(codes.T.contiguous(), 1 << (get_format(fmt).bits - 1))
        order = torch.argsort(per_lane)[: 2 * min(pairs, g // 2)].tolist()
        return [(order[2 * m], order[2 * m + 1]) for m in range(len(order) // 2)]

    def _matmul(self, x: Tensor) -> Tensor:
        return torch.matmul(x.reshape(-1, self.block_size), self.rotation).reshape(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P``; see :meth:`Transform.forward`."""
        return self._matmul(self._check_input(x, "x"))

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P^{-T} = W @ P`` (``P`` is orthogonal)."""
        return self._matmul(self._check_input(weight, "weight"))

    def materialize(self) -> Tensor:
        """The dense ``P = diag(R, ..., R)``, ``[N, N]``."""
        return torch.block_diag(*[self.rotation] * self.num_blocks)

    def inverse(self) -> MaxEntropyBlockRotation:
        """``P^{-1} = I kron R^T``."""
        out = MaxEntropyBlockRotation(self.size, self.block_size, init=self.init,
                                      dtype=self.dtype, device=self.device)  # fmt: skip
        with torch.no_grad():
            out.rotation.copy_(self.rotation.T)
        return out

    def extra_repr(self) -> str:
        return f"size={self.size}, block_size={self.block_size}, init={self.init!r}"
