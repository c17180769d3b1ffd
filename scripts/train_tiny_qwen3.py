"""Train the embedded demo model: a tiny Qwen3 on the Python documentation, on CPU.

    python scripts/train_tiny_qwen3.py --out batquant/demo/tiny_qwen3 [--steps 1200]

Writes a byte-level BPE tokenizer (``tokenizers``), the model
(``save_pretrained``: config.json + model.safetensors, float32), and the two
texts the demo uses: ``heldout.txt`` (pydoc topics never trained on, for
perplexity) and ``calib.txt`` (training documents, for calibration).  The run
is deterministic under ``--seed`` on one machine; the committed checkpoint is
the output of the command above (docs/models.md records its figures).

The shape follows Qwen3's own quirk: num_heads x head_dim (8 x 64 = 512) is
not the hidden size (256), and the attention is grouped (4 KV heads).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batquant.demo.corpus import SEPARATOR, build_corpus  # noqa: E402

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS, pad_token=EOS)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    corpus = build_corpus()
    tokenizer = train_tokenizer(corpus.train, args.vocab)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    ids: list[int] = []
    for doc in corpus.train:
        ids += tokenizer(doc)["input_ids"] + [eos]
    data = torch.tensor(ids)
    held = torch.tensor(tokenizer(SEPARATOR.join(corpus.heldout))["input_ids"])
    print(f"train tokens {data.numel()}, held-out tokens {held.numel()}", flush=True)

    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=5,
        num_attention_heads=8, num_key_value_heads=4, head_dim=64,
        max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
    )  # fmt: skip
    model = Qwen3ForCausalLM(config).float()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(args.seed)
    span = args.seq_len + 1
    start = time.time()
    model.train()
    for step in range(args.steps):
        offsets = torch.randint(0, data.numel() - span, (args.batch,), generator=gen)
        batch = torch.stack([data[o : o + span] for o in offsets.tolist()])
        loss = model(batch[:, :-1], labels=batch[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - start:.0f} s", flush=True)
    model.eval()
    with torch.no_grad():
        n = held.numel() // args.seq_len
        windows = held[: n * args.seq_len].view(n, args.seq_len)
        nll = torch.stack([model(w[None], labels=w[None]).loss for w in windows]).mean()
    print(f"held-out perplexity at seq_len {args.seq_len}: {math.exp(nll.item()):.2f}")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    (args.out / "heldout.txt").write_text(SEPARATOR.join(corpus.heldout) + "\n", encoding="utf-8")
    # calibration text: the first training documents, far more than 128 x 256 tokens need
    calib, size = [], 0
    for doc in corpus.train:
        calib.append(doc)
        size += len(doc)
        if size > 400_000:
            break
    (args.out / "calib.txt").write_text(SEPARATOR.join(calib) + "\n", encoding="utf-8")
    (args.out / "training.json").write_text(json.dumps({
        "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len, "lr": args.lr,
        "seed": args.seed, "train_tokens": data.numel(), "heldout_tokens": held.numel(),
        "heldout_perplexity": round(math.exp(nll.item()), 3),
        "seconds": round(time.time() - start, 1), "torch": torch.__version__,
        "python": sys.version.split()[0],
    }, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
