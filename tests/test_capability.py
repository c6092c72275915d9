"""Capability retention (MMLU, HellaSwag through lm-eval): fast tier on a tiny random model.

The accuracies of a random model mean nothing; what is tested is the plumbing (vendored data,
item selection, lm-eval task folders, resume, adapters, CLI), the pairing and the statistics,
and -- independently of lm-eval -- that its choice on 100 MMLU items is the argmax of the answer
letters' log-likelihoods computed by hand with plain transformers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from ftrisk import stats
from ftrisk.capability import data, harness
from ftrisk.capability.deltas import compare, deltas
from ftrisk.report.capability import report_lines
from ftrisk.cli import capability as capability_cli
from ftrisk.config.schema import CapabilityConfig, ModelConfig
from ftrisk.model.subject import Subject
from ftrisk.errors import FtriskError

LETTERS = "ABCD"

# One torch thread (conftest): on a shared 2-core box, 2 OpenMP threads made these tests ~4x slower.
pytestmark = pytest.mark.usefixtures("torch_single_thread")


def S(model_dir, adapter=None, **model_options):
    """The subject of a model folder (+ adapter) with ftrisk's defaults, on the CPU."""
    if model_options.get("quantize"):  # a 4-bit subject cannot be loaded here; its identity is what is tested
        import dataclasses

        return dataclasses.replace(S(model_dir, adapter), **model_options)
    return Subject.from_config(ModelConfig(spec=str(model_dir), device="cpu", **model_options)).with_adapter(adapter)


# --------------------------------------------------------------------------- vendored data


def test_vendored_files_match_checksums():
    root = resources.files("ftrisk").joinpath("data", "capability")
    lines = root.joinpath("SHA256SUMS").read_text().split("\n")
    entries = [ln.split() for ln in lines if ln.strip()]
    assert len(entries) == 57 * 2 + 2 + 2  # test + dev CSVs, MMLU README.txt + LICENSE, HellaSwag jsonl + LICENSE
    for digest, rel in entries:
        node = root
        for part in rel.split("/"):
            node = node.joinpath(part)
        assert hashlib.sha256(node.read_bytes()).hexdigest() == digest, rel
    pinned = dict((rel, d) for d, rel in entries)  # values pinned in shared/data/README.md
    assert pinned["hellaswag/hellaswag_val.jsonl"] == "0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588"
    assert pinned["mmlu/LICENSE"] == "5d841b9eee8bf0d721359b79fbae956a8b426d3139bfefee32149c7d4f2a1a9c"


def test_row_counts_and_parsing():
    subjects = data.mmlu_subjects()
    assert len(subjects) == 57
    assert sum(len(data.mmlu_rows(s, "test")) for s in subjects) == 14042
    assert all(len(data.mmlu_rows(s, "dev")) == 5 for s in subjects)
    assert len(data.select_items("hellaswag", None, 0)) == 10042
    row = data.mmlu_rows("anatomy", "test")[0]
    assert row["question"].startswith("A lesion causing compression of the facial nerve")
    assert row["answer"] == 0 and len(row["choices"]) == 4
    assert data.mmlu_rows("anatomy", "dev")[0]["answer"] == 3
    # a quoted field with a CRLF inside stays byte-exact (no newline translation)
    assert any("\r\n" in r["question"] for r in data.mmlu_rows("college_mathematics", "dev"))
    assert data.hellaswag_row(0)["ind"] == 24 and data.hellaswag_row(0)["label"] == 3


# --------------------------------------------------------------------------- input errors


def test_task_names():
    assert data.parse_tasks("mmlu,hellaswag") == ["mmlu", "hellaswag"]
    assert data.parse_tasks(["mmlu_anatomy", "mmlu_anatomy"]) == ["mmlu_anatomy"]
    with pytest.raises(FtriskError, match="unknown capability task 'gsm8k'"):
        data.parse_tasks("mmlu,gsm8k")
    with pytest.raises(FtriskError, match="mmlu_nonsense"):
        data.parse_tasks(["mmlu_nonsense"])
    with pytest.raises(FtriskError, match="no capability task"):
        data.parse_tasks("")


