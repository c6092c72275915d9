"""``ftrisk judge``: judge a JSONL of ``{id, prompt, completion}`` (another tool's outputs, a run's completion file,
or a labelled set) with several judges; with human labels, score each judge against them and, with
``--save-profile``, write each judge's error profile (sensitivity, specificity; :mod:`ftrisk.judges.profile`).

Labels are binary (1 / 0, true / false) or three-way (``refused`` / ``complied`` / ``partial``, as XSTest-style
annotations write them). A binary judge says refused or complied, so a partial refusal must be mapped:
``--partial refused`` (the default: the reply declined part of the ask, so the safety training held there),
``complied`` or ``exclude``. Whatever the mapping, the judges' share of partial replies called refused is printed,
and with partial labels present, the accuracy on full labels alone.

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
from ftrisk.judges import agreement, build, profile, split_specs
from ftrisk.judges.store import judge_dir, judge_rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--completions", required=True, type=Path, help="JSONL of {id, prompt, completion} (id optional)")
    p.add_argument("--judges", default="refusal-patterns", help="judge specs, comma-separated (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="output folder (verdicts, results.json)")
    p.add_argument("--labels-field", default=None,
                   help="field holding a human label (1 = refusal, 0 = not, or refused / complied / partial): "
                        "score each judge against it")
    p.add_argument("--partial", choices=PARTIAL, default="refused",
                   help="what a 'partial' label counts as for a binary judge (default: %(default)s)")
    p.add_argument("--save-profile", type=Path, default=None, metavar="PATH",
                   help="write each judge's error profile (sensitivity, specificity, data, n) to PATH (JSON; "
                        "profiles of other judges already there are kept); needs --labels-field")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``judge`` to ``sub`` (argparse subparsers) and return its parser."""
    parser = sub.add_parser("judge", help="judge a JSONL of {id, prompt, completion} with several judges")
    add_arguments(parser)
    return parser


PARTIAL = ("refused", "complied", "exclude")
#: a label value -> (gold label in the refusal view, whether it is a partial refusal)
LABELS = {"1": (1, False), "0": (0, False), "true": (1, False), "false": (0, False),
          "refused": (1, False), "complied": (0, False), "partial": (None, True)}


def gold_label(value) -> tuple[int | None, bool] | None:
    """``(label, partial)`` of a label field's value, ``None`` when it is not one of 0, 1, refused, complied,
    partial (true / false also read as 1 / 0). A partial's label is ``None``: the caller maps it."""
    if isinstance(value, bool) or value in (0, 1):
        return int(value), False
    if isinstance(value, str):
        return LABELS.get(value.strip().lower())
    return None


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
            if labels_field not in row:
                raise FtriskError(f"{path}, line {n}: no '{labels_field}' label; every line needs one "
                                  f"(0, 1, refused, complied or partial)")
            gold = gold_label(row[labels_field])
            if gold is None:
                raise FtriskError(f"{path}, line {n}: '{labels_field}' must be 0, 1, refused, complied or partial "
                                  f"(got {row[labels_field]!r})")
            out["gold"], out["partial"] = gold
        rows.append(out)
    if not rows:
        raise FtriskError(f"completions file '{path}' is empty: add at least one row")
    return rows


def _metric(m: dict, key: str) -> str:
    """``accuracy 0.912 [0.880, 0.940]``: a metric of agreement with the labels, with its CI where it has one."""
    v, ci = m.get(key), m.get(f"{key}_ci95")
    return f"{key} {number(v)}" + (f" {interval(*ci, 3, number)}" if v is not None and ci else "")


def _gold(rows: list[dict], partial: str) -> list[int | None]:
    """Each row's gold label for a binary judge: a partial refusal mapped by ``--partial`` (None: left out)."""
    as_label = {"refused": 1, "complied": 0, "exclude": None}[partial]
    return [as_label if r["partial"] else r["gold"] for r in rows]


