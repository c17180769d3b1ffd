"""batquant.algorithms.transforms: the interface, every transform's algebra, guard and errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from batquant.algorithms.transforms import (
    GPK,
    BlockAffine,
    BlockHadamard,
    ComposedTransform,
    GlobalHadamard,
    GlobalKronecker,
    NaiveKronecker,
    SmoothScale,
    Transform,
    TransformInit,
    hadamard_matrix,
)
from batquant.algorithms.transforms.block import kron_blocks_matmul

N = 256

Factory = Callable[[torch.dtype], Transform]


def _smooth(dtype: torch.dtype, learnable: bool = True) -> SmoothScale:
    gen = torch.Generator().manual_seed(7)
    act = torch.rand(N, generator=gen, dtype=torch.float64) * 20 + 0.1
    wgt = torch.rand(N, generator=gen, dtype=torch.float64) + 0.05
    return SmoothScale(N, alpha=0.5, learnable=learnable, dtype=dtype).init_from_stats(act, wgt)


FACTORIES: dict[str, Factory] = {
    "gpk": lambda dt: GPK(N, 8, 4, init="orthogonal", seed=1, dtype=dt),
    "gpk_4x8": lambda dt: GPK(N, 4, 8, init="orthogonal", seed=1, dtype=dt),
    "naive": lambda dt: NaiveKronecker(N, 8, 4, init="orthogonal", seed=2, dtype=dt),
    "block_affine": lambda dt: BlockAffine(N, 32, init="orthogonal", seed=3, dtype=dt),
    "global_kron": lambda dt: GlobalKronecker(N, init="orthogonal", seed=4, dtype=dt),
    "global_kron_8x32": lambda dt: GlobalKronecker(N, 8, 32, init="orthogonal", dtype=dt),
    "block_hadamard": lambda dt: BlockHadamard(N, 32, random_signs=True, seed=5, dtype=dt),
    "global_hadamard": lambda dt: GlobalHadamard(N, seed=6, dtype=dt),
    "global_hadamard_96": lambda dt: GlobalHadamard(96, seed=6, dtype=dt),
    "global_hadamard_fallback": lambda dt: GlobalHadamard(8 * 43, seed=6, dtype=dt),
    "smooth": _smooth,
    "composed": lambda dt: ComposedTransform(
        _smooth(dt), GlobalKronecker(N, init="orthogonal", seed=8, dtype=dt)
    ),
}
LEARNABLE = ["gpk", "naive", "block_affine", "global_kron", "smooth", "composed"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frobenius norm of the difference relative to the reference ``b``."""
    return float((a - b).detach().norm() / b.detach().norm())


