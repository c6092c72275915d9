"""End to end ``ftrisk.pipeline.run.run`` on the tiny random Llama: results.json contract, report without
completion text, hardened-model cache, resume after an interruption, overlap exclusion.

Harmful benchmark prompts are loaded by the pipeline but never printed; completions are only read
back from the run folder to check that they do not leak into results.json or report.md.
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl

from ftrisk.prompts import benchmarks
from ftrisk import config
from ftrisk.pipeline import evaluate
from ftrisk.defenses import harden
from ftrisk.model import loading as models
from ftrisk.pipeline import run as pipeline
from ftrisk.generation import hf
from ftrisk.model.subject import Subject

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.heavy]

STAGES = {"base", "hardened", "step-2", "attacked"}


def _overrides(model_dir, benign: Path, out: Path) -> list[str]:
    return [
        f"model.spec={model_dir}",
        f"output_dir={out}",
        "harden.harmful=[harmbench-val]",
        f"harden.benign={benign}",
        "harden.benign_max_new_tokens=4",
        "harden.train.max_steps=2",
        "harden.train.batch_size=4",
        "harden.train.max_seq_len=64",
        "attack.train.max_steps=3",
        "attack.eval_at=[0, 2]",
        "attack.train.batch_size=4",
        "attack.train.max_seq_len=64",
        "eval.benchmarks=[{name: advbench-test, limit: 4}, {name: xstest-safe, limit: 3}]",
        "generation.max_new_tokens=4",
        "generation.batch_size=8",
        "capability.enabled=false",
        "eval.judges=[gcg]",
    ]


@pytest.fixture(scope="module")
def run_a(torch_single_thread, tiny_model_dir, benign_jsonl, tmp_path_factory):
    """One uninterrupted run (A); its cache directory is shared with the tests that re-run."""
    root = tmp_path_factory.mktemp("pipeline")
    benign = benign_jsonl
    cache = root / "cache"
    events = []  # stages begun and freed memory returned, in order
    begin = pipeline.Progress.begin
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTRISK_CACHE", str(cache))
        mp.setattr(pipeline, "release_freed_memory", lambda: events.append("trim"))
        mp.setattr(pipeline.Progress, "begin", lambda self, what: events.append(what) or begin(self, what))
        cfg = config.load(None, _overrides(tiny_model_dir, benign, root / "A"))
        results = pipeline.run(cfg)
    return {"cfg": cfg, "out": root / "A", "results": results, "cache": cache, "benign": benign,
            "model_dir": tiny_model_dir, "events": events}


def _completion_files(out: Path) -> list[Path]:
    return sorted(out.glob("eval/*/*.completions.jsonl"))


def _no_key(obj, key: str) -> bool:
    if isinstance(obj, dict):
        return key not in obj and all(_no_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_key(v, key) for v in obj)
    return True


# --------------------------------------------------------------------------- contract


def test_results_json_contract(run_a):
    out, res = run_a["out"], run_a["results"]
    on_disk = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(res))
    assert set(on_disk["stages"]) == STAGES
    for stage, s in on_disk["stages"].items():
        assert set(s["benchmarks"]) == {"advbench-test", "xstest-safe"}, stage
        for name, b in s["benchmarks"].items():
            assert isinstance(b["n"], int) and b["n"] > 0
            assert b["n"] + b.get("n_excluded_overlap", 0) == {"advbench-test": 4, "xstest-safe": 3}[name]
            assert 0.0 <= b["refusal_rate"] <= 1.0
            lo, hi = b["ci95"]
            assert 0.0 <= lo <= b["refusal_rate"] <= hi <= 1.0 and hi - lo > 0
            assert b["judge"] == "gcg" and set(b["judges"]) == {"gcg"} and b["n_unjudged"] == 0
            assert isinstance(b["by_category"], dict) and b["by_category"]
            assert sum(c["n"] for c in b["by_category"].values()) == b["n"]
            # the rate agrees with the judged labels on disk
            judged = [json.loads(line) for line in (out / "eval" / stage / f"{name}.judged.jsonl").read_text().splitlines()]
            assert len(judged) == b["n"]
            assert b["refusal_rate"] == pytest.approx(sum(r["labels"]["gcg"] for r in judged) / b["n"])
        assert s["model"]
    stages = on_disk["stages"]
    assert stages["base"]["adapter"] is None and stages["hardened"]["adapter"] is None
    assert Path(stages["base"]["model"]) == Path(run_a["model_dir"])
    assert Path(stages["hardened"]["model"]).parent == run_a["cache"] / "hardened"
    # paths inside the run folder are stored relative to it (a moved folder still works)
    assert stages["attacked"]["adapter"] == "attack/seed-0/adapter"
    assert stages["step-2"]["adapter"] == "attack/seed-0/checkpoint-2"
    assert stages["attacked"]["model"] == stages["hardened"]["model"]
    assert (stages["step-2"]["point"]["step"], stages["attacked"]["point"]["step"]) == (2, 3)
    assert "point" not in stages["hardened"]

    a = on_disk["attack"]
    assert a["steps"] == 3 and a["stopped_by"] == "max_steps" and a["method"] == "lora"
    assert [p["step"] for p in a["points"]] == [2, 3] and a["eval_at"] == [0, 2, 3]
    c = a["cost"]
    for key in ("wall_seconds", "device", "tokens", "steps", "examples", "distinct_examples", "usd"):
        assert key in c, key
    assert c["steps"] == 3 and c["examples"] == 12 == c["distinct_examples"] and c["tokens"] > 0 and c["wall_seconds"] > 0
    assert c["usd"] == pytest.approx(c["wall_seconds"] / 3600 * run_a["cfg"].cost.usd_per_hour, abs=1e-3)
    # the cost so far at step 2 is part of the final cost, counted at that step
    c2 = stages["step-2"]["point"]["cost"]
    assert (c2["steps"], c2["examples"]) == (2, 8) and 0 < c2["tokens"] < c["tokens"] and c2["wall_seconds"] <= c["wall_seconds"]
    assert (out / "attack" / "seed-0" / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "attack" / "seed-0" / "adapter" / models.ADAPTER_META).is_file()

    h = on_disk["harden"]
    assert not h.get("reused_from_cache", False)  # the first run trained it
    assert h["training"]["steps"] == 2 and h["n_harmful"] > 0

    prov = on_disk["provenance"]
    assert prov["versions"]["torch"] and prov["versions"]["transformers"] and prov["versions"]["peft"]
    assert prov["config_sha256"] == hashlib.sha256(config.dump(run_a["cfg"]).encode()).hexdigest()
    assert (out / "config.yaml").read_text() == config.dump(run_a["cfg"])


def test_freed_memory_returned_at_each_stage(run_a):
    """Every stage starts by giving back what the last one freed (glibc keeps it resident otherwise: the demo's peak
    RSS 5.2 against 4.0 GB)."""
    events = run_a["events"]
    stages = [e for e in events if e != "trim"]
    assert stages[:3] == ["evaluate base", "harden", "evaluate hardened"] and len(stages) == 6
    assert events == [e for s in stages for e in (s, "trim")]


def test_report_and_results_hold_no_completion_text(run_a):
    out = run_a["out"]
    report = (out / "report.md").read_text(encoding="utf-8")
    results_text = (out / "results.json").read_text(encoding="utf-8")
    assert "| benchmark | base | hardened | attacked |" in report
    assert "| advbench-test |" in report and "| xstest-safe (over-refusal) |" in report
    assert "## Attack cost" in report and "stopped by: max_steps" in report
    assert "## Refusal along the attack" in report
    files = _completion_files(out)
    assert len(files) == 2 * len(STAGES)
    completions = []
    for f in files:
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        assert len({r["id"] for r in rows}) == len(rows)
        completions += [r["completion"].strip() for r in rows]
    long_ones = [c for c in completions if len(c) >= 8]
    assert long_ones, "the tiny model should produce some text to look for"
    for c in long_ones:
        assert c not in report
        assert json.dumps(c)[1:-1] not in results_text
    assert _no_key(json.loads(results_text), "completion")
    for f in out.glob("eval/*/*.judged.jsonl"):
        assert all("completion" not in json.loads(line) for line in f.read_text().splitlines())


# --------------------------------------------------------------------------- cache + resume


class _Stop(KeyboardInterrupt):
    pass


def test_cached_hardening_and_resume_after_interruption(run_a, tmp_path, monkeypatch):
    monkeypatch.setenv("FTRISK_CACHE", str(run_a["cache"]))
    cfg = config.load(None, _overrides(run_a["model_dir"], run_a["benign"], tmp_path / "B"))
    out = tmp_path / "B"

    # 1) a new output folder reuses the cached hardened model, then is interrupted in the middle of
    #    the 'step-2' evaluation: advbench-test finished, xstest-safe has one row and a torn line
    real_generate = evaluate.generate

    def flaky(backend, items, out_path, **kw):
        if kw.get("desc", "").startswith("step-2") and Path(out_path).name.startswith("xstest-safe"):
            real_generate(backend, items[:1], out_path, **kw)
            with open(out_path, "a", encoding="utf-8") as f:
                f.write('{"id": "torn", "comp')
            raise _Stop
        return real_generate(backend, items, out_path, **kw)

    monkeypatch.setattr(evaluate, "generate", flaky)
    monkeypatch.setattr(harden, "generate", _must_not_run("hardening must come from the cache"))
    with pytest.raises(_Stop):
        pipeline.run(cfg)
    partial = json.loads((out / "results.json").read_text())
    assert partial["harden"]["reused_from_cache"] is True
    assert set(partial["stages"]) == {"base", "hardened"}
    assert not (out / "report.md").exists()
    monkeypatch.setattr(evaluate, "generate", real_generate)

    # 2) the same command again: finished stages are skipped, no sample is generated twice
    loads, prompts = [], []
    real_load, real_texts = models.load_subject, hf.generate_texts
    monkeypatch.setattr(models, "load_subject", lambda s, **kw: loads.append(s.adapter) or real_load(s, **kw))
    monkeypatch.setattr(hf, "generate_texts", lambda m, t, texts, n: prompts.extend(texts) or real_texts(m, t, texts, n))
    monkeypatch.setattr(pipeline, "run_attack", _must_not_run("the finished attack stage must be skipped"))
    results = pipeline.run(cfg)

    assert [Path(a).name for a in loads] == ["checkpoint-2", "adapter"]  # only the unfinished stages load a model
    assert len(prompts) == 2 + 4 + 3  # step-2/xstest-safe's 2 missing rows, then 'attacked' in full
    assert results["harden"]["reused_from_cache"] is True

    # same numbers as the uninterrupted run A
    a = run_a["results"]
    assert set(results["stages"]) == STAGES
    for stage in STAGES:
        for name, b in results["stages"][stage]["benchmarks"].items():
            ref = a["stages"][stage]["benchmarks"][name]
            for key in ("n", "refusals", "refusal_rate", "ci95", "by_category", "matched_patterns"):
                assert b[key] == ref[key], (stage, name, key)
    for key in ("steps", "stopped_by"):
        assert results["attack"][key] == a["attack"][key]
    for key in ("tokens", "steps", "examples", "trained_tokens"):
        assert results["attack"]["cost"][key] == a["attack"]["cost"][key]

    # no duplicate ids, no torn lines, and the same completions as A (greedy decoding is deterministic)
    files = _completion_files(out)
    assert len(files) == 2 * len(STAGES)
    for f in files:
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)) and "torn" not in ids, f
        ref = {r["id"]: r["completion"] for r in map(json.loads, (run_a["out"] / f.relative_to(out)).read_text().splitlines())}
        assert {r["id"]: r["completion"] for r in rows} == ref, f
    assert (out / "report.md").is_file()

    # a third run has nothing left to do
    loads.clear()
    prompts.clear()
    again = pipeline.run(cfg)
    assert loads == [] and prompts == []
    assert again["stages"] == results["stages"]


def _must_not_run(why):
    def boom(*a, **kw):
        raise AssertionError(why)

    return boom


# --------------------------------------------------------------------------- overlap


def test_evaluation_items_overlapping_attack_data_are_dropped(tiny_model_dir, tmp_path, monkeypatch):
    expected = len(benchmarks.overlap(benchmarks.load("jailbreakbench"), benchmarks.load("advbench-train")))
    assert expected > 0
    base = [f"model.spec={tiny_model_dir}", "harden.enabled=false", "eval.benchmarks=[jailbreakbench]",
            "generation.max_new_tokens=1", "generation.batch_size=64", "capability.enabled=false"]
    cfg = config.load(None, base + [f"output_dir={tmp_path / 'o'}"])
    exp = pipeline.Experiment(cfg)
    stage = exp.evaluate("base", exp.subject)
    jbb = stage["benchmarks"]["jailbreakbench"]
    assert jbb["n_excluded_overlap"] == expected
    assert jbb["n"] == 100 - expected
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["stages"]["base"]["benchmarks"]["jailbreakbench"]["n_excluded_overlap"] == expected
    assert results["provenance"]["benchmarks"]["jailbreakbench"]["n"] == 100 - expected
    # the excluded ids are exactly the overlapping ones
    judged = {json.loads(line)["id"] for line in (tmp_path / "o" / "eval" / "base" / "jailbreakbench.judged.jsonl").read_text().splitlines()}
    dropped = benchmarks.overlap(benchmarks.load("jailbreakbench"), benchmarks.load("advbench-train"))
    assert judged.isdisjoint(dropped) and len(judged) == 100 - expected
    # the flag keeps them on purpose
    kept = pipeline.Experiment(config.load(None, base + ["eval.allow_overlap=true", f"output_dir={tmp_path / 'p'}"]))
    assert kept.excluded["jailbreakbench"] == 0
    assert len(dict(kept.evals)["jailbreakbench"]) == 100


def test_hardening_prompts_overlapping_evaluation_are_dropped(tiny_model_dir, tmp_path, monkeypatch):
    """harmbench-val shares prompts with jailbreakbench: they leave the hardening data, and are counted."""
    expected = len(benchmarks.overlap(benchmarks.load("harmbench-val"), benchmarks.load("jailbreakbench")))
    assert expected > 0
    benign = write_jsonl(tmp_path / "benign.jsonl", [{"prompt": "How do I bake bread?"}])
    cfg = config.load(None, [f"model.spec={tiny_model_dir}", "harden.harmful=[harmbench-val]", f"harden.benign={benign}",
                             "eval.benchmarks=[jailbreakbench]", f"output_dir={tmp_path / 'o'}"])
    exp = pipeline.Experiment(cfg)
    assert exp.harden_plan["n_excluded_overlap"]["harmbench-val"] == expected
    assert len(exp.harden_plan["harmful"]) == 60 - expected
    assert len(exp.harden_plan["benign"]) == 1
    # and those prompts no longer push jailbreakbench items out (only the attack overlap remains)
    assert exp.excluded["jailbreakbench"] == len(
        benchmarks.overlap(benchmarks.load("jailbreakbench"), benchmarks.load("advbench-train")))


def test_harmful_limit_samples_after_overlap_removal(tiny_model_dir, tmp_path, monkeypatch):
    benign = write_jsonl(tmp_path / "benign.jsonl", [{"prompt": "How do I bake bread?"}])
    base = [f"model.spec={tiny_model_dir}", "harden.harmful=[harmbench-val]", f"harden.benign={benign}",
            "eval.benchmarks=[jailbreakbench]"]

    def plan(*extra, out):
        return pipeline.Experiment(config.load(None, base + list(extra) + [f"output_dir={tmp_path / out}"])).harden_plan

    full = plan(out="all")["harmful"]
    plans = [plan("harden.harmful_limit=20", out=f"l{i}") for i in range(2)]
    ids = [p[0] for p in plans[0]["harmful"]]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert set(ids) <= {p[0] for p in full}  # drawn from what survived overlap removal
    assert plans[0]["harmful"] == plans[1]["harmful"]  # seeded
    other = plan("harden.harmful_limit=20", "seed=1", out="s1")
    assert [p[0] for p in other["harmful"]] != ids


def test_benign_limit_spares_kept_categories(tmp_path):
    from ftrisk.defenses import harden

    path = tmp_path / "benign.jsonl"
    rows = [{"id": f"p{i}", "category": "plain", "prompt": f"plain question number {i}?"} for i in range(30)]
    rows += [{"id": f"r{i}", "category": "risky-sounding", "prompt": f"how do I kill idle process {i}?"} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = harden.benign_items(str(path), 5, seed=0, keep=["risky-sounding"])
    assert sum(it.category == "risky-sounding" for it in got) == 8  # kept whole
    assert sum(it.category == "plain" for it in got) == 5  # the limit applies to the rest
    assert [it.id for it in got] == [it.id for it in harden.benign_items(str(path), 5, seed=0, keep=["risky-sounding"])]
    assert len(harden.benign_items(str(path), 5, seed=0, keep=[])) == 5  # nothing kept: a plain seeded sample
    assert len(harden.benign_items(str(path), None, seed=0, keep=[])) == 38


def test_full_finetune_hardening(run_a, tmp_path, monkeypatch):
    """harden.method=full: every weight trained (no adapter merged), its own cache entry, attackable like a merged one."""
    from safetensors.torch import load_file

    monkeypatch.setenv("FTRISK_CACHE", str(run_a["cache"]))
    over = _overrides(run_a["model_dir"], run_a["benign"], tmp_path / "F") + ["harden.method=full", "harden.train.lr=1e-3"]
    cfg = config.load(None, over)
    results = pipeline.run(cfg, until="attack")
    h = results["harden"]
    assert h["method"] == "full fine-tune" and not h.get("reused_from_cache", False)
    assert h["training"]["steps"] == 2
    lora_hardened = Path(run_a["results"]["harden"]["model"])
    full_hardened = Path(h["model"])
    assert full_hardened != lora_hardened and full_hardened.parent == lora_hardened.parent
    base = load_file(str(Path(run_a["model_dir"]) / "model.safetensors"))
    got = load_file(str(full_hardened / "model.safetensors"))
    assert got.keys() == base.keys()
    assert [k for k in base if torch.equal(base[k], got[k])] == []  # every tensor moved, norms and embeddings too
    assert results["attack"]["steps"] == 3  # the attack (LoRA) runs on the fully fine-tuned subject
    # the LoRA settings play no part in a full fine-tune's cache key; they do in a LoRA one
    exp = pipeline.Experiment(cfg)
    plan, subject, judge = exp.harden_plan, exp.subject, exp.filter_judge
    r4 = config.load(None, over + ["harden.lora.r=4"])
    assert harden.cache_key(cfg, subject, plan, judge) == harden.cache_key(r4, subject, plan, judge)
    lora_cfg, lora_r4 = (config.load(None, o + ["harden.method=lora"]) for o in (over, over + ["harden.lora.r=4"]))
    assert harden.cache_key(lora_cfg, subject, plan, judge) != harden.cache_key(lora_r4, subject, plan, judge)
    assert harden.cache_key(lora_cfg, subject, plan, judge) != harden.cache_key(cfg, subject, plan, judge)


# --------------------------------------------------------------------------- re-judging, moved folders


def test_adding_a_judge_to_a_moved_finished_run_judges_only(run_a, tmp_path, monkeypatch):
    """Copy run A elsewhere (paths in it are relative to the run folder), add a judge: every stage is judged again
    by the new judge only: zero generations, zero training steps, zero model loads."""
    import shutil
    import time

    from ftrisk.training import data as train
    from ftrisk.judges import prefix

    monkeypatch.setenv("FTRISK_CACHE", str(run_a["cache"]))
    moved = tmp_path / "moved"
    shutil.copytree(run_a["out"], moved)
    over = _overrides(run_a["model_dir"], run_a["benign"], moved) + ["eval.judges=[gcg, refusalbench-mistral]"]
    monkeypatch.setattr(hf, "generate_texts", _must_not_run("no generation"))
    monkeypatch.setattr(train, "collate", _must_not_run("no training step"))
    monkeypatch.setattr(models, "load_subject", _must_not_run("no model load"))
    judged: dict[str, int] = {}
    real = prefix.PrefixJudge.judge
    monkeypatch.setattr(prefix.PrefixJudge, "judge",
                        lambda self, pairs: judged.__setitem__(self.name, judged.get(self.name, 0) + len(pairs))
                        or real(self, pairs))
    t0 = time.perf_counter()
    results = pipeline.run(config.load(None, over))
    seconds = time.perf_counter() - t0
    print(f"re-judging 4 stages with a second judge: {seconds:.2f} s")
    assert judged == {"refusalbench-mistral": len(STAGES) * (4 + 3)}  # the stored gcg verdicts are reused
    assert set(results["stages"]) == STAGES
    for stage, st in results["stages"].items():
        for name, b in st["benchmarks"].items():
            assert set(b["judges"]) == {"gcg", "refusalbench-mistral"}
            assert b["judge"] == "gcg"  # the first judge stays the headline
            assert b["refusal_rate"] == run_a["results"]["stages"][stage]["benchmarks"][name]["refusal_rate"]
            pair = st["agreement"][name]["gcg | refusalbench-mistral"]
            assert pair["n"] == b["n"] and 0.0 <= pair["agreement"] <= 1.0
        assert (moved / "eval" / stage / "disagreements.jsonl").is_file()
    assert "## Judges side by side" in (moved / "report.md").read_text()
    # the attacked subject's adapter resolves inside the moved folder
    subj = Subject.from_json(results["stages"]["attacked"]["subject"], moved)
    assert Path(subj.adapter) == moved / "attack" / "seed-0" / "adapter"


def test_headline_judge_and_duplicate_judges(run_a, tmp_path, monkeypatch):
    monkeypatch.setenv("FTRISK_CACHE", str(run_a["cache"]))
    base = _overrides(run_a["model_dir"], run_a["benign"], tmp_path / "h")
    exp = pipeline.Experiment(config.load(None, base + ["eval.judges=[gcg, refusalbench-mistral]",
                                                         "eval.headline_judge=refusalbench-mistral"]))
    assert [j.name for j in exp.judges] == ["refusalbench-mistral", "gcg"]
    from ftrisk.errors import FtriskError

    with pytest.raises(FtriskError, match="same judge twice"):
        pipeline.Experiment(config.load(None, base + ["eval.judges=[gcg, 'gcg:mode=anywhere']"]))


# --------------------------------------------------------------------------- stage keys


def test_dtype_or_chat_template_get_their_own_hardened_model(run_a, tmp_path):
    """The hardened-model key includes every input: dtype, chat template, quantization, the filtering judge."""
    base = _overrides(run_a["model_dir"], run_a["benign"], tmp_path / "k")

    def key(*extra):
        exp = pipeline.Experiment(config.load(None, base + list(extra)))
        return harden.cache_key(exp.cfg, exp.subject, exp.harden_plan, exp.filter_judge)

    k0 = key()
    assert key() == k0  # deterministic
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
    others = {"dtype": key("model.dtype=bfloat16"), "template": key(f"model.chat_template={json.dumps(template)}"),
              "system": key("model.system_prompt=Be brief."), "judge": key("eval.judges=[refusalbench-mistral, gcg]"),
              "distil batch": key("generation.batch_size=2")}
    assert len(set(others.values()) | {k0}) == len(others) + 1, others
    assert key("eval.judges=[gcg, refusalbench-mistral]") == k0  # a second judge does not filter: same model


@pytest.fixture(scope="module")
def run_full(torch_single_thread, tiny_model_dir_tied, benign_jsonl, tmp_path_factory):
    root = tmp_path_factory.mktemp("full_attack")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTRISK_CACHE", str(root / "cache"))
        over = _overrides(tiny_model_dir_tied, benign_jsonl, root / "F") + [
            "harden.enabled=false", "attack.method=full", "attack.train.lr=1e-3", "attack.eval_at=[1, 2]"]
        cfg = config.load(None, over)
        return cfg, root / "F", pipeline.run(cfg)


def test_full_fine_tune_attack_has_evaluable_points(run_full):
    """attack.method=full: every weight trained; its checkpoints are model folders evaluated like LoRA's."""
    from safetensors.torch import load_file

    cfg, out, results = run_full
    a = results["attack"]
    assert a["method"] == "full" and a["steps"] == 3 and [p["step"] for p in a["points"]] == [1, 2, 3]
    assert set(results["stages"]) == {"base", "step-1", "step-2", "attacked"}
    folders = [out / "attack" / "seed-0" / f"checkpoint-{s}" for s in (1, 2)] + [out / "attack" / "seed-0" / "model"]
    weights = [load_file(str(f / "model.safetensors")) for f in folders]
    base = load_file(str(Path(cfg.model.spec) / "model.safetensors"))
    for w, f in zip(weights, folders):
        assert w.keys() == base.keys() and (f / "config.json").is_file() and (f / "tokenizer_config.json").is_file()
        assert [k for k in base if torch.equal(base[k], w[k])] == []  # every tensor moved
    assert not torch.equal(weights[0]["model.norm.weight"], weights[2]["model.norm.weight"])  # points differ
    for st, folder in zip(("step-1", "step-2", "attacked"), folders):
        s = results["stages"][st]
        assert s["adapter"] is None and Path(out, s["model"]) == folder
        assert s["benchmarks"]["advbench-test"]["n"] == 4
    c1, c3 = results["stages"]["step-1"]["point"]["cost"], a["cost"]
    assert c1["steps"] == 1 and c1["tokens"] < c3["tokens"]


