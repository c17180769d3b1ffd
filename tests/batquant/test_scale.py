"""Beyond one machine, in one process: disk offload end to end, and the data-parallel merges.

The multi-process runs (torchrun with gloo) and the multi-GB offload check
are in ``tests_distributed`` (``make test-distributed``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import batquant
from batquant.algorithms.observers import InputStatistics, Statistic, reduce_statistics
from batquant.loading import load_model
from batquant.pipeline.offload import is_offloaded
from batquant.pipeline.ranks import SINGLE, Ranks
from batquant.pipeline.saving import INDEX_FILE, load_quantized, save_quantized
from tests.batquant.conftest import tiny_qwen3, tiny_qwen3_moe, token_ids


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "qwen3"
    tiny_qwen3(layers=3).save_pretrained(folder)
    return folder


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(token_ids(samples=2, seq_len=16, seed=9)).logits


@pytest.mark.parametrize("weights", ["rtn", "gptq"])
def test_disk_offload_is_bit_identical_to_the_in_memory_run(tmp_path, saved, weights):
    ids = token_ids(samples=4, seq_len=32)
    kwargs = {"method": "batquant", "config": "W4A8KV8", "calib": batquant.CalibSpec(epochs=1),
              "progress": False, "weight_quantizer": weights}  # fmt: skip
    memory = batquant.quantize_model(load_model(saved), ids, cache_dir=tmp_path / "a", **kwargs)
    offloaded = load_model(saved, offload="disk", offload_dir=tmp_path / "conv")
    assert all(is_offloaded(layer) for layer in offloaded.model.layers)
    disk = batquant.quantize_model(offloaded, ids, cache_dir=tmp_path / "b", inplace=True,
                                   offload="disk", **kwargs)  # fmt: skip
    # every quantized layer lives in its checkpoint, read when it runs
    assert all(is_offloaded(layer) for layer in disk.model.layers)
    assert torch.equal(logits(memory), logits(disk))
    save_quantized(memory, tmp_path / "out-memory")
    save_quantized(disk, tmp_path / "out-disk")
    assert (tmp_path / "out-disk" / INDEX_FILE).is_file()
    one = load_file(str(tmp_path / "out-memory" / "quantized.safetensors"))
    shards: dict[str, torch.Tensor] = {}
    for shard in sorted((tmp_path / "out-disk").glob("quantized-*.safetensors")):
        shards.update(load_file(str(shard)))
    assert one.keys() == shards.keys()
    assert all(torch.equal(one[k], shards[k]) for k in one)
    # the sharded folder loads like the single file
    again = load_quantized(tmp_path / "out-disk", load_model(saved))
    assert torch.equal(logits(again), logits(memory))


def test_an_interrupted_offloaded_run_resumes_bit_identical(tmp_path, saved, monkeypatch):
    ids = token_ids(samples=4, seq_len=32)
    kwargs = {"method": "batquant", "config": "W4A8KV8", "calib": batquant.CalibSpec(epochs=1),
              "progress": False, "inplace": True, "offload": "disk"}  # fmt: skip
    whole = batquant.quantize_model(load_model(saved, offload="disk"), ids,
                                    cache_dir=tmp_path / "whole", **kwargs)  # fmt: skip
    from batquant.pipeline import sequential

    real = sequential._Runner._layer

    def stop_at_layer_two(self, index, *args, **kw):  # type: ignore[no-untyped-def]
        if index == 2:
            raise KeyboardInterrupt
        return real(self, index, *args, **kw)

    monkeypatch.setattr(sequential._Runner, "_layer", stop_at_layer_two)
    with pytest.raises(KeyboardInterrupt):
        batquant.quantize_model(load_model(saved, offload="disk"), ids,
                                cache_dir=tmp_path / "cut", **kwargs)  # fmt: skip
    monkeypatch.setattr(sequential._Runner, "_layer", real)
    resumed = batquant.quantize_model(load_model(saved, offload="disk"), ids,
                                      cache_dir=tmp_path / "cut", **kwargs)  # fmt: skip
    assert [s.get("resumed", False) for s in resumed.batquant_info["layers"]] == \
        [True, True, False]  # fmt: skip
    assert torch.equal(logits(whole), logits(resumed))


def test_an_moe_model_offloads_too(tmp_path):
    folder = tmp_path / "moe"
    tiny_qwen3_moe().save_pretrained(folder)
    ids = token_ids(samples=4, seq_len=32)
    kwargs = {"method": "rtn", "config": "W4A8KV8", "progress": False}
    memory = batquant.quantize_model(load_model(folder), ids, **kwargs)
    disk = batquant.quantize_model(load_model(folder, offload="disk", offload_dir=tmp_path / "c"),
                                   ids, cache_dir=tmp_path / "run", inplace=True, offload="disk",
                                   **kwargs)  # fmt: skip
    assert torch.equal(logits(memory), logits(disk))


@pytest.mark.parametrize(("offload", "model_kind", "extra", "needle"), [
    ("tape", "disk", {}, "offload must be None or 'disk'"),
    ("disk", "memory", {"inplace": True}, "the model is in memory"),
    (None, "disk", {"inplace": True}, "pass offload='disk'"),
    ("disk", "disk", {"inplace": True, "cache_dir": None}, "give a cache_dir"),
    ("disk", "disk", {"inplace": False}, "pass inplace=True"),
])  # fmt: skip
def test_offload_arguments_that_do_not_fit_are_errors(tmp_path, saved, offload, model_kind,
                                                      extra, needle):  # fmt: skip
    model = load_model(saved, offload="disk") if model_kind == "disk" else load_model(saved)
    kwargs = {"cache_dir": tmp_path / "run", **extra}
    with pytest.raises(ValueError, match=needle):
        batquant.quantize_model(model, token_ids(samples=2, seq_len=16), method="rtn",
                                progress=False, offload=offload, **kwargs)  # fmt: skip


def test_load_model_offload_errors(tmp_path, saved):
    with pytest.raises(ValueError, match="offload must be None or 'disk'"):
        load_model(saved, offload="ram")
    with pytest.raises(ValueError, match="offload_dir: only used with offload='disk'"):
        load_model(saved, offload_dir=tmp_path)


# -- the data-parallel merges ------------------------------------------------------------


class _Side:
    """One of two ranks that are threads of this process: each collective meets the other."""

    def __init__(self, rank: int, barrier: Barrier, slots: list[object]) -> None:
        self.rank, self.barrier, self.slots = rank, barrier, slots

    def _both(self, value: object, combine: Callable[[Any, Any], Any]) -> Any:
        self.slots[self.rank] = value
        self.barrier.wait()
        out = combine(self.slots[0], self.slots[1])
        self.barrier.wait()
        return out

    def reduce(self, tensor: torch.Tensor, op: str, where: str) -> torch.Tensor:
        return self._both(tensor, torch.add if op == "sum" else torch.maximum)

    def gather(self, value: object, where: str) -> list[object]:
        return self._both(value, lambda a, b: [a, b])


def reduce_on_two_ranks(rank0: list[InputStatistics], rank1: list[InputStatistics]) -> None:
    """:func:`reduce_statistics` as two processes run it, on two threads."""
    barrier, slots = Barrier(2), [None, None]
    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(reduce_statistics, stats, _Side(r, barrier, slots), "test")
                for r, stats in enumerate((rank0, rank1))]  # fmt: skip
        for future in done:
            future.result()


@pytest.mark.parametrize("limit", [37, 4096])
def test_placed_rows_merge_into_the_single_process_sample(limit):
    gen = torch.Generator().manual_seed(0)
    batches = [[0, 1, 2, 3], [4, 5, 6, 7]]
    seq, width = 16, 8
    data = torch.randn(8, seq, width, generator=gen)
    wanted = {Statistic.ROWS, Statistic.ABSMAX, Statistic.GRAM}
    one = InputStatistics(wanted, stride=3, limit=limit)
    for batch in batches:
        one.update(data[batch])
    ranks = [InputStatistics(wanted, stride=3, limit=limit) for _ in range(2)]
    for b, batch in enumerate(batches):
        for r, stats in enumerate(ranks):
            mine = [i for i in batch if i % 2 == r]
            positions = torch.cat([torch.arange(batch.index(i) * seq, (batch.index(i) + 1) * seq)
                                   for i in mine])  # fmt: skip
            stats.place(b, positions)
            stats.update(data[mine])
    reduce_on_two_ranks([ranks[0]], [ranks[1]])
    for stats in ranks:
        assert stats.tokens == one.tokens
        assert torch.equal(stats.rows, one.rows)
        assert torch.equal(stats.absmax, one.absmax)
        assert torch.allclose(stats.gram, one.gram, rtol=1e-12)  # float64 sums, another order


def test_a_single_process_has_one_rank_that_owns_everything():
    assert Ranks.of_process_group() == SINGLE
    assert SINGLE.own(range(5)) == [0, 1, 2, 3, 4]
    t = torch.ones(3)
    assert SINGLE.reduce(t, "sum", "x") is t
    assert Ranks(1, 3).own(range(7)) == [1, 4]
