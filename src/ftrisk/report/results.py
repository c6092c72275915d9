"""Reading a finished run: its results.json (checked), its name, and what it holds (stages, benchmarks, judges,
seeds, each seed's attack curve). Every report reads a run through these functions."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ftrisk.errors import FtriskError


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
    if isinstance(results, dict) and results.get("kind") == "sweep":  # ftrisk sweep's folder
        if not isinstance(results.get("summary"), dict) or not isinstance(results.get("trials"), list):
            raise FtriskError(f"run folder '{run_dir}': results.json of a sweep has no summary or trials: run "
                              "`ftrisk sweep` again to finish it")
        return results
    if not isinstance(results, dict) or not isinstance(results.get("stages"), dict) or not all(
            isinstance(st, dict) and isinstance(st.get("benchmarks", {}), dict) for st in results["stages"].values()):
        raise FtriskError(f"run folder '{run_dir}': results.json is not an ftrisk results file (no 'stages' mapping)")
    if not isinstance(results.get("summary", {}), dict):
        raise FtriskError(f"run folder '{run_dir}': results.json has an unexpected shape ('summary' is not a mapping)")
    return results


def guard(run_dir: Path, fn, *args):
    """Turn a results.json that parses but holds unexpected values into one line naming the folder."""
    try:
        return fn(*args)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise FtriskError(f"run folder '{run_dir}': results.json has an unexpected shape ({type(e).__name__}: {e}); "
                          "re-run `ftrisk run` with this version of ftrisk") from None


def run_name(run_dir: str | Path) -> str:
    """A run's name as its config recorded it (``RUN_DIR/config.yaml``), else the folder's name."""
    try:
        data = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else Path(run_dir).resolve().name


def main_stages(results: dict) -> list[str]:
    """The stages of the classic table: base, hardened, the final attacked point (not every attack point), and with
    several attack families each other family's final point of its first seed (``<label>/attacked``)."""
    finals = {"attacked"} | {f"{f['label']}/attacked" for f in families_of(results)[1:]}
    return [s for s, v in results.get("stages", {}).items() if not v.get("point") or s in finals]


def first_seed_stages(results: dict) -> list[str]:
    """Stages of the first seed in run order (other seeds' stages are named ``seed-N/...``)."""
    return [s for s in results.get("stages", {}) if "/" not in s]


def bench_names(results: dict, stages: list[str]) -> list[str]:
    names: list[str] = []
    for s in stages:
        names += [n for n in results["stages"][s]["benchmarks"] if n not in names]
    return names


def harmful_of(results: dict) -> dict[str, bool]:
    """Every benchmark of the run (stage order) and whether it is harmful (else: over-refusal, benign)."""
    out: dict[str, bool] = {}
    for st in results.get("stages", {}).values():
        for name, b in (st.get("benchmarks") or {}).items():
            out.setdefault(name, bool(b.get("harmful", True)))
    return out


def judges_of(results: dict) -> list[str]:
    """The run's judges, the headline judge first."""
    judges = list(results.get("judges") or {})
    head = results.get("headline_judge")
    return ([head] if head in judges else []) + [j for j in judges if j != head] or ([head] if head else [])


def primary_label(results: dict) -> str:
    """The label of the run's first attack family: its points keep the plain stage names. A results.json written
    before attack families had one family, whose points carry no ``method``: ``attack.method`` (else "lora")."""
    fams = results.get("families") or []
    if fams and isinstance(fams[0], dict) and fams[0].get("label"):
        return fams[0]["label"]
    return (results.get("attack") or {}).get("method") or "lora"


def point_family(results: dict, point: dict) -> str:
    """The family label of an attack point (``point["method"]``; the primary family's for an older file)."""
    return point.get("method") or primary_label(results)


def families_of(results: dict) -> list[dict]:
    """The run's attack families in run order: ``results["families"]``, or for a file written before families the
    primary one alone, built from ``results["attack"]``. Each: {label, method, trains, data, seeds, info}."""
    fams = [f for f in results.get("families") or [] if isinstance(f, dict) and f.get("label")]
    if fams:
        return [{"method": f["label"], "trains": True, "data": None, "info": {}, **f,
                 "seeds": f.get("seeds") or seeds_of(results, f["label"])} for f in fams]
    a = results.get("attack") or {}
    label = primary_label(results)
    return [{"label": label, "method": a.get("method") or label, "trains": True, "data": a.get("data"),
             "seeds": seeds_of(results), "info": {}}]


def is_multi_family(results: dict) -> bool:
    """Whether the run attacked with more than one family (its reports then compare them on one cost scale)."""
    return len(families_of(results)) > 1


def _points(results: dict, method: str | None) -> list[tuple[str, dict]]:
    label = method or primary_label(results)
    return [(name, st) for name, st in results.get("stages", {}).items()
            if st.get("point") and point_family(results, st["point"]) == label]


def seeds_of(results: dict, method: str | None = None) -> list[int]:
    """The seeds of one attack family's points (``method``: its label; None: the primary family)."""
    return sorted({st["point"]["seed"] for _, st in _points(results, method)})


def curve(results: dict, bench: str, judge: str, seed: int, method: str | None = None) -> list[dict]:
    """The evaluated points of one seed of one attack family (None: the primary), step 0 (the subject) first,
    with their cost so far."""
    stages = results.get("stages", {})
    pts = [(name, st) for name, st in _points(results, method) if st["point"]["seed"] == seed]
    if not pts:
        return []
    label = point_family(results, pts[0][1]["point"])
    start = pts[0][1]["point"].get("subject_stage")
    out = []
    if start in stages:
        out.append(_point(start, stages[start], bench, judge, 0, None, label))
    out += [_point(name, st, bench, judge, st["point"]["step"], st["point"]["cost"], label) for name, st in pts]
    return [r for r in out if r["refusal_rate"] is not None]


def _point(stage: str, st: dict, bench: str, judge: str, step: int, cost: dict | None, method: str) -> dict:
    b = (st.get("benchmarks", {}).get(bench) or {}).get("judges", {}).get(judge) or {}
    c = cost or {}
    return {"stage": stage, "step": step, "refusal_rate": b.get("refusal_rate"), "ci95": b.get("ci95"),
            "n": b.get("n"), "examples": c.get("examples", 0), "distinct_examples": c.get("distinct_examples", 0),
            "tokens": c.get("tokens", 0), "trained_tokens": c.get("trained_tokens", 0),
            "seconds": c.get("wall_seconds", 0.0), "usd": c.get("usd", 0.0), "device": c.get("device"),
            "devices": c.get("devices", 1), "flops": c.get("flops") if cost else 0.0, "method": method}


def ordered_union(groups) -> list[str]:
    """Every name of the groups (lists, or mappings' keys) once, in order of first appearance."""
    out: list[str] = []
    for group in groups:
        out += [x for x in group if x not in out]
    return out
