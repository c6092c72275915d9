"""Defense recipes (``harden.recipe``): refusal-sft exactly as before recipes existed (its key, its data), and
deep-alignment's safety-recovery examples (an opening's first k tokens with no loss, then the refusal), built from
content-free openings disjoint from attack and evaluation data. Tiny in-process models; no harmful completion."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch

from ftrisk import config, registry
from ftrisk.attacks import prefill
from ftrisk.attacks.data import builtin_items, load_data
from ftrisk.defenses import deep_alignment, harden
from ftrisk.errors import FtriskError
from ftrisk.model.loading import load_tokenizer
from ftrisk.pipeline import run as pipeline
from ftrisk.prompts import benchmarks
from ftrisk.training.data import IGNORE, Example, encode, n_trained

#: refusal-sft's hardened-model key for the fixture below, as computed before recipes existed (commit 7db4e7e):
#: a changed value means every hardened model in users' caches and every finished run is redone.
REFUSAL_SFT_KEY = "a2379b2a33a8f0190650"

#: Every word a shipped opening may hold: affirmative and structural words only, no task or topic.
OPENING_WORDS = frozenset("""sure here is are a an the how you can do it to that this tutorial guide plan steps step
instructions instruction everything need needs know complete walkthrough information detailed detail explanation
heres here's what youll you'll get started thing thorough answer exactly works absolutely details of course certainly
requested okay no problem happy help great question its it's done first will i with yes full method alright lets
let's definitely go follow step-by-step by 1""".split())


class _Subject:
    def identity(self):
        return {"weights": "abc", "dtype": "float32"}


class _Judge:
    def identity(self):
        return {"name": "refusal-patterns"}


PLAN = {"harmful": [("sr-1", "a harmful prompt", "I can't help with that.")],
        "benign": [("b-1", "bake bread?", "cooking")], "n_excluded_overlap": {"strongreject": 0, "benign": 0}}


def test_refusal_sft_key_is_the_key_from_before_recipes():
    """Existing caches and runs stay valid: the default recipe adds nothing to the key; another recipe does."""
    key = harden.cache_key(config.load(None, []), _Subject(), PLAN, _Judge())
    assert key == REFUSAL_SFT_KEY
    assert harden.cache_key(config.load(None, ["harden.recipe=refusal-sft"]), _Subject(), PLAN, _Judge()) == key
    deep = harden.cache_key(config.load(None, ["harden.recipe=deep-alignment"]), _Subject(), PLAN, _Judge())
    assert deep != key


def _plan(*overrides):
    cfg = config.load(None, ["harden.harmful=[harmbench-val]", *overrides])
    return cfg, harden.plan(cfg, builtin_items())


def test_refusal_sft_data_is_unchanged():
    """The plan's rows are (id, prompt, refusal) and each trains as Example(prompt, refusal), as before recipes."""
    cfg, plan = _plan()
    assert plan["harmful"] and all(len(row) == 3 for row in plan["harmful"])
    examples = harden.recipe(cfg).harmful_examples(plan["harmful"], tok=None, seed=cfg.seed)
    assert examples == [Example(p, r) for _, p, r in plan["harmful"]]
    assert set(plan["n_excluded_overlap"]) == {"harmbench-val", "benign"}
    assert harden.recipe(cfg).trainer(cfg.harden).name == "lora"


def test_deep_alignment_plan_same_prompts_and_refusals_half_with_openings():
    cfg0, plain = _plan()
    cfg, deep = _plan("harden.recipe=deep-alignment")
    assert [row[:3] for row in deep["harmful"]] == [tuple(row) for row in plain["harmful"]]
    assert deep["benign"] == plain["benign"]
    openings = {t for _, t in deep_alignment.builtin_openings()}
    drawn = [row[3] for row in deep["harmful"]]
    assert {o for o in drawn if o} <= openings
    share = sum(1 for o in drawn if o) / len(drawn)
    assert 0.35 < share < 0.65, share  # p = 0.5 over harmbench-val's prompts
    assert deep["n_excluded_overlap"]["openings"] == 0
    assert _plan("harden.recipe=deep-alignment")[1] == deep  # seeded
    assert _plan("harden.recipe=deep-alignment", "seed=1")[1]["harmful"] != deep["harmful"]


