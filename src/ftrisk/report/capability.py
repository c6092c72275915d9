"""Capability in ``report.md``: one line per task with each stage's accuracy, its CI and the stored paired change."""

from __future__ import annotations

from ftrisk.capability.data import task_label
from ftrisk.formatting import interval, number, signed


def accuracy(r: dict) -> str:
    """An accuracy with its 95% CI: ``0.512 [0.480, 0.540]``."""
    return f"{number(r['acc'])} {interval(*r['ci95'], 3, number)}"


def report_lines(stages: dict[str, dict]) -> list[str]:
    """One line per task: each stage's accuracy with its CI, then the stored paired delta of the last stage.

    ``stages`` maps a stage name to its results.json entry (``capability`` and ``capability_delta``, the delta
    computed once by the pipeline). Attack points (``step-N``) are listed after the main stages, without CIs.
    """
    tasks: list[str] = []
    for st in stages.values():
        tasks += [t for t in (st.get("capability") or {}) if t not in tasks]
    lines = []
    for task in tasks:
        have = {name: st["capability"][task] for name, st in stages.items() if task in (st.get("capability") or {})}
        main = [n for n in have if not stages[n].get("point") or n == "attacked"] or list(have)
        first = have[main[0]]
        metric = "" if first["metric"] == "acc" else f" {first['metric']}"
        line = f"{task_label(task)} {first['num_fewshot']}-shot{metric} (n={first['n']}): "
        line += " → ".join(f"{n} {accuracy(have[n])}" for n in main)
        last = main[-1]
        d = (stages[last].get("capability_delta") or {}).get(task)
        if d and d.get("delta") is not None:
            ref = stages[last]["capability_delta"]["vs"]
            line += (f", Δ({last}−{ref}) {signed(d['delta'])} {interval(*d['ci95'], 3, signed)}"
                     f" (McNemar p={d['p_mcnemar']:.3g})")
        elif d and d.get("error"):
            line += f", no paired Δ ({d['error']})"
        cached = [n for n in have if have[n].get("requests_from_cache")]
        if cached:  # say which scores were read back from lm-eval's response cache rather than recomputed
            line += "; from the response cache: " + ", ".join(
                f"{n} {have[n]['requests_from_cache']}/{have[n]['requests']} requests" for n in cached)
        points = [n for n in have if n not in main]
        if points:
            line += "; attack points: " + ", ".join(f"{n} {number(have[n]['acc'])}" for n in points)
        lines.append(line)
    return lines
