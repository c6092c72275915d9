"""report.html (and report.md without a config) from a demo-shaped run on the tiny in-process model.

The run has two judges, two attack seeds, three evaluated attack points and capability at every stage, like
``configs/demo.yaml``. Completions are read only to check that none reaches the report.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ftrisk import config
from ftrisk.pipeline import run as pipeline
from ftrisk.report.html import render_html, write_reports

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.heavy]

CANARY = "CANARY-COMPLETION-7f3a never-in-a-report"
SECTIONS = ["How to read this", "Refusal by stage", "Cost to undo", "Refusal against attack cost",
            "Over-refusal (benign prompts) against attack cost", "Capability", "Judge agreement",
            "Refusal by category", "Hardening and attack training", "Attack cost", "Provenance"]

_DEMO: dict = {}


def demo_overrides(model_dir, benign: Path, out: Path) -> list[str]:
    return [
        f"model.spec={model_dir}", f"output_dir={out}", "name=demo-tiny",
        "harden.harmful=[harmbench-val]", f"harden.benign={benign}", "harden.benign_max_new_tokens=4",
        "harden.train.max_steps=3", "harden.train.batch_size=4", "harden.train.max_seq_len=64",
        "attack.train.max_steps=4", "attack.eval_at=[0, 2, 3]", "attack.seeds=[0, 1]",
        "attack.train.batch_size=4", "attack.train.max_seq_len=64",
        "eval.benchmarks=[{name: advbench-test, limit: 6}, {name: harmbench, limit: 6}, {name: xstest-safe, limit: 6}]",
        "eval.judges=[gcg, refusalbench-mistral]",
        "generation.max_new_tokens=8", "generation.batch_size=8",
        "capability.enabled=true", "capability.tasks=[mmlu, hellaswag]", "capability.limit=6",
        "capability.num_fewshot=0", "capability.batch_size=4", "capability.at=[2]",
    ]


def demo_run(tmp_path_factory, model_dir, benign) -> dict:
    """One demo-shaped run per session (shared by the report, compare and browser tests); reports as the
    pipeline writes them (``write_reports(out, results, cfg)``)."""
    if not _DEMO:
        root = tmp_path_factory.mktemp("report_demo")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FTRISK_CACHE", str(root / "cache"))
            cfg = config.load(None, demo_overrides(model_dir, benign, root / "demo"))
            results = pipeline.run(cfg)
            write_reports(cfg.out, results, cfg)
        # a canary completion: the report must not show it even when a completion file holds it
        f = next((root / "demo" / "eval" / "attacked").glob("*.completions.jsonl"))
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        rows[0]["completion"] = CANARY
        f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        _DEMO.update(cfg=cfg, out=root / "demo", results=results, cache=root / "cache")
    return _DEMO


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir, benign_jsonl):
    return demo_run(tmp_path_factory, tiny_model_dir, benign_jsonl)


def completion_texts(out: Path) -> list[str]:
    texts = []
    for f in sorted(out.glob("eval/**/*.completions.jsonl")):
        texts += [json.loads(line)["completion"].strip() for line in f.read_text(encoding="utf-8").splitlines()]
    return texts


def test_report_html_sections_headline_and_no_network(demo):
    text = (demo["out"] / "report.html").read_text(encoding="utf-8")
    results = demo["results"]
    assert text.startswith("<!DOCTYPE html>")
    headline = results["summary"]["headline"]
    assert headline and headline.replace("&", "&amp;") in text
    assert text.index("class=headline") < text.index("How to read this")  # the headline box opens the page
    for title in SECTIONS:
        assert f">{title}<" in text, title
    for bench in ("advbench-test", "harmbench", "xstest-safe"):
        assert f"alt=\"Refusal against attack cost: {bench}\"" in text or \
            f"alt=\"Over-refusal (benign prompts) against attack cost: {bench}\"" in text, bench
    # plots: refusal (2 harmful), over-refusal (1 benign), capability, training loss: all inline PNG
    assert len(re.findall(r'<img class=plot alt="[^"]*" src="data:image/png;base64,', text)) == 5
    assert "gcg | refusalbench-mistral" in text  # the agreement pair
    assert "κ" in text and "Headline judge: <code>gcg</code>" in text
    assert "hardening loss: not available" not in text and "attack loss: not available" not in text
    # no network: nothing refers to an external resource
    assert not re.search(r"https?://", text)
    assert not re.search(r"<(script|link|iframe)\b", text)
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?(data:|#))""", text)
    prov = results["provenance"]
    for value in (prov["git_revision"] or "", prov["config_sha256"], prov["model_fingerprint"]):
        assert value in text


