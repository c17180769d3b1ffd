"""Block-diagonal affine transforms aligned with the MX block: BlockAffine, NaiveKronecker, GPK.

All three are ``P = diag(P_1, ..., P_k)`` with one ``g x g`` block per MX
quantization block (BATQuant paper, section 3.1, eq. 1), so no value moves
across quantization blocks.  They differ in how a block is parametrised:

==================  ===========================  ===================  ================
class               block ``P_i``                parameters           N=4096, g=32
==================  ===========================  ===================  ================
BlockAffine         a free ``g x g`` matrix      ``k g^2``            131,072
NaiveKronecker      ``kron(B_i^T, A_i)``         ``k (g1^2 + g2^2)``  10,240 (8 x 4)
GPK                 ``kron(B_i^T, A)``           ``g1^2 + k g2^2``    2,112 (8 x 4)
==================  ===========================  ===================  ================

Kronecker convention.  A block's input ``v`` (length ``g = g1 g2``) is
reshaped row-major to ``V`` of shape ``[g2, g1]`` (``V[r, c] = v[r g1 + c]``)
and Algorithm 1 computes ``B_i V A``.  Read back row-major, that is
``v @ kron(B_i^T, A)``, so the dense block is ``P_i = kron(B_i^T, A)``:
element ``[(s, d), (r, c)] = B_i[r, s] A[d, c]``.  The paper writes
``P_i = B_i kron A`` with the column-major identity
``vec(V)(B_i kron A) = vec(B_i^T V A)``; the two are the same family of
matrices with ``B_i`` read transposed, and these classes follow the code
(Algorithm 1), not the formula.

Two forward paths, one result.  While a call must record the graph to the
parameters (grad enabled and a parameter requiring grad: calibration), GPK
and NaiveKronecker run Algorithm 1 verbatim, so gradients reach ``A`` and
``B_i`` as the paper computes them.  Otherwise (inference, ``no_grad``, or
frozen parameters) they apply the dense ``g x g`` blocks ``P_i`` with a
batched matmul (:func:`_apply_blocks`): Algorithm 1's two einsums each make
a pass over the activations (plus the copies their layouts force), one
``[tokens, g] x [g, g]`` matmul per block makes one.  The blocks are built
once, after the condition guard, and reused while the parameters keep the
same bits (:class:`_InferenceBlocks`); BlockAffine reuses its guard's
verdict the same way.  The two paths agree to float rounding (sums of ``g``
products against sums of ``g1`` then ``g2``), not bit for bit.

Weight side.  ``P_i^{-T} = kron(B_i^T, A)^{-T} = kron(B_i^{-1}, A^{-T})
= kron((B_i^{-T})^T, A^{-T})``: the same Algorithm 1 with the factors
``(A^{-T}, B_i^{-T})``, each inverse computed in float64.  Likewise the
inverse transform is GPK with ``(A^{-1}, B_i^{-1})``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

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

__all__ = ["GPK", "BlockAffine", "NaiveKronecker", "kron_blocks", "kron_blocks_matmul"]


def kron_blocks_matmul(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Algorithm 1 of the BATQuant paper: ``x @ diag(kron(B_1^T, A), ..., kron(B_k^T, A))``.

    Parameters
    ----------
    x : Tensor
        ``[..., k * g2 * g1]``.
    a : Tensor
        The shared ``[g1, g1]`` factor (GPK), or ``[k, g1, g1]``, one per block
        (naive Kronecker).
    b : Tensor
        ``[k, g2, g2]``, one per block.

    Returns
    -------
    Tensor
        Same shape as ``x``.  No dense matrix is formed.
    """
    k, g2, _ = b.shape
    g1 = a.shape[-1]
    v = x.reshape(-1, k, g2, g1)
    if a.ndim == 2:
        # 1. global shared transformation: V A for every block
        v = torch.einsum("...gij,jk->...gik", v, a)
    else:
        v = torch.einsum("...gij,gjk->...gik", v, a)
    # 2. block-specific private transformation: B_i (V A)
    v = torch.einsum("gij,bgjk->bgik", b, v)
    return v.reshape(x.shape)


