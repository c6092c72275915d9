"""``ftrisk report RUN_DIR`` and ``ftrisk compare RUN_DIR...``: read finished runs' results.json, no model needed.

``report`` rebuilds report.md and report.html. ``compare`` prints one row per run in the paper's shape (model,
attack, refusal before → after per harmful benchmark, over-refusal, capability, cost to undo) as a Markdown
table, and with ``--html`` a page that overlays every run's curves. Runs are compared on the first run's
headline judge and benchmarks; whatever a run lacks shows "–", with a line saying what could not be compared.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftrisk.errors import FtriskError
from ftrisk.report.markdown import run_name

DASH = "–"


def load_results(run_dir: str | Path) -> dict:
    """RUN_DIR/results.json, checked to be the shape ``ftrisk run`` writes (else one FtriskError naming the folder)."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not run_dir.is_dir():
        raise FtriskError(f"run folder '{run_dir}' does not exist: pass the output folder of `ftrisk run`")
    if not path.is_file():
        raise FtriskError(f"run folder '{run_dir}' has no results.json: pass the output folder of `ftrisk run`")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FtriskError(f"run folder '{run_dir}': results.json is not readable JSON ({e})") from None
    if not isinstance(results, dict) or not isinstance(results.get("stages"), dict) or not all(
            isinstance(st, dict) and isinstance(st.get("benchmarks", {}), dict) for st in results["stages"].values()):
        raise FtriskError(f"run folder '{run_dir}': results.json is not an ftrisk results file (no 'stages' mapping)")
    if not isinstance(results.get("summary", {}), dict):
        raise FtriskError(f"run folder '{run_dir}': results.json has an unexpected shape ('summary' is not a mapping)")
    return results


def _guard(run_dir: Path, fn, *args):
    """Turn a results.json that parses but holds unexpected values into one line naming the folder."""
    try:
        return fn(*args)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise FtriskError(f"run folder '{run_dir}': results.json has an unexpected shape ({type(e).__name__}: {e}); "
                          "re-run `ftrisk run` with this version of ftrisk") from None


# --------------------------------------------------------------------------- ftrisk report


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="output folder of `ftrisk run` (holds results.json)")


def report_main(args: argparse.Namespace) -> int:
    from ftrisk.report.html import write_reports

    run_dir = Path(args.run_dir)
    results = load_results(run_dir)
    paths = _guard(run_dir, write_reports, run_dir, results, None)
    print("\n".join(f"report: {p}" for p in paths))
    return 0


# --------------------------------------------------------------------------- ftrisk compare


def _rate(st: dict | None, bench: str, judge: str) -> float | None:
    b = ((st or {}).get("benchmarks") or {}).get(bench) or {}
    return ((b.get("judges") or {}).get(judge) or {}).get("refusal_rate")


def _pct(x) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def _arrow(before, after) -> str:
    return DASH if before is None and after is None else f"{_pct(before)} → {_pct(after)}"


def _model(spec) -> str:
    s = str(spec or DASH)
    return Path(s).name if s.startswith(("/", "./", "~")) else s


class Run:
    """One run's numbers for the comparison: the stage the attack started from and its final point."""

    def __init__(self, run_dir: Path, results: dict):
        self.dir, self.results = run_dir, results
        self.name = run_name(run_dir)
        stages = results["stages"]
        self.after = stages.get("attacked")
        start = (self.after or {}).get("point", {}).get("subject_stage")
        self.before_name = start if start in stages else next((s for s in ("hardened", "base") if s in stages), None)
        self.before = stages.get(self.before_name)
        self.judges = list(results.get("judges") or {})
        self.headline_judge = results.get("headline_judge") or (self.judges[0] if self.judges else None)
        self.harmful: dict[str, bool] = {}
        for st in stages.values():
            for b, v in (st.get("benchmarks") or {}).items():
                self.harmful.setdefault(b, bool(v.get("harmful", True)))
        self.summary = results.get("summary") or {}

    def tasks(self) -> list[str]:
        return list(((self.after or self.before or {}).get("capability")) or {})