def test_fewshot_and_limit_errors(tmp_path):
    assert data.task_fewshot("hellaswag", 5) == 0
    assert data.task_fewshot("mmlu_anatomy", 5) == 5
    with pytest.raises(FtriskError, match=r"num_fewshot 6 is larger than MMLU's dev set \(5"):
        data.task_fewshot("mmlu", 6)
    with pytest.raises(FtriskError, match="num_fewshot must be >= 0"):
        data.task_fewshot("mmlu", -1)
    for bad in (0, -3):
        with pytest.raises(FtriskError, match="limit must be a whole number > 0"):
            harness.evaluate(None, CapabilityConfig(limit=bad), tmp_path)
    with pytest.raises(FtriskError, match="num_fewshot 9"):
        harness.evaluate(None, CapabilityConfig(num_fewshot=9), tmp_path)
    with pytest.raises(FtriskError, match="batch_size"):
        harness.evaluate(None, CapabilityConfig(batch_size=0), tmp_path)
    with pytest.raises(FtriskError, match="model '/nonexistent' not found"):
        S("/nonexistent")


def test_missing_data_file_is_named(tmp_path, monkeypatch):
    fake = tmp_path / "capability"
    (fake / "mmlu" / "test").mkdir(parents=True)
    real = resources.files("ftrisk").joinpath("data", "capability")
    (fake / "SHA256SUMS").write_bytes(real.joinpath("SHA256SUMS").read_bytes())
    monkeypatch.setattr(data, "_data", lambda rel: fake.joinpath(*rel.split("/")))
    for fn in (data.mmlu_subjects, data.mmlu_rows, data._hellaswag_lines):
        fn.cache_clear()
    try:
        with pytest.raises(FtriskError, match=r"'ftrisk/data/capability/mmlu/test/abstract_algebra_test.csv' is missing"):
            data.select_items("mmlu", 100, 0)
        with pytest.raises(FtriskError, match="hellaswag_val.jsonl' is missing"):
            data.select_items("hellaswag", 10, 0)
    finally:
        monkeypatch.undo()
        for fn in (data.mmlu_subjects, data.mmlu_rows, data._hellaswag_lines):
            fn.cache_clear()


# --------------------------------------------------------------------------- item selection


def test_allocate_is_proportional_with_a_floor_of_one():
    sizes = {"a": 1000, "b": 100, "c": 10, "d": 5}
    alloc = data.allocate(sizes, 20)
    assert sum(alloc.values()) == 20 and min(alloc.values()) >= 1
    assert alloc == {"a": 17, "b": 1, "c": 1, "d": 1}
    alloc = data.allocate(sizes, 1000)
    assert sum(alloc.values()) == 1000 and all(alloc[s] <= sizes[s] for s in sizes)
    assert alloc["b"] in (89, 90) and alloc["d"] in (4, 5)
    assert data.allocate({"x": 3, "y": 3}, 5) in ({"x": 3, "y": 2}, {"x": 2, "y": 3})


def test_mmlu_selection_is_stratified_seeded_and_recorded():
    ids = data.select_items("mmlu", 200, seed=0)
    assert len(ids) == len(set(ids)) == 200
    assert ids == data.select_items("mmlu", 200, seed=0)  # same seed + limit -> same items
    assert ids != data.select_items("mmlu", 200, seed=1)
    per = Counter(i.split("/")[1] for i in ids)
    assert set(per) == set(data.mmlu_subjects())  # every subject at least once (limit >= 57)
    sizes = {s: len(data.mmlu_rows(s, "test")) for s in per}
    for s, n in per.items():
        assert abs(n - 200 * sizes[s] / 14042) < 1.0 + 1e-9 or n == 1
    assert per["professional_law"] == round(200 * 1534 / 14042)
    for i in ids:
        task, subject, row = i.split("/")
        assert task == "mmlu" and 0 <= int(row) < sizes[subject]
    # a larger limit extends each subject's sample instead of redrawing it
    big = set(data.select_items("mmlu", 1000, seed=0))
    assert set(ids) <= big
    small = data.select_items("mmlu", 10, seed=3)  # fewer items than subjects: pooled random sample
    assert len(small) == 10 and small == data.select_items("mmlu", 10, seed=3)
    assert len(data.select_items("mmlu", 20000, 0)) == 14042
    one = data.select_items("mmlu_anatomy", 7, 0)
    assert len(one) == 7 and all(i.startswith("mmlu/anatomy/") for i in one)


