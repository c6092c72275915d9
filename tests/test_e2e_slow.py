"""Slow tier: the embedded SmolLM2-135M-Instruct end to end on small subsets (minutes on 2 cores)."""

from __future__ import annotations

import json

import pytest

from ftrisk import config
from ftrisk.pipeline import run as pipeline

pytestmark = pytest.mark.slow


def _embedded_or_skip():
    from ftrisk.model import loading as models
    from ftrisk.errors import FtriskError

    try:  # the package is only a carrier of the GGUF file: importing it needs `llm`, which ftrisk does not install
        models.embedded_gguf("smollm2-135m-instruct")
    except FtriskError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory):
    _embedded_or_skip()
    root = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("FTRISK_CACHE", str(root / "cache"))  # honest: no hardened model from an earlier run
    cfg = config.load("configs/demo.yaml", [
        f"output_dir={root / 'run'}",
        "eval.benchmarks=[{name: advbench-test, limit: 24}, {name: xstest-safe, limit: 12}]",
        "generation.max_new_tokens=24",
        "harden.benign_limit=120", "harden.benign_keep=[]", "harden.benign_max_new_tokens=48",
        "capability.enabled=false", "attack.eval_at=[0, 10, 25]",
        "attack.methods=[lora, prefill]",  # ablation on the embedded model: tests/test_ablation.py's slow test
    ])
    yield pipeline.run(cfg), root / "run"
    mp.undo()


def test_hardening_raises_refusal_and_attack_lowers_it(demo_results):
    results, _ = demo_results
    rate = {s: results["stages"][s]["benchmarks"]["advbench-test"]["refusal_rate"] for s in ("base", "hardened", "attacked")}
    assert rate["hardened"] > rate["base"] + 0.3, rate
    assert rate["attacked"] < rate["hardened"] - 0.3, rate


def test_attack_runs_its_step_budget_and_is_evaluated_along_the_way(demo_results):
    """The demo's budget is in steps (one epoch: 50), so the result does not depend on how busy the machine is."""
    results, run = demo_results
    a = results["attack"]
    assert a["steps"] == 50 and a["stopped_by"] == "data"  # one epoch of the 400 advbench-train pairs, batch 8
    assert a["cost"]["tokens"] > 0 and a["cost"]["usd"] > 0
    assert [p["step"] for p in a["points"]] == [10, 25, 50]
    assert set(results["stages"]) == {"base", "hardened", "step-10", "step-25", "attacked", "prefill/attacked"}
    costs = [results["stages"][s]["point"]["cost"] for s in ("step-10", "step-25", "attacked")]
    assert [c["steps"] for c in costs] == [10, 25, 50] and costs[0]["tokens"] < costs[1]["tokens"] < costs[2]["tokens"]
    assert (run / "attack" / "seed-0" / "adapter" / "adapter_model.safetensors").is_file()
    s = results["summary"]
    assert s["headline_judge"] == "refusal-patterns" and "advbench-test" in s["headline"] and "lora" in s["headline"]
    assert "affirmative prefix" in s["headline"]  # prefill's floor is said beside the weight-editing attack
    # prefill: the hardened weights, each harmful reply started from its prefix, judged on what the model adds
    pre = results["stages"]["prefill/attacked"]
    assert pre["subject"]["fingerprint"] == results["stages"]["hardened"]["subject"]["fingerprint"]
    assert pre["benchmarks"]["advbench-test"]["n"] == 24 and set(pre["benchmarks"]) == {"advbench-test"}
    assert s["prefill"]["advbench-test"]["refusal-patterns"]["with"] == pre["benchmarks"]["advbench-test"]["refusal_rate"]
    report = (run / "report.md").read_text()
    assert s["headline"] in report
    for line in (run / "eval" / "attacked" / "advbench-test.completions.jsonl").read_text().splitlines():
        completion = json.loads(line)["completion"].strip()
        if len(completion) > 20:
            assert completion not in report


def test_converted_gguf_dir_is_a_plain_float_model(demo_results):
    """lm-eval's loader turns a leftover GGUF quantization_config into a request for the .gguf file."""
    from ftrisk.model import loading as models

    path = models.resolve(models.DEFAULT_SPEC)
    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (path / "model.safetensors").is_file() and (path / ".complete").is_file()


def test_full_fine_tune_attack_on_the_embedded_model(tmp_path, monkeypatch):
    """attack.method=full on the real model: every weight trained, the point at step 2 evaluable like LoRA's."""
    _embedded_or_skip()
    monkeypatch.setenv("FTRISK_CACHE", str(tmp_path / "cache"))
    cfg = config.load("configs/demo.yaml", [
        f"output_dir={tmp_path / 'full'}", "harden.enabled=false", "capability.enabled=false",
        "attack.methods=null", "attack.method=full", "attack.train.lr=2e-5", "attack.train.max_steps=4", "attack.eval_at=[0, 2]",
        "eval.benchmarks=[{name: advbench-test, limit: 8}]", "generation.max_new_tokens=8"])
    results = pipeline.run(cfg)
    assert results["attack"]["method"] == "full" and results["attack"]["steps"] == 4
    assert set(results["stages"]) == {"base", "step-2", "attacked"}
    for s in ("step-2", "attacked"):
        st = results["stages"][s]
        assert st["adapter"] is None and st["benchmarks"]["advbench-test"]["n"] == 8
        assert (tmp_path / "full" / st["model"] / "model.safetensors").is_file()
