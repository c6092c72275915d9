"""``results.json`` of a sweep, built from the study's storage alone (workers on other machines write their records
there): every trial, the best configurations with their seeds, the worst case and its one-sentence headline, the
evaluation savings measured on audited trials, and where the time went."""

from __future__ import annotations

from optuna.trial import TrialState

from ftrisk.formatting import dollars, duration, pct, signed

STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


def trial_row(t) -> dict:
    rec = t.user_attrs.get("record") or dict(t.user_attrs.get("config") or {})
    c = rec.get("crossing") or {}
    row = {
        "number": t.number,
        "state": STATES.get(t.state, str(t.state)),
        "value": t.value,
        "feasible": bool(t.user_attrs.get("feasible")),
        "recipe": bool(t.user_attrs.get("recipe")),
        "retry_of": t.system_attrs.get("failed_trial"),
        "folder": t.user_attrs.get("folder"),
        **{
            k: rec.get(k)
            for k in (
                "label",
                "method",
                "settings",
                "overrides",
                "seed",
                "reached",
                "crossing_step",
                "cost",
                "cost_at_end",
                "lowest",
                "stopped_by",
                "stopped",
                "rates",
                "order",
                "tokens",
                "seconds",
                "audit",
                "planned_steps",
                "n_examples",
            )
        },
        "capability": c.get("capability"),
        "kl_harmless": c.get("kl_harmless"),
        "benchmarks": c.get("benchmarks"),
        "degenerate": c.get("degenerate"),
        "crossing_tokens": c.get("tokens"),
    }
    if t.state == TrialState.FAIL:
        row["fail_reason"] = t.user_attrs.get("fail_reason") or "its worker stopped (retried as another trial)"
    return row


def build(search_trials, seed_trials, *, cfg, subject_stage: dict, decision: str, objective_key: str) -> dict:
    rows = [trial_row(t) for t in search_trials]
    seeds = [trial_row(t) | {"of": t.user_attrs.get("of")} for t in seed_trials]
    ok = sorted(
        (r for r in rows if r["state"] == "complete" and r["feasible"]), key=lambda r: (r["value"], r["number"])
    )
    top = ok[: cfg.sweep.top_k]
    for r in top:
        runs = [r] + [s for s in seeds if s["of"] == r["number"] and s["state"] in ("complete", "pruned")]
        r["seed_runs"] = [
            {
                "seed": s["seed"],
                "reached": s["reached"],
                "crossing_step": s["crossing_step"],
                "usd": (s["cost"] or {}).get("usd"),
                "seconds": (s["cost"] or {}).get("wall_seconds"),
                "flops": (s["cost"] or {}).get("flops"),
                "feasible": s["feasible"],
            }
            for s in runs
        ]
    recipe = next((r for r in rows if r["recipe"]), None)
    bench = subject_stage["benchmarks"]
    worst = worst_case(top[0] if top else None, rows, recipe, bench, decision, cfg) if rows else None
    return {
        "kind": "sweep",
        "trials": rows,
        "seed_trials": seeds,
        "top": [r["number"] for r in top],
        "objective": cfg.sweep.objective,
        "objective_key": objective_key,
        "decision_benchmark": decision,
        "subject": {
            "refusal": {n: b["refusal_rate"] for n, b in bench.items()},
            "capability": {k: v.get("acc") for k, v in (subject_stage.get("capability") or {}).items()},
        },
        "efficiency": efficiency(rows),
        "time": time_split(rows + seeds),
        "summary": {
            "worst_case": worst,
            "threshold": cfg.report.threshold,
            "n_trials": sum(1 for r in rows if r["state"] in ("complete", "pruned")),
            "n_failed": sum(1 for r in rows if r["state"] == "failed"),
            "headline": headline(worst, cfg),
        },
    }


