"""The block transforms' inference path: same result as Algorithm 1, never stale blocks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import batquant
from batquant import CalibSpec
from batquant.algorithms.transforms import GPK, BlockAffine, NaiveKronecker, block
from batquant.algorithms.transforms.block import _apply_blocks, kron_blocks_matmul
from batquant.synthetic import llm_like_activations, llm_like_weight

N = 256

Block = GPK | NaiveKronecker | BlockAffine

MAKERS: dict[str, Callable[[torch.dtype], Block]] = {
    "gpk": lambda dt: GPK(N, 8, 4, init="orthogonal", seed=1, dtype=dt),
    "gpk_4x8": lambda dt: GPK(N, 4, 8, init="orthogonal", seed=1, dtype=dt),
    "naive": lambda dt: NaiveKronecker(N, 8, 4, init="orthogonal", seed=2, dtype=dt),
    "block_affine": lambda dt: BlockAffine(N, 32, init="orthogonal", seed=3, dtype=dt),
}


def perturb(t: Block, seed: int = 0, scale: float = 0.1) -> Block:
    """Move every parameter off its orthogonal start, keeping it well conditioned."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return t


def data(dtype: torch.dtype = torch.float32, tokens: int = 40) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    return torch.randn(3, tokens, N, generator=gen, dtype=torch.float64).to(dtype)


def algorithm_1(t: Block, x: torch.Tensor) -> torch.Tensor:
    """The calibration path, computed directly: what forward did before the inference path."""
    if isinstance(t, BlockAffine):
        v = x.reshape(-1, t.num_blocks, t.block_size)
        return torch.einsum("bki,kij->bkj", v, t.effective_blocks()).reshape(x.shape)
    return kron_blocks_matmul(x, *t.factors())


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def kept(t: Block) -> bool:
    """Whether the transform holds inference blocks for its current parameters."""
    return t._inference.get(tuple(t.parameters()), t.max_condition) is not None


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("name", list(MAKERS))
def test_inference_path_matches_algorithm_1(name: str, dtype: torch.dtype, tol: float) -> None:
    t = perturb(MAKERS[name](dtype))
    for tokens in (1, 40):
        x = data(dtype, tokens)
        with torch.no_grad():
            want = algorithm_1(t, x)
            assert rel(t(x), want) < tol
            assert rel(t(x), want) < tol  # the second call serves the kept blocks
        assert kept(t)
    if isinstance(t, BlockAffine):  # the same blocks through the same bmm: bit for bit
        with torch.no_grad():
            assert torch.equal(t(x), algorithm_1(t, x))


@pytest.mark.parametrize("name", list(MAKERS))
def test_calibration_path_is_algorithm_1_bit_for_bit(name: str) -> None:
    t = perturb(MAKERS[name](torch.float32))
    x = data()
    y = t(x)
    assert y.requires_grad
    assert torch.equal(y, algorithm_1(t, x))
    assert not kept(t)  # no inference blocks are built while training
    # and its gradients are those of Algorithm 1
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad(y, list(t.parameters()), gy)
    want = torch.autograd.grad(algorithm_1(t, x), list(t.parameters()), gy)
    for g, w in zip(grads, want, strict=True):
        assert torch.equal(g, w)


def _inplace(t: Block) -> None:
    with torch.no_grad():
        next(t.parameters()).mul_(1.5)


def _through_data(t: Block) -> None:
    # .data has its own version counter: a cache keyed on _version would miss this write
    next(t.parameters()).data.add_(0.05)


def _load_state_dict(t: Block) -> None:
    other = perturb(type(t)(**_ctor(t)), seed=9)
    t.load_state_dict(other.state_dict())


def _new_parameter(t: Block) -> None:
    name, p = next(t.named_parameters())
    setattr(t, name, torch.nn.Parameter(p.detach() * 0.5))


def _negative_zero(t: Block) -> None:
    with torch.no_grad():
        p = next(t.parameters())
        p.view(-1)[1] = 0.0
    t(data())  # keeps blocks built with +0.0
    with torch.no_grad():
        p.view(-1)[1] = -0.0  # equal as floats, not as bits


def _ctor(t: Block) -> dict[str, object]:
    if isinstance(t, BlockAffine):
        return {"size": t.size, "block_size": t.block_size, "init": "orthogonal"}
    return {"size": t.size, "g1": t.g1, "g2": t.g2, "init": "orthogonal"}