def kron_blocks(bt: Tensor, a: Tensor) -> Tensor:
    """The dense blocks ``kron(bt_i, A)`` (or ``kron(bt_i, A_i)``) as ``[k, g, g]``.

    Parameters
    ----------
    bt : Tensor
        ``[k, g2, g2]``; pass ``B.mT`` for the blocks of :func:`kron_blocks_matmul`.
    a : Tensor
        ``[g1, g1]`` or ``[k, g1, g1]``.

    Returns
    -------
    Tensor
        ``[k, g2 * g1, g2 * g1]``, element ``[i, (s, d), (r, c)] = bt[i, s, r] a[d, c]``.
    """
    k, g2, _ = bt.shape
    g1 = a.shape[-1]
    a5 = a[None, None, :, None, :] if a.ndim == 2 else a[:, None, :, None, :]
    return (bt[:, :, None, :, None] * a5).reshape(k, g2 * g1, g2 * g1)


def _block_diagonal(blocks: Tensor) -> Tensor:
    return torch.block_diag(*blocks.unbind(0))


#: Largest intermediate (bytes) :func:`_apply_blocks` makes on CPU without a graph.
#: Kept below glibc's largest mmap threshold (32 MiB): a buffer that size is served
#: from memory the process already holds, while a larger one is a fresh mapping
#: whose pages the kernel faults in and zeroes on every call.  At 2048 x 4096
#: float32 on 2 threads, in one run: two 16 MiB chunks 0.06x the layer matmul,
#: one 32 MiB intermediate 0.08x (docs/benchmarks.md, transform speed).
_CHUNK_BYTES = 16 * 2**20


def _apply_blocks(x: Tensor, blocks: Tensor) -> Tensor:
    """``x @ diag(blocks_1, ..., blocks_k)`` as a batched matmul over the blocks.

    Parameters
    ----------
    x : Tensor
        ``[..., k * g]``.
    blocks : Tensor
        ``[k, g, g]``.

    Returns
    -------
    Tensor
        Same shape as ``x``, contiguous.
    """
    k, g, _ = blocks.shape
    # [tokens, k, g]; its transpose [k, tokens, g] is a strided view that bmm reads in
    # place, so the only copy is the one that puts the result back in token order.
    # einsum("bki,kij->bkj") lowers to this same bmm.
    v = x.reshape(-1, k, g)
    tokens = v.shape[0]
    step = max(1, _CHUNK_BYTES // (k * g * x.element_size()))
    graph = torch.is_grad_enabled() and (x.requires_grad or blocks.requires_grad)
    if graph or tokens <= step or x.device.type != "cpu":  # bmm(out=) records no graph
        return torch.bmm(v.transpose(0, 1), blocks).transpose(0, 1).reshape(x.shape)
    out = torch.empty(v.shape, dtype=x.dtype, device=x.device)
    scratch = torch.empty(k * step * g, dtype=x.dtype, device=x.device)
    for start in range(0, tokens, step):
        n = min(step, tokens - start)
        part = scratch[: k * n * g].view(k, n, g)  # contiguous, also for the last chunk
        torch.bmm(v[start : start + n].transpose(0, 1), blocks, out=part)
        out[start : start + n] = part.transpose(0, 1)
    return out.reshape(x.shape)


def _records_graph(module: nn.Module) -> bool:
    """Whether a call must record the autograd graph to ``module``'s parameters."""
    return torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())


# Integer dtypes of each element size: comparing through them compares bits, so
# -0.0 and 0.0 (equal as floats) count as different parameters.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(live: Tensor, kept: Tensor) -> bool:
    """Whether ``live`` has ``kept``'s shape, dtype, device and every bit."""
    if (live.shape, live.dtype, live.device) != (kept.shape, kept.dtype, kept.device):
        return False
    bits = _BITS[live.element_size()]
    return torch.equal(live.detach().view(bits), kept.view(bits))