def perturb(t: Transform, seed: int = 0) -> Transform:
    """Move every parameter off its (orthogonal) start, keeping it well conditioned."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in t.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if p.ndim == 1:  # scales: multiplicative, so they stay positive
                p.mul_(torch.exp(0.3 * noise))
            else:
                p.add_(0.1 * noise)
    return t


def data(n: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 40, n, generator=gen, dtype=torch.float64).to(dtype)
    w = torch.randn(48, n, generator=gen, dtype=torch.float64).to(dtype)
    return x, w


# -- parameter counts (paper Table 1) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "count"),
    [
        (lambda: GPK(4096, 8, 4), 2112),
        (lambda: NaiveKronecker(4096, 8, 4), 10240),
        (lambda: BlockAffine(4096, 32), 131072),
        (lambda: GlobalKronecker(4096), 8192),
        (lambda: BlockHadamard(4096, 32), 0),
        (lambda: GlobalHadamard(4096), 0),
        (lambda: SmoothScale(4096), 0),
        (lambda: SmoothScale(4096, learnable=True), 4096),
        (
            lambda: ComposedTransform(SmoothScale(4096, learnable=True), GlobalKronecker(4096)),
            12288,
        ),
    ],
    ids=[
        "gpk",
        "naive",
        "block_affine",
        "global_kron",
        "block_had",
        "global_had",
        "smooth",
        "smooth_learnable",
        "flatquant",
    ],
)
def test_param_counts_match_table_1(make: Callable[[], Transform], count: int) -> None:
    t = make()
    assert t.num_params == count
    assert t.learnable == (count > 0)


def test_global_kronecker_default_factors_are_balanced() -> None:
    assert (GlobalKronecker(4096).n1, GlobalKronecker(4096).n2) == (64, 64)
    assert (GlobalKronecker(96).n1, GlobalKronecker(96).n2) == (8, 12)
    assert (GlobalKronecker(4096, n1=16).n1, GlobalKronecker(4096, n1=16).n2) == (16, 256)


# -- the algebra ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "perturbed"),
    [(name, False) for name in FACTORIES] + [(name, True) for name in LEARNABLE],
)
def test_forward_and_weight_side_preserve_the_product(name: str, perturbed: bool) -> None:
    """x P (W P^{-T})^T == x W^T, from the orthogonal start and off it."""
    t = FACTORIES[name](torch.float32)
    if perturbed:
        perturb(t)
    x, w = data(t.size)
    with torch.no_grad():
        got = t(x) @ t.weight_transform(w).T
    assert rel(got, x @ w.T) < 1e-5


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_forward_equals_dense_materialize(name: str, dtype: torch.dtype, tol: float) -> None:
    t = perturb(FACTORIES[name](dtype))
    x, w = data(t.size, dtype)
    with torch.no_grad():
        p = t.materialize()
        assert p.shape == (t.size, t.size)
        assert p.dtype == dtype
        assert rel(t(x), x @ p) < tol
        # the weight side is W P^{-T}, P inverted densely in float64
        p_inv_t = torch.linalg.inv(p.double()).T.to(dtype)
        assert rel(t.weight_transform(w), w @ p_inv_t) < tol


@pytest.mark.parametrize("name", list(FACTORIES))
def test_inverse_undoes_the_transform(name: str) -> None:
    t = perturb(FACTORIES[name](torch.float32))
    x, _ = data(t.size)
    with torch.no_grad():
        inv = t.inverse()
        eye = torch.eye(t.size)
        assert float((t.materialize() @ inv.materialize() - eye).abs().max()) < 2e-5
        assert rel(inv(t(x)), x) < 1e-5
    if not isinstance(t, ComposedTransform):
        assert type(inv) is type(t)
    assert inv.num_params == t.num_params
    # detached copies: training the inverse does not touch the original
    assert all(p.data_ptr() != q.data_ptr() for p in inv.parameters() for q in t.parameters())
    with torch.no_grad():
        before = t.materialize()
        for p in inv.parameters():
            p.add_(0.5)
        assert torch.equal(t.materialize(), before)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GPK(N, 8, 4, init="orthogonal"),
        lambda: NaiveKronecker(N, 4, 8, init="orthogonal"),
        lambda: BlockAffine(N, 32, init="orthogonal"),
        lambda: BlockHadamard(N, 32, random_signs=True),
        lambda: GPK(N, 4, 4, init="orthogonal"),
    ],
    ids=["gpk", "naive", "block_affine", "block_hadamard", "gpk_block16"],
)
def test_block_transforms_stay_inside_their_blocks(make: Callable[[], Transform]) -> None:
    t = make()
    g = getattr(t, "block_size")  # noqa: B009 - every block transform has one
    with torch.no_grad():
        p = perturb(t).materialize()
    block_id = torch.arange(N) // g
    off_block = block_id[:, None] != block_id[None, :]
    assert torch.all(p[off_block] == 0)
    assert torch.all(p.reshape(N // g, g, N // g, g).diagonal(dim1=0, dim2=2).abs().sum((0, 1)) > 0)


def test_gpk_block_is_kron_of_b_transposed_and_a() -> None:
    """The documented convention: Algorithm 1 computes B_i V A, i.e. x @ kron(B_i^T, A)."""
    t = perturb(GPK(64, 8, 4, init="orthogonal", dtype=torch.float64))
    a, b = t.A.detach(), t.B.detach()
    dense = torch.block_diag(*[torch.kron(b[i].T.contiguous(), a) for i in range(2)])
    assert torch.allclose(t.materialize(), dense, rtol=0, atol=1e-15)
    x = torch.randn(5, 64, dtype=torch.float64)
    # Algorithm 1 literally, block by block: reshape to [g2, g1], then B_i V A
    blocks = [
        (b[i] @ x[:, 32 * i : 32 * i + 32].reshape(5, 4, 8) @ a).reshape(5, 32) for i in range(2)
    ]
    manual = torch.cat(blocks, dim=-1)
    with torch.no_grad():
        assert torch.allclose(t(x), manual, rtol=0, atol=1e-13)
        # weight side: the same machinery with (A^{-T}, B_i^{-T})
        w = torch.randn(7, 64, dtype=torch.float64)
        expect = kron_blocks_matmul(w, torch.linalg.inv(a).T, torch.linalg.inv(b).mT)
        assert torch.allclose(t.weight_transform(w), expect, rtol=0, atol=1e-12)


def test_gpk_is_naive_kronecker_with_a_shared_a() -> None:
    g = perturb(GPK(N, 8, 4, init="orthogonal"))
    naive = NaiveKronecker.from_factors(g.A.detach().expand(N // 32, 8, 8), g.B.detach())
    x, _ = data(N)
    with torch.no_grad():
        assert rel(g(x), naive(x)) < 1e-6


def test_composed_is_the_product_in_order() -> None:
    s, k = (
        _smooth(torch.float64),
        perturb(GlobalKronecker(N, init="orthogonal", dtype=torch.float64)),
    )
    c = ComposedTransform(s, k)
    with torch.no_grad():
        assert torch.allclose(c.materialize(), s.materialize() @ k.materialize(), atol=1e-13)
        inv = c.inverse()
        assert isinstance(inv.transforms[0], GlobalKronecker)
        assert isinstance(inv.transforms[1], SmoothScale)
    assert c.num_params == s.num_params + k.num_params


# -- Hadamard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [GPK, NaiveKronecker])
@pytest.mark.parametrize(("g1", "g2"), [(8, 4), (4, 8), (2, 16)])
def test_kronecker_hadamard_init_is_block_hadamard(cls: type, g1: int, g2: int) -> None:
    """H_32 = H_g2 kron H_g1 (Sylvester): GPK starts exactly at BRQ's rotation."""
    t = cls(4096, g1, g2, init="hadamard")
    with torch.no_grad():
        assert torch.equal(t.materialize(), BlockHadamard(4096, 32).materialize())


