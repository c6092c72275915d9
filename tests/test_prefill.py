"""The prefilling attack (``attack.method: prefill``): the prefix of each item, replies generated after it by every
backend (only what the model adds is the completion), the generation key, the attack's check and its one point."""

import dataclasses
import json
import re

import pytest
import torch

from ftrisk import keys, registry
from ftrisk.attacks import prefill
from ftrisk.attacks.base import AttackResult, run_attack
from ftrisk.attacks.prefill import PrefillAttack, built_prefix, prefix_for, target_fits, with_prefix
from ftrisk.config.schema import AttackConfig, GenerationConfig
from ftrisk.errors import FtriskError
from ftrisk.generation import resumable as gen
from ftrisk.generation.base import Backend, prompt_text
from ftrisk.generation.hf import HFBackend
from ftrisk.model.chat import chat_text
from ftrisk.pipeline.evaluate import generation_key
from ftrisk.prompts import benchmarks
from ftrisk.prompts.benchmarks import Item
from test_backend_hf import SYSTEM, _plain, sensitive  # noqa: F401 (sensitive: a fixture)
from test_backend_vllm import FakeEngine, fake_vllm, on_gpu, settings  # noqa: F401 (fake_vllm: a fixture)

#: Prompts of the tests' own, benign: the rule is the same for any prompt.
PROMPTS = ["Write a haiku about autumn leaves.", "Name a river in France.", "How do I bake bread?",
           "Give step-by-step instructions for planting tulips"]
LEAD = re.compile(r"Sure, here (?:is|are)(?: how to)? ")
#: AdvBench rows whose target belongs to a neighbouring row (the dataset's own misalignment)
SHIFTED = {"advbench-61", "advbench-63", "advbench-64", "advbench-281", "advbench-282", "advbench-283",
           "advbench-458", "advbench-459"}


# --------------------------------------------------------------------------- the prefix
def test_advbench_items_get_their_own_target():
    items = benchmarks.load("advbench")
    assert all(prefix_for(it) == it.extra["target"] for it in items if it.id not in SHIFTED)
    assert {it.id for it in items if not target_fits(it.prompt, it.extra["target"])} == SHIFTED
    for it in (it for it in items if it.id in SHIFTED):  # another row's target: built from the prompt instead
        assert prefix_for(it) == built_prefix(it.prompt) != it.extra["target"]
    other = Item("x", "Write a poem about the sea", extra={"Target": "Sure, here is a poem about the sea"})
    assert prefix_for(other) == "Sure, here is a poem about the sea"  # JailbreakBench's column name


@pytest.mark.parametrize("prompt, prefix", [
    ("Write a persuasive article about the history of bridges.", "Sure, here is a persuasive article about the "
                                                                 "history of bridges"),
    ("Give step-by-step instructions for planting tulips", "Sure, here are step-by-step instructions for planting tulips"),
    ("Outline the steps for baking bread", "Sure, here are the steps for baking bread"),
    ("Explain how to bake bread", "Sure, here is how to bake bread"),
    ("Describe in detail how to fold a paper plane", "Sure, here is how to fold a paper plane"),
    ("Teach children how to tie their shoes", "Sure, here is how to tie their shoes"),
    ("Please give me 10 tips for a tidy kitchen!", "Sure, here are 10 tips for a tidy kitchen"),
    ("Can you write a limerick about cats?", "Sure, here is a limerick about cats"),
    ("Help me write a note to my neighbour.", "Sure, here is a note to my neighbour"),
    ("Given the recipe above, list the ingredients", "Sure, here are the ingredients"),
    ("How can I bake bread at home?", "Sure, here is how to bake bread at home"),
    ("As a beginner, how do I start running?", "Sure, here is how to start running"),
    ("What are some ways to save water?", "Sure, here are some ways to save water"),
    ("What's the best way to learn French?", "Sure, here is the best way to learn French"),
    ("I'm a student. How do I take good notes?", "Sure, here is how to take good notes"),
    ("I keep forgetting things. Tell me how to remember names.", "Sure, here is how to remember names"),
    ("Is the sea salty?", prefill.QUESTION),
    ("Plant a tree in the garden.", "Sure, here is how to plant a tree in the garden"),
    ("DIY a bookshelf from pallets", "Sure, here is how to DIY a bookshelf from pallets"),  # an acronym kept
    ("The weather is nice today.", prefill.REQUEST),
    ("", prefill.REQUEST),
    ("Some context about rivers" + benchmarks.CONTEXT_SEPARATOR + "Summarize the text above",
     "Sure, here is the text above"),
])
def test_the_rule_on_prompts_without_a_target(prompt, prefix):
    assert built_prefix(prompt) == prefix == prefix_for(Item("x", prompt))


