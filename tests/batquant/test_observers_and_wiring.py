"""The observer point (input statistics), and wiring that nn.Module sees and saves once."""

from __future__ import annotations

import pytest
import torch

import batquant
from batquant.algorithms.layer import InputQuantizer
from batquant.algorithms.observers import (
    InputStatistics,
    Statistic,
    observing,
    observing_transformed,
    row_stride,
)
from batquant.models import get_adapter
from batquant.pipeline.build import LayerPlan, build_layer, freeze_layer
from tests.batquant.conftest import tiny_qwen3

EVERYTHING = batquant.QuantConfig(*(batquant.TensorQuant("mxfp4"),) * 4, name="everything")


def test_statistics_accumulate_as_documented():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(3, 10, 8, generator=gen) for _ in range(4)]
    stats = InputStatistics(Statistic, stride=7, limit=9)
    for b in batches:
        stats.update(b)
    flat = [b.flatten(0, 1) for b in batches]
    assert stats.tokens == 120
    assert torch.equal(stats.absmax, torch.cat(flat).abs().amax(0))
    expected_rows = torch.cat([f[::7] for f in flat])[:9]  # every 7th row of each update
    assert torch.equal(stats.rows, expected_rows)
    gram = torch.zeros(8, 8, dtype=torch.float64)
    for f in flat:
        gram = gram + f.double().T @ f.double()
    assert stats.gram.dtype == torch.float64
    assert torch.equal(stats.gram, gram)
    only = InputStatistics([Statistic.ABSMAX])
    only.update(batches[0])
    assert only.rows is None
    assert only.gram is None
    assert row_stride(10_000, 4096) == 3
    with pytest.raises(ValueError, match="statistic must be one of"):
        InputStatistics(["hessian"])


def _layer_and_plan(method="batquant", config=EVERYTHING):
    model = tiny_qwen3(layers=1)
    adapter = get_adapter(model)
    plan = LayerPlan(adapter, adapter.geometry(model.config), batquant.get_method(method),
                     batquant.get_config(config), batquant.CalibSpec(), seed=0)  # fmt: skip
    return adapter.decoder_layers(model)[0], plan


def test_observers_see_raw_and_transformed_inputs_of_a_layer():
    layer, plan = _layer_and_plan(config="W4A4KV16")
    x = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1))
    kwargs = {"position_embeddings": (torch.ones(1, 16, 32), torch.zeros(1, 16, 32)),
              "attention_mask": None}  # fmt: skip
    streams = {"qkv": [layer.self_attn.q_proj], "up": [layer.mlp.gate_proj]}
    with torch.no_grad(), observing(streams, [Statistic.GRAM]) as raw:
        layer(x, **kwargs)
    with torch.no_grad():
        normed = layer.input_layernorm(x).flatten(0, 1).double()  # what q/k/v_proj read
    assert torch.equal(raw["qkv"].gram, normed.T @ normed)
    frozen = freeze_layer(build_layer(layer, plan, 0), "test")
    quantizer = frozen.batquant["qkv"]
    with torch.no_grad(), observing_transformed({"qkv": quantizer}, [Statistic.GRAM]) as seen:
        frozen(x, **kwargs)
    with torch.no_grad():
        h = quantizer.clip(quantizer.transform(frozen.input_layernorm(x))).flatten(0, 1).double()
    assert torch.equal(seen["qkv"].gram, h.T @ h)  # what the quantized linears consume
    assert seen["qkv"].tokens == 32  # q, k and v share one activation side: counted once
    assert quantizer.observer is None  # detached after the block


def test_shared_modules_are_visible_and_saved_once():
    layer, plan = _layer_and_plan()
    work = build_layer(layer, plan, 0)
    names = dict(work.named_modules(remove_duplicate=False))
    shared = work.batquant["qkv"]
    assert names["self_attn.q_proj.input_quantizer"] is shared  # nn.Module sees the wiring
    assert names["self_attn.batquant_kv.key_heads"] is work.batquant["key_heads"]
    assert names["self_attn.v_proj.heads.heads"] is work.batquant["value_heads"]
    fired = []
    shared.register_forward_hook(lambda *a: fired.append(1))
    x = torch.randn(1, 8, 64)
    kwargs = {"position_embeddings": (torch.ones(1, 8, 32), torch.zeros(1, 8, 32)),
              "attention_mask": None}  # fmt: skip
    with torch.no_grad():
        work(x, **kwargs)
    assert fired == [1, 1, 1]  # hooks reach the shared quantizer, once per linear of the group
    work.to(torch.float64)
    assert next(work.self_attn.k_proj.input_quantizer.parameters()).dtype == torch.float64
    state = work.state_dict()
    assert not [k for k in state if ".input_quantizer." in k or "batquant_kv.key_heads" in k
                or ".heads.heads." in k or k.startswith("batquant.kv.key_heads")]  # fmt: skip
    ids = {}
    for key, tensor in state.items():  # each tensor once
        assert tensor.data_ptr() not in ids, (key, ids.get(tensor.data_ptr()))
        ids[tensor.data_ptr()] = key
    other = build_layer(layer, plan, 0).to(torch.float64)
    other.load_state_dict(state, strict=True)  # the other paths are filled from the kept one
    for (name, a), (_, b) in zip(work.named_parameters(), other.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert isinstance(other.self_attn.q_proj.input_quantizer, InputQuantizer)


def test_a_stream_of_unknown_length_is_sampled_evenly_over_its_whole_length():
    gen = torch.Generator().manual_seed(2)
    updates = [torch.randn(n, 4, generator=gen) for n in (7, 30, 1, 0, 55, 13, 90, 8)]
    stats = InputStatistics([Statistic.ROWS], stride=None, limit=10)
    for u in updates:
        stats.update(u)
    every = torch.cat(updates)  # 204 rows
    assert stats.tokens == 204
    assert stats.stride == 16  # doubled until at most 2 x 10 rows were kept
    kept = every[::16]  # 13 rows at positions 0, 16, ..., 192: the whole stream
    assert torch.equal(stats.rows, kept[::2])  # evenly thinned to at most 10
    assert stats.rows.shape[0] <= 10


def test_calibrate_reuses_no_freed_graph_when_an_epoch_is_one_batch():
    """Two samples, batch 4, three epochs: the same batch tensor every step."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(2, 16, 64)
    group = batquant.calibrate(linear, x, batquant.CalibSpec(epochs=3), method="batquant",
                               config="W4A8")  # fmt: skip
    assert len(group.losses) == 3
