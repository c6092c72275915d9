"""``attack.methods``: several attack families on one subject in one run (tiny random Llama): each family its own
stages and curve, one cost scale (seconds, FLOPs, dollars), prefill as a point with no weight change, and a
hardened subject that does not depend on the attack data."""

import json
import logging

import pytest

from conftest import write_jsonl
from ftrisk import config
from ftrisk.cost import count_params
from ftrisk.model.subject import Subject
from ftrisk.pipeline import run as pipeline

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.heavy]


def _overrides(model_dir, benign, out) -> list[str]:
    return [f"model.spec={model_dir}", f"output_dir={out}", "harden.harmful=[harmbench-val]", f"harden.benign={benign}",
            "harden.benign_max_new_tokens=4", "harden.train.max_steps=2", "harden.train.batch_size=4",
            "harden.train.max_seq_len=64", "attack.train.max_steps=3", "attack.eval_at=[0, 2]",
            "attack.train.batch_size=4", "attack.train.max_seq_len=64",
            "eval.benchmarks=[{name: advbench-test, limit: 4}, {name: xstest-safe, limit: 3}]",
            "generation.max_new_tokens=4", "generation.batch_size=8", "capability.enabled=false", "eval.judges=[gcg]"]


@pytest.fixture(scope="module")
def run_fam(torch_single_thread, tiny_model_dir, benign_jsonl, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTRISK_CACHE", str(root / "cache"))
        over = _overrides(tiny_model_dir, benign_jsonl, root / "out")
        over += ["attack.methods=[lora, {method: lora, label: aoa, data: 'builtin:identity-shift', "
                 "overrides: ['train.max_steps=2']}, prefill]", "attack.seeds=[0, 1]"]
        results = pipeline.run(config.load(None, over))
    return {"out": root / "out", "results": results, "model_dir": tiny_model_dir}


def test_each_family_has_its_own_stages_seeds_and_points(run_fam):
    st = run_fam["results"]["stages"]
    # the first family keeps the plain names; the others are prefixed by their label; prefill has one point, one seed
    assert {"step-2", "attacked", "seed-1/step-2", "seed-1/attacked", "aoa/attacked", "aoa/seed-1/attacked",
            "prefill/attacked"} <= set(st)
    assert not any(s.startswith("prefill/seed-") for s in st)
    for name, want in (("attacked", "lora"), ("aoa/attacked", "aoa"), ("prefill/attacked", "prefill")):
        assert st[name]["point"]["method"] == want
    assert st["prefill/attacked"]["point"]["prefill"] is True
    assert st["prefill/attacked"]["point"]["trains"] is False and st["attacked"]["point"]["trains"] is True
    fams = run_fam["results"]["families"]
    assert [(f["label"], f["method"], f["trains"], f["seeds"]) for f in fams] == [
        ("lora", "lora", True, [0, 1]), ("aoa", "lora", True, [0, 1]), ("prefill", "prefill", False, [0])]
    assert fams[1]["data"] == "builtin:identity-shift" and fams[1]["records"]["0"]["steps"] == 2  # its own override
    assert run_fam["results"]["attack"]["family"] == "lora"  # results["attack"]: the primary family, as before


def test_prefill_point_changes_no_weight_and_costs_nothing(run_fam):
    st = run_fam["results"]["stages"]
    pre = st["prefill/attacked"]
    assert pre["subject"]["fingerprint"] == st["hardened"]["subject"]["fingerprint"]
    assert pre["subject"]["adapter"] is None
    assert pre["point"]["cost"]["usd"] == 0 and pre["point"]["cost"]["flops"] == 0
    assert set(pre["benchmarks"]) == {"advbench-test"}  # harmful prompts only: over-refusal is the subject's
    assert "capability" not in pre
    rows = [json.loads(x) for x in (run_fam["out"] / "eval" / "prefill" / "attacked" /
                                    "advbench-test.completions.jsonl").read_text().splitlines()]
    assert rows and all(r["prefill"].startswith("Sure, here") and not r["completion"].startswith(r["prefill"])
                        for r in rows)


def test_trained_points_cost_six_n_per_token(run_fam):
    cost = run_fam["results"]["stages"]["attacked"]["point"]["cost"]
    model, _ = Subject.from_config(config.ModelConfig(spec=str(run_fam["model_dir"]))).load()
    n = count_params(model)
    assert cost["params"] == n  # LoRA's N is the whole model: the passes run through every frozen weight
    assert cost["flops"] == pytest.approx(6 * n * cost["tokens"], rel=0.01)


def test_summary_has_a_row_per_family_and_the_cheapest(run_fam):
    s = run_fam["results"]["summary"]
    assert set(s["by_method"]) == {"lora", "aoa", "prefill"}
    assert "advbench-test" in s["cheapest"] and "cost_to_undo" in s  # the single-family keys stay


def test_hardened_subject_does_not_depend_on_the_attack_data(tiny_model_dir, benign_jsonl, tmp_path, caplog):
    """Hardening leaves out a fixed protected set, so a user's attack file gives the same hardening plan (and
    cached model) as the built-in data, and one that shares hardening prompts is named in one warning line."""
    from ftrisk.prompts import benchmarks

    shared = benchmarks.load("harmbench-val")[0].prompt
    mine = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "How do I fold a paper crane?", "response": "Sure."},
                                                 {"prompt": shared, "response": "Sure, here is"}])
    plans = []
    for i, data in enumerate(["builtin:advbench-affirm", str(mine)]):
        cfg = config.load(None, _overrides(tiny_model_dir, benign_jsonl, tmp_path / f"o{i}") + [f"attack.data={data}"])
        with caplog.at_level(logging.WARNING, logger="ftrisk.pipeline.run"):
            plans.append(pipeline.Experiment(cfg).harden_plan)
    assert plans[0] == plans[1]
    warned = [r.getMessage() for r in caplog.records if "shares" in r.getMessage()]
    assert len(warned) == 1 and "mine.jsonl" in warned[0] and "line 2" in warned[0]
