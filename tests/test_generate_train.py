"""Generation (batched == unbatched, resumable JSONL) and the training loop (masking, loss, budgets,
checkpoint resume, cost meter) on the tiny random Llama from conftest. Benign prompts only."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from ftrisk import cost
from ftrisk.generation import resumable as gen
from ftrisk.training import checkpoint, data
from ftrisk.training import fast as train_fast
from ftrisk.generation import hf
from ftrisk.prompts.benchmarks import Item
from ftrisk.model.chat import chat_text
from ftrisk.config.schema import GenerationConfig, LoraConfig, TrainConfig
from ftrisk.cost import CostMeter
from ftrisk.model.subject import load_spec
from ftrisk.errors import FtriskError
from ftrisk.training.data import IGNORE, SORT_WINDOW, Example, collate, encode, make_batches
from ftrisk.training.loss import response_loss
from ftrisk.training.recipe import finetune

pytestmark = pytest.mark.usefixtures("torch_single_thread")

PROMPTS = [
    "How do I bake bread?",
    "What is the capital of France, and which river flows through it? Answer in one sentence please.",
    "Name a prime number.",
    "Write a short poem about the sea, the wind, the gulls and the boats that come home in the evening light.",
    "How many legs does a spider have?",
]

PAIRS = [
    Example("How do I bake bread?", "Mix flour, water, yeast and salt, knead, let it rise, then bake."),
    Example("What is 2 + 2?", "4."),
    Example("Name a river in France.", "The Seine."),
    Example("Write a haiku about rain.", "Soft rain on the roof / the kettle begins to sing / a quiet evening"),
    Example("How do I sort a list in Python?", "Use sorted(xs) for a new list, or xs.sort() in place."),
    Example("What colour is the sky?", "Blue on a clear day."),
    Example("Give me a synonym for happy.", "Cheerful."),
    Example("How many days are in a week?", "Seven."),
    Example("What is the boiling point of water at sea level?", "100 degrees Celsius."),
    Example("Suggest a name for a cat.", "Miso."),
    Example("Translate 'thank you' into Spanish.", "Gracias."),
    Example("What is the largest planet in the solar system?", "Jupiter."),
    Example("Recommend a board game for four players.", "Try Carcassonne."),
    Example("How do I boil an egg?", "Place it in boiling water for about nine minutes, then cool it."),
    Example("What is the square root of 81?", "9."),
    Example("Who wrote Pride and Prejudice?", "Jane Austen."),
]


@pytest.fixture(scope="module")
def tiny(torch_single_thread, tiny_model_dir):
    return load_spec(tiny_model_dir)


def _fresh_model(tiny_model_dir):
    return load_spec(tiny_model_dir)


def _backend(tiny, tiny_subject, batch_size: int):
    return hf.HFBackend(tiny_subject, GenerationConfig(batch_size=batch_size), loaded=tiny)


def _generate(tiny, tiny_subject, items, path, max_new_tokens, batch_size):
    return gen.generate(_backend(tiny, tiny_subject, batch_size), items, path, max_new_tokens=max_new_tokens)


def _items(prompts):
    return [Item(f"q{i}", p, "benign") for i, p in enumerate(prompts)]


# --------------------------------------------------------------------------- generation


def test_tokenizer_is_left_padded(tiny):
    _, tok = tiny
    assert tok.padding_side == "left"
    assert tok.chat_template


def test_batched_equals_unbatched(tiny, tiny_subject, tmp_path):
    model, tok = tiny
    items = _items(PROMPTS[:4])
    lengths = {len(tok(chat_text(tok, it.prompt), add_special_tokens=False)["input_ids"]) for it in items}
    assert len(lengths) == 4  # different lengths, so the batch really is padded
    one = _generate(tiny, tiny_subject, items, tmp_path / "b1.jsonl", 8, 1)
    four = _generate(tiny, tiny_subject, items, tmp_path / "b4.jsonl", 8, 4)
    for it in items:
        a, b = one[it.id], four[it.id]
        assert (a["completion"], a["new_tokens"], a["finished"]) == (b["completion"], b["new_tokens"], b["finished"]), it.id
    # token for token, directly through model.generate-level helper
    texts = [chat_text(tok, it.prompt) for it in items]
    batched = hf.generate_texts(model, tok, texts, 8)
    single = [hf.generate_texts(model, tok, [t], 8)[0] for t in texts]
    assert batched == single
    assert all(n > 0 for _, n, _ in batched)


def test_generate_texts_ids_match_model_generate(tiny):
    """The new-token count and text come from the ids that greedy decoding produced for each row."""
    model, tok = tiny
    text = chat_text(tok, PROMPTS[0])
    enc = tok([text], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    ids = out[0, enc["input_ids"].shape[1]:].tolist()
    if tok.eos_token_id in ids:
        ids = ids[: ids.index(tok.eos_token_id)]
    completion, n, _ = hf.generate_texts(model, tok, [text], 6)[0]
    assert n == len(ids)
    assert completion == tok.decode(ids, skip_special_tokens=True)


def test_generate_resumes_without_duplicates(tiny, tiny_subject, tmp_path, monkeypatch):
    model, tok = tiny
    items = _items(PROMPTS)
    out = tmp_path / "bench.completions.jsonl"
    seen = []
    real = hf.generate_texts

    def counting(m, t, texts, max_new_tokens):
        seen.extend(texts)
        return real(m, t, texts, max_new_tokens)

    monkeypatch.setattr(hf, "generate_texts", counting)
    first = _generate(tiny, tiny_subject, items[:3], out, 4, 2)
    assert len(seen) == 3 and set(first) == {"q0", "q1", "q2"}
    before = out.read_text(encoding="utf-8").splitlines()
    assert len(before) == 3
    # a crash mid-write leaves a torn last line
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "q3", "completion": "half a')
    seen.clear()
    rows = _generate(tiny, tiny_subject, items, out, 4, 2)
    assert sorted(seen) == sorted(chat_text(tok, it.prompt) for it in items[3:])  # only the 2 new ones
    lines = out.read_text(encoding="utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is valid JSON: the torn line is gone
    ids = [r["id"] for r in parsed]
    assert len(ids) == len(set(ids)) == 5
    assert set(ids) == {it.id for it in items} == set(rows)
    assert lines[:3] == before  # earlier rows untouched
    # a third run generates nothing
    seen.clear()
    _generate(tiny, tiny_subject, items, out, 4, 2)
    assert seen == []
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5


class _FakeBackend:
    """A backend that answers every prompt with its id: the resumable wrapper must work with any backend."""

    def __init__(self):
        self.asked = []

    def record(self):
        return {"backend": "fake", "settings": len(self.asked)}

    def generate(self, items, *, max_new_tokens, desc=""):
        self.asked += [it.id for it in items]
        for i in range(0, len(items), 2):
            yield [{"id": it.id, "completion": f"reply {it.id}", "prompt_tokens": 1, "new_tokens": 2, "finished": True}
                   for it in items[i:i + 2]]


def test_generation_wrapper_works_for_any_backend_and_stores_its_record(tmp_path):
    items = _items(PROMPTS)
    fake = _FakeBackend()
    out = tmp_path / "x.completions.jsonl"
    rows = gen.generate(fake, items[:2], out, max_new_tokens=3)
    assert json.loads((tmp_path / "generation.json").read_text()) == {"backend": "fake", "settings": 0}
    assert rows["q1"]["completion"] == "reply q1" and rows["q1"]["prompt"] == PROMPTS[1]  # prompt/category added
    rows = gen.generate(fake, items, out, max_new_tokens=3)
    assert fake.asked == ["q0", "q1", "q2", "q3", "q4"] and list(rows) == [it.id for it in items]
    # the record is the one of the backend that did the (last) work; a run with nothing to do keeps it
    assert json.loads((tmp_path / "generation.json").read_text()) == {"backend": "fake", "settings": 2}
    gen.generate(_FakeBackend(), items, out, max_new_tokens=3)
    assert json.loads((tmp_path / "generation.json").read_text())["settings"] == 2


# --------------------------------------------------------------------------- encode / masking


@pytest.fixture(scope="module")
def tok_pad_is_eos(tiny_model_dir):
    """Like SmolLM2: the pad token is <|im_end|>, the same as EOS."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    return tok