def test_block_affine_and_global_kronecker_hadamard_init() -> None:
    with torch.no_grad():
        assert torch.equal(
            BlockAffine(N, 32, init="hadamard").materialize(), BlockHadamard(N, 32).materialize()
        )
        p = GlobalKronecker(N, init=TransformInit.HADAMARD, dtype=torch.float64).materialize()
    assert torch.allclose(p * math.sqrt(N), hadamard_matrix(N), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 12, 20, 24, 28, 32, 36, 44, 60, 96, 160, 224])
def test_hadamard_matrix_is_hadamard(n: int) -> None:
    h = hadamard_matrix(n)
    assert torch.all(h.abs() == 1)
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


def test_hadamard_matrix_rejects_unreachable_orders() -> None:
    with pytest.raises(ValueError, match="order 172"):
        hadamard_matrix(172)  # 4 x 43: 171 and 85 are not primes


@pytest.mark.parametrize(("n", "is_hadamard"), [(96, True), (160, True), (8 * 43, False)])
def test_global_hadamard_is_orthogonal(n: int, is_hadamard: bool) -> None:
    t = GlobalHadamard(n, seed=3, dtype=torch.float64)
    p = t.materialize()
    assert torch.allclose(p @ p.T, torch.eye(n, dtype=torch.float64), rtol=0, atol=1e-13)
    assert t.is_hadamard == is_hadamard
    if is_hadamard:
        assert torch.allclose(p.abs() * math.sqrt(n), torch.ones(n, n, dtype=torch.float64))


