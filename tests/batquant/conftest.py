"""Tiny random transformers models with explicit dimensions, for the whole-model tests.

``Qwen3Config()``'s defaults are not any released model's, so every dimension
is given.  The Qwen3 model has ``num_heads * head_dim != hidden`` (4 x 32 = 128
against 64) and grouped KV heads; the Llama model has one KV head for two
query heads.
"""

from __future__ import annotations

import pytest
import torch

VOCAB = 160


def tiny_qwen3(layers: int = 2, hidden: int = 64, seed: int = 0, vocab: int = VOCAB,
               ) -> torch.nn.Module:  # fmt: skip
    """A random Qwen3ForCausalLM: hidden 64, 4 heads x 32 (=128), 2 KV heads, MLP 128."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
    )  # fmt: skip
    config.architectures = ["Qwen3ForCausalLM"]
    return Qwen3ForCausalLM(config).eval()


def tiny_llama(layers: int = 2, seed: int = 0) -> torch.nn.Module:
    """A random LlamaForCausalLM: hidden 64, 2 heads x 32, 1 KV head, MLP 96."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        rms_norm_eps=1e-6,
    )  # fmt: skip
    config.architectures = ["LlamaForCausalLM"]
    return LlamaForCausalLM(config).eval()


def token_ids(samples: int = 8, seq_len: int = 32, seed: int = 1) -> torch.Tensor:
    """``[samples, seq_len]`` random token ids."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (samples, seq_len), generator=gen)


@pytest.fixture
def qwen3() -> torch.nn.Module:
    return tiny_qwen3()


@pytest.fixture
def llama() -> torch.nn.Module:
    return tiny_llama()


@pytest.fixture
def calib_ids() -> torch.Tensor:
    return token_ids()


def tiny_qwen3_moe(layers: int = 3, seed: int = 0, experts: int = 8, vocab: int = VOCAB,
                   ) -> torch.nn.Module:  # fmt: skip
    """A random Qwen3MoeForCausalLM: hidden 64, 8 experts of 64, top-2; layer 1 is dense."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, moe_intermediate_size=64,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        num_experts=experts, num_experts_per_tok=2, norm_topk_prob=True, mlp_only_layers=[1],
        max_position_embeddings=256, rms_norm_eps=1e-6,
    )  # fmt: skip
    config.architectures = ["Qwen3MoeForCausalLM"]
    return Qwen3MoeForCausalLM(config).eval()


def tiny_gemma3(layers: int = 4, seed: int = 0) -> torch.nn.Module:
    """A random Gemma3ForCausalLM: sliding-window (8 tokens) and global layers alternate."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"] * (layers // 2),
        max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    config.architectures = ["Gemma3ForCausalLM"]
    return Gemma3ForCausalLM(config).eval()