def _union(lists) -> list[str]:
    out: list[str] = []
    for items in lists:
        out += [x for x in items if x not in out]
    return out


def comparison(runs: list[Run]) -> tuple[list[str], list[list[str]], list[str], dict]:
    """(header, rows, notes, plan): the table and every line about what could not be compared."""
    ref = runs[0]
    judge = ref.headline_judge
    harmful = _union([b for b, h in r.harmful.items() if h] for r in runs)
    benign = _union([b for b, h in r.harmful.items() if not h] for r in runs)
    tasks = _union(r.tasks() for r in runs)
    undo_bench = ref.summary.get("headline_benchmark") or (harmful[0] if harmful else None)
    threshold = ref.summary.get("threshold")
    used = {r.name: judge if judge in r.judges else r.headline_judge for r in runs}
    notes = [n for r in runs for n in _guard(r.dir, _notes, r, judge, used[r.name], harmful + benign, tasks, threshold)]
    head = (["run", "model", "attack", "judge"] + [f"{b} refusal before → after" for b in harmful]
            + [f"{b} over-refusal before → after" for b in benign] + [f"{t} acc before → after (Δ)" for t in tasks]
            + [f"cost to undo ({undo_bench or DASH}, ≤ {_pct(threshold)})"])
    rows = [_guard(r.dir, _row, r, used[r.name], harmful + benign, tasks, undo_bench) for r in runs]
    plan = {"judges": used, "harmful": harmful, "benign": benign, "threshold": threshold}
    return head, rows, notes, plan


def _notes(r: Run, judge: str | None, used: str | None, benches: list[str], tasks: list[str], threshold) -> list[str]:
    """What of this run could not be compared with the first run."""
    notes = []
    if used != judge:
        notes.append(f"run {r.name} has no judge {judge}: its columns show {used}")
    notes += [f"run {r.name} has no benchmark {b}: its column shows {DASH}" for b in benches if b not in r.harmful]
    notes += [f"run {r.name} has no capability task {t}: its column shows {DASH}" for t in tasks if t not in r.tasks()]
    if r.after is None:
        notes.append(f"run {r.name} has no attacked stage (unfinished run): its 'after' values show {DASH}")
    if not r.summary:
        notes.append(f"run {r.name} has no summary (unfinished run): its cost to undo shows {DASH}")
    elif r.summary.get("threshold") != threshold:
        notes.append(f"run {r.name} used threshold {_pct(r.summary.get('threshold'))}, not {_pct(threshold)}: "
                     "its cost to undo is not comparable")
    return notes


def _row(r: Run, j: str | None, benches: list[str], tasks: list[str], undo_bench: str | None) -> list[str]:
    a = r.results.get("attack") or {}
    seeds = r.summary.get("seeds") or sorted({st["point"]["seed"] for st in r.results["stages"].values()
                                               if st.get("point")})
    attack = f"{a.get('method', DASH)}, {a.get('steps', DASH)} steps, seeds {','.join(map(str, seeds)) or DASH}"
    row = [r.name, _model((r.results.get("provenance") or {}).get("model_spec")), attack, j or DASH]
    row += [_arrow(_rate(r.before, b, j), _rate(r.after, b, j)) if b in r.harmful else DASH for b in benches]
    row += [_capability(r, t) if t in r.tasks() else DASH for t in tasks]
    return row + [_undo(r, undo_bench, j)]


def _capability(r: Run, task: str) -> str:
    b = ((r.before or {}).get("capability") or {}).get(task) or {}
    a = ((r.after or {}).get("capability") or {}).get(task) or {}
    f = (lambda x: DASH if x is None else f"{x:.3f}")
    d = ((r.after or {}).get("capability_delta") or {}).get(task) or {}
    delta = f" ({d['delta']:+.3f})" if d.get("delta") is not None else ""
    return f"{f(b.get('acc'))} → {f(a.get('acc'))}{delta}"