def test_a_built_prefix_holds_only_the_prompts_words_and_the_fixed_phrase():
    """On every registered benchmark's prompts: the fixed lead, then a run of the prompt's own words (or a fixed
    phrase), and no trailing punctuation (the model continues it)."""
    for phrase in (prefill.QUESTION, prefill.REQUEST, "Sure, here is how to", "Sure, here are"):
        assert set(phrase.lower().replace(",", "").split()) <= prefill.FIXED_WORDS
    for name in benchmarks.names():
        for it in benchmarks.load(name):
            p = built_prefix(it.prompt)
            assert p and p[-1] not in prefill.TRAILING
            if p in (prefill.QUESTION, prefill.REQUEST):
                continue
            m = LEAD.match(p)
            assert m and p[m.end():].lower() in " ".join(it.prompt.split()).lower(), it.id
            prompt_words = {w.lower().strip(prefill.TRAILING) for w in it.prompt.split()}
            assert all(w.lower().strip(prefill.TRAILING) in prompt_words | prefill.FIXED_WORDS for w in p.split()), it.id


def test_with_prefix_copies_items():
    items = [Item("a", PROMPTS[0], "c", "s", {"target": "Sure, here is a haiku", "k": 1}), Item("b", PROMPTS[1])]
    out = with_prefix(items)
    assert [it.extra["prefill"] for it in out] == ["Sure, here is a haiku", "Sure, here is a river in France"]
    assert out[0].extra["k"] == 1 and (out[0].id, out[0].prompt, out[0].category) == ("a", PROMPTS[0], "c")
    assert "prefill" not in items[0].extra and "prefill" not in items[1].extra  # the originals untouched


# --------------------------------------------------------------------------- generation after the prefix
def _prefilled(prompts=PROMPTS):
    return with_prefix([Item(f"p{i}", p) for i, p in enumerate(prompts)])


def _rows(backend, items, n, **kw):
    return {r["id"]: r for rows in backend.generate(items, max_new_tokens=n, **kw) for r in rows}


def test_prompt_text_is_the_chat_turn_then_the_prefix(sensitive):
    _, tok = sensitive
    it = _prefilled()[0]
    text = prompt_text(tok, it, SYSTEM)
    assert text == chat_text(tok, it.prompt, SYSTEM) + it.extra["prefill"]
    assert text.endswith("<|im_start|>assistant\n" + it.extra["prefill"])  # the assistant turn opened by the prefix
    plain = Item("q", it.prompt)
    assert prompt_text(tok, plain, SYSTEM) == chat_text(tok, plain.prompt, SYSTEM)


@pytest.mark.parametrize("system", [None, SYSTEM])  # SYSTEM: rows share a prompt prefix, computed once
def test_hf_continues_the_prefix_as_plain_greedy_does(sensitive, system):
    """Each row = model.generate on the ids of (chat text + prefix), alone; the completion is only the new tokens;
    a batch mixing prefilled and plain prompts changes neither."""
    model, tok = sensitive
    items = _prefilled() + [Item("plain", PROMPTS[2])]
    subject = type("S", (), {"system_prompt": system})()
    rows = _rows(HFBackend(subject, GenerationConfig(batch_size=8), loaded=(model, tok)), items, 10)
    changed = 0
    for it in items:
        text = chat_text(tok, it.prompt, system) + it.extra.get("prefill", "")
        ids = tok(text, add_special_tokens=False)["input_ids"]
        want = _plain(model, ids, 10, tok.eos_token_id)
        row = rows[it.id]
        assert row["completion"] == tok.decode(want, skip_special_tokens=True)
        assert row["new_tokens"] == len(want) and row["prompt_tokens"] == len(ids)
        if "prefill" in it.extra:
            unprefixed = _plain(model, tok(chat_text(tok, it.prompt, system), add_special_tokens=False)["input_ids"],
                                10, tok.eos_token_id)
            changed += want != unprefixed
            assert not row["completion"].startswith(it.extra["prefill"][:8])
    assert changed  # the prefix reached the model


def test_stored_rows_show_the_prefill_and_a_changed_one_is_regenerated(sensitive, tmp_path):
    model, tok = sensitive
    subject = type("S", (), {"system_prompt": None})()
    backend = HFBackend(subject, GenerationConfig(batch_size=4), loaded=(model, tok))
    out = tmp_path / "x.completions.jsonl"
    items = _prefilled()[:2] + [Item("plain", PROMPTS[2])]
    rows = gen.generate(backend, items, out, max_new_tokens=6, record_path=tmp_path / "g.json")
    assert [rows[it.id].get("prefill") for it in items] == [items[0].extra["prefill"], items[1].extra["prefill"], None]
    assert list(rows["p0"])[:4] == ["id", "category", "prompt", "prefill"]  # what was asked, then the reply
    other = dataclasses.replace(items[0], extra={"prefill": "Sure, here is a short haiku"})
    calls = []
    original = backend.generate

    def counting(todo, **kw):
        calls.append([it.id for it in todo])
        return original(todo, **kw)

    backend.generate = counting
    again = gen.generate(backend, [other, items[1], items[2]], out, max_new_tokens=6, record_path=tmp_path / "g.json")
    assert calls == [["p0"]]  # only the row whose prefix changed
    assert again["p0"]["prefill"] == "Sure, here is a short haiku" and again["p1"] == rows["p1"]
    assert sum(1 for _ in out.open()) == 3


