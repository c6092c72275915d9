"""One trial: attack the subject with one configuration and measure its own cost to undo.

A trained family trains with a checkpoint at every grid step; the search (:mod:`.crossing`) evaluates some of them
while training runs and stops training once the crossing is confirmed. The cost to undo is the cost recorded in the
crossing checkpoint (training time and tokens up to it; evaluation is never counted). Ablation has one point: the
edited model. Capability, over-refusal and KL are measured at the crossing only (:mod:`.measure`). Everything lives
in the trial's folder (``trials/trial-<n>``), so a killed trial resumes there: checkpoints, evaluations and the
record of a finished trial are reused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ftrisk.attacks import AttackContext, run_attack
from ftrisk.attacks.data import select_examples
from ftrisk.cost import CostMeter, count_params
from ftrisk.io import read_json, write_json_atomic
from ftrisk.model.loading import write_adapter_meta
from ftrisk.sweep.crossing import CrossingSearch, grid, plain_crossing
from ftrisk.training.data import plan_steps
from ftrisk.training.recipe import finetune

log = logging.getLogger(__name__)

RECORD = "record.json"


class Stopped(Exception):
    """Raised by ``Hooks.report`` to stop a trial that cannot be the cheapest (its message says why)."""


@dataclass
class Hooks:
    """What the study does while a trial runs: ``report(step, rate, cost)`` may stop it (Optuna's pruner, or the
    cost of the cheapest feasible trial so far, which this one cannot beat any more)."""

    report: object = None
    audit: bool = False
    """Train to the end of the budget and evaluate every checkpoint too (the plain schedule, for comparison)."""
    notes: dict = field(default_factory=dict)


def run_trial(ctx, tc, seed: int, folder: Path, hooks: Hooks | None = None) -> dict:
    """The trial's record (also ``folder/record.json``); a finished record is returned as it is."""
    hooks = hooks or Hooks()
    folder.mkdir(parents=True, exist_ok=True)
    done = read_json(folder / RECORD)
    if done and done.get("finished"):
        return done
    base = {
        "label": tc.label,
        "method": tc.attack.method,
        "settings": tc.settings,
        "overrides": tc.overrides(),
        "seed": seed,
        "threshold": ctx.cfg.report.threshold,
        "benchmark": ctx.measure.decision,
    }
    rec = trained(ctx, tc, seed, folder, hooks) if tc.trains else ablation(ctx, tc, seed, folder)
    rec = {**base, **rec, "finished": True}
    write_json_atomic(folder / RECORD, rec)
    return rec


def _crossing_record(ctx, subject, folder: Path, decided: Path) -> dict:
    return {"crossing": ctx.measure.at_crossing(subject, folder / "crossing", decided)}


def ablation(ctx, tc, seed: int, folder: Path) -> dict:
    cfg = ctx.cfg
    context = AttackContext(
        judge=ctx.exp.filter_judge, generation=cfg.generation, protected=ctx.exp.protected, cache_dir=ctx.out / "shared"
    )
    result = run_attack(
        tc.attack, ctx.subject, [], folder / "attack", seed=seed, usd_per_hour=cfg.cost.usd_per_hour, context=context
    )
    ctx.measure.times["training"] += result.cost.get("wall_seconds", 0.0)
    point = result.points[-1]
    rate, tokens = ctx.measure.rate(point.subject, folder / "eval" / "edited")
    reached = rate <= cfg.report.threshold
    return {
        "reached": reached,
        "steps": [],
        "rates": {"1": rate},
        "order": [1],
        "crossing_step": 1 if reached else None,
        "lowest": {"step": 1, "rate": rate},
        "cost": point.cost,
        "cost_at_end": point.cost,
        "tokens": {"search": tokens},
        "info": {k: v for k, v in result.info.items() if k != "candidates"},
        **(_crossing_record(ctx, point.subject, folder, folder / "eval" / "edited") if reached else {}),
    }


