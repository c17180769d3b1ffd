"""``CalibSpec.gradient_order="sample"``: one backward per sample, summed in sample order.

The loop's own arithmetic is checked here on small parameters, with two
data-parallel ranks played by two threads; the real ranks (torchrun with
gloo) on the tiny models are in ``tests_distributed``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from threading import Barrier

import pytest
import torch

import batquant
from batquant.algorithms.training import SampleTerm, Training, train
from batquant.config import CalibSpec, GradientOrder
from tests.batquant.conftest import tiny_qwen3, token_ids
from tests.batquant.test_scale import _Side

SAMPLES, WIDTH = 10, 6


def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(SAMPLES, 5, WIDTH, generator=gen), torch.randn(SAMPLES, 5, 2, generator=gen)


def parameters() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(WIDTH, 2, generator=gen).requires_grad_()
    clip = torch.randn(2, generator=gen).requires_grad_()
    unused = torch.randn(3, generator=gen).requires_grad_()  # no term reaches it
    return weight, clip, unused


class _ThreadRanks(_Side):
    """The training loop's reductions between two threads of this process."""

    def loss(self, value: float, parts: dict[str, float], where: str
             ) -> tuple[float, dict[str, float], list[int]]:  # fmt: skip
        both = self._both((value, parts), lambda a, b: [a, b])
        return both[0][0] + both[1][0], {}, []

    def gradients(self, params: list[torch.Tensor], where: str) -> None:
        raise AssertionError("the sample order does not all-reduce gradients")

    def rows(self, rows: torch.Tensor, where: str) -> list[torch.Tensor]:
        return self._both(rows.clone(), lambda a, b: [a, b])


def run(rank: int | None, spec: CalibSpec, reduction: _ThreadRanks | None = None
        ) -> tuple[list[float], tuple[torch.Tensor, ...]]:  # fmt: skip
    """Train the small problem; ``rank`` 0 or 1 owns the even or odd samples (None: all)."""
    x, y = data()
    weight, clip, unused = parameters()
    batches = [list(range(i, min(i + spec.batch_size, SAMPLES)))
               for i in range(0, SAMPLES, spec.batch_size)]  # fmt: skip
    per_sample = y[0].numel()

    def term(i: int, size: int) -> tuple[torch.Tensor, dict[str, float]]:
        out = torch.tanh(x[i] @ weight) * torch.sigmoid(clip)
        loss = ((out - y[i]) ** 2).sum() / (per_sample * size)
        return loss, {"fit": loss.item()}

    def terms(batch: list[int]) -> list[SampleTerm]:
        mine = [i for i in batch if rank is None or i % 2 == rank]
        return [(i, partial(term, i, len(batch))) for i in mine]

    def loss_of(batch: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        out = torch.tanh(x[batch] @ weight) * torch.sigmoid(clip)
        loss = torch.nn.functional.mse_loss(out, y[batch])
        return loss, {"fit": loss.item()}

    losses = train(Training([weight, unused], [clip], spec, batches, loss_of, where="test",
                            reduction=reduction, sample_terms=terms))  # fmt: skip
    return losses, (weight, clip, unused)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def test_the_order_is_a_policy_with_a_clear_error():
    assert CalibSpec().gradient_order is GradientOrder.BATCH
    assert CalibSpec(gradient_order="sample").gradient_order is GradientOrder.SAMPLE
    with pytest.raises(ValueError, match="CalibSpec.gradient_order must be one of 'batch', "
                                         "'sample'; got 'rows'"):  # fmt: skip
        CalibSpec(gradient_order="rows")


def test_a_step_sums_the_sample_gradients_in_sample_order():
    spec = CalibSpec(epochs=1, batch_size=SAMPLES, gradient_order="sample")
    _, (weight, clip, unused) = run(None, spec)
    # the one step's gradient is still in .grad: the per-sample gradients, added in order
    x, y = data()
    w0, c0, u0 = parameters()
    total = None
    for i in range(SAMPLES):
        out = torch.tanh(x[i] @ w0) * torch.sigmoid(c0)
        loss = ((out - y[i]) ** 2).sum() / (y[0].numel() * SAMPLES)
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, [w0, c0])])
        total = g if total is None else total + g
    assert weight.grad is not None
    assert clip.grad is not None
    assert torch.equal(bits(torch.cat([weight.grad.reshape(-1), clip.grad])), bits(total))
    # a parameter no sample reaches has no gradient, and AdamW leaves it alone
    assert unused.grad is None
    assert torch.equal(bits(unused), bits(u0))


