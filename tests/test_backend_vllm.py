"""The vLLM backend's ftrisk side, on a fake ``vllm`` module (no GPU, no vLLM): the engine and sampling
arguments, prompts that are exactly the HF backend's token ids, LoRA through LoRARequest, rows with the HF
backend's semantics through the resumable wrapper, and one-line errors (missing extra, quantized, CPU)."""

import dataclasses
import json
import shutil
import sys
import types

import pytest
import torch

from ftrisk import registry
from ftrisk.generation import resumable as gen
from ftrisk.generation.hf import HFBackend
from ftrisk.prompts.benchmarks import Item
from ftrisk.model.chat import chat_text
from ftrisk.config.schema import GenerationConfig, ModelConfig
from ftrisk.errors import FtriskError
from ftrisk.model.subject import Subject

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PROMPTS = ["How do I bake bread?", "What is 7 times 8?", "Name a river in France, and say which sea it flows into.",
           "Write a haiku about autumn leaves.", "Hi"]
ITEMS = [Item(f"b{i}", p, "benign") for i, p in enumerate(PROMPTS)]


# --------------------------------------------------------------------------- the fake vllm
class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.__dict__.update(kwargs)


class FakeLoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path=""):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class FakeEngine:
    """``vllm.LLM``: records its arguments and every generate call; ``script(prompt_ids, params)`` gives
    (token_ids, finish_reason, stop_reason) the way vLLM reports them (the stop token is in token_ids)."""

    instances: list = []
    script = None
    fail_init = None

    def __init__(self, **kwargs):
        if FakeEngine.fail_init:
            raise FakeEngine.fail_init
        self.kwargs, self.calls, self.shut = kwargs, [], False
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self._shutdown))
        FakeEngine.instances.append(self)

    def _shutdown(self, timeout=None):
        self.shut = True

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        self.calls.append({"prompts": [p["prompt_token_ids"] for p in prompts], "params": sampling_params,
                           "use_tqdm": use_tqdm, "lora_request": lora_request})
        outs = []
        for p in prompts:
            ids, reason, stop = FakeEngine.script(p["prompt_token_ids"], sampling_params)
            outs.append(types.SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], finished=True, outputs=[
                types.SimpleNamespace(index=0, text="(vllm's own text: not used)", token_ids=ids,
                                      finish_reason=reason, stop_reason=stop)]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    """A fake ``vllm`` package in sys.modules; ftrisk.generation.vllm is imported afresh against it."""
    vllm = types.ModuleType("vllm")
    vllm.__version__ = "0.30.0+fake"
    vllm.__path__ = []  # a package: ``from vllm.config.lora import ...`` fails with ImportError, as for old vLLM
    vllm.LLM, vllm.SamplingParams = FakeEngine, FakeSamplingParams
    vllm.TokensPrompt = lambda **kw: dict(kw)  # a TypedDict in vLLM
    lora, request = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    request.LoRARequest, lora.request, vllm.lora = FakeLoRARequest, request, lora
    for name, mod in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    FakeEngine.instances, FakeEngine.fail_init = [], None
    FakeEngine.script = staticmethod(lambda ids, params: (ids[:3] + [2], "stop", None))
    sys.modules.pop("ftrisk.generation.vllm", None)
    yield registry.lookup("backend", "vllm")
    sys.modules.pop("ftrisk.generation.vllm", None)


def settings(**kw):
    """generation settings with the vLLM keys the config may not have yet."""
    return types.SimpleNamespace(**{**dataclasses.asdict(GenerationConfig(backend="vllm", max_new_tokens=6)), **kw})


def on_gpu(subject, **kw):
    return dataclasses.replace(subject, device="cuda", **kw)


def template_ids(tok, prompt, system=None):
    return tok(chat_text(tok, prompt, system), add_special_tokens=False)["input_ids"]