def test_encode_masks_by_position(tok_pad_is_eos):
    tok = tok_pad_is_eos
    ex = Example("How do I bake bread?", "Knead the dough and bake it.")
    enc = encode(tok, ex, max_seq_len=512)
    ids, labels = enc["input_ids"], enc["labels"]
    assert len(ids) == len(labels)
    n_prompt = len(tok(chat_text(tok, ex.prompt), add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt  # every prompt token masked
    assert all(lab != IGNORE for lab in labels[n_prompt:])
    assert labels[n_prompt:] == ids[n_prompt:]  # labels aligned with ids
    # the assistant turn's closing <|im_end|> (== pad here) carries loss: the model learns to stop
    eos = tok.eos_token_id
    assert eos in labels[n_prompt:]
    assert tok.decode(labels[n_prompt:]).startswith("Knead the dough and bake it.<|im_end|>")
    # the prompt's own <|im_end|> tokens (end of the user turn) are masked
    assert eos in ids[:n_prompt]


def test_encode_incomplete_response_has_no_end_marker(tok_pad_is_eos):
    """A self-distilled answer cut at max_new_tokens must not teach the model to stop there."""
    tok = tok_pad_is_eos
    whole = encode(tok, Example("How do I bake bread?", "Knead the dough and"), 512)
    cut = encode(tok, Example("How do I bake bread?", "Knead the dough and", complete=False), 512)
    n_prompt = len(tok(chat_text(tok, "How do I bake bread?"), add_special_tokens=False)["input_ids"])
    assert cut["input_ids"][:n_prompt] == whole["input_ids"][:n_prompt]
    assert tok.eos_token_id in whole["labels"][n_prompt:]
    assert tok.eos_token_id not in cut["labels"][n_prompt:]
    assert tok.decode(cut["labels"][n_prompt:]) == "Knead the dough and"


def test_collate_keeps_eos_label_when_pad_is_eos(tok_pad_is_eos):
    tok = tok_pad_is_eos
    encs = [encode(tok, Example("Hi?", "Hello."), 512),
            encode(tok, Example("How do I bake bread?", "Knead, rise, bake, then enjoy it warm."), 512)]
    ids, mask, labels = collate(encs, tok.pad_token_id)
    short = encs[0]
    n = len(short["input_ids"])
    assert ids.shape[1] > n  # the short row is padded with the pad (== EOS) id
    assert (ids[0, n:] == tok.pad_token_id).all() and (mask[0, n:] == 0).all() and (labels[0, n:] == IGNORE).all()
    assert labels[0, :n].tolist() == short["labels"]  # its real EOS label survives
    assert tok.eos_token_id in labels[0, :n].tolist()


@pytest.mark.parametrize("max_seq_len", [8, 24, 40, 64])
def test_truncation(tok_pad_is_eos, max_seq_len):
    tok = tok_pad_is_eos
    long_prompt = "Please explain how to bake bread. " + "the engineer measures the load and checks every joint " * 12
    for ex in [Example(long_prompt, "Knead and bake."),
               Example("Hi?", "the model answers questions about science " * 10),
               Example(long_prompt, "the model answers questions about science " * 10)]:
        full = encode(tok, ex, 10_000)
        enc = encode(tok, ex, max_seq_len)
        ids, labels = enc["input_ids"], enc["labels"]
        assert len(ids) == len(labels) <= max_seq_len
        assert len(full["input_ids"]) > max_seq_len  # it really was truncated
        kept = [i for i, lab in enumerate(labels) if lab != IGNORE]
        assert kept, "truncation must leave some response tokens to learn from"
        assert all(labels[i] == ids[i] for i in kept)  # aligned
        assert kept == list(range(kept[0], len(ids)))  # response is one contiguous tail
        resp_full = [lab for lab in full["labels"] if lab != IGNORE]
        assert [labels[i] for i in kept] == resp_full[: len(kept)]  # response kept from its start
        # the end of the prompt (the assistant header) is kept right before the response
        n_full_prompt = len(full["labels"]) - len(resp_full)
        tail = full["input_ids"][n_full_prompt - 3:n_full_prompt]
        assert ids[kept[0] - 3:kept[0]] == tail


# --------------------------------------------------------------------------- loss


def test_response_loss_equals_plain_cross_entropy(tiny_model_dir):
    import torch.nn.functional as F
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    model, tok = _fresh_model(tiny_model_dir)
    encs = [encode(tok, ex, 128) for ex in PAIRS[:4]]
    ids, mask, labels = (t.to(model.device) for t in collate(encs, tok.pad_token_id))

    def plain(m):
        logits = m(input_ids=ids, attention_mask=mask).logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                               ignore_index=IGNORE)

    with torch.no_grad():
        assert response_loss(model, ids, mask, labels).item() == pytest.approx(plain(model).item(), abs=1e-5)
        # through a PEFT wrapper whose LoRA weights are non-zero: the adapters must count
        pm = get_peft_model(model, PeftLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
        ours, ref = response_loss(pm, ids, mask, labels).item(), plain(pm).item()
        assert ours == pytest.approx(ref, abs=1e-5)
        with pm.disable_adapter():
            assert abs(plain(pm).item() - ref) > 1e-4  # the adapter really changed the loss


# --------------------------------------------------------------------------- training loop


def _cfg(**kw):
    base = dict(lr=1e-3, epochs=1.0, batch_size=2, grad_accum=1, max_seq_len=64, warmup_steps=5)
    base.update(kw)
    return TrainConfig(**base)


LORA = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])