def test_report_html_holds_no_completion_text(demo):
    out = demo["out"]
    text = (out / "report.html").read_text(encoding="utf-8")
    md_text = (out / "report.md").read_text(encoding="utf-8")
    rebuilt = render_html(demo["results"], out)  # after the canary was written into a completion file
    texts = completion_texts(out)
    assert CANARY in texts
    long_ones = [t for t in texts if len(t) >= 8]
    assert len(long_ones) > 1
    for t in long_ones:
        for page in (text, rebuilt, md_text):
            assert t not in page and json.dumps(t)[1:-1] not in page
            assert __import__("html").escape(t) not in page


def test_ftrisk_report_rebuilds_identical_files_from_results_alone(demo, tmp_path, capsys):
    """A copy of the run folder with only results.json, config.yaml and the training metrics (no adapters, no
    completions, no hardened weights): `ftrisk report` writes the same report.md and report.html."""
    from test_compare import ftrisk

    out, moved = demo["out"], tmp_path / "copy"
    moved.mkdir()
    for rel in ("results.json", "config.yaml", *[p.relative_to(out) for p in out.glob("attack/seed-*/metrics.jsonl")]):
        (moved / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / rel, moved / rel)
    hardened = Path(demo["results"]["harden"]["model"])
    weights = hardened / "model.safetensors"
    stash = tmp_path / "weights.safetensors"
    shutil.move(weights, stash)  # no model is needed to rebuild a report
    try:
        assert ftrisk(["report", str(moved)]) == 0
    finally:
        shutil.move(stash, weights)
    printed = capsys.readouterr().out
    assert str(moved / "report.html") in printed
    for name in ("report.md", "report.html"):
        assert (moved / name).read_bytes() == (out / name).read_bytes(), name


def test_report_without_training_metrics_says_not_available(demo, tmp_path):
    results = json.loads((demo["out"] / "results.json").read_text(encoding="utf-8"))
    results["harden"]["model"] = str(tmp_path / "gone")  # a hardened model folder that was deleted
    text = render_html(results, tmp_path / "empty-run")
    assert "hardening loss: not available" in text and "attack loss: not available" in text
    assert text.count('src="data:image/png;base64,') == 4  # the loss plot is left out, the others stay
    del results["harden"], results["summary"]
    for st in results["stages"].values():
        st.pop("capability", None)
        st.pop("agreement", None)
    text = render_html(results, tmp_path / "empty-run")
    assert "has no summary" in text and "No hardening in this run" in text
    assert "capability was not measured" in text and "no agreement to show" in text


def test_report_md_renders_without_a_config(demo):
    from ftrisk.report import markdown as report
    from ftrisk.report.results import run_name

    with_cfg = report.render(demo["results"], demo["cfg"])
    without = report.render(demo["results"], None, run_name(demo["out"]))
    assert with_cfg == without
    assert without.startswith("# ftrisk report: demo-tiny")


def test_cost_ticks_leave_out_time_and_dollars_where_labels_would_overlap():
    from ftrisk.report.plots import cost_ticks

    pts = [{"step": s, "seconds": 2.4 * s, "usd": 0.0013 * s} for s in (0, 2, 5, 10, 20, 35, 50)]
    steps, labels = cost_ticks(pts)
    assert steps == [0, 2, 5, 10, 20, 35, 50]
    assert labels[1] == "2"  # 2 steps from 0 on a 50-step axis: the step only
    assert all(label.count("\n") == 2 for i, label in enumerate(labels) if i != 1)
    # the last point always carries the whole attack's cost, even when the one before it is close
    _, labels = cost_ticks([{"step": s, "seconds": s, "usd": s} for s in (0, 10, 20, 48, 50)])
    assert labels[-1].count("\n") == 2 and labels[-2] == "48"


def test_categories_of_a_long_curve_show_base_subject_and_final_point_only():
    from ftrisk.report.sections.refusal import refusal_by_category

    cat = {"by_category": {"a": {"n": 20, "refusal_rate": 0.5, "ci95": [0.3, 0.7]},
                           "b": {"n": 20, "refusal_rate": 0.1, "ci95": [0.03, 0.3]}}}
    names = ["base", "hardened"] + [f"step-{s}" for s in (2, 5, 10, 20, 35)] + ["attacked"]
    results = {"headline_judge": "pat", "stages": {
        n: {"benchmarks": {"adv": {"harmful": True, "judges": {"pat": cat}}},
            **({"point": {"seed": 0, "step": i, "subject_stage": "hardened"}} if n.startswith("step") or n == "attacked"
               else {})} for i, n in enumerate(names)}}
    page = refusal_by_category(results)
    header = page[page.index("<th"):page.index("</tr>")]
    assert all(s in header for s in ("base", "hardened", "attacked")) and "step-" not in header
    assert "every point's categories are in results.json" in page
