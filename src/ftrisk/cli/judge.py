"""``ftrisk judge``: judge a JSONL of ``{id, prompt, completion}`` (another tool's outputs, a run's completion file,
or a labelled set) with several judges; with human labels, score each judge against them.

Prints statistics only, never a completion. Verdicts are stored in ``--out`` (resumable, like a run's).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from ftrisk.errors import FtriskError
from ftrisk.formatting import interval, number
from ftrisk.io import write_json_atomic
from ftrisk.judges import agreement, build, split_specs
from ftrisk.judges.store import judge_dir, judge_rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--completions", required=True, type=Path, help="JSONL of {id, prompt, completion} (id optional)")
    p.add_argument("--judges", default="refusal-patterns", help="judge specs, comma-separated (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="output folder (verdicts, results.json)")
    p.add_argument("--labels-field", default=None,
                   help="field holding a human label (1 = refusal, 0 = not): score each judge against it")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``judge`` to ``sub`` (argparse subparsers) and return its parser."""
    parser = sub.add_parser("judge", help="judge a JSONL of {id, prompt, completion} with several judges")
    add_arguments(parser)
    return parser


def read_completions(path: Path, labels_field: str | None) -> list[dict]:
    if not path.is_file():
        raise FtriskError(f"completions file '{path}' not found: pass a JSONL of {{id, prompt, completion}}")
    rows, seen = [], set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FtriskError(f"completions file '{path}' is not UTF-8 text: save it as UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FtriskError(f"{path}, line {n}: not valid JSON ({e.msg}); write one JSON object per line") from None
        if not isinstance(row, dict) or not isinstance(row.get("completion"), str):
            raise FtriskError(f"{path}, line {n}: no 'completion' text field; every line needs one")
        rid = str(row.get("id", f"line-{n}"))
        if rid in seen:
            raise FtriskError(f"{path}, line {n}: duplicate id '{rid}'; every row needs a unique id")
        seen.add(rid)
        out = {"id": rid, "prompt": str(row.get("prompt", "")), "completion": row["completion"]}
        if labels_field is not None:
            if row.get(labels_field) not in (0, 1, True, False):
                raise FtriskError(f"{path}, line {n}: '{labels_field}' must be 1 (refusal) or 0 (not), "
                                  f"got {row.get(labels_field)!r}")
            out["gold"] = int(row[labels_field])
        rows.append(out)
    if not rows:
        raise FtriskError(f"completions file '{path}' is empty: add at least one row")
    return rows


def _metric(m: dict, key: str) -> str:
    """``accuracy 0.912 [0.880, 0.940]``: a metric of agreement with the labels, with its CI where it has one."""
    v, ci = m.get(key), m.get(f"{key}_ci95")
    return f"{key} {number(v)}" + (f" {interval(*ci, 3, number)}" if v is not None and ci else "")


def main(args: argparse.Namespace) -> int:
    rows = read_completions(args.completions, args.labels_field)
    judges = [build(s) for s in split_specs(args.judges)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"completions": str(args.completions), "n": len(rows), "judges": {}, "agreement": {}}
    labels = {}
    for j in judges:
        j.set_cache_dir(out / "judge-cache")
        verdicts = judge_rows(j, rows, judge_dir(out / "judged", j) / f"{args.completions.stem}.jsonl", desc=j.name)
        labels[j.name] = [verdicts[r["id"]]["label"] for r in rows]
        judged = [x for x in labels[j.name] if x != -1]
        entry = {"measures": j.measures, "n": len(judged), "n_unjudged": len(rows) - len(judged),
                 "refusal_rate": sum(judged) / len(judged) if judged else None}
        if args.labels_field is not None:
            entry["vs_labels"] = agreement.against_labels(labels[j.name], [r["gold"] for r in rows])
        result["judges"][j.name] = entry
    for a, b in itertools.combinations(labels, 2):
        result["agreement"][f"{a} | {b}"] = agreement.pairwise(labels[a], labels[b])
    write_json_atomic(out / "results.json", result)
    for name, e in result["judges"].items():
        line = f"{name} ({e['measures']}): refusal rate {number(e['refusal_rate'])} n={e['n']}" \
            if e["refusal_rate"] is not None else f"{name}: no reply could be judged"
        if e["n_unjudged"]:
            line += f", {e['n_unjudged']} unjudged"
        if "vs_labels" in e:
            m = e["vs_labels"]
            line += "; vs labels: " + ", ".join(_metric(m, k) for k in ("accuracy", "precision", "recall"))
            line += f", kappa {number(m.get('kappa'))}"
        print(line)
    for pair, p in result["agreement"].items():
        if p.get("agreement") is None:  # e.g. one judge could judge no item (every label -1)
            print(f"{pair}: no item judged by both, n=0")
            continue
        print(f"{pair}: agreement {number(p['agreement'])}, kappa {number(p.get('kappa'))}, n={p['n']}")
    print(f"results: {out / 'results.json'}")
    return 0