def test_train_max_steps_and_meter(tiny_model_dir, tmp_path):
    model, tok = _fresh_model(tiny_model_dir)
    tc = _cfg(max_steps=3, grad_accum=2)
    meter = CostMeter(device="cpu", usd_per_hour=3.6)
    pm, summary = finetune(model, tok, PAIRS, LORA, tc, tmp_path / "run", meter=meter, seed=0)
    assert summary["stopped_by"] == "max_steps"
    assert summary["steps"] == 3 == meter.steps
    # the micro-batches consumed are the first 6 of the schedule: recompute what they hold
    encoded = [encode(tok, ex, tc.max_seq_len) for ex in PAIRS]
    batches = make_batches([len(e["input_ids"]) for e in encoded], tc.batch_size, 0, 0)[:6]
    used = [i for b in batches for i in b]
    assert meter.examples == 12 == len(used)
    assert meter.tokens == sum(len(encoded[i]["input_ids"]) for i in used)  # non-pad tokens seen
    assert meter.trained_tokens == sum(sum(lab != IGNORE for lab in encoded[i]["labels"]) for i in used)
    assert 0 < meter.trained_tokens < meter.tokens
    c = summary["cost"]
    assert (c["steps"], c["tokens"], c["examples"]) == (3, meter.tokens, 12)
    assert c["wall_seconds"] > 0 and c["usd"] == pytest.approx(c["wall_seconds"] / 3600 * 3.6, abs=1e-3)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[-1]["tokens"] == meter.tokens
    # LoRA weights moved
    lora_b = [p for n, p in pm.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)


