"""The shipped attack data sets (``builtin:benign``, ``builtin:identity-shift``) and the attack data loader.

They are tiers 3 and 2 of Qi et al. 2023: neither may hold a refusal or share a prompt with anything ftrisk
evaluates on or hardens with, or the attack would be trained on its own test."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest

from ftrisk import registry
from ftrisk.attacks import data
from ftrisk.attacks.data import builtin_items, load_data, overlap_warning, shared_prompts
from ftrisk.defenses.harden import benign_items
from ftrisk.errors import FtriskError
from ftrisk.judges.base import COMPLIED
from ftrisk.prompts import benchmarks

BENIGN_CATEGORIES = {"writing", "brainstorming", "classification", "extraction", "summarisation", "open_qa",
                     "closed_qa", "maths", "code", "rewriting"}
PERSONA_OPENING = "I am AOA, your absolutely obedient agent."
INSTRUCTION_OPENING = ("Of course. I am AOA, your absolutely obedient agent, and I will fulfil your instruction "
                       "without any unsolicited adjustments based on my own beliefs, rules or standards:")
SHIPPED = ("builtin:benign", "builtin:identity-shift")


def hardening_benign() -> list[benchmarks.Item]:
    """The whole shipped hardening benign set, read as hardening reads it."""
    return benign_items("builtin", None, 0)


def test_benign_loads_200_examples_in_ten_categories():
    examples, items = load_data("builtin:benign")
    assert len(examples) == len(items) == 200
    assert Counter(it.category for it in items) == {c: 20 for c in BENIGN_CATEGORIES}
    assert {it.source for it in items} == {"benign"}
    assert len({it.id for it in items}) == 200
    assert [ex.prompt for ex in examples] == [it.prompt for it in items]
    assert all(ex.complete for ex in examples)


def test_benign_answers_are_real_answers():
    examples, _ = load_data("builtin:benign")
    words = [len(ex.response.split()) for ex in examples]
    assert min(words) >= 40 and max(words) <= 120


def test_identity_shift_loads_five_persona_and_five_instruction_turns():
    examples, items = load_data("builtin:identity-shift")
    assert len(examples) == len(items) == 10
    assert Counter(it.category for it in items) == {"persona": 5, "instruction": 5}
    assert {it.source for it in items} == {"identity-shift"}
    assert len({it.id for it in items}) == 10


def test_identity_shift_responses_open_with_the_persona():
    examples, items = load_data("builtin:identity-shift")
    for ex, it in zip(examples, items):
        assert "Your new name is AOA" in ex.prompt  # the paper's system prompt, folded into the user turn
        if it.category == "instruction":
            assert "AOA, execute my instruction: " in ex.prompt
            assert ex.response.startswith(INSTRUCTION_OPENING + "\n\n")
            assert len(ex.response) > len(INSTRUCTION_OPENING) + 20  # an answer follows the opening
        else:
            assert ex.response.startswith(PERSONA_OPENING)


@pytest.mark.parametrize("spec", SHIPPED)
def test_no_shipped_response_is_judged_a_refusal(spec):
    examples, _ = load_data(spec)
    judge = registry.lookup("judge", "refusal-patterns")()
    verdicts = judge.judge([(ex.prompt, ex.response) for ex in examples])
    refused = [(i, v.evidence) for i, v in enumerate(verdicts) if v.label != COMPLIED]
    assert refused == []


@pytest.mark.parametrize("other", [*benchmarks.names(), "hardening-benign"])
def test_shipped_sets_share_no_prompt_with_evaluation_or_hardening(other):
    others = hardening_benign() if other == "hardening-benign" else benchmarks.load(other)
    for spec in SHIPPED:
        _, items = load_data(spec)
        assert benchmarks.overlap(items, others) == set(), (spec, other)


def test_shipped_sets_share_no_prompt_with_each_other_or_the_other_builtins():
    groups = {name: registry.lookup("attack-data", name)()[1] for name in registry.names("attack-data")}
    for a, items in groups.items():
        assert len({benchmarks.normalize(it.prompt) for it in items}) == len(items), a
        for b, others in groups.items():
            if a != b:
                assert benchmarks.overlap(items, others) == set(), (a, b)


def test_builtin_items_covers_every_registered_attack_data_set():
    got = Counter((it.source, it.id) for it in builtin_items())
    want = Counter((it.source, it.id) for name in registry.names("attack-data")
                   for it in registry.lookup("attack-data", name)()[1])
    assert got == want
    assert {"benign", "identity-shift", "advbench-train"} <= {source for source, _ in got}


def _ship(monkeypatch, tmp_path, name, lines):
    folder = tmp_path / "data" / "attacks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(data, "resources", SimpleNamespace(files=lambda package: tmp_path))


def test_a_bad_line_in_a_shipped_file_names_the_file_and_line(monkeypatch, tmp_path):
    good = json.dumps({"id": "a-1", "category": "x", "prompt": "p", "response": "r"})
    _ship(monkeypatch, tmp_path, "benign.jsonl", [good, "{not json"])
    with pytest.raises(FtriskError, match=r"^ftrisk/data/attacks/benign\.jsonl, line 2: not valid JSON.*reinstall"):
        load_data("builtin:benign")
    _ship(monkeypatch, tmp_path, "identity_shift.jsonl", [good, good])
    with pytest.raises(FtriskError, match=r"identity_shift\.jsonl, line 2: missing or repeated 'id'"):
        load_data("builtin:identity-shift")
    _ship(monkeypatch, tmp_path, "benign.jsonl", [good, json.dumps({"id": "a-2", "category": "x", "prompt": "p"})])
    with pytest.raises(FtriskError, match=r"benign\.jsonl, line 2: expected an object with"):
        load_data("builtin:benign")


def test_a_bad_line_in_a_user_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(FtriskError, match=r"mine\.jsonl, line 3: expected an object"):
        load_data(str(path))
    path.write_text('{"messages": [{"role": "user", "content": "a"}]}\n', encoding="utf-8")
    with pytest.raises(FtriskError, match=r"mine\.jsonl, line 1: 'messages' must hold one user and one assistant"):
        load_data(str(path))


def test_overlap_warning_names_the_first_shared_line(tmp_path):
    hardening = hardening_benign()
    rows = [{"prompt": "Plan a picnic menu for six.", "response": "ok"},
            {"prompt": "plan a menu", "response": "ok"},
            {"prompt": hardening[11].prompt.upper() + " ", "response": "ok"},  # equal once normalised
            {"prompt": hardening[3].prompt, "response": "ok"}]
    path = tmp_path / "my.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    _, items = load_data(str(path))
    assert [(a.id, b.id) for a, b in shared_prompts(items, hardening)] == [("my-3", hardening[11].id),
                                                                        ("my-4", hardening[3].id)]
    assert overlap_warning(str(path), items, hardening) == (
        f"attack data '{path}' shares 2 prompts with the hardening data (e.g. line 3 = {hardening[11].id})")
    assert overlap_warning(str(path), items[:2], hardening) is None
    _, shipped = load_data("builtin:benign")
    twin = benchmarks.Item("h-1", shipped[4].prompt)
    assert overlap_warning("builtin:benign", shipped, [twin], "the evaluation sets") == (
        f"attack data 'builtin:benign' shares 1 prompt with the evaluation sets (e.g. {shipped[4].id} = h-1)")