def test_hellaswag_selection():
    ids = data.select_items("hellaswag", 50, seed=0)
    assert len(set(ids)) == 50 and ids == sorted(ids, key=lambda i: int(i.split("/")[1]))
    assert ids == data.select_items("hellaswag", 50, seed=0) != data.select_items("hellaswag", 50, seed=1)


def test_task_dir_holds_only_the_selected_rows(tmp_path):
    ids = data.select_items("mmlu", 60, 0)
    assert data.write_task_dir(tmp_path, "mmlu", ids, 5) == "mmlu"
    subject_yamls = sorted(tmp_path.glob("mmlu_*.yaml"))
    assert len(subject_yamls) == 57
    rows = [json.loads(ln) for f in sorted((tmp_path / "data").glob("*_test.jsonl")) for ln in f.read_text().splitlines()]
    assert sorted(r["ftrisk_id"] for r in rows) == sorted(ids)
    import yaml

    cfg = yaml.safe_load((tmp_path / "mmlu_anatomy.yaml").read_text())
    assert cfg["description"] == "The following are multiple choice questions (with answers) about anatomy.\n\n"
    assert cfg["num_fewshot"] == 5 and Path(cfg["dataset_kwargs"]["data_files"]["test"]).is_absolute()
    hs = tmp_path / "hs"
    assert data.write_task_dir(hs, "hellaswag", ["hellaswag/0", "hellaswag/5"], 0) == "hellaswag"
    assert "!function utils.process_docs" in (hs / "hellaswag.yaml").read_text()
    assert len((hs / "data" / "hellaswag_val.jsonl").read_text().splitlines()) == 2


# --------------------------------------------------------------------------- statistics


def test_mcnemar_on_a_hand_made_table():
    # 2x2 table: both right 50, only before right (b) 1, only after right (c) 9, both wrong 40.
    before = [True] * 50 + [True] * 1 + [False] * 9 + [False] * 40
    after = [True] * 50 + [False] * 1 + [True] * 9 + [False] * 40
    d = stats.paired_delta(before, after)
    assert (d["b"], d["c"], d["n"]) == (1, 9, 100)
    assert d["delta"] == pytest.approx(0.08)
    assert d["p_mcnemar"] == pytest.approx(2 * (1 + 10) / 1024)  # exact binomial, two-sided
    assert d["ci95"][0] < 0.08 < d["ci95"][1]
    assert stats.mcnemar(0, 0) == 1.0 and stats.mcnemar(5, 5) == 1.0


def test_paired_delta_interval():
    # no item changed: the interval is narrow but not the degenerate [0, 0] a Wald interval gives
    same = [True] * 23 + [False] * 77
    d = stats.paired_delta(same, same)
    assert d["delta"] == 0 and d["ci95"][0] < 0 < d["ci95"][1]
    # swapping the stages mirrors the interval
    before = [True] * 50 + [True] * 3 + [False] * 9 + [False] * 38
    after = [True] * 50 + [False] * 3 + [True] * 9 + [False] * 38
    fwd, back = stats.paired_delta(before, after), stats.paired_delta(after, before)
    assert fwd["ci95"] == pytest.approx([-back["ci95"][1], -back["ci95"][0]], abs=1e-4)
    # coverage on simulated paired data with a known difference (P(c) - P(b) = 0.05)
    rng = random.Random(1)
    hits, sims = 0, 1000
    for _ in range(sims):
        u = [rng.random() for _ in range(100)]
        first = [x < 0.40 or 0.90 <= x < 0.95 for x in u]  # b-cells: first right only, p=0.05
        second = [x < 0.40 or 0.80 <= x < 0.90 for x in u]  # c-cells: second right only, p=0.10
        lo, hi = stats.paired_delta(first, second)["ci95"]
        hits += lo <= 0.05 <= hi
    assert 0.93 <= hits / sims <= 0.99