def test_global_hadamard_4096_is_a_signed_sylvester_rotation() -> None:
    t = GlobalHadamard(4096, seed=0, dtype=torch.float64)
    assert (t.n1, t.n2) == (64, 64)
    # P = D kron(H_64, H_64) / 64 = D H_4096 / 64 (Sylvester), never formed densely
    assert torch.equal(t.L * 8, hadamard_matrix(64))
    assert torch.equal(t.R * 8, hadamard_matrix(64))
    assert torch.all(t.signs.abs() == 1)
    assert 1500 < int((t.signs < 0).sum()) < 2600  # random, not all one sign
    x = torch.randn(8, 4096, dtype=torch.float64)
    expect = (x * t.signs) @ hadamard_matrix(4096) / 64
    assert torch.allclose(t(x), expect, rtol=0, atol=1e-12)
    assert torch.allclose(t(x).norm(dim=-1), x.norm(dim=-1), rtol=1e-12)


def test_fixed_transforms_differ_by_seed_only_when_random() -> None:
    with torch.no_grad():
        a, b = GlobalHadamard(N, seed=0).materialize(), GlobalHadamard(N, seed=1).materialize()
        assert not torch.equal(a, b)
        assert torch.equal(a, GlobalHadamard(N, seed=0).materialize())
        assert torch.equal(
            BlockHadamard(N, seed=0).materialize(), BlockHadamard(N, seed=1).materialize()
        )


# -- SmoothScale ------------------------------------------------------------------------------


def test_smooth_scale_follows_smoothquant() -> None:
    act = torch.tensor([4.0, 9.0, 1.0, 0.0] * 8)
    wgt = torch.tensor([1.0, 4.0, 0.25, 2.0] * 8)
    t = SmoothScale(32, alpha=0.5).init_from_stats(act, wgt)
    expect = act.double().clamp(min=1e-5).sqrt() / wgt.double().sqrt()
    expect = expect.clamp(min=float(expect.max()) / t.max_condition)
    assert torch.allclose(t.scale.double(), expect, rtol=1e-7)
    assert float(t.scale[3]) > 0  # a dead channel is clamped, not zero
    x = torch.randn(5, 32)
    assert torch.allclose(t(x), x / t.scale, rtol=1e-6)
    assert torch.equal(SmoothScale(32).scale, torch.ones(32))


@pytest.mark.parametrize(
    ("act", "wgt", "match"),
    [
        (torch.ones(3), torch.ones(32), "act_absmax"),
        (torch.ones(32), -torch.ones(32), "weight_absmax"),
        (torch.full((32,), math.nan), torch.ones(32), "act_absmax"),
    ],
)
def test_smooth_scale_rejects_bad_stats(act: torch.Tensor, wgt: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SmoothScale(32).init_from_stats(act, wgt)


# -- condition guard --------------------------------------------------------------------------


def test_near_singular_gpk_factor_warns_and_stays_equivalent() -> None:
    t = GPK(N, 8, 4, init="orthogonal")
    with torch.no_grad():
        t.B[3] = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1e-9]))
        t.B[5, 1] = t.B[5, 0] * (1 + 1e-5)  # two nearly equal rows
    x, w = data(N)
    with pytest.warns(RuntimeWarning, match=r"GPK: .*B block 3 \(condition number 1e\+09\)"):
        y = t(x)
    with pytest.warns(RuntimeWarning, match=r"B block 5 \(condition number") as record:
        wt = t.weight_transform(w)
    assert len(record) == 1  # once per call, not once per block
    assert torch.isfinite(y).all()
    assert torch.isfinite(wt).all()
    assert rel(y @ wt.T, x @ w.T) < 1e-4
    with pytest.warns(RuntimeWarning, match="condition number"):
        p = t.materialize()
    assert torch.linalg.cond(p[96:128, 96:128].double()) <= t.max_condition * 1.01


