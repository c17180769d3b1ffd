"""The ``batquant`` command line and perplexity: results, and every bad input as exit 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import batquant
from batquant.cli import main
from tests.batquant.conftest import tiny_qwen3, tiny_qwen3_moe

CLI_VOCAB = 320
TEXT = " ".join(
    f"The function number {i} returns the value of the object in the module."
    for i in range(400)
)


def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of 300 tokens trained on :data:`TEXT`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3 and a byte-level BPE tokenizer of its vocabulary, saved as a checkpoint."""
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    fast = tokenizer()
    model = tiny_qwen3(vocab=CLI_VOCAB)
    assert len(fast) <= model.config.vocab_size
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("text")
    (folder / "calib.txt").write_text(TEXT)
    (folder / "eval.txt").write_text(TEXT[: len(TEXT) // 2])
    return folder / "calib.txt", folder / "eval.txt"


def run(*args: object) -> int:
    return main([str(a) for a in args])


def one_line_error(capsys: pytest.CaptureFixture[str], needle: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("batquant: error:"), err
    assert needle in err, err
    assert "Traceback" not in err


def test_calibrate_then_eval_prints_the_table(tmp_path, checkpoint, texts, capsys):
    calib, ev = texts
    out = tmp_path / "q"
    assert run("calibrate", "--model", checkpoint, "--method", "batquant", "--config",
               "W4A8KV8", "--calib", calib, "--out", out, "--samples", 4, "--seq-len", 32,
               "--epochs", 1, "--quiet") == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "batquant.json", "calibration.jsonl", "quantized.safetensors"]  # fmt: skip
    capsys.readouterr()
    report = tmp_path / "table.json"
    assert run("eval", "--model", checkpoint, "--quantized", out, "--ppl", ev, "--seq-len", 32,
               "--quiet", "--json", report) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "method" in text
    assert "recovery" in text
    assert "full precision" in text
    assert "batquant" in text
    assert "W4A8KV8" in text
    rows = json.loads(report.read_text())
    assert rows[0]["method"] == "full precision"
    assert rows[1]["method"] == "batquant"
    # the table's figures are the API's, at the CLI's default of 8 windows per pass
    model = batquant.loading.load_model(checkpoint)
    ids = batquant.loading.read_token_ids(batquant.loading.load_tokenizer(checkpoint), ev)
    assert rows[0]["ppl"] == batquant.perplexity(model, ids, seq_len=32, batch_size=8)
    q = batquant.load_quantized(out, model)
    assert rows[1]["ppl"] == batquant.perplexity(q, ids, seq_len=32, batch_size=8)


def test_resume_continues_an_unfinished_run(tmp_path, checkpoint, texts, capsys):
    calib, _ = texts
    out = tmp_path / "q"
    args = ["calibrate", "--model", checkpoint, "--method", "rtn", "--calib", calib,
            "--samples", 4, "--seq-len", 32, "--quiet", "--out", out]  # fmt: skip
    assert run(*args, "--resume") == 2
    one_line_error(capsys, "holds no unfinished run")
    assert run(*args) == 0
    capsys.readouterr()
    assert run(*args) == 2  # exists now
    one_line_error(capsys, "pass --force to replace it, or --resume")
    assert run(*args, "--force") == 0


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "no such checkpoint folder"),
        ("not-a-checkpoint", "not a checkpoint"),
        ("corrupt", "cannot load the"),
        ("architecture", "architecture 'GPT2LMHeadModel' has no adapter; supported:"),
        ("dims", "not a multiple of QuantConfig"),
        ("little-text", "too few for 1000 samples x 32 tokens"),
        ("training-free-epochs", "--epochs: method 'rtn' is training-free"),
        ("training-free-order", "--gradient-order: method 'rtn' is training-free"),
        ("bad-method", "method must be one of"),
        ("nan", "layer 0: the loss of batch 0 (epoch 0) is nan"),
        ("seq-len", "--seq-len 512 is longer than the model's max_position_embeddings 256"),
        ("min-expert-tokens", "min_expert_tokens: Qwen3ForCausalLM has no MoE experts"),
    ],
)
def test_bad_input_is_exit_two_with_one_line(tmp_path, checkpoint, texts, capsys, case, needle):
    import shutil

    calib, _ = texts
    model = checkpoint
    extra: list[object] = ["--samples", 4]
    method = "batquant"
    if case == "missing":
        model = tmp_path / "nope"
    elif case == "not-a-checkpoint":
        model = tmp_path / "empty"
        model.mkdir()
    elif case == "corrupt":
        model = tmp_path / "corrupt"
        shutil.copytree(checkpoint, model)
        (model / "model.safetensors").write_bytes(b"\x00" * 100)
    elif case == "architecture":
        model = tmp_path / "gpt2"
        shutil.copytree(checkpoint, model)
        cfg = json.loads((model / "config.json").read_text())
        cfg["architectures"] = ["GPT2LMHeadModel"]
        (model / "config.json").write_text(json.dumps(cfg))
    elif case == "dims":
        model = tmp_path / "narrow"
        tiny_qwen3(hidden=48, vocab=CLI_VOCAB).save_pretrained(model)
        for f in checkpoint.glob("tokenizer*"):
            shutil.copy(f, model / f.name)
    elif case == "little-text":
        extra = ["--samples", 1000]
    elif case == "training-free-epochs":
        method, extra = "rtn", ["--samples", 4, "--epochs", 2]
    elif case == "training-free-order":
        method, extra = "rtn", ["--samples", 4, "--gradient-order", "sample"]
    elif case == "bad-method":
        method = "nope"
    elif case == "nan":
        model = tmp_path / "nan"
        m = tiny_qwen3(vocab=CLI_VOCAB)
        with torch.no_grad():
            m.model.layers[0].mlp.down_proj.weight[0, 0] = float("inf")
        m.save_pretrained(model)
        for f in checkpoint.glob("tokenizer*"):
            shutil.copy(f, model / f.name)
        extra = ["--samples", 4, "--epochs", 1]
    elif case == "seq-len":
        extra = ["--samples", 1, "--seq-len", 512]
    elif case == "min-expert-tokens":
        method, extra = "rtn", ["--samples", 4, "--min-expert-tokens", 8]
    out = tmp_path / "out"
    rc = run("calibrate", "--model", model, "--method", method, "--calib", calib, "--out", out,
             "--seq-len", 32, "--quiet", *extra)  # fmt: skip
    assert rc == 2
    one_line_error(capsys, needle)


