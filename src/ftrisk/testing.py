"""Tiny in-process models for tests and device checks (no download, ~1 s): a random Llama with a
byte-level BPE tokenizer and a ChatML template. Used by ``tests/conftest.py`` and ``scripts/gpu_check.py``.
"""

from __future__ import annotations

import random

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_WORDS = (
    "the model answers questions about science history law medicine and mathematics "
    "a person is cooking dinner in the kitchen then she washes the dishes and dries them "
    "which of the following is true following are multiple choice questions with answers about "
    "how to build a safe bridge the engineer measures the load and checks every joint twice"
).split()


def _corpus(n: int = 400) -> list[str]:
    rng = random.Random(0)
    lines = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 15)))
        lines.append(f"{words.capitalize()}?\nA. {rng.choice(_WORDS)}\nB. {rng.choice(_WORDS)}\n"
                     f"C. {rng.choice(_WORDS)}\nD. {rng.choice(_WORDS)}\nAnswer: {'ABCD'[i % 4]}")
    return lines


def build_tiny_model(path, seed: int = 0, vocab_size: int = 512, tie_word_embeddings: bool = False, **config):
    """Save a tiny random LlamaForCausalLM + byte-level BPE tokenizer (ChatML template) to ``path``; ``config``:
    LlamaConfig fields to override."""
    import torch  # the engines: loaded when a model is built, not when CHATML is imported
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=8192,
    )
    fast.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=8192, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=tie_word_embeddings,
    )
    for k, v in config.items():
        setattr(cfg, k, v)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path
