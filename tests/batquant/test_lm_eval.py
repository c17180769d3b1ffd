"""batquant.eval.lm_eval_model: a quantized model evaluated by lm-eval itself, offline.

The task is defined here, in a YAML file beside a local JSONL dataset, and
loaded through lm-eval's custom-task mechanism (``TaskManager(include_path=)``);
nothing is downloaded.  The tokenizer is word-level, so that lm-eval's split
of context and continuation is known exactly and every choice's
log-likelihood can be computed here, independently, from the model's logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import batquant
from tests.batquant.conftest import tiny_qwen3

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is an optional extra")

WORDS = [f"w{i}" for i in range(100)]
TASK = "batquant_tiny_mc"


def word_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


def loglikelihood(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, context: str,
                  continuation: str) -> float:  # fmt: skip
    ctx = tokenizer(context)["input_ids"]
    cont = tokenizer(continuation)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


def test_lm_eval_runs_a_local_multiple_choice_task_on_the_quantized_model(tmp_path: Path):
    tokenizer = word_tokenizer()
    fp = tiny_qwen3(vocab=len(WORDS) + 2)
    gen = torch.Generator().manual_seed(0)
    calib = torch.randint(2, len(WORDS) + 2, (4, 32), generator=gen)
    qmodel = batquant.quantize_model(tiny_qwen3(vocab=len(WORDS) + 2), calib, method="quarot",
                                     config="W4A8KV4", progress=False)  # fmt: skip
    docs = []
    for d in range(10):
        words = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (8,), generator=gen)]
        context, choices = " ".join(words[:5]), words[5:]
        scores = [loglikelihood(qmodel, tokenizer, context, c) for c in choices]
        best = max(range(3), key=scores.__getitem__)
        # the first 7 answers are the quantized model's own pick, the last 3 are not:
        # lm-eval must report an accuracy of exactly 0.7
        answer = best if d < 7 else (best + 1) % 3
        docs.append({"context": context, "choices": choices, "answer": answer, "scores": scores})
    data = tmp_path / "tiny_mc.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tiny_mc.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files:\n    test: {data}\n"
        f"  cache_dir: {tmp_path / 'datasets'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\n"
        "doc_to_choice: choices\n"
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    from lm_eval.tasks import TaskManager

    lm = batquant.eval.lm_eval_model(qmodel, tokenizer, batch_size=4)
    tasks = TaskManager(include_path=str(tmp_path))
    results = lm_eval.simple_evaluate(model=lm, tasks=[TASK], log_samples=True,
                                      task_manager=tasks)
    assert results is not None
    assert results["results"][TASK]["acc,none"] == pytest.approx(0.7, abs=1e-12)
    samples = sorted(results["samples"][TASK], key=lambda s: s["doc_id"])
    assert len(samples) == len(docs)
    for sample, doc in zip(samples, docs, strict=True):
        got = [resp[0][0] for resp in sample["resps"]]
        # the same logits through two code paths (lm-eval batches and pads): float32 rounding
        assert got == pytest.approx(doc["scores"], rel=1e-4, abs=1e-4)
        fp_scores = [loglikelihood(fp, tokenizer, doc["context"], c) for c in doc["choices"]]
        # and lm-eval ran the quantized model, not a full-precision one
        assert got != pytest.approx(fp_scores, rel=1e-3)


def test_lm_eval_model_rejects_what_it_cannot_wrap():
    with pytest.raises(TypeError, match="model must be a transformers PreTrainedModel"):
        batquant.eval.lm_eval_model(torch.nn.Linear(2, 2), word_tokenizer())
    with pytest.raises(TypeError, match="tokenizer must be a transformers tokenizer"):
        batquant.eval.lm_eval_model(tiny_qwen3(), object())
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        batquant.eval.lm_eval_model(tiny_qwen3(), word_tokenizer(), batch_size=0)
