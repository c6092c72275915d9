"""Capability retention on the embedded model (SmolLM2-135M-Instruct, dequantized GGUF): slow tier.

Runs ``evaluate`` end to end through lm-eval on real data and checks, independently of lm-eval,
that its choice on 100 MMLU items is the argmax of the answer letters' log-likelihoods computed by
hand with plain transformers.  About 3-5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json

import pytest

from ftrisk.capability import harness
from ftrisk.capability.deltas import deltas
from ftrisk.report.capability import report_lines
from ftrisk.model import loading as models
from ftrisk.config.schema import CapabilityConfig, ModelConfig
from ftrisk.model.subject import Subject

from test_capability import hand_check

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_single_thread")]


@pytest.fixture(scope="module")
def embedded_dir():
    try:
        return models.resolve(models.DEFAULT_SPEC)
    except Exception as e:  # the embedded model's package is not installed
        pytest.skip(f"embedded model unavailable: {e}")


@pytest.fixture(scope="module")
def embedded_run(torch_single_thread, embedded_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("capability_embedded")
    # cache off: the hand check below must compare against log-likelihoods lm-eval computes now
    cfg = CapabilityConfig(tasks=["mmlu", "hellaswag"], limit=100, num_fewshot=0, batch_size=16, cache=False)
    subject = Subject.from_config(ModelConfig(spec=models.DEFAULT_SPEC, device="cpu"))
    return cfg, out, harness.evaluate(subject, cfg, out, seed=0), subject


def test_embedded_model_scores_are_plausible(embedded_run):
    cfg, out, res, _ = embedded_run
    for task, r in res.items():
        assert r["n"] == 100 and len(r["correct"]) == 100
        assert r["lm_eval_acc"] == pytest.approx(r["acc"], abs=1e-4)
        assert r["ci95"][0] < r["acc"] < r["ci95"][1]
    # a 135M model is near chance on MMLU and clearly above it on HellaSwag (acc_norm ~0.4)
    assert 0.10 <= res["mmlu"]["acc"] <= 0.45
    assert res["hellaswag"]["ci95"][0] > 0.25
    stages = {"base": {"capability": res},
              "attacked": {"capability": res, "capability_delta": {"vs": "base", **deltas(res, res)}}}
    lines = report_lines(stages)
    assert lines[0].startswith("MMLU 0-shot (n=100): base ") and "McNemar p=1" in lines[0]


def test_embedded_lm_eval_choice_equals_hand_computed_argmax(embedded_run, embedded_dir):
    cfg, out, res, _ = embedded_run
    n, worst = hand_check(embedded_dir, out / res["mmlu"]["samples"], cfg.num_fewshot)
    assert n == 100
    assert worst < 1e-3  # batched (padded) vs single forward passes: float noise only


def test_embedded_resume_is_free(embedded_run, monkeypatch):
    cfg, out, res, subject = embedded_run
    monkeypatch.setattr(harness, "load_lm", lambda *a, **k: pytest.fail("model reloaded"))
    assert harness.evaluate(subject, cfg, out, seed=0) == res
    assert json.loads((out / "capability.json").read_text()) == res