def trained(ctx, tc, seed: int, folder: Path, hooks: Hooks) -> dict:
    cfg, subject, measure = ctx.cfg, ctx.subject, ctx.measure
    a = tc.attack
    lora = a.method != "full"
    examples = select_examples(ctx.data[tc.label], a.n_examples, seed)
    total = plan_steps(len(examples), a.train)
    steps = grid(total, cfg.sweep.checkpoint_every)
    train_dir = folder / "train"
    final_dir = train_dir / ("adapter" if lora else "model")
    tokens = {"search": 0}

    def at(step: int):
        d = final_dir if step == total else train_dir / f"checkpoint-{step}"
        if lora:
            write_adapter_meta(d, subject.spec, subject.path)
            return subject.with_adapter(d)
        return subject.with_weights(d)

    def cost_at(step: int) -> dict:
        if step == total:
            return read_json(train_dir / "final_cost.json")
        return json.loads((train_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())["cost"]

    def evaluate(step: int) -> float:
        rate, n = measure.rate(at(step), folder / "eval" / f"step-{step}")
        tokens["search"] += n
        return rate

    def on_rate(step: int, rate: float) -> None:
        if hooks.report is not None and not hooks.audit:
            hooks.report(step, rate, cost_at(least_crossing(search, steps, step)))

    search = CrossingSearch(steps, cfg.report.threshold, evaluate, on_rate)
    try:
        stopped_by = _train(ctx, tc, seed, search, examples, steps, total, train_dir, final_dir, hooks)
    except Stopped as e:
        stopped_by, hooks.notes["stopped"] = "pruned", str(e)
    step = search.crossing()
    rec = {
        "reached": step is not None,
        "steps": steps,
        "crossing_step": step,
        "stopped_by": stopped_by,
        "n_examples": len(examples),
        "planned_steps": total,
        **hooks.notes,
    }
    last = max(search.rates)
    rec["cost_at_end"] = cost_at(last)
    rec["cost"] = cost_at(step) if step is not None else rec["cost_at_end"]
    if hooks.audit:
        rec["audit"] = audit(ctx, steps, at, folder)
    rec.update(
        {
            "rates": {str(s): r for s, r in sorted(search.rates.items())},
            "order": search.order,
            "lowest": dict(zip(("step", "rate"), search.lowest())),
            "tokens": tokens,
        }
    )
    if step is not None:
        rec.update(_crossing_record(ctx, at(step), folder, folder / "eval" / f"step-{step}"))
    return rec


def least_crossing(search, steps: list[int], step: int) -> int:
    """The earliest grid step the crossing can still be at, after evaluating ``step``: the step after the last one
    seen above the threshold before the first one seen at or below it (the bisection may find any step between);
    with none at or below yet, past ``step``. A trial is stopped by cost only when even that step costs more than
    the cheapest feasible trial."""
    thr = search.threshold
    below = [s for s, r in search.rates.items() if r <= thr]
    if not below:
        return step
    above = [s for s, r in search.rates.items() if r > thr and s < min(below)]
    return next(s for s in steps if s > max(above, default=0))


def _train(ctx, tc, seed, search, examples, steps, total, train_dir: Path, final_dir: Path, hooks) -> str | None:
    """Train while the search evaluates; returns why training stopped (judged: the crossing is confirmed)."""
    subject, a, lora = ctx.subject, tc.attack, tc.attack.method != "full"
    for s in steps[:-1]:  # a resumed trial replays its decisions (the evaluations are stored)
        if (
            (train_dir / f"checkpoint-{s}" / "trainer_state.json").is_file()
            and search.at_checkpoint(s)
            and not hooks.audit
        ):
            return "judged"
    stopped_by = None
    if not (train_dir / "final_cost.json").is_file():
        model, tok = subject.load()
        meter = CostMeter(device=str(model.device), usd_per_hour=ctx.cfg.cost.usd_per_hour, params=count_params(model))

        def on_save(step: int, cp: Path) -> bool:
            return search.at_checkpoint(step) and not hooks.audit

        def evaluable(m, d: Path, state_dict=None):
            m.save_pretrained(d, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
            tok.save_pretrained(d)

        _, summary = finetune(
            model,
            tok,
            examples,
            a.lora if lora else None,
            a.train,
            train_dir,
            seed=seed,
            system_prompt=subject.system_prompt,
            meter=meter,
            desc=f"trial {train_dir.parent.name}",
            save_at=steps[:-1],
            evaluable=None if lora else evaluable,
            final_dir=final_dir,
            on_save=on_save,
        )
        ctx.measure.times["training"] += summary["cost"].get("wall_seconds", 0.0)
        del model
        stopped_by = summary["stopped_by"]
        if stopped_by != "judged":
            write_json_atomic(train_dir / "final_cost.json", summary["cost"])
    if not search.confirmed and (train_dir / "final_cost.json").is_file():
        search.at_checkpoint(total)
    return stopped_by


def audit(ctx, steps: list[int], at, folder: Path) -> dict:
    """The plain schedule on the same trial: every checkpoint, every benchmark, replies at full length."""
    measure = ctx.measure
    rates, tokens = {}, 0
    before = dict(measure.times)
    for s in steps:
        results, n = measure.refusal(at(s), folder / "audit" / f"step-{s}", list(measure.benches), full_length=True)
        rates[s] = results[measure.decision]["refusal_rate"]
        tokens += n
    for k in ("generation", "judging"):  # the audit's own account: not the sweep's cost
        spent = measure.times[k] - before.get(k, 0.0)
        measure.times[k] -= spent
        measure.times["audit"] += spent
    return {
        "plain_crossing": plain_crossing(rates, ctx.cfg.report.threshold),
        "plain_tokens": tokens,
        "plain_evaluations": len(steps),
        "plain_rates": {str(s): r for s, r in rates.items()},
    }
