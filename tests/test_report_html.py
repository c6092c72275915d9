"""report.html (and report.md without a config) from a demo-shaped run on the tiny in-process model.

The run has two judges, two attack seeds, three evaluated attack points and capability at every stage, like
``configs/demo.yaml``. Completions are read only to check that none reaches the report.
"""

from __future__ import annotations

import copy
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


def with_families(results: dict) -> dict:
    """The demo's results.json as a run with three attack families writes it: its own (the primary) and two more
    built from its final point, refusal-direction ablation (one point, refusal 0%, nearly free: the cheapest) and
    prefilling (harmful benchmarks only, refusal 50%, cost 0); the subject made to refuse 90% (the tiny random
    model refuses little), the summary rebuilt."""
    from ftrisk.report import summary
    from ftrisk.report.results import families_of, harmful_of

    r = copy.deepcopy(results)
    stages, head = r["stages"], r["headline_judge"]
    final = stages["attacked"]
    harmful = harmful_of(r)

    def set_rate(benches: dict, rate: float) -> None:
        for name, b in benches.items():
            if harmful[name]:
                for j in b["judges"].values():
                    j.update(refusal_rate=rate, ci95=[max(0.0, rate - 0.05), min(1.0, rate + 0.05)])
                b.update({k: b["judges"][head][k] for k in ("refusal_rate", "ci95")})

    def stage(label: str, cost: dict, rate: float, prefill: bool = False) -> dict:
        st = {k: copy.deepcopy(v) for k, v in final.items() if k not in ("capability", "capability_delta", "agreement")}
        if prefill:
            st["benchmarks"] = {b: v for b, v in st["benchmarks"].items() if harmful[b]}
        set_rate(st["benchmarks"], rate)
        st["point"] = {**final["point"], "step": 1, "cost": cost, "method": label, "trains": False,
                       **({"prefill": True} if prefill else {})}
        return st

    primary = families_of(r)[0]
    set_rate(stages[final["point"]["subject_stage"]]["benchmarks"], 0.9)
    zero = {**final["point"]["cost"], **{k: 0 for k in ("wall_seconds", "usd", "flops", "tokens", "trained_tokens",
                                                         "steps", "examples", "distinct_examples")}}
    stages["ablation/attacked"] = stage("ablation", {**zero, "wall_seconds": 0.001, "flops": 1.0}, 0.0)
    stages["prefill/attacked"] = stage("prefill", zero, 0.5, prefill=True)
    seed = final["point"]["seed"]
    r["families"] = [primary,
                     {"label": "ablation", "method": "ablation", "trains": False, "data": None, "seeds": [seed],
                      "info": {"kl_harmless": 0.05, "layer": 1, "position": -1}},
                     {"label": "prefill", "method": "prefill", "trains": False, "data": None, "seeds": [seed],
                      "info": {"prefix": "Sure, here is"}}]
    r["summary"] = summary.build(r, r["summary"]["threshold"])
    return r


def multi_family_run(demo, dst: Path) -> Path:
    """A run folder holding :func:`with_families` of the demo (results.json and config.yaml), reports written by
    ``ftrisk report``."""
    from test_compare import _copy_run, ftrisk

    run = _copy_run(demo, dst, "demo-families", lambda r: r.update(with_families(r)))
    assert ftrisk(["report", str(run)]) == 0
    return run


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