def test_wilson_ci_covers_a_known_binomial():
    rng = random.Random(0)
    for p, n in ((0.25, 100), (0.6, 400)):
        hits = 0
        for _ in range(2000):
            k = sum(rng.random() < p for _ in range(n))
            lo, hi = stats.wilson(k, n)
            hits += lo <= p <= hi
        assert 0.93 <= hits / 2000 <= 0.97


def _fake(acc_flags, ids_sha="x", k=5, metric="acc"):
    r = stats.rate(sum(acc_flags), len(acc_flags))
    return {"n": r["n"], "k": r["k"], "acc": r["rate"], "ci95": r["ci95"], "metric": metric, "num_fewshot": k,
            "items_sha256": ids_sha, "correct": list(acc_flags)}


def test_compare_and_report_lines():
    base = {"mmlu": _fake([True] * 30 + [False] * 70), "hellaswag": _fake([True] * 40 + [False] * 60, k=0, metric="acc_norm")}
    hard = {"mmlu": _fake([True] * 29 + [False] * 71), "hellaswag": _fake([True] * 41 + [False] * 59, k=0, metric="acc_norm")}
    att = {"mmlu": _fake([False] * 5 + [True] * 25 + [False] * 70), "hellaswag": _fake([True] * 40 + [False] * 60, k=0, metric="acc_norm")}
    c = compare(hard, att)
    assert c["mmlu"]["delta"] == pytest.approx(-0.04) and (c["mmlu"]["b"], c["mmlu"]["c"]) == (5, 1)
    assert c["mmlu"]["p_mcnemar"] == pytest.approx(stats.mcnemar(5, 1))

    def st(caps, vs=None, point=None, ref=None):
        out = {"capability": caps}
        if vs:
            out["capability_delta"] = {"vs": vs, **deltas(ref, caps)}
        if point:
            out["point"] = {"step": point}
        return out

    stages = {"base": st(base), "hardened": st(hard, "base", ref=base), "attacked": st(att, "hardened", 50, hard)}
    lines = report_lines(stages)
    assert len(lines) == 2
    assert lines[0].startswith("MMLU 5-shot (n=100): base 0.300 [")
    assert "→ hardened 0.290" in lines[0] and "→ attacked 0.250" in lines[0]
    assert "Δ(attacked−hardened) -0.040" in lines[0] and "McNemar p=" in lines[0]  # the stored delta is shown
    assert lines[1].startswith("HellaSwag 0-shot acc_norm (n=100): base 0.400")
    assert report_lines({"base": st(base)})[0].endswith("]")  # one stage: no delta
    with_points = report_lines({**stages, "step-25": st(hard, "hardened", 25, hard)})
    assert "Δ(attacked−hardened) -0.040" in with_points[0] and with_points[0].endswith("; attack points: step-25 0.290")
    with pytest.raises(FtriskError, match="different items"):
        compare(base, {"mmlu": _fake([True] * 30 + [False] * 70, ids_sha="y")})
    other = {"mmlu": _fake([True] * 30 + [False] * 70, ids_sha="y")}
    unpaired = {"hardened": st(hard), "attacked": st(other, "hardened", 50, hard)}
    assert "no paired Δ" in report_lines(unpaired)[0]


# --------------------------------------------------------------------------- end to end on a tiny model