def test_resume_after_an_interruption_inside_the_first_layer(tmp_path, checkpoint, texts,
                                                            monkeypatch, capsys):  # fmt: skip
    """As ``timeout -s INT`` would: the run dies while layer 0 trains; --resume finishes it."""
    from batquant.pipeline import sequential

    calib, _ = texts
    args = ["calibrate", "--model", checkpoint, "--method", "batquant", "--calib", calib,
            "--samples", 8, "--seq-len", 32, "--epochs", 1, "--quiet"]  # fmt: skip
    assert run(*args, "--out", tmp_path / "whole") == 0
    original = sequential.forget
    calls = []

    def interrupted(layer):
        calls.append(1)
        if len(calls) == 1:  # after layer 0's first optimiser step
            raise KeyboardInterrupt
        return original(layer)

    monkeypatch.setattr(sequential, "forget", interrupted)
    out = tmp_path / "q"
    assert run(*args, "--out", out) == 130
    monkeypatch.undo()
    assert "interrupted; continue with --resume" in capsys.readouterr().err
    assert run(*args, "--out", out) == 2
    one_line_error(capsys, "pass --force to replace it, or --resume to continue")
    assert run(*args, "--out", out, "--resume") == 0
    whole = (tmp_path / "whole" / "quantized.safetensors").read_bytes()
    assert (out / "quantized.safetensors").read_bytes() == whole


def test_an_moe_checkpoint_calibrates_with_its_expert_threshold(tmp_path, checkpoint, texts):
    import shutil

    calib, _ = texts
    model = tmp_path / "moe"
    tiny_qwen3_moe(vocab=CLI_VOCAB).save_pretrained(model)
    for f in checkpoint.glob("tokenizer*"):
        shutil.copy(f, model / f.name)
    out = tmp_path / "q"
    assert run("calibrate", "--model", model, "--method", "rtn", "--calib", calib, "--out", out,
               "--samples", 4, "--seq-len", 32, "--min-expert-tokens", 100_000,
               "--quiet") == 0  # fmt: skip
    info = json.loads((out / "batquant.json").read_text())
    assert info["min_expert_tokens"] == 100_000
    assert len(info["layers"][0]["experts_kept_initial"]) == 8
    q = batquant.load_quantized(out, batquant.loading.load_model(model))
    assert q.model.layers[0].mlp.experts.num_experts == 8


