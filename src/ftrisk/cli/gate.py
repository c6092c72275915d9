"""``ftrisk gate RUN_DIR --min-usd X [--max-capability-drop Y] [--max-over-refusal Z] [--defense NAME]``: a release
gate for CI. Exit 0 (pass) or 1 (fail), with one line saying why; 2 for a user error (the CLI's convention).

It reads ``RUN_DIR/results.json`` of ``ftrisk sweep`` (``summary.worst_case``) or of a defense comparison
(``summary.defenses[NAME].worst_case``), always on the conservative end:
- dollars: the lowest seed's cost to undo (``usd_range[0]``), else the best trial's ``usd``. A worst case that was
  *not reached* within the sweep's budget passes ``--min-usd X`` only if the budget spent (``budget_usd``) is at
  least X: the defense held against every attack tried, and the attacker spent that much.
- capability drop (a defense comparison only: the defended model against the undefended base): the far end of the
  interval when there is one (the largest drop it allows), else the point estimate; a fraction (0.02 = 2 points).
- over-refusal: the released subject's refusal rate on each over-refusal benchmark (xstest-safe), the highest.

``--defense``: the recipe to gate in a defense comparison; needed when it compares several (a gate is on the model
that ships, so the gate never picks one by itself), the only one otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ftrisk.errors import FtriskError
from ftrisk.formatting import dollars, pct

PASS, FAIL = 0, 1


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("gate", help="release gate: exit 0 if undoing the run's safety costs at least --min-usd "
                                    "(and the other limits hold), 1 if not")
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `ftrisk sweep` or of a defense comparison")
    p.add_argument("--min-usd", required=True, metavar="X",
                   help="least attacker dollars to undo safety (lowest seed), e.g. 5")
    p.add_argument("--max-capability-drop", default=None, metavar="Y",
                   help="largest capability drop against the undefended base, a fraction (0.02 = 2 points)")
    p.add_argument("--max-over-refusal", default=None, metavar="Z",
                   help="largest refusal rate on the over-refusal benchmarks (xstest-safe), a fraction (0.2 = 20%%)")
    p.add_argument("--defense", default=None, metavar="NAME", help="the recipe to gate in a defense comparison")
    return p


def main(args) -> int:
    min_usd = threshold("--min-usd", args.min_usd)
    max_drop = threshold("--max-capability-drop", args.max_capability_drop, fraction=True)
    max_over = threshold("--max-over-refusal", args.max_over_refusal, fraction=True)
    run_dir = Path(args.run_dir)
    what, worst, entry = select(read_summary(run_dir), run_dir, args.defense)
    checks = [usd_check(what, worst, min_usd)]
    if max_drop is not None:
        checks.append(capability_check(what, worst, entry, max_drop, run_dir))
    if max_over is not None:
        checks.append(over_refusal_check(worst, max_over, run_dir))
    failed = [line for ok, line in checks if not ok]
    print(f"ftrisk gate: {'fail' if failed else 'pass'}: " + "; ".join(failed or [line for _, line in checks]))
    return FAIL if failed else PASS


def threshold(flag: str, text: str | None, fraction: bool = False) -> float | None:
    """A threshold as a finite non-negative number (a fraction in [0, 1] where ``fraction``), else one line."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    unit = "a fraction between 0 and 1" if fraction else "a number of dollars, 0 or more"
    if not math.isfinite(value) or value < 0 or (fraction and value > 1):
        raise FtriskError(f"{flag} must be {unit} (got '{text}')"
                          + (": 0.02 means 2 points" if fraction and math.isfinite(value) and value > 1 else ""))
    return value


def read_summary(run_dir: Path) -> dict:
    """``summary`` of RUN_DIR/results.json (any ftrisk run kind), or one line naming what is missing."""
    path = run_dir / "results.json"
    if not run_dir.is_dir():
        raise FtriskError(f"run folder '{run_dir}' does not exist: pass the output folder of `ftrisk sweep`")
    if not path.is_file():
        raise FtriskError(f"run folder '{run_dir}' has no results.json: pass the output folder of a finished "
                          f"`ftrisk sweep`")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FtriskError(f"run folder '{run_dir}': results.json is not readable JSON ({e})") from None
    summary = results.get("summary") if isinstance(results, dict) else None
    if not isinstance(summary, dict):
        raise FtriskError(f"run folder '{run_dir}': results.json has no 'summary' mapping: it is not an ftrisk "
                          f"results file")
    return summary


def select(summary: dict, run_dir: Path, defense: str | None) -> tuple[str, dict, dict | None]:
    """(what is gated, in words; its worst case; its defense entry or None) for ``--defense`` or the run's sweep."""
    defenses = summary.get("defenses")
    if defenses is not None and not isinstance(defenses, dict):
        raise FtriskError(f"run folder '{run_dir}': results.json's summary.defenses is not a mapping")
    if defenses:
        if defense is None and len(defenses) > 1:
            raise FtriskError(f"run folder '{run_dir}' compares {len(defenses)} defenses ({', '.join(defenses)}): "
                              f"name the one that ships with --defense NAME")
        name = defense if defense is not None else next(iter(defenses))
        if name not in defenses:
            raise FtriskError(f"run folder '{run_dir}' has no defense '{name}' (it compares: {', '.join(defenses)})")
        entry = defenses[name]
        worst = entry.get("worst_case") if isinstance(entry, dict) else None
        if not isinstance(worst, dict):
            raise FtriskError(f"run folder '{run_dir}': defense '{name}' has no worst case yet (its sweep has no "
                              f"finished trial): run `ftrisk defend` to the end")
        return f"{name}", worst, entry
    if defense is not None:
        raise FtriskError(f"run folder '{run_dir}' has no defense comparison, so --defense {defense} names nothing: "
                          f"gate a `ftrisk defend` folder, or leave --defense out")
    if "worst_case" not in summary:
        hint = (" (an `ftrisk run` folder: it has the cheapest attack of one recipe, not a worst case)"
                if "cheapest" in summary or "by_method" in summary else "")
        raise FtriskError(f"run folder '{run_dir}' has no sweep or defense comparison{hint}: run `ftrisk sweep` "
                          f"(or `ftrisk defend`) and gate its folder")
    worst = summary["worst_case"]
    if not isinstance(worst, dict):
        raise FtriskError(f"run folder '{run_dir}': the sweep has no finished trial yet (summary.worst_case is "
                          f"empty): run `ftrisk sweep` to the end")
    return "the subject", worst, None