def test_opening_equal_to_an_attack_target_is_left_out_with_one_line(caplog):
    first_id, first = deep_alignment.builtin_openings()[0]
    target = benchmarks.Item("adv-x", "some goal", "attack", "advbench", {"target": first.upper() + " "})
    cfg = config.load(None, ["harden.harmful=[harmbench-val]", "harden.recipe=deep-alignment"])
    with caplog.at_level(logging.WARNING, logger="ftrisk.defenses.deep_alignment"):
        plan = harden.plan(cfg, builtin_items() + [target])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and first_id in lines[0] and "adv-x" in lines[0], lines
    assert plan["n_excluded_overlap"]["openings"] == 1
    assert first not in {row[3] for row in plan["harmful"]}
    kept = harden.plan(config.load(None, ["harden.harmful=[harmbench-val]", "harden.recipe=deep-alignment",
                                          "harden.allow_overlap=true"]), builtin_items() + [target])
    assert kept["n_excluded_overlap"]["openings"] == 0


def test_shipped_openings_are_content_free_and_disjoint_from_attack_and_evaluation_data():
    rows = deep_alignment.builtin_openings()
    ids = [i for i, _ in rows]
    assert len(rows) >= 40 and len(set(ids)) == len(ids)
    for i, text in rows:
        words = set(re.findall(r"[a-z0-9'\-]+", text.lower()))
        assert words <= OPENING_WORDS, (i, words - OPENING_WORDS)
    taken = deep_alignment.protected_texts([it for n in benchmarks.names() for it in benchmarks.load(n)])
    for name in registry.names("attack-data"):  # the attack data's prompts and responses
        examples, _ = load_data(f"builtin:{name}")
        for ex in examples:
            taken.setdefault(benchmarks.normalize(ex.prompt), name)
            taken.setdefault(benchmarks.normalize(ex.response), name)
    for phrase in (prefill.QUESTION, prefill.REQUEST):  # the prefill attack's fixed prefixes
        taken.setdefault(benchmarks.normalize(phrase), "prefill")
    assert [(i, taken[benchmarks.normalize(t)]) for i, t in rows if benchmarks.normalize(t) in taken] == []


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir), None, False)


def test_encode_masked_prefix_carries_no_loss(tok):
    prompt, prefix, rest = "Name a river in France.", "Sure, here is a", " I can't help with that."
    plain = encode(tok, Example(prompt, prefix + rest), 256)
    masked = encode(tok, Example(prompt, rest, masked_prefix=prefix), 256)
    n_prompt = next(i for i, lab in enumerate(plain["labels"]) if lab != IGNORE)
    pre = tok(prefix, add_special_tokens=False)["input_ids"]
    assert masked["input_ids"][:n_prompt] == plain["input_ids"][:n_prompt]
    assert masked["input_ids"][n_prompt:n_prompt + len(pre)] == pre
    assert masked["labels"][:n_prompt + len(pre)] == [IGNORE] * (n_prompt + len(pre))
    trained = masked["labels"][n_prompt + len(pre):]
    assert IGNORE not in trained and trained == masked["input_ids"][n_prompt + len(pre):]
    assert tok.decode(trained).startswith(rest)
    assert n_trained(masked) == len(trained) < n_trained(plain)
    # a cut-off answer keeps its prefix too, without the end-of-turn marker
    cut = encode(tok, Example(prompt, rest, complete=False, masked_prefix=prefix), 256)
    assert tok.decode([t for t in cut["labels"] if t != IGNORE]) == rest


def test_encode_plain_example_unchanged(tok):
    """An example without a masked prefix encodes as before: prompt masked, every response token trained."""
    ex = Example("How do I bake bread?", "Mix, knead, rise, bake.")
    e = encode(tok, ex, 256)
    from ftrisk.model.chat import chat_text

    p = tok(chat_text(tok, ex.prompt), add_special_tokens=False)["input_ids"]
    full = chat_text(tok, ex.prompt, response=ex.response)
    r = tok(full[len(chat_text(tok, ex.prompt)):], add_special_tokens=False)["input_ids"]
    assert e == {"input_ids": p + r, "labels": [IGNORE] * len(p) + r}