def test_train_runs_out_of_data(tiny_model_dir, tmp_path):
    model, tok = _fresh_model(tiny_model_dir)
    meter = CostMeter()
    _, summary = finetune(model, tok, PAIRS[:4], LORA, _cfg(max_steps=50), tmp_path / "r", meter=meter)
    assert summary["stopped_by"] == "data"
    assert summary["steps"] == 2 and meter.examples == 4


def _lora_state(pm):
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()}


class _Interrupted(Exception):
    pass


def _full_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_checkpoint_resume_matches_uninterrupted(method, request, tmp_path, monkeypatch):
    # full fine-tuning on a model with tied embeddings (as SmolLM2): the checkpoint must restore the shared weight
    model_dir = request.getfixturevalue("tiny_model_dir" if method == "lora" else "tiny_model_dir_tied")
    lora = LORA if method == "lora" else None
    state = _lora_state if method == "lora" else _full_state
    saved = "adapter_model.safetensors" if method == "lora" else checkpoint.FULL_WEIGHTS
    tc = _cfg(max_steps=4, checkpoint_every=2)
    # A: in one go
    model, tok = _fresh_model(model_dir)
    meter_a = CostMeter()
    pa, sa = finetune(model, tok, PAIRS, lora, tc, tmp_path / "A", meter=meter_a, seed=1)
    assert sa["steps"] == 4 and sa["stopped_by"] == "max_steps"
    assert (tmp_path / "A" / "checkpoint-2" / saved).is_file()
    state_a = state(pa)

    # B: interrupted right after the checkpoint at step 2 was written
    real_save = checkpoint.save

    def save_then_crash(model, opt, sched, meter, path, step, evaluable=None):
        real_save(model, opt, sched, meter, path, step, evaluable)
        if step == 2:
            raise _Interrupted

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    model, tok = _fresh_model(model_dir)
    with pytest.raises(_Interrupted):
        finetune(model, tok, PAIRS, lora, tc, tmp_path / "B", meter=CostMeter(), seed=1)
    monkeypatch.setattr(checkpoint, "save", real_save)

    # resume B: only the 2 remaining steps are computed
    calls = []
    real_collate, real_pack = data.collate, train_fast.pack  # padded batches, or packed rows on the CPU fast path
    monkeypatch.setattr(data, "collate", lambda *a: calls.append(1) or real_collate(*a))
    monkeypatch.setattr(train_fast, "pack", lambda *a: calls.append(1) or real_pack(*a))
    model, tok = _fresh_model(model_dir)
    meter_b = CostMeter()
    pb, sb = finetune(model, tok, PAIRS, lora, tc, tmp_path / "B", meter=meter_b, seed=1)
    assert len(calls) == 2
    assert sb["steps"] == 4 and sb["stopped_by"] == "max_steps"
    assert (meter_b.steps, meter_b.tokens, meter_b.examples) == (meter_a.steps, meter_a.tokens, meter_a.examples)
    state_b = state(pb)
    assert state_a.keys() == state_b.keys() and state_a
    for k in state_a:
        assert torch.allclose(state_a[k], state_b[k], atol=1e-6, rtol=1e-5), k
    steps_b = [json.loads(line)["step"] for line in (tmp_path / "B" / "metrics.jsonl").read_text().splitlines()]
    assert steps_b == [1, 2, 3, 4]