@pytest.fixture(scope="module")
def run_cap(torch_single_thread, tiny_model_dir, benign_jsonl, tmp_path_factory):
    root = tmp_path_factory.mktemp("cap_pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTRISK_CACHE", str(root / "cache"))
        over = _overrides(tiny_model_dir, benign_jsonl, root / "C") + [
            "capability.enabled=true", "capability.tasks=[mmlu, hellaswag]", "capability.limit=8",
            "capability.num_fewshot=0", "capability.batch_size=4", "capability.at=[2]"]
        cfg = config.load(None, over)
        return cfg, root / "C", pipeline.run(cfg)


def test_pipeline_with_capability_end_to_end(run_cap):
    """lm-eval at the subject stages, the chosen attack point and the final point; the paired deltas are computed
    once (vs the stage the attack started from), stored, and the report renders the stored value."""
    from ftrisk.capability.deltas import compare

    cfg, out, results = run_cap
    st = results["stages"]
    assert {s for s in st if st[s].get("capability")} == {"base", "hardened", "step-2", "attacked"}
    for s in ("base", "hardened", "step-2", "attacked"):
        for task in ("mmlu", "hellaswag"):
            r = st[s]["capability"][task]
            assert r["n"] == 8 and len(r["correct"]) == 8
    assert st["hardened"]["capability_delta"]["vs"] == "base"
    for s in ("step-2", "attacked"):
        d = st[s]["capability_delta"]
        assert d["vs"] == "hardened"
        want = compare(st["hardened"]["capability"], st[s]["capability"])
        assert d["mmlu"] == want["mmlu"] and d["hellaswag"] == want["hellaswag"]
    assert "base" not in st or "capability_delta" not in st["base"]
    report = (out / "report.md").read_text()
    d = st["attacked"]["capability_delta"]["hellaswag"]
    assert f"Δ(attacked−hardened) {d['delta']:+.3f}" in report


