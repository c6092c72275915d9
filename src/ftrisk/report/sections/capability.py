"""report.html's Capability section: accuracy per stage and attack point (plot and table) with the paired change
against the stage the attack started from."""

from __future__ import annotations

from ftrisk.capability.data import task_label
from ftrisk.formatting import DASH, interval, number, signed
from ftrisk.report.page import na, table
from ftrisk.report.plots import capability_plot, png


def capability_section(results: dict) -> str:
    stages = {n: st for n, st in results.get("stages", {}).items() if st.get("capability")}
    out = ["<h2 id=capability>Capability</h2>"]
    if not stages:
        return out[0] + na("not available: capability was not measured (capability.enabled=false).")
    tasks: list[str] = []
    for st in stages.values():
        tasks += [t for t in st["capability"] if t not in tasks]
    names = list(stages)
    fig = capability_plot(stages, tasks, [_stage_label(n, stages[n]) for n in names])
    out.append(png(fig, "Capability per stage", "Accuracy per stage and attack point with 95% CIs (error bars)."))
    head, rows = ["stage"], [[n] for n in names]
    for task in tasks:
        first = next(st["capability"][task] for st in stages.values() if task in st["capability"])
        setting = f"{first.get('num_fewshot', '?')}-shot {first.get('metric', '')}"
        head += [f"{task_label(task)} {setting}", f"{task_label(task)} paired Δ"]
        for row, n in zip(rows, names):
            r = stages[n]["capability"].get(task) or {}
            d = (stages[n].get("capability_delta") or {}).get(task) or {}
            row += [_accuracy(r), _delta(d, stages[n])]
    out.append(table(head, rows))
    return "".join(out)


def _accuracy(r: dict):
    """An accuracy cell: (acc, "[lo, hi] n=…"), or the accuracy alone without a CI."""
    ci = r.get("ci95")
    if r.get("acc") is None:
        return DASH
    return (number(r["acc"]), f"{interval(*ci, 3, number)} n={r.get('n')}") if ci else number(r["acc"])


def _delta(d: dict, st: dict):
    """A paired-change cell: (delta vs stage, "[lo, hi] McNemar p=…"), or why there is none."""
    if d.get("delta") is None:
        return f"no paired Δ ({d['error']})" if d.get("error") else DASH
    p = d.get("p_mcnemar", float("nan"))
    return (f"{signed(d['delta'])} vs {st['capability_delta']['vs']}",
            f"{interval(*d['ci95'], 3, signed)} McNemar p={p:.3g}")


def _stage_label(name: str, st: dict) -> str:
    step = (st.get("point") or {}).get("step")
    return name if step is None or name.endswith(f"step-{step}") else f"{name}\nstep {step}"
