"""`ftrisk report` and `ftrisk compare` on finished runs: the demo-shaped run of test_report_html and copies of
its results.json changed the way other runs differ (another judge, a missing benchmark, a malformed file)."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from ftrisk import cli

pytestmark = [pytest.mark.usefixtures("torch_single_thread"), pytest.mark.heavy]


def ftrisk(argv: list[str]) -> int:
    """``ftrisk report|compare ...`` through the command line, its error handling included (one line, exit 2)."""
    return cli.main(argv)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir, benign_jsonl):
    from test_report_html import demo_run

    return demo_run(tmp_path_factory, tiny_model_dir, benign_jsonl)


def _copy_run(demo, dst: Path, name: str, change=None) -> Path:
    """A run folder holding a (changed) copy of the demo's results.json and its config name."""
    dst.mkdir(parents=True)
    results = copy.deepcopy(demo["results"])
    if change:
        change(results)
    (dst / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (dst / "config.yaml").write_text(f"name: {name}\n", encoding="utf-8")
    return dst


def _drop_benchmark(bench: str):
    def change(results):
        for st in results["stages"].values():
            st["benchmarks"].pop(bench, None)
            (st.get("agreement") or {}).pop(bench, None)
        results["summary"]["cost_to_undo"].pop(bench, None)
        results["summary"]["over_refusal"].pop(bench, None)
    return change


def _only_judge(judge: str):
    def change(results):
        results["judges"] = {judge: results["judges"][judge]}
        results["headline_judge"] = judge
        for st in results["stages"].values():
            st.pop("agreement", None)
            for b in st["benchmarks"].values():
                b["judges"] = {judge: b["judges"][judge]}
                b.update({k: v for k, v in b["judges"][judge].items()})
        for by_judge in results["summary"]["cost_to_undo"].values():
            for j in list(by_judge):
                if j != judge:
                    del by_judge[j]
    return change


def _table(out: str) -> list[list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_compare_prints_one_row_per_run_in_the_papers_shape(demo, tmp_path, capsys):
    b = _copy_run(demo, tmp_path / "B", "run-b", _drop_benchmark("harmbench"))
    html = tmp_path / "cmp" / "compare.html"
    assert ftrisk(["compare", str(demo["out"]), str(b), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    head, sep, a_row, b_row = rows
    assert head[:4] == ["run", "model", "attack", "judge"]
    assert "advbench-test refusal before → after" in head and "harmbench refusal before → after" in head
    assert "xstest-safe over-refusal before → after" in head
    assert "mmlu acc before → after (Δ)" in head and "hellaswag acc before → after (Δ)" in head
    assert head[-1].startswith("cost to undo (advbench-test, ≤ 5.0%")
    assert a_row[0] == "demo-tiny" and b_row[0] == "run-b"
    res = demo["results"]
    st = res["stages"]
    before = st["hardened"]["benchmarks"]["advbench-test"]["judges"]["gcg"]["refusal_rate"]
    after = st["attacked"]["benchmarks"]["advbench-test"]["judges"]["gcg"]["refusal_rate"]
    col = head.index("advbench-test refusal before → after")
    assert a_row[col] == f"{100 * before:.1f}% → {100 * after:.1f}%" == b_row[col]
    assert a_row[2] == f"lora, {res['attack']['steps']} steps, seeds 0,1"
    hb = head.index("harmbench refusal before → after")
    assert "→" in a_row[hb] and b_row[hb] == "–"  # the missing benchmark shows a dash, no crash
    acc = st["attacked"]["capability"]["hellaswag"]["acc"]
    assert f"→ {acc:.3f}" in a_row[head.index("hellaswag acc before → after (Δ)")]
    assert "note: run run-b has no benchmark harmbench: its column shows –" in out
    page = html.read_text(encoding="utf-8")
    assert f"html: {html}" in out
    assert not re.search(r"https?://", page)
    assert page.count('src="data:image/png;base64,') == 3  # advbench-test, harmbench, xstest-safe overlays
    assert "demo-tiny" in page and "run-b" in page and "has no benchmark harmbench" in page


def test_compare_runs_with_different_judges_says_what_it_could_not_compare(demo, tmp_path, capsys):
    b = _copy_run(demo, tmp_path / "B", "other-judge", _only_judge("refusalbench-mistral"))
    assert ftrisk(["compare", str(demo["out"]), str(b)]) == 0
    out = capsys.readouterr().out
    head, _, a_row, b_row = _table(out)
    assert a_row[3] == "gcg" and b_row[3] == "refusalbench-mistral"
    assert "note: run other-judge has no judge gcg: its columns show refusalbench-mistral" in out
    col = head.index("advbench-test refusal before → after")
    rate = demo["results"]["stages"]["attacked"]["benchmarks"]["advbench-test"]["judges"]["refusalbench-mistral"]
    assert b_row[col].endswith(f"→ {100 * rate['refusal_rate']:.1f}%")


def test_compare_same_names_are_told_apart_by_folder(demo, tmp_path, capsys):
    b = _copy_run(demo, tmp_path / "B", "demo-tiny")
    assert ftrisk(["compare", str(demo["out"]), str(b)]) == 0
    _, _, a_row, b_row = _table(capsys.readouterr().out)
    assert a_row[0] == str(demo["out"]) and b_row[0] == str(b)


@pytest.mark.parametrize("content, says", [
    (None, "has no results.json"),
    ("{not json", "is not readable JSON"),
    ("[1, 2]", "is not an ftrisk results file"),
    ('{"stages": {"base": {"benchmarks": {"x": {"judges": 3}}}}, "summary": 5}', "unexpected shape"),
    ('{"stages": {"base": {"benchmarks": {"x": {"judges": 3}}}}}', "unexpected shape"),
])
@pytest.mark.parametrize("cmd", ["compare", "report"])
def test_bad_run_folder_is_one_line_exit_2(demo, tmp_path, capsys, content, says, cmd):
    bad = tmp_path / "bad-run"
    bad.mkdir()
    if content is not None:
        (bad / "results.json").write_text(content, encoding="utf-8")
    argv = ["compare", str(demo["out"]), str(bad)] if cmd == "compare" else ["report", str(bad)]
    assert ftrisk(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("ftrisk: error: run folder") and str(bad) in err and says in err, err
    assert not (bad / "report.html").exists()


def test_ftrisk_report_on_a_missing_folder(tmp_path, capsys):
    assert ftrisk(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_report_html_of_a_copied_run_is_the_same_page(demo, tmp_path, capsys):
    """`ftrisk report` needs results.json only; the page names the run from its config (training loss aside)."""
    b = _copy_run(demo, tmp_path / "B", "demo-tiny")
    for f in demo["out"].glob("attack/seed-*/metrics.jsonl"):
        (b / f.relative_to(demo["out"])).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, b / f.relative_to(demo["out"]))
    assert ftrisk(["report", str(b)]) == 0
    assert (b / "report.html").read_bytes() == (demo["out"] / "report.html").read_bytes()


def test_compare_a_run_with_several_attack_families_shows_its_cheapest(demo, tmp_path, capsys):
    from test_report_html import multi_family_run

    multi = multi_family_run(demo, tmp_path / "multi")
    capsys.readouterr()
    html = tmp_path / "cmp.html"
    assert ftrisk(["compare", str(demo["out"]), str(multi), "--html", str(html)]) == 0
    head, _, a_row, b_row = _table(capsys.readouterr().out)
    primary = demo["results"]["attack"]["method"]
    assert b_row[2].endswith(f"; families {primary}, ablation, prefill") and "families" not in a_row[2]
    assert b_row[-1].startswith("cheapest of 3 families: ablation, 0.0 s, $0.000")
    assert "steps" not in b_row[-1]  # ablation trains nothing
    col = head.index("advbench-test refusal before → after")
    assert b_row[col].startswith("90.0% → ")  # the first family's final point against the subject
    assert html.read_text(encoding="utf-8").count('src="data:image/png;base64,') == 3