def test_by_sample_the_loss_is_the_batch_loss():
    batch = CalibSpec(epochs=1, batch_size=4)
    sample = CalibSpec(epochs=1, batch_size=4, gradient_order="sample")
    first_batch, _ = run(None, batch)
    first_sample, _ = run(None, sample)
    # the same loss before any step; another float32 summation order
    assert first_sample[0] == pytest.approx(first_batch[0], rel=1e-6)


@pytest.mark.parametrize("batch_size", [4, 3])
def test_two_ranks_by_sample_equal_one_process_bit_for_bit(batch_size):
    spec = CalibSpec(epochs=2, batch_size=batch_size, gradient_order="sample")
    one_losses, one = run(None, spec)
    barrier, slots = Barrier(2), [None, None]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run, r, spec, _ThreadRanks(r, barrier, slots)) for r in (0, 1)]
        results = [f.result() for f in futures]
    for losses, params in results:
        assert losses == one_losses
        for a, b in zip(params, one, strict=True):
            assert torch.equal(bits(a), bits(b))


def test_a_caller_without_sample_terms_is_refused():
    weight = torch.zeros(2, requires_grad=True)
    spec = CalibSpec(epochs=1, gradient_order="sample")
    with pytest.raises(ValueError, match="needs the loss sample by sample"):
        train(Training([weight], [], spec, [[0]], lambda b: (weight.sum(), {}), where="here"))


def test_calibrate_by_sample_starts_at_the_batch_loss_and_repeats():
    gen = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(8, 16, 64, generator=gen)
    order = {"batch": CalibSpec(epochs=1, samples=8), "sample": CalibSpec(
        epochs=1, samples=8, gradient_order="sample")}  # fmt: skip
    losses = {name: batquant.calibrate(linear, x, method="batquant", config="W4A4",
                                       spec=spec, seed=0).losses
              for name, spec in order.items()}  # fmt: skip
    assert losses["sample"][0] == pytest.approx(losses["batch"][0], rel=1e-5)
    again = batquant.calibrate(linear, x, method="batquant", config="W4A4",
                               spec=order["sample"], seed=0).losses  # fmt: skip
    assert again == losses["sample"]


def test_a_model_by_sample_repeats_and_resumes_only_in_its_own_order(tmp_path):
    ids = token_ids(6, 32)
    sample = CalibSpec(epochs=1, gradient_order="sample")
    kwargs = dict(method="batquant", config="W4A8KV8", progress=False)
    a = batquant.quantize_model(tiny_qwen3(), ids, calib=sample, cache_dir=tmp_path / "run",
                                **kwargs)  # fmt: skip
    b = batquant.quantize_model(tiny_qwen3(), ids, calib=sample, **kwargs)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if p.is_floating_point():
            assert torch.equal(p, q), name
    first = [s["first_loss"] for s in a.batquant_info["layers"]]
    by_batch = batquant.quantize_model(tiny_qwen3(), ids, calib=CalibSpec(epochs=1), **kwargs)
    # every layer's first loss is the batch's (full-precision inputs: the same for both)
    assert first == pytest.approx([s["first_loss"] for s in by_batch.batquant_info["layers"]],
                                  rel=1e-5)  # fmt: skip
    # the run folder of one order is not resumed by the other
    with pytest.raises(ValueError, match="holds another calibration run"):
        batquant.quantize_model(tiny_qwen3(), ids, calib=CalibSpec(epochs=1),
                                cache_dir=tmp_path / "run", **kwargs)  # fmt: skip
