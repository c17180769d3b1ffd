"""TORQ's rotations: Schur-Horn balancing, the max-entropy block rotation, the method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import batquant
from batquant.algorithms.transforms import MaxEntropyBlockRotation, SchurHornBalance
from batquant.algorithms.transforms.rotations import code_entropy, schur_horn_rotation
from batquant.synthetic import llm_like_activations


def random_second_moment(n: int, seed: int, rank: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, rank or n)) * rng.lognormal(0, 2, (n, 1))
    return a @ a.T


@pytest.mark.parametrize("n", [1, 2, 3, 8, 33, 128])
@pytest.mark.parametrize("seed", [0, 1])
def test_schur_horn_rotation_is_orthogonal_and_equalises_the_diagonal(n, seed):
    s = random_second_moment(n, seed)
    q = schur_horn_rotation(s)
    assert np.abs(q.T @ q - np.eye(n)).max() <= 1e-12
    d = np.diag(q.T @ s @ q)
    assert np.abs(d - np.trace(s) / n).max() <= 1e-10 * np.trace(s) / n


def test_schur_horn_rotation_handles_rank_deficient_and_already_equal_inputs():
    s = random_second_moment(16, 3, rank=2)  # most directions carry no energy
    q = schur_horn_rotation(s)
    d = np.diag(q.T @ s @ q)
    assert np.abs(d - d.mean()).max() <= 1e-10 * d.mean()
    assert np.array_equal(schur_horn_rotation(np.eye(5) * 3.0), np.eye(5))  # nothing to do


def test_balance_equalises_block_energies_on_its_calibration_data():
    x = llm_like_activations(2048, 512, seed=0)
    t = SchurHornBalance(512).fit(x)
    before = (x.double().view(-1, 16, 32) ** 2).mean(dim=(0, 2))
    after = t.block_energies(x)
    assert float(before.max() / before.min()) > 10  # really unbalanced to start with
    assert float((after.max() - after.min()) / after.mean()) <= 1e-6
    p = t.materialize()
    assert float((p.T @ p - torch.eye(512)).abs().max()) <= 1e-6


@pytest.mark.parametrize(("size", "seed"), [(64, 0), (256, 1), (512, 2)])
def test_balance_from_a_random_covariance_equalises_block_energies(size, seed):
    s = random_second_moment(size, seed)
    t = SchurHornBalance(size).fit_covariance(torch.from_numpy(s))
    p = t.materialize().double()
    assert float((p.T @ p - torch.eye(size, dtype=torch.float64)).abs().max()) <= 1e-6
    energies = torch.diagonal(p.T @ torch.from_numpy(s) @ p).view(-1, 32).sum(dim=1)
    assert float((energies.max() - energies.min()) / energies.mean()) <= 1e-6
    with pytest.raises(ValueError, match="covariance must be a finite"):
        t.fit_covariance(np.zeros((3, 3)))


def test_the_shared_rotation_balances_only_the_pooled_energy():
    x = llm_like_activations(1024, 256, seed=1)
    per_position = SchurHornBalance(256).fit(x).block_energies(x)
    shared = SchurHornBalance(256, shared=True).fit(x).block_energies(x)
    spread = lambda e: float((e.max() - e.min()) / e.mean())  # noqa: E731
    assert spread(per_position) <= 1e-6
    assert spread(shared) <= 1e-6  # pooled block energy is what the shared one equalises
    pos_energy = SchurHornBalance(256, shared=True).fit(x)(x).double().view(-1, 8, 32) ** 2
    per_block_position = pos_energy.mean(0)  # [block, position]
    assert float((per_block_position.std(0) / per_block_position.mean(0)).max()) > 1e-3


@pytest.mark.parametrize("cls", [SchurHornBalance, MaxEntropyBlockRotation])
def test_rotations_follow_the_transform_interface(cls):
    x = llm_like_activations(512, 128, seed=2)
    t = cls(128).fit(x)
    p = t.materialize()
    assert float((p.T @ p - torch.eye(128)).abs().max()) <= 1e-6
    scale = float(x.abs().max())
    assert torch.allclose(t(x), x @ p, atol=1e-6 * scale)
    w = torch.randn(48, 128)
    assert torch.allclose(t.weight_transform(w), w @ p, atol=1e-5)  # P^{-T} = P
    y = x @ w.T
    assert torch.allclose(t(x) @ t.weight_transform(w).T, y, atol=1e-5 * float(y.abs().max()))
    assert torch.allclose(t.inverse()(t(x)), x, atol=1e-6 * scale)
    assert t.num_params == 0  # training-free: nothing for an optimiser


def test_max_entropy_rotation_raises_code_usage_entropy():
    x = llm_like_activations(2048, 256, seed=3)
    y = SchurHornBalance(256).fit(x)(x)
    blocks = y.view(-1, 32)
    identity = float(code_entropy(blocks))
    hadamard = float(code_entropy(blocks @ MaxEntropyBlockRotation.start(32).float()))
    r = MaxEntropyBlockRotation(256, init="best").fit(y, guard=False)
    fitted = float(code_entropy(r(y).view(-1, 32)))
    assert fitted >= max(identity, hadamard)
    assert fitted > identity + 0.1
    again = MaxEntropyBlockRotation(256, init="best").fit(y, guard=False)
    assert torch.equal(again.rotation, r.rotation)  # deterministic


def quantization_error(y: torch.Tensor) -> float:
    from mxref.torch import quantize_dequantize

    return float(((quantize_dequantize(y, "mxfp4") - y).double() ** 2).sum())


def test_the_guarded_search_raises_entropy_without_raising_the_error():
    x = llm_like_activations(2048, 256, seed=5)
    start = MaxEntropyBlockRotation(256, init="identity")
    r = MaxEntropyBlockRotation(256, init="identity").fit(x, guard=True, rows=1 << 20)
    assert not torch.equal(r.rotation, start.rotation)  # it found steps to take
    assert float(code_entropy(r(x).view(-1, 32))) > float(code_entropy(x.view(-1, 32)))
    # on the blocks it searched (all of them here) the MX error never rose
    assert quantization_error(r(x)) <= quantization_error(x) * (1 + 1e-6)


def test_the_search_starts_where_init_says():
    x = llm_like_activations(256, 64, seed=6)
    assert torch.equal(MaxEntropyBlockRotation(64, init="identity").rotation, torch.eye(32))
    hadamard = MaxEntropyBlockRotation.start(32).float()
    assert torch.equal(MaxEntropyBlockRotation(64).rotation, hadamard)
    no_steps = MaxEntropyBlockRotation(64).fit(x, iterations=0)
    assert torch.equal(no_steps.rotation, hadamard)
    assert MaxEntropyBlockRotation(64, init="identity").inverse().init == "identity"
    with pytest.raises(ValueError, match="init must be one of"):
        MaxEntropyBlockRotation(64, init="random")


def test_code_entropy_counts_magnitude_codes():
    levels = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    block = torch.cat([levels, -levels, levels, -levels])  # every magnitude 4 times
    assert float(code_entropy(block[None])) == pytest.approx(3.0, abs=1e-12)
    assert float(code_entropy(torch.zeros(4, 32))) == 0.0


@pytest.mark.parametrize("name", ["torq", "torq-abstract"])
def test_torq_is_a_registered_training_free_method(name):
    m = batquant.METHODS[name]
    assert not m.calibrated
    assert m.needs_inputs
    lin = torch.nn.Linear(256, 64)
    x = llm_like_activations(1024, 256, seed=4)
    a = batquant.quantize_linear(lin, x, method=name)
    b = batquant.quantize_linear(lin, x, method=name)
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError, match="training-free"):
        batquant.quantize_linear(lin, x, method=name, calib=batquant.CalibSpec())


def test_torq_balances_the_block_energies_of_its_output():
    from batquant.algorithms.methods import TransformContext

    x = llm_like_activations(2048, 512, seed=7)
    ctx = TransformContext(size=512, block_size=32, act_absmax=x.abs().amax(0),
                           weight_absmax=torch.ones(512), seed=0, inputs=x)  # fmt: skip
    t = batquant.METHODS["torq"].build_transform(ctx)
    p = t.materialize().double()
    assert float((p.T @ p - torch.eye(512, dtype=torch.float64)).abs().max()) <= 1e-6
    energies = (t(x).double().view(-1, 16, 32) ** 2).mean(dim=(0, 2))
    # the intra-block levels around the balance keep every block's energy
    assert float((energies.max() - energies.min()) / energies.mean()) <= 1e-5


def test_torq_through_the_whole_model_saves_and_loads_bit_identically(tmp_path):
    from tests.batquant.conftest import tiny_qwen3, token_ids

    model = tiny_qwen3()
    ids = token_ids(8, 32)
    q = batquant.quantize_model(model, ids, method="torq", config="W4A8KV4", progress=False)
    batquant.save_quantized(q, tmp_path / "torq")
    loaded = batquant.load_quantized(tmp_path / "torq", model)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, q(ids).logits)


def test_torq_beats_rtn_and_quarot_on_the_embedded_models_activations():
    """Trained weights and real text: layer 0's down_proj inputs of the shipped tiny Qwen3."""
    from batquant.demo import model_dir
    from batquant.loading import calibration_windows, load_model, load_tokenizer, read_token_ids

    folder = model_dir()
    tokenizer, model = load_tokenizer(folder), load_model(folder)
    linear = model.model.layers[0].mlp.down_proj
    seen: list[torch.Tensor] = []
    hook = linear.register_forward_pre_hook(lambda m, a: seen.append(a[0].flatten(0, -2)))
    with torch.no_grad():
        for text, seed in (("calib.txt", 0), ("heldout.txt", 1)):
            ids = read_token_ids(tokenizer, folder / text)
            model(calibration_windows(ids, 8, 256, seed=seed), use_cache=False)
    hook.remove()
    x_cal, x_held = seen
    with torch.no_grad():
        ref = linear(x_held)

    def error(method: str, seed: int = 0) -> float:
        q = batquant.quantize_linear(linear, x_cal, method=method, seed=seed)
        with torch.no_grad():
            return float(((q(x_held) - ref) ** 2).mean() / (ref**2).mean())

    torq = max(error("torq", seed) for seed in (0, 1))
    assert torq < error("rtn")
    assert torq < min(error("quarot", seed) for seed in (0, 1, 2))