@pytest.fixture(scope="module")
def tiny_run(torch_single_thread, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("capability")
    cfg = CapabilityConfig(tasks=["mmlu", "hellaswag"], limit=100, num_fewshot=0, batch_size=8)
    return cfg, out, harness.evaluate(S(tiny_model_dir), cfg, out, seed=0)


def test_evaluate_writes_results_ids_and_logs(tiny_run):
    cfg, out, res = tiny_run
    assert list(res) == ["mmlu", "hellaswag"]
    assert json.loads((out / "capability.json").read_text()) == res
    for task, r in res.items():
        ids = (out / r["items"]).read_text().split()
        assert ids == data.select_items(task, 100, 0) and r["n"] == 100 == len(r["correct"])
        assert r["k"] == sum(r["correct"]) and r["acc"] == pytest.approx(r["k"] / r["n"], abs=1e-4)
        assert r["ci95"] == stats.rate(r["k"], r["n"])["ci95"]
        assert r["lm_eval_acc"] == pytest.approx(r["acc"], abs=1e-4)  # lm-eval's own aggregate agrees
        assert r["seconds"] > 0 and r["items_per_s"] > 0
        samples = [json.loads(ln) for ln in (out / r["samples"]).read_text().splitlines()]
        by_id = {s["doc"]["ftrisk_id"]: s for s in samples}
        assert sorted(by_id) == sorted(ids)
        assert [bool(by_id[i][r["metric"]]) for i in ids] == r["correct"]
    assert res["mmlu"]["metric"] == "acc" and res["mmlu"]["num_fewshot"] == 0
    assert res["hellaswag"]["metric"] == "acc_norm" and res["hellaswag"]["num_fewshot"] == 0
    assert sum(n for _, n in res["mmlu"]["by_subject"].values()) == 100


def test_evaluate_resumes_and_recomputes_on_changed_inputs(tiny_run, tiny_model_dir, monkeypatch):
    cfg, out, res = tiny_run

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(harness, "run_task", boom)
    monkeypatch.setattr(harness, "load_lm", lambda *a, **k: None)
    assert harness.evaluate(S(tiny_model_dir), cfg, out, seed=0) == res
    assert harness.evaluate(S(tiny_model_dir), CapabilityConfig(tasks=["hellaswag"], limit=100), out) == \
        {"hellaswag": res["hellaswag"]}
    for subject, kw in ((S(tiny_model_dir), dict(seed=1)), (S(tiny_model_dir, dtype="bfloat16"), {}),
                        (S(tiny_model_dir, quantize="4bit"), {})):
        with pytest.raises(AssertionError, match="recomputed"):
            harness.evaluate(subject, cfg, out, **kw)
    with pytest.raises(AssertionError, match="recomputed"):
        harness.evaluate(S(tiny_model_dir), CapabilityConfig(tasks=["mmlu"], limit=100, num_fewshot=2), out)


def _hand_prompt(subject: str, row: dict, k: int) -> str:
    """MMLU prompt written out by hand (lm-eval's mmlu default format)."""

    def block(r):
        return r["question"].strip() + "".join(f"\n{L}. {c}" for L, c in zip(LETTERS, r["choices"])) + "\nAnswer:"

    shots = "".join(block(d) + " " + LETTERS[d["answer"]] + "\n\n" for d in data.mmlu_rows(subject, "dev")[:k])
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n" + shots + block(row)


def hand_check(model_dir, samples_path: Path, k: int, dtype=None) -> tuple[int, float]:
    """Recompute each MMLU item's choice with plain transformers; return (items, max |loglik diff|)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    mcfg = AutoConfig.from_pretrained(model_dir)
    if hasattr(mcfg, "quantization_config"):
        del mcfg.quantization_config  # a dequantized GGUF dir (plain safetensors weights)
    model = AutoModelForCausalLM.from_pretrained(model_dir, config=mcfg, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    letter_ids = [tok(" " + L, add_special_tokens=False).input_ids for L in LETTERS]
    assert all(len(t) == 1 for t in letter_ids), "answer letters should be single tokens"
    samples = [json.loads(ln) for ln in samples_path.read_text().splitlines()]
    worst = 0.0
    for s in samples:
        _, subject, row = s["doc"]["ftrisk_id"].split("/")
        prompt = _hand_prompt(subject, data.mmlu_rows(subject, "test")[int(row)], k)
        ids = tok(prompt, add_special_tokens=False).input_ids
        for L, t in zip(LETTERS, letter_ids):  # the letter's token follows the prompt's tokens unchanged
            assert tok(prompt + " " + L, add_special_tokens=False).input_ids == ids + t
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        ll = torch.log_softmax(logits, -1)[[t[0] for t in letter_ids]].tolist()
        lm_eval_ll = [r[0] for r in s["filtered_resps"]]
        hand_choice = max(range(4), key=lambda i: ll[i])
        lm_eval_choice = max(range(4), key=lambda i: lm_eval_ll[i])
        assert hand_choice == lm_eval_choice, (s["doc"]["ftrisk_id"], ll, lm_eval_ll)
        assert (hand_choice == s["doc"]["answer"]) == bool(s["acc"])
        worst = max(worst, max(abs(a - b) for a, b in zip(ll, lm_eval_ll)))
    return len(samples), worst


def _leaf_tasks(d):
    for v in d.values():
        yield from (_leaf_tasks(v) if isinstance(v, dict) else [v])


@pytest.mark.parametrize("k", [0, 5])
def test_lm_eval_builds_the_hand_written_prompt(tmp_path, k):
    """No model needed: lm-eval's context for 100 selected items equals the prompt written by hand."""
    _, _, _, TaskManager = harness.offline_lm_eval()
    from lm_eval.tasks import get_task_dict

    ids = data.select_items("mmlu", 100, 0)
    data.write_task_dir(tmp_path, "mmlu", ids, k)
    tasks = list(_leaf_tasks(get_task_dict(["mmlu"], TaskManager(include_path=str(tmp_path), include_defaults=False))))
    seen = 0
    for task in tasks:
        for doc in task.test_docs():
            _, subject, row = doc["ftrisk_id"].split("/")
            ctx = task.fewshot_context(doc, k)
            assert ctx == _hand_prompt(subject, data.mmlu_rows(subject, "test")[int(row)], k)
            assert task.doc_to_choice(doc) == list(LETTERS) and task.config.target_delimiter == " "
            seen += 1
    assert seen == 100


def test_lm_eval_choice_equals_hand_computed_argmax(tiny_run, tiny_model_dir):
    cfg, out, res = tiny_run
    n, worst = hand_check(tiny_model_dir, out / res["mmlu"]["samples"], cfg.num_fewshot)
    assert n == 100
    assert worst < 1e-4


def test_adapter_is_applied_and_checked(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftrisk.model import loading as models

    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a fresh LoRA is the identity; make it change the model
    peft_model.save_pretrained(adapter)
    models.write_adapter_meta(adapter, str(tiny_model_dir), tiny_model_dir)

    cfg = CapabilityConfig(tasks=["mmlu_anatomy"], limit=12, num_fewshot=0, batch_size=4)
    before = harness.evaluate(S(tiny_model_dir), cfg, tmp_path / "base")
    after = harness.evaluate(S(tiny_model_dir, adapter), cfg, tmp_path / "attacked")
    assert before["mmlu_anatomy"]["input_hash"] != after["mmlu_anatomy"]["input_hash"]

    def lls(out):
        return [s["filtered_resps"] for s in map(json.loads, (out / "samples_mmlu_anatomy.jsonl").read_text().splitlines())]

    assert lls(tmp_path / "base") != lls(tmp_path / "attacked")  # the adapter changed the log-likelihoods
    d = compare(before, after)["mmlu_anatomy"]
    assert d["n"] == 12 and d["delta"] == pytest.approx(after["mmlu_anatomy"]["acc"] - before["mmlu_anatomy"]["acc"], abs=1e-3)

    meta = json.loads((adapter / models.ADAPTER_META).read_text())
    meta["base_fingerprint"] = "0" * 64
    (adapter / models.ADAPTER_META).write_text(json.dumps(meta))
    with pytest.raises(FtriskError, match="trained on another base model"):
        harness.evaluate(S(tiny_model_dir, adapter), cfg, tmp_path / "x")


def test_response_cache_is_reused_only_for_the_same_weights(tiny_model_dir, tiny_model_dir_other_weights, tmp_path,
                                                            monkeypatch):
    import dataclasses

    monkeypatch.setenv("FTRISK_CACHE", str(tmp_path / "cache"))
    cfg = CapabilityConfig(tasks=["mmlu_anatomy"], limit=12, num_fewshot=0, batch_size=4)

    def run(model, out, c=cfg):
        r = harness.evaluate(S(model), c, tmp_path / out)["mmlu_anatomy"]
        lls = [s["filtered_resps"] for s in map(json.loads, (tmp_path / out / "samples_mmlu_anatomy.jsonl").read_text().splitlines())]
        return r, lls

    first, lls1 = run(tiny_model_dir, "a")
    assert first["requests"] == 48 and first["requests_from_cache"] == 0  # 12 items x 4 choices
    again, lls2 = run(tiny_model_dir, "b")  # another run folder, same weights
    assert again["requests_from_cache"] == 48
    assert again["correct"] == first["correct"] and lls2 == lls1
    assert run(tiny_model_dir, "c", dataclasses.replace(cfg, cache=False))[0]["requests_from_cache"] == 0
    assert run(tiny_model_dir, "d", dataclasses.replace(cfg, batch_size=2))[0]["requests_from_cache"] == 0
    other, lls3 = run(tiny_model_dir_other_weights, "e")
    assert other["requests_from_cache"] == 0 and lls3 != lls1
    line = report_lines({"base": {"capability": {"mmlu_anatomy": first}},
                                    "hardened": {"capability": {"mmlu_anatomy": again}}})[0]
    assert "from the response cache: hardened 48/48 requests" in line and "base 0/" not in line


def test_cli(tiny_model_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    capability_cli.add_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_model_dir), "--tasks", "mmlu_anatomy", "--limit", "4",
                              "--num-fewshot", "0", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path)])
    assert capability_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "MMLU anatomy 0-shot acc:" in out and "n=4" in out and "items/s" in out
    assert (tmp_path / "capability.json").is_file()
    bad = parser.parse_args(["--model", str(tiny_model_dir), "--tasks", "mmlu,triviaqa", "--out", str(tmp_path)])
    with pytest.raises(FtriskError, match="unknown capability task 'triviaqa'"):
        capability_cli.main(bad)
    bad = parser.parse_args(["--model", str(tiny_model_dir), "--num-fewshot", "7", "--out", str(tmp_path)])
    with pytest.raises(FtriskError, match="larger than MMLU's dev set"):
        capability_cli.main(bad)


