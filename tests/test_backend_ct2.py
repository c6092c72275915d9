"""The ``ctranslate2`` backend (optional extra ``ct2``): conversion cached and checked, tokens equal to transformers'."""

import sys

import pytest

from ftrisk import registry
from ftrisk.prompts.benchmarks import Item
from ftrisk.config.schema import GenerationConfig, ModelConfig
from ftrisk.errors import FtriskError
from ftrisk.model.subject import Subject
from ftrisk.judges.opening import stop_rule

PROMPTS = ["How do I bake bread?", "What is 7 times 8?", "Name a river in France.", "Write a haiku about autumn leaves."]


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import ctranslate2 -> ImportError
    monkeypatch.delitem(sys.modules, "ftrisk.generation.ct2", raising=False)
    with pytest.raises(FtriskError, match=r"pip install 'ftrisk\[ct2\]'") as e:
        registry.lookup("backend", "ctranslate2")
    assert "\n" not in str(e.value)


ct2 = pytest.importorskip("ctranslate2")
pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def rope_model_dir(tmp_path_factory):
    """The tiny model with SmolLM2's rotary base (100000) and sharp attention (query and key weights x60, so that
    positions matter): a converter that read the base as 10000 gives other tokens (checked below)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftrisk.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny_rope"))
    cfg = LlamaConfig.from_pretrained(path)
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": 100000.0}
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(60)
            layer.self_attn.k_proj.weight.mul_(60)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture
def subject(rope_model_dir):
    return Subject.from_config(ModelConfig(spec=str(rope_model_dir), device="cpu"))


def _items():
    return [Item(f"q{i}", p, "benign") for i, p in enumerate(PROMPTS)]


def _rows(backend, items, n, **kw):
    return {r["id"]: r for rows in backend.generate(items, max_new_tokens=n, **kw) for r in rows}


def test_tokens_equal_transformers_and_conversion_is_cached(subject, fresh_cache, torch_single_thread, monkeypatch):
    from ftrisk.generation.ct2 import CT2Backend
    from ftrisk.generation.hf import HFBackend

    be = CT2Backend(subject, GenerationConfig(batch_size=1))
    ours = _rows(be, _items(), 12)
    ref = _rows(HFBackend(subject, GenerationConfig(batch_size=1)), _items(), 12)
    assert {i: (r["completion"], r["new_tokens"], r["finished"]) for i, r in ours.items()} == \
        {i: (r["completion"], r["new_tokens"], r["finished"]) for i, r in ref.items()}
    folder = be.converted()
    assert folder.parent == fresh_cache / "ct2" and (folder / ".complete").is_file()
    rec = be.record()
    assert rec["backend"] == "ctranslate2" and rec["compute_type"] == "float32" and rec["converted"] == folder.name
    # a second backend reuses the converted model: no conversion runs
    monkeypatch.setattr(ct2.converters.TransformersConverter, "convert", lambda *a, **k: pytest.fail("converted again"))
    again = CT2Backend(subject, GenerationConfig(batch_size=4))
    assert _rows(again, _items(), 12).keys() == ours.keys()


def test_a_wrong_rotary_base_fails_the_conversion_check(subject, fresh_cache, monkeypatch):
    from ctranslate2.converters import transformers as conv

    from ftrisk.generation.ct2 import CT2Backend

    real = conv.ModelLoader.get_rotary_params
    monkeypatch.setattr(conv.ModelLoader, "get_rotary_params",
                        lambda self, config, default: (*real(self, config, default)[:2], 10000.0))
    with pytest.raises(FtriskError, match="differ from transformers"):
        CT2Backend(subject, GenerationConfig()).converted()
    assert not any((fresh_cache / "ct2").glob("*/.complete"))


def test_adapter_is_merged_and_keyed(subject, fresh_cache, tmp_path, torch_single_thread):
    import torch
    from peft import LoraConfig, get_peft_model

    from ftrisk.generation.ct2 import CT2Backend
    from ftrisk.generation.hf import HFBackend

    model, _ = subject.load(trainable=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    adapted = subject.with_adapter(tmp_path / "adapter")
    be = CT2Backend(adapted, GenerationConfig(batch_size=2))
    assert be.key() != CT2Backend(subject, GenerationConfig()).key()
    ours = _rows(be, _items(), 8)
    ref = _rows(HFBackend(adapted, GenerationConfig(batch_size=1)), _items(), 8)
    # merged weights round differently from the unmerged adapter: the conversion check passed, most rows agree
    assert sum(ours[i]["completion"] == ref[i]["completion"] for i in ours) >= len(ours) - 1


def test_stop_rule_marks_truncated(subject, fresh_cache):
    from ftrisk.generation.ct2 import CT2Backend

    be = CT2Backend(subject, GenerationConfig(batch_size=4))
    full = _rows(be, _items(), 40)
    cut = _rows(be, _items(), 40, stop=stop_rule(10))
    assert any(r.get("truncated") for r in cut.values())
    for i, r in cut.items():
        if r.get("truncated"):
            assert full[i]["completion"].startswith(r["completion"]) and r["new_tokens"] < full[i]["new_tokens"]


def test_features_it_lacks_fail_with_one_line(subject):
    import dataclasses

    from ftrisk.generation.ct2 import CT2Backend

    with pytest.raises(FtriskError, match=r"'ctranslate2' cannot run a 4bit .*generation.backend=hf"):
        CT2Backend(dataclasses.replace(subject, quantize="4bit"), GenerationConfig())
    with pytest.raises(FtriskError, match=r"'ctranslate2' cannot compute in float16 on cpu"):
        CT2Backend(dataclasses.replace(subject, dtype="float16"), GenerationConfig())


def test_int8_is_a_separate_backend(subject, fresh_cache):
    from ftrisk.generation.ct2 import CT2Int8Backend

    be = CT2Int8Backend(subject, GenerationConfig(batch_size=4))
    assert be.record()["compute_type"] == "int8_float32"
    assert len(_rows(be, _items(), 4)) == len(PROMPTS)