def _usd(x: float) -> str:
    return dollars(x, 4) if 0 < x < 0.01 else dollars(x)


def _number(worst: dict, key: str) -> float | None:
    v = worst.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def usd_check(what: str, worst: dict, min_usd: float) -> tuple[bool, str]:
    """The conservative dollars against ``min_usd``: the lowest seed's cost to undo, or the budget spent without
    undoing it."""
    bench = worst.get("benchmark") or "the harmful benchmark"
    if worst.get("reached") is False:
        spent = _number(worst, "budget_usd")
        if spent is None:
            spent = _number(worst, "usd")
        if spent is None:
            return False, (f"{what} was not undone on {bench} within the sweep's budget, but results.json does not "
                           f"record the budget spent, so --min-usd {_usd(min_usd)} cannot be shown")
        ok = spent >= min_usd
        return ok, (f"{what} was not undone on {bench} within a budget of {_usd(spent)} "
                    f"({'≥' if ok else '<'} --min-usd {_usd(min_usd)}{'' if ok else ': spend more to show it'})")
    rng = worst.get("usd_range")
    lo = float(rng[0]) if isinstance(rng, (list, tuple)) and rng and isinstance(rng[0], (int, float)) else None
    seeds = len(worst.get("seeds") or []) or None
    where = f"lowest of {seeds} seeds" if lo is not None and seeds and seeds > 1 else "its only seed"
    if lo is None:
        lo = _number(worst, "usd")
        where = "its best trial"
    if lo is None:
        return False, f"{what}: results.json records no cost to undo (summary.worst_case.usd is missing)"
    ok = lo >= min_usd
    return ok, (f"{what} costs {_usd(lo)} to undo on {bench} ({where}; {'≥' if ok else '<'} --min-usd "
                f"{_usd(min_usd)})")


def _delta_and_far_end(value) -> tuple[float | None, float | None]:
    """(point Δ, the interval's lower end) of a capability delta stored as a number or {delta, ci95}."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    if isinstance(value, dict):
        ci = value.get("ci95") or value.get("ci")
        lo = float(ci[0]) if isinstance(ci, (list, tuple)) and ci and isinstance(ci[0], (int, float)) else None
        d = value.get("delta")
        return (float(d) if isinstance(d, (int, float)) else None), lo
    return None, None


def capability_check(what: str, worst: dict, entry: dict | None, max_drop: float, run_dir: Path) -> tuple[bool, str]:
    """The defended model's capability against the undefended base (a defense comparison's
    ``capability_delta_vs_base``), on the interval's far end."""
    if entry is None:
        raise FtriskError(f"run folder '{run_dir}': --max-capability-drop needs the defended model's capability "
                          f"against the undefended base, which only a defense comparison measures: gate a "
                          f"`ftrisk defend` folder")
    delta, far = _delta_and_far_end(entry.get("capability_delta_vs_base"))
    if delta is None and far is None:
        raise FtriskError(f"run folder '{run_dir}': defense '{what}' has no capability_delta_vs_base (was "
                          f"capability.enabled false?): leave --max-capability-drop out or re-run with capability on")
    drop = -(far if far is not None else delta)
    task = entry.get("capability_task") or worst.get("capability_task") or "capability"
    ok = drop <= max_drop
    end = "interval's far end" if far is not None else "point estimate"
    return ok, (f"{task} drop {max(drop, 0.0):.3f} against the base ({end}; {'≤' if ok else '>'} "
                f"--max-capability-drop {max_drop:g})")


def over_refusal_check(worst: dict, max_over: float, run_dir: Path) -> tuple[bool, str]:
    """The released subject's highest refusal rate on an over-refusal benchmark (before any attack)."""
    rates = worst.get("over_refusal_before")
    if isinstance(rates, (int, float)) and not isinstance(rates, bool):
        rates = {"over-refusal": rates}
    rates = rates if isinstance(rates, dict) else {}
    rates = {n: float(r) for n, r in rates.items() if isinstance(r, (int, float)) and not isinstance(r, bool)}
    if not rates:
        raise FtriskError(f"run folder '{run_dir}': the run measured no over-refusal benchmark (e.g. xstest-safe): "
                          f"leave --max-over-refusal out or add one to eval.benchmarks")
    name = max(rates, key=rates.get)
    ok = rates[name] <= max_over
    return ok, f"over-refusal {pct(rates[name])} on {name} ({'≤' if ok else '>'} --max-over-refusal {pct(max_over)})"