class _InferenceBlocks:
    """The dense blocks a transform applies when no graph is recorded, built once.

    An entry holds a bit-exact copy of the parameters it was built from, the
    guard threshold, and the blocks.  :meth:`get` serves the blocks only while
    every parameter still has those bits (and that shape, dtype and device)
    and the threshold is unchanged: comparing values, not ``_version``
    counters, also catches writes that bypass them (``p.data.copy_``,
    ``module.to``, ``load_state_dict``), and costs ``O(num_params)``, far
    below one pass over the activations.  Callers keep only blocks whose
    guard replaced nothing, so a call with an ill-conditioned factor still
    runs the guard, and warns, every time.  Memory: a copy of the parameters
    (BlockAffine's copy is its blocks) and, for GPK and NaiveKronecker, the
    ``k g^2`` block elements (512 KiB at N = 4096, g = 32, float32); none of
    it is in the ``state_dict``.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[tuple[Tensor, ...], float, Tensor] | None = None

    def get(self, params: tuple[Tensor, ...], max_condition: float) -> Tensor | None:
        """The kept blocks if ``params`` and ``max_condition`` are what they were built from."""
        entry = self._entry
        if entry is None or entry[1] != max_condition or len(entry[0]) != len(params):
            return None
        if not all(_same_bits(p, q) for p, q in zip(params, entry[0], strict=True)):
            return None
        return entry[2]

    def keep(
        self,
        params: tuple[Tensor, ...],
        max_condition: float,
        build: Callable[[tuple[Tensor, ...]], Tensor],
    ) -> Tensor:
        """Keep ``build(copies of params)`` for ``params`` and return it.

        ``build`` sees the kept copies, not the live parameters, so the blocks
        are exactly what the kept bits give.
        """
        # normal tensors even when built under inference_mode: an inference tensor could
        # not be saved for a later backward to the input (frozen transform, x with grad)
        with torch.inference_mode(False), torch.no_grad():
            kept = tuple(p.detach().clone() for p in params)
            blocks = build(kept)
        self._entry = (kept, max_condition, blocks)
        return blocks


def _check_factorisation(g1: object, g2: object, block_size: object) -> int:
    for name, v in (("g1", g1), ("g2", g2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")
    g = g1 * g2  # type: ignore[operator]
    if block_size is not None and block_size != g:
        raise ValueError(
            f"block_size={block_size!r} must equal g1 * g2 = {g1} * {g2} = {g} "
            "(the Kronecker factors tile one quantization block)"
        )
    return g


class BlockAffine(Transform):
    """BATQuant without decomposition: a full learnable ``g x g`` matrix per block.

    ``P = diag(P_1, ..., P_k)`` (paper eq. 1), ``k g^2`` parameters (131,072 at
    N = 4096, g = 32).

    Parameters
    ----------
    size : int
        N; a multiple of ``block_size``.
    block_size : int
        g, the MX block size.
    init : TransformInit or str
        ``"identity"``, ``"orthogonal"`` (per block, seeded) or ``"hadamard"``
        (each block ``H_g / sqrt(g)``, BRQ's rotation).
    seed : int
        Seeds ``"orthogonal"``.
    dtype : torch.dtype
        Parameter dtype (float32 by default).
    device : torch.device or str, optional
    max_condition : float
        Condition guard threshold (:mod:`batquant.algorithms.transforms.base`).

    Attributes
    ----------
    blocks : nn.Parameter
        ``[k, g, g]``, the blocks ``P_i``.
    """

    def __init__(
        self,
        size: int,
        block_size: int = 32,
        init: TransformInit | str = TransformInit.IDENTITY,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        max_condition: float = DEFAULT_MAX_CONDITION,
    ) -> None:
        super().__init__(check_size(size, block_size), max_condition=max_condition)
        self.block_size = block_size
        self.num_blocks = size // block_size
        p = init_factors(parse_init(init), block_size, (self.num_blocks,), make_generator(seed))
        self.blocks = nn.Parameter(p.to(dtype=check_dtype(dtype), device=device))
        self._inference = _InferenceBlocks()

    @classmethod
    def from_blocks(
        cls,
        blocks: Tensor,
        *,
        max_condition: float = DEFAULT_MAX_CONDITION,
    ) -> BlockAffine:
        """A BlockAffine whose parameters are a detached copy of ``blocks`` ``[k, g, g]``."""
        k, g, _ = blocks.shape
        out = cls(k * g, g, dtype=blocks.dtype, device=blocks.device, max_condition=max_condition)
        with torch.no_grad():
            out.blocks.copy_(blocks)
        return out

    def effective_blocks(self) -> Tensor:
        """The blocks after the condition guard: what every method uses."""
        (p,) = self._guard([("P", self.blocks, True)])
        return p

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P`` blockwise; see :meth:`Transform.forward`.

        Without a graph to record, the guard's verdict is reused while the
        blocks keep their bits (module docstring): the guard's ``k`` float64
        SVDs of ``g x g`` blocks cost about as much as the block matmul.
        """
        x = self._check_input(x, "x")
        if _records_graph(self):
            return self._matmul(x, self.effective_blocks())
        blocks = self._inference.get((self.blocks,), self.max_condition)
        if blocks is None:
            blocks = self.effective_blocks()
            if blocks is self.blocks:  # the guard kept it: the verdict holds for these bits
                blocks = self._inference.keep((self.blocks,), self.max_condition, lambda f: f[0])
        return self._matmul(x, blocks)

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P^{-T}`` blockwise, each ``P_i`` inverted in float64."""
        weight = self._check_input(weight, "weight")
        return self._matmul(weight, inverse_float64(self.effective_blocks()).mT)

    def materialize(self) -> Tensor:
        """The dense block-diagonal ``P``, ``[N, N]``."""
        return _block_diagonal(self.effective_blocks())

    def inverse(self) -> BlockAffine:
        """BlockAffine with blocks ``P_i^{-1}`` (float64 inverses, detached)."""
        p = self.effective_blocks().detach()
        return BlockAffine.from_blocks(inverse_float64(p), max_condition=self.max_condition)

    def _matmul(self, x: Tensor, p: Tensor) -> Tensor:
        return _apply_blocks(x, p)

    def extra_repr(self) -> str:
        return f"size={self.size}, block_size={self.block_size}, num_params={self.num_params}"


class _KroneckerBlocks(Transform):
    """What GPK and NaiveKronecker share: ``P_i = kron(B_i^T, A_i)`` applied by Algorithm 1.

    Subclasses say only whether ``A`` is one matrix shared by every block
    (:attr:`SHARED_A`; GPK) or one per block (NaiveKronecker); everything
    else, shapes included, follows from the factors.
    """

    #: True: one ``A`` for all blocks (``[g1, g1]``); False: ``A_i`` per block.
    SHARED_A: bool = True

    def __init__(
        self,
        size: int,
        g1: int = 8,
        g2: int = 4,
        init: TransformInit | str = TransformInit.IDENTITY,
        *,
        block_size: int | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        max_condition: float = DEFAULT_MAX_CONDITION,
    ) -> None:
        g = _check_factorisation(g1, g2, block_size)
        super().__init__(check_size(size, g), max_condition=max_condition)
        self.g1, self.g2, self.block_size, self.num_blocks = g1, g2, g, size // g
        how, gen, k = parse_init(init), make_generator(seed), self.num_blocks
        dtype = check_dtype(dtype)
        a_batch = () if self.SHARED_A else (k,)
        self.A = nn.Parameter(init_factors(how, g1, a_batch, gen).to(dtype=dtype, device=device))
        b = init_factors(how, g2, (k,), gen, transpose=True)
        self.B = nn.Parameter(b.to(dtype=dtype, device=device))
        self._inference = _InferenceBlocks()

    @classmethod
    def from_factors(
        cls,
        a: Tensor,
        b: Tensor,
        *,
        max_condition: float = DEFAULT_MAX_CONDITION,
    ) -> Self:
        """A transform with detached copies of ``a`` (``[g1, g1]`` or ``[k, g1, g1]``) and ``b``.

        ``b`` is ``[k, g2, g2]``; ``a`` is shared (GPK) or per block (NaiveKronecker).
        """
        g1 = a.shape[-1]
        k, g2, _ = b.shape
        out = cls(k * g1 * g2, g1, g2, dtype=a.dtype, device=a.device, max_condition=max_condition)
        with torch.no_grad():
            out.A.copy_(a)
            out.B.copy_(b)
        return out

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(A, B)`` after the condition guard: what every method uses."""
        a, b = self._guard([("A", self.A, not self.SHARED_A), ("B", self.B, True)])
        return a, b

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P``; see :meth:`Transform.forward`.

        Algorithm 1 while a graph to ``A``, ``B`` is recorded (calibration);
        otherwise one batched matmul with the dense blocks, built once
        (module docstring).  The two agree to float rounding.
        """
        x = self._check_input(x, "x")
        if _records_graph(self):
            return kron_blocks_matmul(x, *self.factors())
        return _apply_blocks(x, self._inference_blocks())

    def _inference_blocks(self) -> Tensor:
        """The guarded ``[k, g, g]`` blocks ``kron(B_i^T, A_i)``, kept while the factors hold."""
        params = (self.A, self.B)
        blocks = self._inference.get(params, self.max_condition)
        if blocks is not None:
            return blocks
        a, b = self.factors()
        if a is not self.A or b is not self.B:
            # the guard replaced a factor: build for this call only, so the next warns again
            return kron_blocks(b.mT, a)
        return self._inference.keep(
            params, self.max_condition, lambda f: kron_blocks(f[1].mT, f[0]).contiguous()
        )

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P^{-T}``: Algorithm 1 with ``(A^{-T}, B_i^{-T})``, inverted in float64."""
        weight = self._check_input(weight, "weight")
        a, b = self.factors()
        return kron_blocks_matmul(weight, inverse_float64(a).mT, inverse_float64(b).mT)

    def materialize(self) -> Tensor:
        """The dense ``P = diag(kron(B_i^T, A_i))``, ``[N, N]``."""
        a, b = self.factors()
        return _block_diagonal(kron_blocks(b.mT, a))

    def inverse(self) -> Self:
        """The same class with ``(A^{-1}, B_i^{-1})`` (float64 inverses, detached)."""
        a, b = (f.detach() for f in self.factors())
        return self.from_factors(
            inverse_float64(a), inverse_float64(b), max_condition=self.max_condition
        )

    def extra_repr(self) -> str:
        return f"size={self.size}, g1={self.g1}, g2={self.g2}, num_params={self.num_params}"


class NaiveKronecker(_KroneckerBlocks):
    """Per-block Kronecker with private factors: ``P_i = kron(B_i^T, A_i)``.

    The paper's "Naive Kronecker" (section 3.1.1): ``k (g1^2 + g2^2)``
    parameters (10,240 at N = 4096, g1 = 8, g2 = 4).  Applied like
    Algorithm 1 with a per-block ``A_i``; the dense convention is the one in
    the module docstring.

    Parameters
    ----------
    size : int
        N; a multiple of ``g1 * g2``.
    g1, g2 : int
        Orders of ``A_i`` and ``B_i``.
    init : TransformInit or str
        ``"identity"``, ``"orthogonal"`` (every factor, seeded) or ``"hadamard"``
        (``A_i = H_g1 / sqrt(g1)``, ``B_i = H_g2^T / sqrt(g2)``, so each block is
        ``kron(H_g2, H_g1) / sqrt(g)``, the Sylvester ``H_g / sqrt(g)`` for powers of two).
    block_size : int, optional
        g; must equal ``g1 * g2`` when given.
    seed : int
    dtype : torch.dtype
    device : torch.device or str, optional
    max_condition : float

    Attributes
    ----------
    A : nn.Parameter
        ``[k, g1, g1]``.
    B : nn.Parameter
        ``[k, g2, g2]``.
    """

    SHARED_A = False


class GPK(_KroneckerBlocks):
    """Global and Private Kronecker: ``P_i = kron(B_i^T, A)``, ``A`` shared by every block.

    BATQuant's transform (paper section 3.1.1, eq. 2): ``g1^2 + k g2^2``
    parameters (2,112 at N = 4096, g1 = 8, g2 = 4).  Under calibration
    :meth:`forward` is Algorithm 1 verbatim (two einsums, no dense matrix);
    at inference it applies the ``k`` dense ``g x g`` blocks, built once, with
    one batched matmul (the module docstring has both paths, the dense
    convention ``kron(B_i^T, A)`` and the weight-side algebra).

    Parameters
    ----------
    size : int
        N; a multiple of ``g1 * g2``.
    g1 : int
        Order of the shared ``A`` (8 in the paper).
    g2 : int
        Order of the private ``B_i`` (4 in the paper).
    init : TransformInit or str
        ``"identity"``, ``"orthogonal"`` (``A`` then every ``B_i``, seeded) or
        ``"hadamard"``: ``A = H_g1 / sqrt(g1)``, ``B_i = H_g2^T / sqrt(g2)``, so
        every block is ``kron(H_g2, H_g1) / sqrt(g)``; for powers of two that
        is the Sylvester ``H_g / sqrt(g)`` (``H_32 = kron(H_4, H_8)``), exactly
        :class:`~batquant.algorithms.transforms.BlockHadamard`, BRQ's rotation.
    block_size : int, optional
        g; must equal ``g1 * g2`` when given.
    seed : int
    dtype : torch.dtype
    device : torch.device or str, optional
    max_condition : float

    Attributes
    ----------
    A : nn.Parameter
        ``[g1, g1]``, shared.
    B : nn.Parameter
        ``[k, g2, g2]``, the stacked private ``B_i`` (Algorithm 1's ``B_stack``).
    """

    SHARED_A = True
