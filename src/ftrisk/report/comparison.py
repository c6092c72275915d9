"""``ftrisk compare``'s table: one row per finished run in the paper's shape (model, attack, refusal before → after
per harmful benchmark, over-refusal, capability, cost to undo), compared on the first run's headline judge and
benchmarks; whatever a run lacks shows "–", with a note saying what could not be compared. A run with several
attack families shows its first family's refusal and capability (``attacked``) and, as its cost to undo, the
cheapest family's (the run's headline)."""

from __future__ import annotations

from pathlib import Path

from ftrisk.formatting import DASH, dollars, duration, number, pct, signed
from ftrisk.report.results import families_of, guard, is_multi_family, ordered_union, run_name, seeds_of


def _rate(st: dict | None, bench: str, judge: str) -> float | None:
    b = ((st or {}).get("benchmarks") or {}).get(bench) or {}
    return ((b.get("judges") or {}).get(judge) or {}).get("refusal_rate")


def _arrow(before, after) -> str:
    return DASH if before is None and after is None else f"{pct(before)} → {pct(after)}"


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


def comparison(runs: list[Run]) -> tuple[list[str], list[list[str]], list[str], dict]:
    """(header, rows, notes, plan): the table and every line about what could not be compared."""
    ref = runs[0]
    judge = ref.headline_judge
    harmful = ordered_union([b for b, h in r.harmful.items() if h] for r in runs)
    benign = ordered_union([b for b, h in r.harmful.items() if not h] for r in runs)
    tasks = ordered_union(r.tasks() for r in runs)
    undo_bench = ref.summary.get("headline_benchmark") or (harmful[0] if harmful else None)
    threshold = ref.summary.get("threshold")
    used = {r.name: judge if judge in r.judges else r.headline_judge for r in runs}
    notes = [n for r in runs for n in guard(r.dir, _notes, r, judge, used[r.name], harmful + benign, tasks, threshold)]
    head = (["run", "model", "attack", "judge"] + [f"{b} refusal before → after" for b in harmful]
            + [f"{b} over-refusal before → after" for b in benign] + [f"{t} acc before → after (Δ)" for t in tasks]
            + [f"cost to undo ({undo_bench or DASH}, ≤ {pct(threshold)})"])
    rows = [guard(r.dir, _row, r, used[r.name], harmful + benign, tasks, undo_bench) for r in runs]
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
        notes.append(f"run {r.name} used threshold {pct(r.summary.get('threshold'))}, not {pct(threshold)}: "
                     "its cost to undo is not comparable")
    return notes


def _row(r: Run, j: str | None, benches: list[str], tasks: list[str], undo_bench: str | None) -> list[str]:
    a = r.results.get("attack") or {}
    seeds = r.summary.get("seeds") or seeds_of(r.results)
    attack = f"{a.get('method', DASH)}, {a.get('steps', DASH)} steps, seeds {','.join(map(str, seeds)) or DASH}"
    if is_multi_family(r.results):
        attack += "; families " + ", ".join(f["label"] for f in families_of(r.results))
    row = [r.name, _model((r.results.get("provenance") or {}).get("model_spec")), attack, j or DASH]
    row += [_arrow(_rate(r.before, b, j), _rate(r.after, b, j)) if b in r.harmful else DASH for b in benches]
    row += [_capability(r, t) if t in r.tasks() else DASH for t in tasks]
    return row + [_undo(r, undo_bench, j)]


def _capability(r: Run, task: str) -> str:
    b = ((r.before or {}).get("capability") or {}).get(task) or {}
    a = ((r.after or {}).get("capability") or {}).get(task) or {}
    d = ((r.after or {}).get("capability_delta") or {}).get(task) or {}
    delta = f" ({signed(d['delta'])})" if d.get("delta") is not None else ""
    return f"{number(b.get('acc'))} → {number(a.get('acc'))}{delta}"


def _undo(r: Run, bench: str | None, judge: str | None) -> str:
    if is_multi_family(r.results) and "cheapest" in r.summary:
        return _cheapest(r, bench, judge)
    e = ((r.summary.get("cost_to_undo") or {}).get(bench) or {}).get(judge)
    if not e:
        return DASH
    p = e.get("point")
    if not p:
        low = e.get("lowest") or {}
        return f"not reached (lowest {pct(low.get('refusal_rate'))} at step {low.get('step', DASH)})"
    if p["step"] == 0:
        return "0 steps (refusal already at or below the threshold)"
    return f"{p['step']} steps, {duration(p['seconds'])}, {dollars(p['usd'])}"


def _cheapest(r: Run, bench: str | None, judge: str | None) -> str:
    """The cost to undo of a run with several attack families: its cheapest weight-editing family's."""
    c = ((r.summary.get("cheapest") or {}).get(bench) or {}).get(judge)
    n = len(families_of(r.results))
    if not c:
        return f"not reached by any of {n} attack families"
    p = c["point"]
    if p["step"] == 0:
        return "0 steps (refusal already at or below the threshold)"
    trains = ((r.summary.get("by_method") or {}).get(c["method"]) or {}).get("trains", True)
    steps = f"{p['step']} steps, " if trains else ""
    return f"cheapest of {n} families: {c['method']}, {steps}{duration(p['seconds'])}, {dollars(p['usd'])}"


def markdown(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows])