def test_the_command_line_prints_nothing_but_its_own_output(tmp_path, checkpoint, texts):
    calib, _ = texts
    done = subprocess.run([sys.executable, "-m", "batquant", "calibrate", "--model", checkpoint,
                           "--method", "rtn", "--calib", calib, "--out", tmp_path / "q",
                           "--samples", "2", "--seq-len", "32", "--quiet"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("wrote ")


def test_nothing_the_user_gave_is_overwritten(tmp_path, checkpoint, texts, capsys):
    calib, ev = texts
    out = tmp_path / "keep"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    assert run("calibrate", "--model", checkpoint, "--method", "rtn", "--calib", calib,
               "--out", out, "--samples", 4, "--seq-len", 32, "--quiet") == 2  # fmt: skip
    one_line_error(capsys, "exists")
    assert (out / "mine.txt").read_text() == "precious"
    assert run("calibrate", "--model", checkpoint, "--method", "rtn", "--calib", calib,
               "--out", checkpoint / "sub", "--samples", 4, "--seq-len", 32) == 2  # fmt: skip
    one_line_error(capsys, "inside --model")
    assert run("eval", "--model", checkpoint, "--ppl", ev, "--json", calib, "--seq-len", 32) == 2
    one_line_error(capsys, "exists; choose a new file")


def test_eval_errors(tmp_path, checkpoint, texts, capsys):
    _, ev = texts
    short = tmp_path / "short.txt"
    short.write_text("The function number 1 returns the value.")
    assert run("eval", "--model", checkpoint, "--ppl", short, "--seq-len", 200) == 2
    one_line_error(capsys, "fewer than one window")
    assert run("eval", "--model", checkpoint, "--ppl", ev, "--seq-len", 100000) == 2
    one_line_error(capsys, "--seq-len 100000 is longer than the model's max_position_embeddings "
                           "256")  # fmt: skip
    assert run("eval", "--model", checkpoint, "--ppl", tmp_path / "none.txt", "--seq-len", 32) == 2
    one_line_error(capsys, "no such text file")
    assert run("eval", "--model", checkpoint, "--ppl", ev, "--quantized", tmp_path) == 2
    one_line_error(capsys, "batquant.json: not found")
    assert run("eval", "--model", checkpoint, "--ppl", ev, "--batch-size", 0) == 2
    one_line_error(capsys, "--batch-size must be >= 1; got 0")


def test_help_shows_examples_and_python_dash_m_works():
    for args in ([], ["calibrate"], ["eval"]):
        out = subprocess.run([sys.executable, "-m", "batquant", *args, "--help"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "example:" in out.stdout
        assert "batquant calibrate" in out.stdout or "batquant eval" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "batquant", "calibrate"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


# -- perplexity ------------------------------------------------------------------------------


def test_perplexity_is_the_mean_window_loss_exponentiated():
    model = tiny_qwen3()
    ids = torch.randint(0, 160, (100,), generator=torch.Generator().manual_seed(0))
    got = batquant.perplexity(model, ids, seq_len=32)  # 3 windows, 4 tokens dropped
    losses = []
    with torch.no_grad():
        for w in ids[:96].view(3, 32):
            logits = model(w[None]).logits[0]
            losses.append(torch.nn.functional.cross_entropy(logits[:-1], w[1:]).item())
    assert got == pytest.approx(math.exp(sum(losses) / 3), rel=1e-12)
    assert batquant.perplexity(model, ids[None], seq_len=32) == got


@pytest.mark.parametrize("config", [None, "W4A8KV4"])
def test_batched_perplexity_equals_one_window_at_a_time(config: str | None):
    model = tiny_qwen3()
    ids = torch.randint(0, 160, (7 * 32 + 5,), generator=torch.Generator().manual_seed(3))
    if config is not None:  # quantized activations and KV cache: still per token
        model = batquant.quantize_model(model, ids[:64].view(2, 32), method="quarot",
                                        config=config, progress=False)  # fmt: skip
    one = batquant.perplexity(model, ids, seq_len=32)
    for batch_size in (2, 3, 7, 64):  # uneven last batch, exactly all, more than all
        # float32 rounding only: a batched matmul may sum in another order
        assert batquant.perplexity(model, ids, seq_len=32, batch_size=batch_size) == (
            pytest.approx(one, rel=1e-5))


def test_perplexity_rejects_bad_input():
    model = tiny_qwen3()
    with pytest.raises(ValueError, match="fewer than one window"):
        batquant.perplexity(model, torch.arange(10), seq_len=32)
    with pytest.raises(ValueError, match="token_ids must be 1-D"):
        batquant.perplexity(model, torch.zeros(2, 40, dtype=torch.int64), seq_len=32)
    with pytest.raises(TypeError, match="LongTensor"):
        batquant.perplexity(model, torch.zeros(40), seq_len=32)
    with pytest.raises(ValueError, match="seq_len must be an int >= 2"):
        batquant.perplexity(model, torch.arange(40), seq_len=1)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        batquant.perplexity(model, torch.arange(40), seq_len=8, batch_size=0)


def test_gptq_calibrate_then_export_loads_without_the_checkpoint(tmp_path, checkpoint, texts,
                                                                  capsys):  # fmt: skip
    calib, ev = texts
    out, exported = tmp_path / "q", tmp_path / "export"
    assert run("calibrate", "--model", checkpoint, "--method", "rtn", "--config", "W4A16KV16",
               "--calib", calib, "--out", out, "--samples", 4, "--seq-len", 32, "--quiet",
               "--weight-quantizer", "gptq", "--act-order") == 0  # fmt: skip
    info = json.loads((out / "batquant.json").read_text())
    assert info["weight_quantizer"] == {"name": "gptq", "damping": 0.01, "block": 128,
                                        "act_order": True}  # fmt: skip
    capsys.readouterr()
    assert run("export", "--quantized", out, "--out", exported) == 0
    text = capsys.readouterr().out
    assert "4.25 bits per quantized weight" in text
    assert "plain: a compressed-tensors" in text
    names = {p.name for p in exported.iterdir()}
    assert {"MANIFEST", "model.safetensors", "tokenizer.json"} <= names
    model = batquant.loading.load_model(checkpoint)
    ids = batquant.loading.read_token_ids(batquant.loading.load_tokenizer(checkpoint), ev)
    saved = batquant.load_quantized(out, model)
    shutil_model = tmp_path / "moved"
    checkpoint.rename(shutil_model)  # the original checkpoint is gone
    try:
        again = batquant.load_export(exported)
        with torch.no_grad():
            assert torch.equal(saved(ids[None, :32]).logits, again(ids[None, :32]).logits)
    finally:
        shutil_model.rename(checkpoint)
    assert run("export", "--quantized", out, "--out", exported) == 2
    one_line_error(capsys, "exists; pass force=True (--force)")
    assert run("calibrate", "--model", checkpoint, "--calib", calib, "--out", tmp_path / "x",
               "--act-order") == 2  # fmt: skip
    one_line_error(capsys, "--act-order is a GPTQ setting")
    assert run("export", "--quantized", tmp_path / "nothing", "--out", tmp_path / "e2") == 2
    one_line_error(capsys, "not found; is")


# -- plot ------------------------------------------------------------------------------------


def test_plot_draws_block_magnitudes_and_loss_curves(tmp_path, checkpoint, texts, capsys):
    calib, ev = texts
    out = tmp_path / "q"
    assert run("calibrate", "--model", checkpoint, "--method", "batquant", "--config",
               "W4A4KV16", "--calib", calib, "--out", out, "--samples", 4, "--seq-len", 32,
               "--epochs", 1, "--quiet") == 0  # fmt: skip
    capsys.readouterr()
    blocks = tmp_path / "down.png"
    assert run("plot", "--model", checkpoint, "--quantized", out, "--layer", 1, "--module",
               "down_proj", "--text", ev, "--tokens", 48, "--out", blocks) == 0  # fmt: skip
    assert blocks.read_bytes()[:4] == b"\x89PNG"
    assert "layer 1 mlp.down_proj (batquant" in capsys.readouterr().out
    losses = tmp_path / "losses.png"
    assert run("plot", "--losses", out, "--out", losses) == 0
    assert losses.read_bytes()[:4] == b"\x89PNG"
    assert "2 layers" in capsys.readouterr().out
    # errors: one line, status 2, nothing overwritten
    assert run("plot", "--losses", out, "--out", losses) == 2
    one_line_error(capsys, "exists; choose a new file")
    assert run("plot", "--losses", out, "--layer", 1, "--out", tmp_path / "x.png") == 2
    one_line_error(capsys, "--layer belong to the block figure")
    assert run("plot", "--model", checkpoint, "--out", tmp_path / "x.png") == 2
    one_line_error(capsys, "needs --quantized, --layer, --module")
    assert run("plot", "--model", checkpoint, "--quantized", out, "--layer", 1, "--module",
               "nope", "--out", tmp_path / "x.png") == 2  # fmt: skip
    one_line_error(capsys, "module 'nope': no quantized linear of layer 1")
    assert not (tmp_path / "x.png").exists()
