"""The paired capability change between two stages: per task, after - before on the same items, with a 95% CI
and the exact McNemar p-value (:func:`ftrisk.stats.paired_delta`)."""

from __future__ import annotations

from ftrisk import stats
from ftrisk.errors import FtriskError


def compare(before: dict, after: dict) -> dict:
    """Per task in both: paired delta (after - before) with a 95% CI and the exact McNemar p-value."""
    out = {}
    for task in [t for t in before if t in after]:
        b, a = before[task], after[task]
        if b.get("items_sha256") != a.get("items_sha256") or b["n"] != a["n"]:
            raise FtriskError(
                f"capability task '{task}': the two stages were scored on different items "
                f"(n={b['n']} vs n={a['n']}): rerun both with the same seed, limit and num_fewshot"
            )
        if b.get("num_fewshot") != a.get("num_fewshot"):
            raise FtriskError(f"capability task '{task}': {b.get('num_fewshot')}-shot vs {a.get('num_fewshot')}-shot "
                              "scores cannot be paired: rerun both with the same num_fewshot")
        d = stats.paired_delta(list(b["correct"]), list(a["correct"]))
        out[task] = {**d, "before": b["acc"], "after": a["acc"], "metric": a["metric"]}
    return out


def deltas(before: dict, after: dict) -> dict:
    """:func:`compare` per task, with a task that cannot be paired recorded as an error instead of raised."""
    out = {}
    for task in [t for t in before if t in after]:
        try:
            out[task] = compare({task: before[task]}, {task: after[task]})[task]
        except FtriskError as e:
            out[task] = {"delta": None, "error": str(e)}
    return out