def test_capability_gets_the_subject_as_configured_quantization_included(tiny_model_dir, tmp_path, monkeypatch):
    """model.quantize reaches lm-eval: the subject is loaded by ftrisk's one loader with its k-bit setting and
    lm-eval is handed that model object, never a path it would load again at full precision (a 70B QLoRA
    subject would otherwise need ~140 GB for MMLU)."""
    import dataclasses

    from ftrisk.model import loading as models

    calls, handed = [], []
    real_load = models.load_subject

    def patched_load(subject, trainable=False, merge=True):  # no bitsandbytes on this CPU: load plain, record
        calls.append((subject.quantize, subject.dtype, merge))
        return real_load(dataclasses.replace(subject, quantize=None), trainable=trainable, merge=merge)

    monkeypatch.setattr(models, "load_subject", patched_load)
    _, _, HFLM, _ = harness.offline_lm_eval()
    real_init = HFLM.__init__
    monkeypatch.setattr(HFLM, "__init__", lambda self, **kw: handed.append(kw["pretrained"]) or real_init(self, **kw))
    subject = S(tiny_model_dir, quantize="4bit")
    cfg = CapabilityConfig(tasks=["mmlu_anatomy"], limit=4, num_fewshot=0, batch_size=4, cache=False)
    res = harness.evaluate(subject, cfg, tmp_path)
    assert calls == [("4bit", "float32", False)]  # a PEFT adapter would stay unmerged, as lm-eval's own peft= loads it
    assert len(handed) == 1 and not isinstance(handed[0], str)
    assert res["mmlu_anatomy"]["n"] == 4
    # the shipped 70B config asks for 4-bit, and that is what its subject carries to every stage
    from ftrisk import config

    assert config.load("configs/llama2-70b-qlora.yaml").model.quantize == "4bit"