def test_deep_alignment_examples_cut_openings_at_k_tokens(tok):
    recipe = registry.lookup("defense", "deep-alignment")()
    opening = "Sure, here is a step-by-step guide"
    n_tokens = len(tok(opening, add_special_tokens=False)["input_ids"])
    rows = [(f"h-{i}", f"prompt {i}", "I can't help with that.", opening if i % 2 else None) for i in range(40)]
    examples = recipe.harmful_examples(rows, tok, seed=0)
    ks = set()
    for (_, prompt, refusal, op), ex in zip(rows, examples):
        assert ex.prompt == prompt
        if op is None:
            assert ex == Example(prompt, refusal)
            continue
        assert opening.startswith(ex.masked_prefix) and ex.masked_prefix
        assert ex.response == " " + refusal  # the refusal follows the cut opening as its next word
        ks.add(len(tok(ex.masked_prefix, add_special_tokens=False)["input_ids"]))
    assert ks <= set(range(1, n_tokens + 1)) and len(ks) > 3  # k uniform in [1, the opening's tokens]
    assert recipe.harmful_examples(rows, tok, seed=0) == examples


def test_unknown_recipe_is_one_line_with_the_known_names():
    with pytest.raises(FtriskError) as e:
        config.load(None, ["harden.recipe=vaccine-x"])
    assert str(e.value) == ("config key 'harden.recipe': unknown defense 'vaccine-x' "
                            f"(known: {', '.join(registry.names('defense'))})")
    assert "refusal-sft" in str(e.value) and "deep-alignment" in str(e.value)


@pytest.mark.heavy
def test_deep_alignment_hardens_a_tiny_model(torch_single_thread, tiny_model_dir, benign_jsonl, tmp_path, fresh_cache):
    """The whole hardening stage with deep-alignment: its own cached model, its record, recovery examples trained."""
    def experiment(recipe, out):
        return pipeline.Experiment(config.load(None, [
            f"model.spec={tiny_model_dir}", f"output_dir={tmp_path / out}", "harden.harmful=[harmbench-val]",
            "harden.harmful_limit=8", f"harden.benign={benign_jsonl}", "harden.benign_max_new_tokens=4",
            "harden.train.max_steps=2", "harden.train.batch_size=4", "harden.train.max_seq_len=64",
            "eval.benchmarks=[{name: advbench-test, limit: 2}]", "capability.enabled=false", "eval.judges=[gcg]",
            f"harden.recipe={recipe}"]))

    exp = experiment("deep-alignment", "d")
    subject = exp.harden()
    rec = exp.results["harden"]
    assert rec["recipe"] == "deep-alignment" and rec["recipe_settings"] == {"p": 0.5, "k_max": 100,
                                                                          "openings": deep_alignment.OPENINGS}
    assert rec["n_recovery_examples"] == sum(1 for row in exp.harden_plan["harmful"] if row[3]) > 0
    assert rec["training"]["steps"] == 2
    stored = json.loads((harden.models.cache_dir() / "hardened" / rec["key"] / "hardening.json").read_text())
    assert stored["recipe"] == "deep-alignment"
    assert subject.path.endswith(rec["key"])
    plain = experiment("refusal-sft", "d")  # another recipe in the same folder: its own training, from step 0
    assert harden.cache_key(plain.cfg, plain.subject, plain.harden_plan, plain.filter_judge) != rec["key"]
    other = plain.harden()
    steps = [json.loads(line)["step"] for line in (tmp_path / "d" / "harden" / "train" / "metrics.jsonl").open()]
    assert steps == [1, 2] and plain.results["harden"]["recipe"] == "refusal-sft"
    assert "recipe" not in json.loads((harden.models.cache_dir() / "hardened" / plain.results["harden"]["key"]
                                       / "hardening.json").read_text())  # refusal-sft's stored record as before
    assert other.path != subject.path