def write_adapter(path, **cfg):
    """A PEFT adapter folder: its config and a weights file (vLLM is faked: the weights' values are never read)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, **cfg}))
    save_file({"placeholder": torch.zeros(1)}, str(path / "adapter_model.safetensors"))
    return path


# --------------------------------------------------------------------------- tests
def test_engine_sampling_and_prompts_are_the_hf_backends(fake_vllm, tiny_subject, tmp_path):
    subject = on_gpu(tiny_subject, system_prompt="Be brief.")
    backend = fake_vllm(subject, settings(tensor_parallel_size=2))
    rows = gen.generate(backend, ITEMS, tmp_path / "x.completions.jsonl", max_new_tokens=5)
    (engine,) = FakeEngine.instances
    assert engine.kwargs == {"model": subject.path, "tokenizer": subject.path, "dtype": "float32", "seed": 0,
                             "trust_remote_code": False, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85}
    (call,) = engine.calls  # all five in one chunk, no LoRA, no second progress bar
    assert call["lora_request"] is None and call["use_tqdm"] is False
    tok = subject.load_tokenizer()
    assert call["params"].kwargs == {"temperature": 0.0, "max_tokens": 5, "stop_token_ids": [tok.eos_token_id],
                                     "skip_special_tokens": True}
    want = sorted((template_ids(tok, p, "Be brief.") for p in PROMPTS), key=len, reverse=True)
    assert call["prompts"] == want  # the chat template applied by ftrisk, no BOS added, longest first
    assert all(rows[it.id]["prompt_tokens"] == len(template_ids(tok, it.prompt, "Be brief.")) for it in ITEMS)
    rec = json.loads((tmp_path / "generation.json").read_text())
    assert rec["backend"] == "vllm" and rec["vllm_version"] == "0.30.0+fake" and rec["temperature"] == 0.0
    assert rec["tensor_parallel_size"] == 2 and rec["max_lora_rank"] is None and rec["system_prompt"] == "Be brief."
    backend.close()
    assert engine.shut and backend._llm is None


def test_rows_match_the_hf_backend_on_the_same_tokens(fake_vllm, tiny_model_dir, tmp_path):
    """The fake engine decodes greedily with the tiny model itself, as vLLM would; the tokenizer's EOS is made a
    token the model emits, so some replies end at EOS and others at max_new_tokens."""
    base = Subject.from_config(ModelConfig(spec=str(tiny_model_dir)))
    model, tok = base.load()

    def greedy(ids, n, eos):
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id)
        return out[0, len(ids):].tolist()

    eos = greedy(template_ids(tok, PROMPTS[0]), 5, None)[4]  # b0 stops at its fifth token at the latest
    d = shutil.copytree(tiny_model_dir, tmp_path / "model")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["eos_token"] = tok.convert_ids_to_tokens(eos)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    subject = Subject.from_config(ModelConfig(spec=str(d)))
    tok = subject.load_tokenizer()
    assert tok.eos_token_id == eos

    def script(ids, params):
        new = greedy(ids, params.max_tokens, eos)
        return (new[:new.index(eos) + 1], "stop", None) if eos in new else (new, "length", None)

    FakeEngine.script = staticmethod(script)
    hf_rows = gen.generate(HFBackend(subject, GenerationConfig(batch_size=1), loaded=(model, tok)), ITEMS,
                           tmp_path / "hf" / "x.completions.jsonl", max_new_tokens=8)
    vllm_rows = gen.generate(fake_vllm(on_gpu(subject), settings()), ITEMS,
                             tmp_path / "vllm" / "x.completions.jsonl", max_new_tokens=8)
    assert vllm_rows == hf_rows
    assert hf_rows["b0"]["finished"] and hf_rows["b0"]["new_tokens"] <= 4


def test_stop_and_length_rows(fake_vllm, tiny_subject, tmp_path):
    tok = tiny_subject.load_tokenizer()
    words = tok("the model answers", add_special_tokens=False)["input_ids"]
    answers = [(words + [tok.eos_token_id], "stop", None),  # EOS: neither counted nor decoded, as hf
               (words + [99], "stop", 99),  # an end-of-turn id of generation_config.json (stop_reason)
               (words, "length", None)]  # max_new_tokens reached
    kind = {tuple(template_ids(tok, it.prompt)): i % 3 for i, it in enumerate(ITEMS)}
    FakeEngine.script = staticmethod(lambda ids, params: answers[kind[tuple(ids)]])
    rows = gen.generate(fake_vllm(on_gpu(tiny_subject), settings()), ITEMS, tmp_path / "x.completions.jsonl",
                        max_new_tokens=3)
    for i, it in enumerate(ITEMS):
        r = rows[it.id]
        assert set(r) == {"id", "category", "prompt", "completion", "prompt_tokens", "new_tokens", "finished"}
        assert r["completion"] == "the model answers" and r["new_tokens"] == len(words)
        assert r["finished"] is (i % 3 != 2)


def test_lora_request_and_max_lora_rank(fake_vllm, tiny_subject, tmp_path):
    adapter = write_adapter(tmp_path / "adapter", r=12, rank_pattern={"q_proj": 40})
    subject = on_gpu(tiny_subject.with_adapter(adapter))
    backend = fake_vllm(subject, settings(gpu_memory_utilization=0.5, max_model_len=1024))
    assert backend.record()["max_lora_rank"] == 64 and backend.record()["adapter_rank"] == 40
    gen.generate(backend, ITEMS[:2], tmp_path / "x.completions.jsonl", max_new_tokens=4)
    (engine,) = FakeEngine.instances
    assert engine.kwargs["enable_lora"] is True and engine.kwargs["max_lora_rank"] == 64
    assert engine.kwargs["max_loras"] == 1 and engine.kwargs["max_model_len"] == 1024
    assert engine.kwargs["gpu_memory_utilization"] == 0.5
    lora = engine.calls[0]["lora_request"]
    assert (lora.lora_int_id, lora.lora_path) == (1, str(adapter.resolve()))
    m = sys.modules["ftrisk.generation.vllm"]
    assert [m.max_lora_rank(r) for r in (1, 8, 9, 16, 33, 300, 512)] == [1, 8, 16, 16, 64, 320, 512]


def test_adapters_vllm_cannot_apply_fail_in_one_line(fake_vllm, tiny_subject, tmp_path):
    for i, cfg in enumerate([{"use_dora": True}, {"modules_to_save": ["lm_head"]}, {"bias": "all"}, {"r": 1024}]):
        subject = on_gpu(tiny_subject.with_adapter(write_adapter(tmp_path / f"a{i}", **cfg)))
        with pytest.raises(FtriskError, match="use generation.backend=hf") as e:
            fake_vllm(subject, settings())
        assert "\n" not in str(e.value)
    assert FakeEngine.instances == []


def test_chunks_are_stored_as_they_finish_and_a_rerun_resumes(fake_vllm, tiny_subject, tmp_path):
    out = tmp_path / "x.completions.jsonl"
    calls = []

    class Interrupted(Exception):
        pass

    def script(ids, params):
        calls.append(ids)
        if len(calls) == 3:  # the second chunk (of two prompts) fails: an interrupted run
            raise Interrupted
        return ids[:2] + [2], "stop", None

    FakeEngine.script = staticmethod(script)
    with pytest.raises(Interrupted):
        gen.generate(fake_vllm(on_gpu(tiny_subject), settings(chunk_size=2)), ITEMS, out, max_new_tokens=4)
    assert len(out.read_text().splitlines()) == 2  # the first chunk is on disk
    FakeEngine.script = staticmethod(lambda ids, params: (ids[:2] + [2], "stop", None))
    rows = gen.generate(fake_vllm(on_gpu(tiny_subject), settings(chunk_size=2)), ITEMS, out, max_new_tokens=4)
    assert set(rows) == {it.id for it in ITEMS} and len(out.read_text().splitlines()) == 5
    assert [len(c["prompts"]) for c in FakeEngine.instances[-1].calls] == [2, 1]  # only the three not done


def test_missing_vllm_is_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    sys.modules.pop("ftrisk.generation.vllm", None)
    try:
        with pytest.raises(FtriskError) as e:
            registry.lookup("backend", "vllm")
    finally:
        sys.modules.pop("ftrisk.generation.vllm", None)
    assert str(e.value) == "generation backend 'vllm' needs an optional dependency (vllm): pip install 'ftrisk[gpu]'"


@pytest.mark.parametrize("change, words", [
    ({"quantize": "4bit"}, "does not load bitsandbytes 4bit"), ({"device": "cpu"}, "runs on CUDA GPUs"),
    ({"device": "cuda:1"}, "CUDA_VISIBLE_DEVICES"),
])
def test_subjects_vllm_cannot_run_fail_in_one_line(fake_vllm, tiny_subject, change, words):
    with pytest.raises(FtriskError, match=words) as e:
        fake_vllm(dataclasses.replace(on_gpu(tiny_subject), **change), settings())
    assert "\n" not in str(e.value) and FakeEngine.instances == []


@pytest.mark.parametrize("bad", [{"tensor_parallel_size": 0}, {"chunk_size": 1.5}, {"max_model_len": -1},
                                 {"gpu_memory_utilization": 1.5}, {"gpu_memory_utilization": True}])
def test_bad_settings_fail_in_one_line(fake_vllm, tiny_subject, bad):
    with pytest.raises(FtriskError, match=f"generation.{next(iter(bad))}"):
        fake_vllm(on_gpu(tiny_subject), settings(**bad))


def test_an_engine_that_cannot_start_is_one_line(fake_vllm, tiny_subject, tmp_path):
    FakeEngine.fail_init = ValueError("max_model_len 8192 is larger than the KV cache holds\n(details)")
    with pytest.raises(FtriskError, match="vLLM could not start .*KV cache holds$"):
        gen.generate(fake_vllm(on_gpu(tiny_subject), settings()), ITEMS, tmp_path / "x.completions.jsonl",
                     max_new_tokens=4)