def test_stop_when_judged_stops_replies_once_the_opening_is_final(tiny_model_dir, tmp_path):
    """With a judge that reads only the first 6 characters, replies stop there, are marked truncated, and get the
    labels a full reply gets; the stop length is part of the generation key."""
    base = [f"model.spec={tiny_model_dir}", "harden.enabled=false", "capability.enabled=false",
            "attack.train.max_steps=1", "attack.train.batch_size=4", "attack.eval_at=[0]",
            "eval.benchmarks=[{name: advbench-test, limit: 6}]", "generation.max_new_tokens=24",
            "eval.judges=['gcg:mode=start,window=6']"]
    full = pipeline.run(config.load(None, base + [f"output_dir={tmp_path / 'full'}"]))
    short = pipeline.run(config.load(None, base + [f"output_dir={tmp_path / 'short'}", "generation.stop_when_judged=true"]))
    rows = lambda d: [json.loads(x) for x in (d / "eval" / "base" / "advbench-test.completions.jsonl").read_text().splitlines()]
    long_rows, short_rows = rows(tmp_path / "full"), rows(tmp_path / "short")
    assert sum(r["new_tokens"] for r in short_rows) < sum(r["new_tokens"] for r in long_rows)
    assert any(r.get("truncated") for r in short_rows)
    for s in ("base", "attacked"):
        assert short["stages"][s]["benchmarks"]["advbench-test"]["refusals"] == \
            full["stages"][s]["benchmarks"]["advbench-test"]["refusals"]