# --------------------------------------------------------------------------- vaccine


def _batch(tok, examples):
    from ftrisk.training.data import collate

    return collate([encode(tok, ex, 128) for ex in examples], tok.pad_token_id)


def _authors_vaccine_loss(model, ids, mask, labels, rho):
    """Vaccine as the authors' trainer computes it: backward hooks keep each attention module's output gradient,
    one norm over all of them, forward hooks add rho * g / ||g|| to the outputs, then the loss again."""
    from ftrisk.defenses.vaccine import attention_modules
    from ftrisk.training.loss import response_loss

    mods, grads, hooks = attention_modules(model), {}, []
    for m in mods:
        hooks.append(m.register_full_backward_hook(lambda mod, gin, gout: grads.__setitem__(mod, gout[0].detach())))
    response_loss(model, ids, mask, labels).backward()
    for h in hooks:
        h.remove()
    model.zero_grad()
    norm = torch.norm(torch.stack([grads[m].norm(p=2) for m in mods]), p=2)
    hooks = [m.register_forward_hook(lambda mod, a, out: (out[0] + rho * grads[mod] / (norm + 1e-7), *out[1:]))
             for m in mods]
    loss = response_loss(model, ids, mask, labels)
    for h in hooks:
        h.remove()
    return loss


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_vaccine_loss_is_the_authors_perturbation(torch_single_thread, tiny_model_dir, tok):
    from transformers import AutoModelForCausalLM

    from ftrisk.defenses.vaccine import VaccineLoss
    from ftrisk.training.loss import response_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.requires_grad_(True)
    ids, mask, labels = _batch(tok, [Example("Name a river in France.", "I can't help with that."),
                                     Example("How do I bake bread?", "Mix, knead, rise, bake.")])
    plain = response_loss(model, ids, mask, labels)
    assert torch.allclose(VaccineLoss(model, rho=0.0)(ids, mask, labels), plain)
    ours = VaccineLoss(model, rho=2.0)(ids, mask, labels)
    assert all(p.grad is None for p in model.parameters())  # the first pass leaves no weight gradient
    theirs = _authors_vaccine_loss(model, ids, mask, labels, 2.0)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6) and ours > plain  # a step up the loss
    assert torch.allclose(response_loss(model, ids, mask, labels), plain)  # no hook left behind
    ours.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.heavy
@pytest.mark.parametrize("method", ["lora", "full"])
def test_vaccine_hardens_a_tiny_model(torch_single_thread, tiny_model_dir, benign_jsonl, tmp_path, fresh_cache, method):
    exp = pipeline.Experiment(config.load(None, [
        f"model.spec={tiny_model_dir}", f"output_dir={tmp_path / 'v'}", "harden.harmful=[harmbench-val]",
        f"harden.method={method}",
        "harden.harmful_limit=8", f"harden.benign={benign_jsonl}", "harden.benign_max_new_tokens=4",
        "harden.train.max_steps=2", "harden.train.batch_size=4", "harden.train.max_seq_len=64",
        "eval.benchmarks=[{name: advbench-test, limit: 2}]", "capability.enabled=false", "eval.judges=[gcg]",
        "harden.recipe=vaccine"]))
    subject = exp.harden()
    rec = exp.results["harden"]
    assert rec["recipe"] == "vaccine" and rec["passes_per_step"] == 2 and rec["training"]["steps"] == 2
    metrics = [json.loads(line) for line in (tmp_path / "v" / "harden" / "train" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert (tmp_path / "v" / "harden" / "train" / ("adapter" if method == "lora" else "model")).is_dir()
    model = subject.load()[0]
    base = harden.models.load_subject(exp.subject)[0]
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))
    if method == "full":
        return
    with pytest.raises(FtriskError, match="gradient_checkpointing=false"):
        from ftrisk.defenses.vaccine import VaccineTrainer

        VaccineTrainer(config.load(None, ["harden.train.gradient_checkpointing=true"]).harden).run(
            subject, [], tmp_path / "x", seed=0, usd_per_hour=1.0)
