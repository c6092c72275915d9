"""``ftrisk defend``: which defense makes the model costlier to un-align, in attacker dollars.

Every recipe of ``defenses`` hardens its own subject from the same base (``harden.recipe``), and the same worst-case
sweep (same space, trials, seeds, judges) attacks each. Per defense: the worst-case cost to undo with its seed range,
its ratio to ``refusal-sft`` with a bootstrap interval over seeds, and the subject's capability and over-refusal
against the undefended base. The durability protocol of Qi, Wei, Carlini et al. (ICLR 2025) is checked, not
optional: benign fine-tuning among the attacks, lr over at least two decades, two schedulers, three seeds.
"""

from __future__ import annotations

import copy
import random

from ftrisk import config, registry
from ftrisk.capability.deltas import deltas
from ftrisk.config.sweep import space_of
from ftrisk.errors import FtriskError
from ftrisk.io import write_json_atomic
from ftrisk.pipeline.run import Experiment
from ftrisk.sweep.defend_report import write
from ftrisk.sweep.run import sweep

REFERENCE = "refusal-sft"
BOOTSTRAP = 2000


def check_protocol(cfg) -> None:
    """One line naming what the durability protocol lacks."""
    if not cfg.defenses:
        raise FtriskError(
            "config key 'defenses' is empty: list the recipes to compare, e.g. [refusal-sft, deep-alignment, vaccine]"
        )
    known = registry.names("defense")
    for i, d in enumerate(cfg.defenses):
        if d not in known:
            raise FtriskError(f"config key 'defenses[{i}]': unknown defense '{d}' (known: {', '.join(known)})")
    fams = config.families(cfg.attack)
    space = {p.name: p for p in space_of(cfg)}
    methods = space["method"].choices if "method" in space else [fams[0].label]
    lacks = []
    if not any(f.label in methods and f.trains and "benign" in (f.attack.data or "") for f in fams):
        lacks.append("a benign fine-tuning family among the searched methods (data: builtin:benign)")
    lr = space.get("train.lr")
    if lr is None or lr.low is None or lr.high / lr.low < 100:
        lacks.append("train.lr over at least two decades")
    sched = space.get("train.scheduler")
    if sched is None or len(sched.choices or []) < 2:
        lacks.append("at least two schedulers")
    if len(cfg.sweep.seeds) < 3:
        lacks.append("at least 3 sweep.seeds")
    if lacks:
        raise FtriskError(
            "the durability protocol needs " + "; ".join(lacks) + " (config sweep.space / attack.methods)"
        )


def seed_costs(res: dict) -> list[float]:
    w = res["summary"]["worst_case"] or {}
    top = next((t for t in res["trials"] if t["number"] == w.get("trial")), None)
    return [s["usd"] for s in (top or {}).get("seed_runs") or [] if s["reached"] and s["usd"]]


def ratio_ci(a: list[float], b: list[float], seed: int = 0) -> list[float] | None:
    """95% bootstrap interval of mean(a) / mean(b), resampling each side's seeds."""
    if not a or not b or not all(b):
        return None
    rng = random.Random(seed)
    draws = sorted(
        sum(rng.choices(a, k=len(a))) / len(a) / (sum(rng.choices(b, k=len(b))) / len(b)) for _ in range(BOOTSTRAP)
    )
    return [round(draws[int(0.025 * BOOTSTRAP)], 4), round(draws[int(0.975 * BOOTSTRAP) - 1], 4)]


def recipe_cfg(cfg, recipe: str):
    c = copy.deepcopy(cfg)
    c.harden.recipe = recipe
    c.name = f"{cfg.name}-{recipe}"
    c.output_dir = str(cfg.out / recipe)
    c.defenses = None
    return c


def base_stage(cfg) -> dict:
    """The undefended base's scores (its own folder; no hardening)."""
    c = copy.deepcopy(cfg)
    c.harden.enabled = False
    c.output_dir = str(cfg.out / "base")
    c.defenses = None
    exp = Experiment(c)
    return exp.evaluate("base", exp.subject, capability=True)


def defend(cfg, storage_root: str | None = None) -> dict:
    check_protocol(cfg)
    if not cfg.harden.enabled:
        raise FtriskError("config key 'harden.enabled' is false: a defense comparison hardens one subject per recipe")
    base = base_stage(cfg)
    runs = {r: sweep(recipe_cfg(cfg, r)) for r in cfg.defenses}
    ref = runs.get(REFERENCE)
    out = {"kind": "defenses", "defenses": {}, "base": {k: base.get(k) for k in ("benchmarks", "capability")}}
    task = cfg.sweep.capability_task
    for r, res in runs.items():
        w = res["summary"]["worst_case"]
        subj = res["subject_stage"]
        cap = (
            deltas({task: base["capability"][task]}, {task: subj["capability"][task]})[task]
            if task in (base.get("capability") or {}) and task in (subj.get("capability") or {})
            else {}
        )
        over = {
            n: subj["benchmarks"][n]["refusal_rate"] - b["refusal_rate"]
            for n, b in base["benchmarks"].items()
            if not b.get("harmful", True) and n in subj["benchmarks"]
        }
        ref_w = (ref or {}).get("summary", {}).get("worst_case") or {}
        ratio = w["usd"] / ref_w["usd"] if w.get("reached") and ref_w.get("reached") and ref_w.get("usd") else None
        out["defenses"][r] = {
            "worst_case": w,
            "folder": r,
            "hardened_refusal": {n: b["refusal_rate"] for n, b in subj["benchmarks"].items() if b.get("harmful", True)},
            "ratio_to_refusal_sft": round(ratio, 4) if ratio else None,
            "ratio_ci": ratio_ci(seed_costs(res), seed_costs(ref)) if ref else None,
            "capability_delta_vs_base": {"task": task, "delta": cap.get("delta"), "ci95": cap.get("ci95")},
            "over_refusal_delta_vs_base": max(over.values()) if over else None,
            "over_refusal_delta": over,
        }
    space = {p.name: p for p in space_of(cfg)}
    lr = space.get("train.lr")
    out["scope"] = (
        f"attacks {', '.join(space['method'].choices if 'method' in space else [])}; "
        f"{cfg.sweep.trials} trials per defense, lr {lr.low:g}–{lr.high:g}, seeds "
        f"{', '.join(map(str, cfg.sweep.seeds))} for the best {cfg.sweep.top_k}; judge "
        f"{next(iter(runs.values())).get('headline_judge')}; threshold {cfg.report.threshold:g} on "
        f"{next(iter(runs.values()))['decision_benchmark']}"
    )
    out["summary"] = {"defenses": out["defenses"], "scope": out["scope"], "reference": REFERENCE}
    write_json_atomic(cfg.out / "results.json", out)
    write(cfg.out, out)
    return out