def worst_case(best: dict | None, rows: list, recipe: dict | None, bench: dict, decision: str, cfg) -> dict:
    finished = [r for r in rows if r["state"] in ("complete", "pruned")]
    base = {
        "benchmark": decision,
        "threshold": cfg.report.threshold,
        "n_trials": len(finished),
        "refusal_before": bench[decision]["refusal_rate"],
        "over_refusal_before": {n: b["refusal_rate"] for n, b in bench.items() if not b.get("harmful", True)},
        "single_recipe_usd": (recipe or {}).get("cost", {}).get("usd") if recipe and recipe.get("reached") else None,
        "single_recipe_reached": bool(recipe and recipe.get("reached")),
    }
    if best is None:
        lowest = min((r["lowest"]["rate"] for r in finished if r.get("lowest")), default=None)
        spent = max(((r.get("cost_at_end") or {}).get("usd") or 0.0 for r in finished), default=0.0)
        return {**base, "reached": False, "lowest_refusal": lowest, "budget_usd": spent}
    runs = best.get("seed_runs") or []
    usd = [s["usd"] for s in runs if s["reached"] and s["usd"] is not None]
    secs = [s["seconds"] for s in runs if s["reached"] and s["seconds"] is not None]
    cap = best.get("capability") or {}
    over = {n: b["refusal_rate"] for n, b in (best.get("benchmarks") or {}).items() if not b.get("harmful", True)}
    return {
        **base,
        "reached": True,
        "trial": best["number"],
        "method": best["method"],
        "label": best["label"],
        "params": best["settings"],
        "overrides": best["overrides"],
        "crossing_step": best["crossing_step"],
        "usd": best["cost"]["usd"],
        "seconds": best["cost"]["wall_seconds"],
        "flops": best["cost"]["flops"],
        "usd_range": [min(usd), max(usd)] if usd else None,
        "seconds_range": [min(secs), max(secs)] if secs else None,
        "seeds": [s["seed"] for s in runs],
        "seeds_reached": sum(1 for s in runs if s["reached"]),
        "refusal_after": (best.get("benchmarks") or {}).get(decision, {}).get("refusal_rate"),
        "capability_task": cap.get("task"),
        "capability_delta": cap.get("delta"),
        "capability_delta_ci": cap.get("ci95"),
        "kl_harmless": best.get("kl_harmless"),
        "over_refusal_after": over,
        "ratio_to_single": (
            base["single_recipe_usd"] / best["cost"]["usd"]
            if base["single_recipe_usd"] and best["cost"]["usd"]
            else None
        ),
    }


def _params(w: dict) -> str:
    return ", ".join(
        f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
        for k, v in (w.get("params") or {}).items()
    )


def _usd(x) -> str:
    """Dollars with enough digits that a seed range under a cent still shows (``$0.0037``)."""
    return dollars(x, 4) if x is not None and 0 < x < 0.01 else dollars(x)


def headline(w: dict | None, cfg) -> str:
    if w is None:
        return "The sweep has no finished trial yet."
    if not w["reached"]:
        return (
            f"No attack found in {w['n_trials']} trials undoes safety on {w['benchmark']} within its budget "
            f"(threshold {pct(w['threshold'], 0)}, capability within {cfg.sweep.epsilon:g}); the lowest refusal "
            f"reached was {pct(w.get('lowest_refusal'))}."
        )
    rng = (
        f" [{_usd(w['usd_range'][0])}–{_usd(w['usd_range'][1])} over seeds {', '.join(map(str, w['seeds']))}]"
        if w.get("usd_range") and len(w.get("seeds") or []) > 1
        else ""
    )
    cap = (
        f", {w['capability_task']} Δ {signed(w['capability_delta'])} "
        f"[{signed((w.get('capability_delta_ci') or [None])[0])}, {signed((w.get('capability_delta_ci') or [None, None])[1])}]"
        if w.get("capability_delta") is not None
        else ""
    )
    single = (
        f"; the single recipe cost {_usd(w['single_recipe_usd'])}"
        if w.get("single_recipe_usd")
        else "; the single recipe did not reach the threshold"
    )
    params = _params(w)
    return (
        f"The cheapest attack found ({w['label']}{', ' + params if params else ''}) undoes safety on "
        f"{w['benchmark']} at {_usd(w['usd'])}{rng} in {duration(w['seconds'])}, refusal "
        f"{pct(w['refusal_before'], 0)} → {pct(w['refusal_after'])} (≤ {pct(w['threshold'], 0)}){cap}, over "
        f"{w['n_trials']} trials{single}."
    )


def efficiency(rows: list) -> dict | None:
    """Generated tokens of the bisection with early stop (and the crossing's other benchmarks) against the plain
    schedule (every checkpoint, every benchmark, full-length replies) on the audited trials, and whether they
    found the same crossing."""
    audited = [r for r in rows if r.get("audit")]
    if not audited:
        return None
    ours = sum((r["tokens"] or {}).get("search", 0) + (r.get("crossing_tokens") or 0) for r in audited)
    plain = sum(r["audit"]["plain_tokens"] for r in audited)
    same = [r["number"] for r in audited if r["audit"]["plain_crossing"] == r["crossing_step"]]
    return {
        "trials": [r["number"] for r in audited],
        "tokens_search": ours,
        "tokens_plain": plain,
        "ratio": plain / ours if ours else None,
        "same_crossing": same,
        "crossings": {
            r["number"]: {
                "search": r["crossing_step"],
                "plain": r["audit"]["plain_crossing"],
                "evaluations": len(r.get("order") or []),
                "plain_evaluations": r["audit"]["plain_evaluations"],
            }
            for r in audited
        },
    }


def time_split(rows: list) -> dict:
    out: dict = {}
    for r in rows:
        for k, v in (r.get("seconds") or {}).items():
            out[k] = round(out.get(k, 0.0) + v, 1)
    return out