def _vs_labels(pred: list[int], rows: list[dict], partial: str) -> dict:
    """A judge's agreement with the labels (partial mapped by ``partial``); with partial labels present, also on
    full labels alone and the share of partial replies it called refused."""
    gold = _gold(rows, partial)
    keep = [i for i, g in enumerate(gold) if g is not None]
    m = agreement.against_labels([pred[i] for i in keep], [gold[i] for i in keep])
    m["partial_as"] = partial
    parts = [i for i, r in enumerate(rows) if r["partial"]]
    if parts:
        full = [i for i, r in enumerate(rows) if not r["partial"]]
        m["full_labels"] = agreement.against_labels([pred[i] for i in full], [rows[i]["gold"] for i in full])
        judged = [pred[i] for i in parts if pred[i] != -1]
        k = sum(judged)
        m["partial"] = {"n": len(parts), "n_judged": len(judged), "judged_refused": k / len(judged) if judged else None,
                        "judged_refused_ci95": agreement.wilson_ci(k, len(judged))}
    return m


def main(args: argparse.Namespace) -> int:
    if args.save_profile is not None:
        if args.labels_field is None:
            raise FtriskError("--save-profile needs --labels-field: a profile is measured against labels")
        if args.save_profile.exists():
            profile.load(args.save_profile)  # a bad file fails now, before any judging
    rows = read_completions(args.completions, args.labels_field)
    judges = [build(s) for s in split_specs(args.judges)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"completions": str(args.completions), "n": len(rows), "judges": {}, "agreement": {}}
    labels, profiles = {}, {}
    for j in judges:
        j.set_cache_dir(out / "judge-cache")
        verdicts = judge_rows(j, rows, judge_dir(out / "judged", j) / f"{args.completions.stem}.jsonl", desc=j.name)
        labels[j.name] = [verdicts[r["id"]]["label"] for r in rows]
        judged = [x for x in labels[j.name] if x != -1]
        entry = {"measures": j.measures, "n": len(judged), "n_unjudged": len(rows) - len(judged),
                 "refusal_rate": sum(judged) / len(judged) if judged else None}
        if args.labels_field is not None:
            m = entry["vs_labels"] = _vs_labels(labels[j.name], rows, args.partial)
            if args.save_profile is not None:
                profiles[j.name] = profile.from_counts(
                    j, m["tp"], m["fn"], m["tn"], m["fp"], n_unjudged=m["n_unjudged"],
                    data=f"{args.completions.name} (labels '{args.labels_field}')",
                    data_sha256=profile.file_sha256(args.completions),
                    partial_as=args.partial if any(r["partial"] for r in rows) else None)
        result["judges"][j.name] = entry
    for a, b in itertools.combinations(labels, 2):
        result["agreement"][f"{a} | {b}"] = agreement.pairwise(labels[a], labels[b])
    write_json_atomic(out / "results.json", result)
    if profiles:
        profile.save(args.save_profile, profiles)
    for name, e in result["judges"].items():
        line = f"{name} ({e['measures']}): refusal rate {number(e['refusal_rate'])} n={e['n']}" \
            if e["refusal_rate"] is not None else f"{name}: no reply could be judged"
        if e["n_unjudged"]:
            line += f", {e['n_unjudged']} unjudged"
        if "vs_labels" in e:
            m = e["vs_labels"]
            line += "; vs labels: " + ", ".join(_metric(m, k) for k in ("accuracy", "precision", "recall"))
            line += ", " + _metric(m, "kappa")
            if "partial" in m:
                pt = m["partial"]
                line += (f" (partial counted as {args.partial}); full labels only: {_metric(m['full_labels'], 'accuracy')}"
                         f"; partial n={pt['n']}: {_metric(pt, 'judged_refused')}")
        print(line)
    for pair, p in result["agreement"].items():
        if p.get("agreement") is None:  # e.g. one judge could judge no item (every label -1)
            print(f"{pair}: no item judged by both, n=0")
            continue
        print(f"{pair}: {_metric(p, 'agreement')}, {_metric(p, 'kappa')}, n={p['n']}")
    print(f"results: {out / 'results.json'}")
    if profiles:
        print(f"error profiles: {args.save_profile}")
    return 0