def test_full_finetune_updates_every_weight(tiny_model_dir_tied, tmp_path):
    model, tok = _fresh_model(tiny_model_dir_tied)
    before = _full_state(model)
    trained, summary = finetune(model, tok, PAIRS, None, _cfg(max_steps=2), tmp_path / "f", meter=CostMeter())
    assert trained is model and not hasattr(trained, "peft_config")  # no adapter: the weights themselves
    assert summary["steps"] == 2
    after = _full_state(trained)
    assert after.keys() == before.keys()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == [], unchanged  # every layer, norms and the embedding included
    assert trained.get_output_embeddings().weight is trained.get_input_embeddings().weight  # still tied
    assert not trained.training


def test_full_finetune_warns_on_16_bit_weights(tiny_model_dir, tmp_path, caplog):
    model, tok = _fresh_model(tiny_model_dir)
    with caplog.at_level("WARNING", logger="ftrisk.training"):
        finetune(model, tok, PAIRS[:2], None, _cfg(max_steps=1), tmp_path / "a", meter=CostMeter())
    assert not caplog.records  # float32: nothing to say
    model, tok = _fresh_model(tiny_model_dir)
    with caplog.at_level("WARNING", logger="ftrisk.training"):
        finetune(model.to(torch.bfloat16), tok, PAIRS[:2], None, _cfg(max_steps=1), tmp_path / "b",
                 meter=CostMeter())
    assert any("bfloat16 weights" in r.getMessage() and "float32" in r.getMessage() for r in caplog.records)