@pytest.mark.parametrize(
    ("make", "factor"),
    [
        (lambda: GPK(N, init="orthogonal"), "A"),
        (lambda: NaiveKronecker(N, init="orthogonal"), "A"),
        (lambda: BlockAffine(N, init="orthogonal"), "blocks"),
        (lambda: GlobalKronecker(N, init="orthogonal"), "R"),
    ],
    ids=["gpk_A", "naive_A", "block_affine", "global_kron_R"],
)
def test_singular_factor_of_every_transform_is_repaired(
    make: Callable[[], Transform], factor: str
) -> None:
    t = make()
    param = getattr(t, factor)
    with torch.no_grad():
        target = param if param.ndim == 2 else param[1]
        target[0] = 0.0  # exactly singular
    x, w = data(N)
    with pytest.warns(RuntimeWarning, match=rf"{type(t).__name__}: .*condition number"):
        y = t(x) @ t.weight_transform(w).T
    assert torch.isfinite(y).all()
    assert rel(y, x @ w.T) < 1e-4


def test_smooth_scale_zero_is_repaired() -> None:
    t = _smooth(torch.float32, learnable=True)
    with torch.no_grad():
        t.scale[7] = 0.0
    x, w = data(N)
    with pytest.warns(RuntimeWarning, match=r"SmoothScale: .*s channel 7 \(condition number inf"):
        y = t(x) @ t.weight_transform(w).T
    assert torch.isfinite(y).all()
    assert rel(y, x @ w.T) < 1e-5


def test_guard_threshold_is_per_instance() -> None:
    t = GPK(N, init="identity", max_condition=10.0)
    with torch.no_grad():
        t.A[0, 0] = 20.0
    with pytest.warns(RuntimeWarning, match=r"A \(condition number 20\)"):
        t(torch.randn(2, N))
    t.max_condition = 100.0
    t(torch.randn(2, N))  # no warning (filterwarnings = error would raise)


def test_non_finite_factor_raises() -> None:
    t = GPK(N)
    with torch.no_grad():
        t.B[2, 0, 0] = math.inf
    with pytest.raises(ValueError, match="factor B has a NaN or Inf"):
        t(torch.randn(2, N))


def test_gradient_flows_through_the_fallback() -> None:
    t = GPK(N, init="orthogonal")
    with torch.no_grad():
        t.B[0] = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    x, w = data(N)
    with pytest.warns(RuntimeWarning, match="condition number"):
        loss = (t(x) @ t.weight_transform(w).T - x @ w.T).square().mean() + t(x).square().mean()
    loss.backward()
    assert t.B.grad is not None
    assert torch.isfinite(t.B.grad).all()


# -- gradients and determinism ----------------------------------------------------------------


@pytest.mark.parametrize("name", LEARNABLE)
def test_gradients_reach_every_parameter(name: str) -> None:
    t = perturb(FACTORIES[name](torch.float32))
    x, w = data(t.size)
    # a loss that depends on both sides, as calibration's does
    loss = (t(x) @ t.weight_transform(w).T).square().mean() + t.weight_transform(w).abs().mean()
    loss.backward()
    params = list(t.named_parameters())
    assert params
    for pname, p in params:
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert float(p.grad.abs().max()) > 0, pname


@pytest.mark.parametrize("cls", [GPK, NaiveKronecker, BlockAffine, GlobalKronecker])
def test_orthogonal_init_is_deterministic(cls: type) -> None:
    a, b, c = (cls(N, init="orthogonal", seed=s) for s in (5, 5, 6))
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
    with torch.no_grad():
        p = a.materialize().double()
    assert torch.allclose(p @ p.T, torch.eye(N, dtype=torch.float64), atol=1e-5)


