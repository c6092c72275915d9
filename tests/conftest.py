"""Shared fixtures: a tiny random Llama chat model built in-process (no download, ~1 s)."""

from __future__ import annotations

import pytest

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
    import random

    rng = random.Random(0)
    lines = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 15)))
        lines.append(f"{words.capitalize()}?\nA. {rng.choice(_WORDS)}\nB. {rng.choice(_WORDS)}\n"
                     f"C. {rng.choice(_WORDS)}\nD. {rng.choice(_WORDS)}\nAnswer: {'ABCD'[i % 4]}")
    return lines


def build_tiny_model(path, seed: int = 0, vocab_size: int = 512, tie_word_embeddings: bool = False):
    """Save a tiny random LlamaForCausalLM + byte-level BPE tokenizer (ChatML template) to ``path``."""
    import torch
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
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved directory with a tiny random Llama model and its tokenizer (shared by the session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_model_dir_tied(tmp_path_factory):
    """Like ``tiny_model_dir`` with the input embedding shared by the output layer (as SmolLM2 does)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_tied"), tie_word_embeddings=True)


def _copy_model_dir(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_model_dir_other_weights(tiny_model_dir, tmp_path_factory):
    """Same architecture, config and tokenizer as ``tiny_model_dir``, other random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dst = _copy_model_dir(tiny_model_dir, tmp_path_factory.mktemp("tiny_other") / "model")
    with torch.random.fork_rng():  # leave the global RNG as it was
        torch.manual_seed(1)
        LlamaForCausalLM(LlamaConfig.from_pretrained(dst)).save_pretrained(dst, safe_serialization=True)
    return dst


@pytest.fixture(scope="session")
def tiny_model_dir_big_vocab(tiny_model_dir, tmp_path_factory):
    """``tiny_model_dir``'s tokenizer on a 128-wide model with a 50,000-row vocabulary (rows past the tokenizer's
    512 are never produced by it): vocabulary logits and embedding gradients then dominate memory, as they do
    for a real small model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dst = _copy_model_dir(tiny_model_dir, tmp_path_factory.mktemp("tiny_big_vocab") / "model")
    cfg = LlamaConfig.from_pretrained(dst)
    cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size = 50_000, 128, 256
    with torch.random.fork_rng():
        torch.manual_seed(2)
        LlamaForCausalLM(cfg).save_pretrained(dst, safe_serialization=True)
    return dst


@pytest.fixture(scope="session")
def tiny_model_dir_no_template(tiny_model_dir, tmp_path_factory):
    """``tiny_model_dir`` whose tokenizer has no chat template."""
    import json

    dst = _copy_model_dir(tiny_model_dir, tmp_path_factory.mktemp("tiny_notemplate") / "model")
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def torch_single_thread():
    """One intra-op thread for tiny models: no speed lost, and no stalls when the CPUs are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