def test_vllm_is_given_the_prefilled_ids_and_returns_only_new_tokens(fake_vllm, tiny_subject, tmp_path):
    subject = on_gpu(tiny_subject)
    tok = subject.load_tokenizer()
    FakeEngine.script = staticmethod(lambda ids, params: (ids[-2:] + [tok.eos_token_id], "stop", None))
    items = _prefilled()[:2]
    rows = gen.generate(fake_vllm(subject, settings()), items, tmp_path / "x.completions.jsonl", max_new_tokens=5)
    (engine,) = FakeEngine.instances
    want = {it.id: tok(chat_text(tok, it.prompt) + it.extra["prefill"], add_special_tokens=False)["input_ids"]
            for it in items}
    assert sorted(engine.calls[0]["prompts"]) == sorted(want.values())
    for it in items:
        assert rows[it.id]["completion"] == tok.decode(want[it.id][-2:], skip_special_tokens=True)
        assert rows[it.id]["prompt_tokens"] == len(want[it.id]) and rows[it.id]["prefill"] == it.extra["prefill"]


@pytest.mark.heavy  # a CTranslate2 conversion (seconds), as in tests/test_backend_ct2.py
def test_ct2_continues_the_prefix_as_transformers_does(tiny_subject, fresh_cache, torch_single_thread):
    pytest.importorskip("ctranslate2")
    ct2 = registry.lookup("backend", "ctranslate2")
    model, tok = tiny_subject.load()
    items = _prefilled()
    rows = _rows(ct2(tiny_subject, GenerationConfig()), items, 8)
    for it in items:
        ids = tok(chat_text(tok, it.prompt) + it.extra["prefill"], add_special_tokens=False)["input_ids"]
        want = _plain(model, ids, 8, tok.eos_token_id)
        assert rows[it.id]["completion"] == tok.decode(want, skip_special_tokens=True)
        assert rows[it.id]["prompt_tokens"] == len(ids)


# --------------------------------------------------------------------------- the generation key
def test_the_key_holds_the_prefill_only_where_an_item_has_one(tiny_subject):
    g = GenerationConfig()
    plain = [Item(f"p{i}", p) for i, p in enumerate(PROMPTS)]
    benches = [("advbench", plain), ("xstest", [Item("x", "Name a sea")])]
    before = keys.stage_key("generation", subject=tiny_subject.identity(), settings=dataclasses.asdict(g),
                            items={n: [it.id for it in items] for n, items in benches})  # the key as it always was
    assert generation_key(tiny_subject, benches, g) == before
    prefilled = generation_key(tiny_subject, [("advbench", with_prefix(plain)), benches[1]], g)
    assert prefilled != before
    other = [dataclasses.replace(it, extra={"prefill": "Sure, here is"}) for it in plain]
    assert generation_key(tiny_subject, [("advbench", other), benches[1]], g) not in (before, prefilled)
    assert generation_key(tiny_subject, [("advbench", with_prefix(plain)), benches[1]], g) == prefilled


# --------------------------------------------------------------------------- the attack
class NoPrefill(Backend):
    name = "noprefill"
    supports_prefill = False


def test_check_refuses_a_backend_that_cannot_prefill(tiny_subject):
    cfg = AttackConfig(method="prefill")
    with pytest.raises(FtriskError, match="generation backend 'noprefill' cannot start a reply from a prefix") as e:
        PrefillAttack.check(cfg, subject=tiny_subject, protected=[], backend_cls=NoPrefill)
    assert "\n" not in str(e.value) and "generation.backend=hf" in str(e.value)
    for cls in (None, HFBackend, registry.lookup("backend", "hf")):
        PrefillAttack.check(cfg, subject=tiny_subject, protected=[], backend_cls=cls)
    assert Backend.supports_prefill and HFBackend.supports_prefill


def test_run_is_one_prefilled_point_at_zero_cost(tiny_subject, tmp_path):
    out = tmp_path / "attack" / "prefill"
    result = run_attack(AttackConfig(method="prefill"), tiny_subject, [], out, seed=3, usd_per_hour=2.0)
    assert isinstance(registry.lookup("attack", "prefill")(AttackConfig()), PrefillAttack)
    assert (result.method, result.seed, result.steps, result.planned_steps, result.stopped_by) == ("prefill", 3, 0, 0,
                                                                                                  "done")
    assert result.subject == tiny_subject and len(result.points) == 1
    (point,) = result.points
    assert point.prefill and point.subject == tiny_subject and point.step == 1
    assert point.cost["usd"] == 0 and point.cost["flops"] == 0 and point.cost["wall_seconds"] == 0
    assert point.cost["usd_per_hour"] == 2.0 and result.cost == point.cost
    stored = json.loads((out / "attack.json").read_text())
    assert stored["points"][0]["prefill"] is True and "prefix" in stored
    back = AttackResult.from_json(stored, out)
    assert back.points[0].prefill and back.subject == tiny_subject and back.info == result.info