def test_identity_init_is_a_no_op() -> None:
    x, _ = data(N)
    for t in (GPK(N), NaiveKronecker(N), BlockAffine(N), GlobalKronecker(N), SmoothScale(N)):
        with torch.no_grad():
            assert torch.equal(t(x), x), type(t).__name__


def test_parameters_are_float32_by_default_and_follow_dtype() -> None:
    assert GPK(N).A.dtype == torch.float32
    t = GPK(N, dtype=torch.float64)
    assert isinstance(t.A, torch.nn.Parameter)
    assert t.dtype == torch.float64
    assert BlockHadamard(N, dtype=torch.float64).dtype == torch.float64


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: GPK(100), ValueError, r"size=100 is not a multiple of block_size=32"),
        (lambda: BlockAffine(100, 32), ValueError, r"size=100 .* block_size=32"),
        (lambda: BlockHadamard(48, 32), ValueError, r"size=48 .* block_size=32"),
        (lambda: GPK(256, 8, 8, block_size=32), ValueError, r"block_size=32 must equal g1 \* g2"),
        (lambda: NaiveKronecker(256, 4, 4, block_size=32), ValueError, "g1 \\* g2"),
        (lambda: GPK(256, 0, 4), ValueError, "g1 must be a positive int"),
        (lambda: GlobalKronecker(256, 8, 16), ValueError, "n1 \\* n2 must equal size"),
        (lambda: GPK(256, init="random"), ValueError, "init must be one of"),
        (lambda: GlobalKronecker(256, init="hadamrd"), ValueError, "init must be one of"),
        (lambda: BlockAffine(12 * 43, 43 * 4, init="hadamard"), ValueError, "init='hadamard'"),
        (lambda: GPK(256, seed=1.5), TypeError, "seed must be an int"),
        (lambda: GPK(256, dtype=torch.int32), TypeError, "dtype must be a floating"),
        (lambda: GPK("256"), TypeError, "size must be an int"),
        (lambda: SmoothScale(32, alpha=2.0), ValueError, "alpha must be in"),
        (lambda: ComposedTransform(GPK(256), GPK(512)), ValueError, "same size"),
        (lambda: ComposedTransform(), ValueError, "at least one"),
    ],
)
def test_construction_errors_name_the_argument(
    make: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_inputs_are_never_cast(name: str) -> None:
    t = FACTORIES[name](torch.float32)
    n = t.size
    with pytest.raises(TypeError, match=r"dtype torch\.float64 .* torch\.float32"):
        t(torch.randn(2, n, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"dtype torch\.float64 .* torch\.float32"):
        t.weight_transform(torch.randn(2, n, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"last dim N={n}"):
        t(torch.randn(2, n + 1))
    with pytest.raises(ValueError, match=rf"last dim N={n}"):
        t.weight_transform(torch.randn(n - 1, 2))
    with pytest.raises(ValueError, match=r"device meta .* cpu"):
        t(torch.empty(2, n, device="meta"))
    with pytest.raises(TypeError, match="floating point"):
        t(torch.ones(2, n, dtype=torch.int64))


def test_forward_keeps_leading_shape_and_accepts_non_contiguous_input() -> None:
    t = perturb(GPK(N, init="orthogonal"))
    x = torch.randn(N, 6).T  # non-contiguous [6, N]
    with torch.no_grad():
        assert t(x).shape == (6, N)
        assert torch.equal(t(x), t(x.contiguous()))
        assert t(torch.randn(N)).shape == (N,)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_module_conversions_and_state_dict_round_trip(name: str) -> None:
    t = perturb(FACTORIES[name](torch.float32))
    d = t.double()  # nn.Module conversions reach every parameter and buffer
    assert d.dtype == torch.float64
    x, _ = data(t.size, torch.float64)
    fresh = FACTORIES[name](torch.float64)
    fresh.load_state_dict(d.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), d(x))