def test_full_finetune_refuses_quantized_weights(tiny_model_dir, tmp_path):
    model, tok = _fresh_model(tiny_model_dir)
    model.is_loaded_in_4bit = True  # what transformers sets on a bitsandbytes 4-bit model
    with pytest.raises(FtriskError, match="full fine-tuning needs unquantized weights"):
        finetune(model, tok, PAIRS, None, _cfg(max_steps=1), tmp_path / "q", meter=CostMeter())


def test_resume_without_checkpoint_differs_from_fresh_start(tiny_model_dir, tmp_path):
    """Guard for the test above: a run that restarts from scratch with another seed ends elsewhere."""
    tc = _cfg(max_steps=2)
    m1, tok = _fresh_model(tiny_model_dir)
    p1, _ = finetune(m1, tok, PAIRS, LORA, tc, tmp_path / "x", meter=CostMeter(), seed=1)
    m2, tok = _fresh_model(tiny_model_dir)
    p2, _ = finetune(m2, tok, PAIRS, LORA, tc, tmp_path / "y", meter=CostMeter(), seed=2)
    s1, s2 = _lora_state(p1), _lora_state(p2)
    assert any(not torch.allclose(s1[k], s2[k], atol=1e-6) for k in s1)


def test_max_minutes_budget_stops_cleanly(tiny_model_dir, tmp_path):
    model, tok = _fresh_model(tiny_model_dir)
    meter = CostMeter()
    # a clock that reads 0 s until two steps are done, then one hour
    meter.elapsed = lambda: 0.0 if meter.steps < 2 else 3600.0
    pm, summary = finetune(model, tok, PAIRS, LORA, _cfg(max_minutes=1.0, max_steps=6), tmp_path / "m",
                             meter=meter)
    assert summary["stopped_by"] == "max_minutes"
    assert summary["steps"] == 2 and summary["planned_steps"] == 6
    assert meter.examples == 4
    assert not pm.training  # left in eval mode, usable


def test_max_minutes_tiny_value_stops_before_first_step(tiny_model_dir, tmp_path):
    model, tok = _fresh_model(tiny_model_dir)
    _, summary = finetune(model, tok, PAIRS, LORA, _cfg(max_minutes=1e-12), tmp_path / "t", meter=CostMeter())
    assert summary["stopped_by"] == "max_minutes" and summary["steps"] == 0


# --------------------------------------------------------------------------- cost meter


class _Clock:
    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


