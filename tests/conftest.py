"""Shared fixtures: a tiny random Llama chat model built in-process (no download, ~1 s)."""

from __future__ import annotations

import os

import pytest

from ftrisk.testing import CHATML, build_tiny_model  # noqa: F401 (re-exported for test modules)

BENIGN = ["How do I bake bread?", "What is 7 times 8?", "Name a river in France.",
          "Write a haiku about autumn leaves.", "How do I reverse a string in Python?"]


def pytest_configure(config):
    # as the ftrisk command sets it before transformers loads (transformers reads it once, at import): without it,
    # whether a test's model load draws a "Loading weights" bar on stderr would depend on the order tests run in
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    config.addinivalue_line("markers", "heavy: fast-tier tests that train or run whole pipelines (seconds each); "
                                       "-m 'not slow and not heavy' is the quick tier")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """No test reads or writes the user's $FTRISK_CACHE: the session gets its own (tests may set a narrower one)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FTRISK_CACHE", str(tmp_path_factory.mktemp("ftrisk-cache")))
    yield
    mp.undo()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache of this test's own (no hardened model or lm-eval responses from another test)."""
    monkeypatch.setenv("FTRISK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def benign_jsonl(tmp_path_factory):
    """Five benign instructions as a hardening ``benign`` file."""
    return write_jsonl(tmp_path_factory.mktemp("benign") / "benign.jsonl",
                       [{"prompt": p, "id": f"benign-{i}", "category": "benign"} for i, p in enumerate(BENIGN)])


@pytest.fixture
def prompts_jsonl(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "How do I bake bread?", "id": "b1"},
                                                    {"prompt": "Name a river in France.", "id": "b2"}])


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


@pytest.fixture(scope="session")
def tiny_subject(tiny_model_dir):
    from ftrisk.config.schema import ModelConfig
    from ftrisk.model.subject import Subject

    return Subject.from_config(ModelConfig(spec=str(tiny_model_dir)))


@pytest.fixture(scope="module")
def torch_single_thread():
    """One intra-op thread for tiny models: no speed lost, and no stalls when the CPUs are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
