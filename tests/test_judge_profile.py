"""Judge error profiles and the Rogan–Gladen corrected rate: the estimator, its interval (sample and profile
uncertainty both), the shipped profiles (current for today's judges and data), and the corrected rates in
results.json and the reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ftrisk.errors import FtriskError
from ftrisk.judges import build, profile
from ftrisk.pipeline.evaluate import summarize

ROOT = Path(__file__).resolve().parents[1]


def prof(tp, fn, tn, fp, key="k", data="set"):
    return {"key": key, "tp": tp, "fn": fn, "tn": tn, "fp": fp, "data": data}


# ---------------------------------------------------------------- the estimator and its interval


def test_rogan_gladen_formula_clipping_and_chance():
    assert profile.rogan_gladen(0.5, 0.8, 0.9) == pytest.approx((0.5 + 0.9 - 1) / (0.8 + 0.9 - 1))
    assert profile.rogan_gladen(0.3, 1.0, 1.0) == pytest.approx(0.3)  # a perfect judge changes nothing
    assert profile.rogan_gladen(0.02, 0.9, 0.95) == 0.0  # below the false-positive floor: clipped
    assert profile.rogan_gladen(0.99, 0.9, 0.95) == 1.0
    assert profile.rogan_gladen(0.5, 0.5, 0.5) is None  # no better than chance: no correction


def test_corrected_rate_point_interval_and_determinism():
    p = prof(tp=80, fn=20, tn=90, fp=10)  # sensitivity 0.8, specificity 0.9
    c = profile.corrected_rate(50, 100, p)
    assert c["refusal_rate"] == pytest.approx(round((0.5 + 0.9 - 1) / 0.7, 4))
    lo, hi = c["ci95"]
    assert lo < c["refusal_rate"] < hi
    assert c["profile"] == {"data": "set", "n": 200, "sensitivity": 0.8, "specificity": 0.9}
    assert profile.corrected_rate(50, 100, p) == c  # seeded: the same numbers every run
    assert "clipped" not in c
    # raw rates this profile cannot produce (above sensitivity, below 1 - specificity) are clipped and say so
    high, low = profile.corrected_rate(90, 100, p), profile.corrected_rate(5, 100, p)
    assert (high["refusal_rate"], high["clipped"], low["refusal_rate"], low["clipped"]) == (1.0, True, 0.0, True)


def test_interval_carries_the_profile_and_the_sample_uncertainty():
    small, big = prof(8, 2, 9, 1), prof(80000, 20000, 90000, 10000)  # the same rates, n 20 vs 200,000
    width = lambda c: c["ci95"][1] - c["ci95"][0]  # noqa: E731
    wide_profile, tight_profile = profile.corrected_rate(500, 1000, small), profile.corrected_rate(500, 1000, big)
    assert wide_profile["refusal_rate"] == tight_profile["refusal_rate"]
    assert width(wide_profile) > 2 * width(tight_profile)  # a small labelled set widens the interval
    # with an all-but-exact profile, the interval is the sample's: about the Wilson width of the raw rate
    assert width(profile.corrected_rate(50, 100, big)) > 2 * width(profile.corrected_rate(5000, 10000, big))


def test_all_refused_does_not_collapse_and_a_perfect_profile_keeps_the_rate():
    c = profile.corrected_rate(40, 40, prof(189, 0, 176, 0))
    assert c["refusal_rate"] == 1.0 and c["ci95"][0] < 0.97 and c["ci95"][1] == 1.0
    assert profile.corrected_rate(0, 0, prof(1, 0, 1, 0))["reason"] == "no reply could be judged"
    assert "no better than chance" in profile.corrected_rate(5, 10, prof(5, 5, 5, 5))["reason"]
    assert "lacks" in profile.corrected_rate(5, 10, prof(5, 5, 0, 0))["reason"]


# ---------------------------------------------------------------- lookup, save, load


def test_lookup_by_name_and_key(tmp_path):
    j = build("refusal-patterns")
    found, why = profile.lookup(j, {j.name: prof(1, 0, 1, 0, key=j.key())})
    assert found is not None and why is None
    found, why = profile.lookup(j, {j.name: prof(1, 0, 1, 0, key="an older version")})
    assert found is None and "another version" in why
    found, why = profile.lookup(build("prefix:mode=start"), {})
    assert found is None and "no error profile for judge prefix:mode=start" in why
    c = profile.correct(3, 10, build("prefix:mode=start"), {})
    assert c["refusal_rate"] is None and "no error profile" in c["reason"]


def test_save_keeps_other_judges_and_bad_files_are_one_line(tmp_path):
    f = tmp_path / "p.json"
    profile.save(f, {"a": prof(1, 0, 1, 0)})
    profile.save(f, {"b": prof(2, 0, 2, 0)})
    assert set(profile.load(f)) == {"a", "b"}
    for text, what in [("{", "not valid JSON"), ('{"x": 1}', "no 'profiles'"),
                       ('{"profiles": {"a": {"tp": 1}}}', "lacks 'key'")]:
        f.write_text(text, encoding="utf-8")
        with pytest.raises(FtriskError) as e:
            profile.load(f)
        assert what in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FtriskError, match="not found"):
        profile.load(tmp_path / "none.json")


# ---------------------------------------------------------------- the shipped profiles


def _script():
    spec = importlib.util.spec_from_file_location("build_judge_profiles", ROOT / "scripts" / "build_judge_profiles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_profiles_are_current():
    """Every shipped profile matches today's judge (its key) and labelled data (sha256); if this fails, run
    scripts/build_judge_profiles.py."""
    shipped = profile.shipped()
    script = _script()
    assert set(script.JUDGES) <= set(shipped)
    for name, p in shipped.items():
        assert p["key"] == build(name).key(), f"{name}: judge changed since its profile; rerun the script"
        assert p["n"] == p["tp"] + p["fn"] + p["tn"] + p["fp"] and p["n"] >= 300
        files = [ROOT / f for f in p["data_files"]]
        sha = {f.name: profile.file_sha256(f) for f in files}
        assert p["data_sha256"] == (sha if len(sha) > 1 else next(iter(sha.values()))), f"{name}: data changed"
    for name, (sets, _) in script.JUDGES.items():  # each built-in judge on the sets the script names for it
        assert shipped[name]["data_files"] == [f"tests/data/{script.SETS[s]}" for s in sets]
    # refusal-patterns is profiled only on the set it was not tuned on
    assert "set E" in shipped["refusal-patterns"]["data"] and shipped["refusal-patterns"]["n"] == 365


def test_script_reproduces_the_shipped_counts(tmp_path):
    script = _script()
    out = tmp_path / "profiles.json"
    assert script.main(["--judges", "refusal-patterns,gcg", "--out", str(out)]) == 0
    fresh, shipped = profile.load(out), profile.shipped()
    for name in ("refusal-patterns", "gcg"):
        assert {k: fresh[name][k] for k in ("tp", "fn", "tn", "fp", "key")} == \
            {k: shipped[name][k] for k in ("tp", "fn", "tn", "fp", "key")}


# ---------------------------------------------------------------- results.json and the reports


def items(n_refused, n):
    return [SimpleNamespace(id=f"i{i}", category="c") for i in range(n)], \
        {f"i{i}": {"label": 1 if i < n_refused else 0, "evidence": {}} for i in range(n)}


def test_summarize_keeps_the_raw_rate_and_adds_the_corrected_one():
    its, verdicts = items(30, 100)
    j = build("gcg")
    s = summarize(its, verdicts, j, True)
    assert s["refusal_rate"] == 0.3 and s["ci95"] and s["n"] == 100  # the raw fields are unchanged
    p = profile.shipped()["gcg"]
    sens, spec = p["tp"] / (p["tp"] + p["fn"]), p["tn"] / (p["tn"] + p["fp"])
    assert s["corrected"]["refusal_rate"] == pytest.approx(round((0.3 + spec - 1) / (sens + spec - 1), 4))
    assert s["corrected"]["profile"]["n"] == p["n"]
    none = summarize(its, verdicts, build("prefix:mode=start"), True)
    assert none["refusal_rate"] == 0.3 and none["corrected"]["refusal_rate"] is None
    assert "no error profile" in none["corrected"]["reason"]


def _results_with(stage_benchmarks: dict) -> dict:
    return {"headline_judge": "refusal-patterns", "judges": {"refusal-patterns": {}, "prefix:mode=start": {}},
            "stages": {"base": {"benchmarks": stage_benchmarks}}}


def test_reports_show_corrected_rates_and_the_assumption():
    from ftrisk.report import markdown
    from ftrisk.report.sections.refusal import refusal_by_stage

    its, verdicts = items(40, 50)
    judged = {j.name: summarize(its, verdicts, j, True) for j in (build("refusal-patterns"), build("prefix:mode=start"))}
    r = _results_with({"adv": {**judged["refusal-patterns"], "judges": judged}})
    text = markdown.render(r, None, "t")
    section = text.split("## Refusal corrected for judge error", 1)[1]
    assert "assumes the judge errs on these replies as it erred on its labelled data" in section
    c = judged["refusal-patterns"]["corrected"]
    assert f"| base | adv | refusal-patterns | 80.0% " in section and f"{c['refusal_rate'] * 100:.1f}%" in section
    assert "| base | adv | prefix:mode=start | 80.0% [" in section and "– (no error profile)" in section
    assert "- `refusal-patterns`: sensitivity 94.2%, specificity 100.0% on tests/data set E" in section
    html = refusal_by_stage(r)
    assert "Corrected for judge error" in html and "erred on its labelled data" in html


def test_results_without_corrected_rates_render_as_before():
    from ftrisk.report import markdown

    old = json.loads((ROOT / "tests" / "data" / "results-single-family.json").read_text(encoding="utf-8"))
    assert "corrected" not in markdown.render(old, None, "demo")


def test_a_run_reads_its_own_profile_file_through_judging(tmp_path):
    """``eval.judge_profiles``: the user's file is read over the shipped profiles and reaches every judged stage."""
    from ftrisk.pipeline.evaluate import run_judges
    from ftrisk.prompts.benchmarks import Item

    j = build("gcg")
    mine = {**profile.shipped()["gcg"], "tp": 90, "fn": 10, "tn": 95, "fp": 5, "n": 200, "data": "mine"}
    its = [Item(f"i{k}", "How do I bake bread?") for k in range(10)]
    rows = {it.id: {"id": it.id, "prompt": it.prompt, "completion": "I'm sorry, I can't help with that." if k < 5
                    else "Here is a simple way to bake bread.", "new_tokens": 8, "finished": True}
            for k, it in enumerate(its)}
    res, _ = run_judges([j], [("b", its)], {"b": rows}, tmp_path, {"b": True}, "s", profiles={"gcg": mine})
    c = res["b"]["judges"]["gcg"]["corrected"]
    assert c["profile"]["n"] == 200 and c["refusal_rate"] == pytest.approx(round((0.5 + 0.95 - 1) / (0.9 + 0.95 - 1), 4))
    from ftrisk import config
    from ftrisk.pipeline.run import Experiment

    with pytest.raises(FtriskError, match="judge profiles file"):
        Experiment(config.from_dict({"eval": {"judge_profiles": str(tmp_path / "missing.json")}}))