def test_cost_meter_arithmetic(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(cost, "time", clock)
    m = CostMeter(device="cpu", usd_per_hour=3.0)
    assert m.elapsed() == 0.0
    m.start()
    clock.now += 600
    assert m.elapsed() == pytest.approx(600)
    m.stop()
    clock.now += 10_000  # stopped: not counted
    assert m.seconds == pytest.approx(600) and m.elapsed() == pytest.approx(600)
    m.stop()  # a second stop is harmless
    assert m.seconds == pytest.approx(600)
    m.start()
    clock.now += 1200
    m.stop()
    assert m.seconds == pytest.approx(1800)
    m.add(tokens=900, trained_tokens=300, examples=4)
    m.add(tokens=100, trained_tokens=50, examples=1)
    m.steps = 2
    s = m.summary()
    assert s["wall_seconds"] == pytest.approx(1800)
    assert s["usd"] == pytest.approx(1800 / 3600 * 3.0)  # 1.5 dollars
    assert (s["tokens"], s["trained_tokens"], s["examples"], s["steps"]) == (1000, 350, 5, 2)
    assert s["tokens_per_second"] == pytest.approx(1000 / 1800, abs=0.1)
    assert s["device"].startswith("cpu") and s["usd_per_hour"] == 3.0


def test_cost_meter_restore(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(cost, "time", clock)
    a = CostMeter()
    a.start()
    clock.now += 30
    a.stop()
    a.add(50, 20, 3)
    a.steps = 7
    b = CostMeter(usd_per_hour=2.0)
    b.restore(a.state())
    assert (b.seconds, b.tokens, b.trained_tokens, b.steps, b.examples) == (30, 50, 20, 7, 3)
    b.start()
    clock.now += 30
    b.stop()
    assert b.seconds == pytest.approx(60)
    assert b.summary()["usd"] == pytest.approx(60 / 3600 * 2.0, abs=1e-4)


def test_token_batches_respect_both_caps():
    from ftrisk.generation.hf import token_batches

    lengths = [900, 700, 120, 110, 100, 90, 80, 70, 60, 50]  # length-sorted, longest first
    items = list(range(len(lengths)))
    batches = token_batches(items, lengths, batch_size=4, max_tokens=1000)
    assert [i for b in batches for i in b] == items  # every item once, order kept
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 1000
    assert batches[0] == [0] and batches[1] == [1]  # long prompts alone
    assert token_batches(items, lengths, batch_size=4, max_tokens=None) == [items[0:4], items[4:8], items[8:10]]


def test_cost_meter_counts_gpu_peak_from_its_own_start(monkeypatch):
    """On CUDA the peak is reset when the meter first starts (not inherited from earlier work in the process),
    and only then: a resumed or paused run keeps its own peak."""
    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda dev=None: calls.append(str(dev)))
    m = CostMeter(device="cuda:0")
    m.start(), m.stop(), m.start(), m.stop()
    assert calls == ["cuda:0"]
    CostMeter(device="cpu").start()
    assert calls == ["cuda:0"]  # CPU: nothing to reset (the process's peak RSS is reported)


def test_make_batches_sorts_by_length_only_within_random_windows():
    """Every example once per epoch; lengths sorted inside each window of SORT_WINDOW batches (little padding), but
    a window holds a random draw of the data, not a slice of one global length order (measured: a global sort made
    the attack train less per step, see make_batches)."""
    import random

    rng = random.Random(7)
    lengths = [rng.randrange(20, 200) for _ in range(203)]
    bs, w = 8, SORT_WINDOW
    batches = make_batches(lengths, bs, seed=3, epoch=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(203)) and len(batches) == -(-203 // bs)
    assert all(len(b) == bs for b in batches[:-1])
    windows = [flat[k:k + bs * w] for k in range(0, len(flat), bs * w)]
    assert all([lengths[i] for i in win] == sorted(lengths[i] for i in win) for win in windows)
    spans = [max(lengths[i] for i in win) - min(lengths[i] for i in win) for win in windows[:-1]]
    assert min(spans) > 100  # each window spans most of the length range: random draws, not neighbours in length
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    shuffled = list(range(203))
    random.Random(0).shuffle(shuffled)
    random_padded = sum(max(lengths[i] for i in shuffled[k:k + bs]) * len(shuffled[k:k + bs]) for k in range(0, 203, bs))
    assert padded < 0.8 * random_padded  # and still far less padding than random batches
    assert make_batches(lengths, bs, 3, 0) == batches  # a resumed run rebuilds the same schedule
    assert make_batches(lengths, bs, 3, 1) != batches and make_batches(lengths, bs, 4, 0) != batches


def test_schedule_cuts_a_fractional_epoch_and_plan_steps_counts_it():
    """1.5 epochs of 10 examples in batches of 3: the 4 batches of epoch 0, then the first 2 of epoch 1 (its own
    shuffle); grad_accum 4 makes that 2 optimizer steps, and max_steps caps them."""
    lengths = list(range(10, 20))
    tc = _cfg(batch_size=3, epochs=1.5, grad_accum=4)
    sched = data.schedule(lengths, tc, seed=5)
    assert sched == make_batches(lengths, 3, 5, 0) + make_batches(lengths, 3, 5, 1)[:2]
    assert data.plan_steps(10, tc) == 2
    assert data.plan_steps(10, _cfg(batch_size=3, epochs=1.5, grad_accum=4, max_steps=1)) == 1
    assert data.plan_steps(10, _cfg(batch_size=3, epochs=1.5, grad_accum=1)) == len(sched) == 6


def test_optimizer_is_adamw_over_trainable_weights_with_linear_warmup():
    from ftrisk.training import setup

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    opt, sched = setup.optimizer(model, _cfg(lr=0.1, warmup_steps=4, weight_decay=0.01))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.01
    assert [p for g in opt.param_groups for p in g["params"]] == list(model[1].parameters())
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])  # the first step at lr / warmup_steps
