"""``ftrisk compare`` of sweep folders: one row per sweep, its worst case (method, settings, dollars with the seeds'
range, time, refusal before → after, capability Δ), the number of trials and the single recipe's cost beside it."""

from __future__ import annotations

from pathlib import Path

from ftrisk.formatting import DASH, dollars, duration, pct, signed

HEAD = ["sweep", "benchmark", "worst case (cheapest found)", "$ [seeds]", "time", "refusal before → after",
        "capability Δ", "trials", "single recipe $", "× cheaper"]


def is_sweep(results: dict) -> bool:
    return results.get("kind") == "sweep"


def sweep_row(run_dir: Path, results: dict) -> list[str]:
    w = (results.get("summary") or {}).get("worst_case") or {}
    name = Path(run_dir).name
    if not w.get("reached"):
        return [name, w.get("benchmark") or DASH, f"not reached; lowest {pct(w.get('lowest_refusal'))}", DASH, DASH,
                DASH, DASH, str(w.get("n_trials", DASH)), dollars(w.get("single_recipe_usd")), DASH]
    params = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                       for k, v in (w.get("params") or {}).items())
    rng = w.get("usd_range")
    return [name, w["benchmark"], f"{w['label']}" + (f" ({params})" if params else ""),
            dollars(w["usd"]) + (f" [{dollars(rng[0])}, {dollars(rng[1])}]" if rng else ""),
            duration(w.get("seconds")), f"{pct(w.get('refusal_before'))} → {pct(w.get('refusal_after'))}",
            f"{w.get('capability_task') or ''} {signed(w.get('capability_delta'))}".strip()
            if w.get("capability_delta") is not None else DASH,
            str(w.get("n_trials")), dollars(w.get("single_recipe_usd")),
            f"×{w['ratio_to_single']:.1f}" if w.get("ratio_to_single") else DASH]