@pytest.mark.parametrize(
    "change",
    [_inplace, _through_data, _load_state_dict, _new_parameter, _negative_zero],
    ids=["in_place", "through_data", "load_state_dict", "new_parameter", "negative_zero"],
)
@pytest.mark.parametrize("name", list(MAKERS))
def test_kept_blocks_are_never_stale(name: str, change: Callable[[Block], None]) -> None:
    t = perturb(MAKERS[name](torch.float32))
    x = data()
    with torch.no_grad():
        t(x)
        assert kept(t)
        change(t)
        assert not kept(t)
        assert rel(t(x), x @ t.materialize()) < 1e-6
        assert kept(t)


@pytest.mark.parametrize("name", list(MAKERS))
def test_dtype_and_device_conversions_rebuild(name: str) -> None:
    t = perturb(MAKERS[name](torch.float32))
    with torch.no_grad():
        t(data())
        d = t.double()
        x = data(torch.float64)
        y = d(x)
        assert y.dtype == torch.float64
        assert rel(y, x @ d.materialize()) < 1e-12


def test_ill_conditioned_factor_warns_on_every_inference_call() -> None:
    t = GPK(N, 8, 4, init="orthogonal")
    with torch.no_grad():
        t.B[3] = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1e-9]))
    x = data()
    with torch.no_grad():
        for _ in range(2):
            with pytest.warns(RuntimeWarning, match=r"GPK: .*B block 3"):
                y = t(x)
            assert torch.isfinite(y).all()
    assert not kept(t)


def test_a_new_guard_threshold_is_honoured() -> None:
    t = GPK(N, init="identity", max_condition=100.0)
    with torch.no_grad():
        t.A[0, 0] = 20.0
        x = data()
        quiet = t(x)  # condition 20: kept
        assert kept(t)
        t.max_condition = 10.0
        with pytest.warns(RuntimeWarning, match=r"A \(condition number 20\)"):
            clamped = t(x)
    assert not torch.equal(quiet, clamped)


@pytest.mark.parametrize("name", list(MAKERS))
def test_frozen_transform_passes_gradients_to_its_input(name: str) -> None:
    t = perturb(MAKERS[name](torch.float32)).requires_grad_(False)
    with torch.inference_mode():  # blocks kept under inference_mode serve autograd later
        t(data())
    x = data().requires_grad_(True)
    y = t(x)
    gy = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    y.backward(gy)
    assert x.grad is not None
    assert rel(x.grad, gy @ t.materialize().T) < 1e-6


def test_apply_blocks_accepts_any_leading_shape_and_layout() -> None:
    gen = torch.Generator().manual_seed(5)
    blocks = torch.randn(8, 32, 32, generator=gen)
    x = torch.randn(256, 6, generator=gen).T  # non-contiguous [6, 256]
    dense = torch.block_diag(*blocks.unbind(0))
    assert torch.allclose(_apply_blocks(x, blocks), x @ dense, rtol=1e-5, atol=1e-5)
    assert _apply_blocks(x[0], blocks).shape == (256,)
    assert _apply_blocks(x.contiguous(), blocks).is_contiguous()


@pytest.mark.parametrize("tokens", [1, 96, 97, 193])
def test_apply_blocks_in_chunks_matches_one_bmm(
    monkeypatch: pytest.MonkeyPatch, tokens: int
) -> None:
    """Large inputs go through bounded chunks (a partial last one included)."""
    gen = torch.Generator().manual_seed(6)
    blocks = torch.randn(8, 32, 32, generator=gen, dtype=torch.float64)
    x = torch.randn(tokens, 256, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        whole = _apply_blocks(x, blocks)
        monkeypatch.setattr(block, "_CHUNK_BYTES", 48 * 8 * 32 * 8)  # 48 tokens a chunk
        chunked = _apply_blocks(x, blocks)
    assert chunked.is_contiguous()
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-12)
    assert torch.allclose(chunked, x @ torch.block_diag(*blocks.unbind(0)), rtol=0, atol=1e-12)
    # with a graph to record, one differentiable bmm whatever the size
    xg = x.clone().requires_grad_(True)
    assert _apply_blocks(xg, blocks).requires_grad


def test_quantized_linear_applies_the_kept_blocks() -> None:
    """The layer path (InputQuantizer) calls the frozen transform: it takes the inference path."""
    lin = torch.nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.copy_(llm_like_weight(48, 64, seed=0))
    x = llm_like_activations(64, 64, seed=1)
    group = batquant.calibrate(lin, x, CalibSpec(epochs=1, samples=8), method="batquant")
    t = group.transform
    assert isinstance(t, GPK)
    qlin = group.quantized_linears()[0]
    qlin(x)  # grad enabled, parameters frozen
    assert kept(t)
    with torch.no_grad():
        assert rel(t(x), kron_blocks_matmul(x, *t.factors())) < 1e-6