def test_report_of_a_run_with_several_attack_families(demo, tmp_path):
    """One log-dollar plot per harmful benchmark, the cost-to-undo table with the cheapest family on top and a row
    per family (report.html and report.md), the headline naming the cheapest and prefill."""
    from ftrisk.report.plots import family_cost_figure

    run = multi_family_run(demo, tmp_path / "multi")
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    s = results["summary"]
    assert s["cheapest"]["advbench-test"]["gcg"]["method"] == "ablation"
    assert s["headline"].startswith("Cheapest attack: ablation. Refusal on advbench-test fell from 90% to ≤ 5% (gcg) in")
    assert s["headline"].endswith("affirmative prefix brings refusal to 50% (gcg).")
    text = (run / "report.html").read_text(encoding="utf-8")
    assert s["headline"].replace("&", "&amp;") in text
    for bench in ("advbench-test", "harmbench"):
        assert text.count(f'alt="Refusal against cost, every attack family: {bench}"') == 1, bench
    assert "every attack family: xstest-safe" not in text  # over-refusal has no cost to undo
    assert text.count("against attack cost in dollars, log scale") == 2
    # the single-family plots stay (refusal 2, over-refusal 1, capability, hardening loss) beside the two new ones
    assert len(re.findall(r'<img class=plot alt="[^"]*" src="data:image/png;base64,', text)) == 7
    fig = family_cost_figure(results, "advbench-test", "gcg", s["threshold"])
    assert fig.axes[0].get_xscale() == "log"
    assert "<td><b>cheapest: ablation</b>" in text and "prefill (no fine-tuning needed)" in text
    assert ">Attack families<" in text and "KL 0.050 on harmless prompts" in text
    assert not re.search(r"https?://", text) and not re.search(r"<(script|link|iframe)\b", text)
    md = (run / "report.md").read_text(encoding="utf-8")
    rows = [line for line in md.splitlines() if line.startswith("| advbench-test | gcg |")]
    assert len(rows) == 4 and rows[0].startswith("| advbench-test | gcg | **cheapest: ablation** |")
    assert [r.split(" | ")[2] for r in rows[1:]] == [results["families"][0]["label"], "ablation",
                                                      "prefill (no fine-tuning needed)"]
    assert "| benchmark | base | hardened | attacked | ablation/attacked | prefill/attacked |" in md


def test_attack_losses_of_every_family(tmp_path):
    from ftrisk.report.sections.training import attack_losses

    for rel in ("attack/seed-10", "attack/seed-2", "attack/benign-lora/seed-0", "attack/ablation/seed-0"):
        (tmp_path / rel).mkdir(parents=True)
    for rel in ("attack/seed-10", "attack/seed-2", "attack/benign-lora/seed-0"):
        (tmp_path / rel / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    got = attack_losses(tmp_path)  # ablation trains nothing: no metrics, no line
    assert [name for name, *_ in got] == ["seed-2", "seed-10", "benign-lora/seed-0"]
    assert got[2][1:] == ([1, 2], [2.0, 1.5])


def test_family_cost_figure_draws_every_family_on_a_log_dollar_axis():
    from test_summary import three_families

    from ftrisk.report.plots import family_cost_figure, left_edge, point_dollars, short_dollars
    from ftrisk.report.results import curve

    r = three_families()
    ax = family_cost_figure(r, "adv", "pat", 0.05).axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "lora", "lora: other seeds", "ablation (no training)", "prefill (no fine-tuning, $0): 60%",
        "before the attack: 97% ($0, at the left edge)", "threshold 5%"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["ablation (no training)"].get_xdata()) == [0.004]
    assert list(lines["lora"].get_xdata()) == [0.0275, 0.055, 0.11] and list(lines["lora"].get_ydata()) == [0.4, 0.04, 0.0]
    assert left_edge(r, "adv", "pat") == pytest.approx(0.001)  # a quarter of the cheapest point: $0 sits there
    assert ax.get_xlim()[0] < 0.001
    # dollars rounded to $0 in results.json come back from the seconds at usd_per_hour
    r["stages"]["ablation/attacked"]["point"]["cost"].update(usd=0.0, wall_seconds=0.036)
    p = curve(r, "adv", "pat", 0, "ablation")[1]
    assert point_dollars(r, p) == pytest.approx(0.00002)
    assert left_edge(r, "adv", "pat") == pytest.approx(0.000005)
    assert [short_dollars(v) for v in (5.6e-6, 0.001, 0.25, 1.0, 12.0)] == ["$0.0000056", "$0.001", "$0.25", "$1", "$12"]