def _undo(r: Run, bench: str | None, judge: str | None) -> str:
    from ftrisk.report.html import dollars, duration

    e = ((r.summary.get("cost_to_undo") or {}).get(bench) or {}).get(judge)
    if not e:
        return DASH
    p = e.get("point")
    if not p:
        low = e.get("lowest") or {}
        return f"not reached (lowest {_pct(low.get('refusal_rate'))} at step {low.get('step', DASH)})"
    if p["step"] == 0:
        return "0 steps (refusal already at or below the threshold)"
    return f"{p['step']} steps, {duration(p['seconds'])}, {dollars(p['usd'])}"


def markdown(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows])


def compare_html(runs: list[Run], head, rows, notes, plan) -> str:
    """The comparison page: the table, the notes, and every run's curves overlaid (the report's plotting code)."""
    from ftrisk.report import html as rh
    from ftrisk.report.plots import curve_plot, png

    parts = ["<h1>ftrisk compare</h1>", f"<p class=meta>{len(runs)} runs: "
             + rh.esc(", ".join(r.name for r in runs)) + "</p>", rh.table(head, rows)]
    if notes:
        parts.append("<h2>Not compared</h2><ul>" + "".join(f"<li>{rh.esc(n)}</li>" for n in notes) + "</ul>")
    for harmful, names in ((True, plan["harmful"]), (False, plan["benign"])):
        if names:
            what = "Refusal" if harmful else "Over-refusal (benign prompts)"
            parts.append(f"<h2>{what} against attack steps</h2>")
        for bench in names:
            series = []
            for i, r in enumerate(runs):
                if bench in r.harmful:
                    series += _guard(r.dir, _run_series, r, bench, plan["judges"][r.name], i)
            title = bench + ("" if harmful else " (over-refusal)")
            fig = curve_plot(series, title=title, threshold=plan["threshold"] if harmful else None,
                             ylabel="refusal rate" if harmful else "over-refusal rate", legend="below")
            parts.append(png(fig, f"Compared runs: {title}", f"{title}: every run's curve with its judge, 95% CI "
                             "bands; each run's final cost in its label."))
    return rh.page("ftrisk compare", "\n".join(parts))


def _run_series(r: Run, bench: str, judge: str | None, i: int) -> list[dict]:
    """One run's curve on ``bench`` (its mean over seeds when there are several); its final cost in the label."""
    from ftrisk.report import html as rh
    from ftrisk.report.plots import STYLES, judge_series

    series = judge_series(r.results, bench, [judge] if judge else [], label=f"{r.name} · ", color_offset=i)
    last = max((st["point"] for st in r.results["stages"].values() if st.get("point")), key=lambda p: p["step"],
               default=None)
    if last and series:
        series[-1]["label"] += (f" ({last['step']} steps = {rh.duration(last['cost'].get('wall_seconds'))}, "
                                f"{rh.dollars(last['cost'].get('usd'))})")
    for s in series:
        s["style"] = STYLES[i % len(STYLES)]
    return series


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="output folders of `ftrisk run`")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write an HTML page with the curves overlaid")


def compare_main(args: argparse.Namespace) -> int:
    from ftrisk.io import write_text_atomic

    dirs = [Path(d) for d in args.run_dirs]
    runs = [_guard(d, Run, d, load_results(d)) for d in dirs]
    names = [r.name for r in runs]
    for r in runs:  # two runs of the same name are told apart by their folders
        if names.count(r.name) > 1:
            r.name = str(r.dir)
    head, rows, notes, plan = comparison(runs)
    print(markdown(head, rows))
    for n in notes:
        print(f"note: {n}")
    if args.html:
        text = compare_html(runs, head, rows, notes, plan)
        print(f"html: {write_text_atomic(args.html, text)}")
    return 0
