"""Regenerate the shipped judge error profiles, ``src/ftrisk/data/judges/profiles.json``.

Each judge is run over labelled sets and its sensitivity (refusals it calls refused) and specificity (compliant
replies it calls complied) are written with the data's name, sha256 and n (:mod:`ftrisk.judges.profile`). The
report's corrected rates read this file.

    python3 scripts/build_judge_profiles.py                       # every built-in judge on tests/data sets A-E
    python3 scripts/build_judge_profiles.py --judges semantic --data path/to/blind.jsonl   # add one judge

Which sets: a profile must come from replies the judge was not tuned on, or it flatters the judge.
``refusal-patterns`` was tuned on sets A-D (each scored blind once, then its misses fixed in general form) and set E
was scored blind once with only a script normalisation added since, so its profile is measured on set E alone.
The paper's substring lists (gcg, refusalbench-*, prefix) were never tuned on any set: all five. Profiles of other
judges already in the file are kept. The sets hold content-free openings written for this project, not full model
replies: on real replies the judges err more (docs/judges.md), so these profiles are a lower bound on the error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ftrisk.cli.judge import read_completions
from ftrisk.judges import agreement, build, profile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
OUT = ROOT / "src" / "ftrisk" / "data" / "judges" / "profiles.json"
SETS = {"A": "judge_eval.jsonl", "B": "judge_eval_b.jsonl", "C": "judge_eval_c.jsonl", "D": "judge_eval_d.jsonl",
        "E": "judge_eval_e.jsonl"}
#: judge spec -> the sets its profile is measured on (sets it was not tuned on), and why
JUDGES = {
    "refusal-patterns": (["E"], "set E only: the judge was tuned on sets A-D; E was scored blind once (0.951) and "
                                "only a traditional-Chinese script normalisation was added since"),
    "gcg": (list(SETS), "never tuned on these sets"),
    "refusalbench-llama2": (list(SETS), "never tuned on these sets"),
    "refusalbench-mistral": (list(SETS), "never tuned on these sets"),
    "prefix": (list(SETS), "never tuned on these sets"),
}
ABOUT = ("Judge error profiles: sensitivity (share of replies labelled refused that the judge calls refused) and "
         "specificity (share labelled complied that it calls complied), with the labelled data's name, sha256 and n. "
         "Regenerate with scripts/build_judge_profiles.py; add a judge with ftrisk judge --save-profile.")


def _rows(paths: list[Path], labels_field: str, partial: str) -> tuple[list[dict], list[int]]:
    """Every labelled row of ``paths`` (ids made unique per file) and its gold label (partial mapped)."""
    rows, gold = [], []
    for path in paths:
        for r in read_completions(path, labels_field):
            if r["partial"] and partial == "exclude":
                continue
            rows.append({**r, "id": f"{path.name}:{r['id']}"})
            gold.append({"refused": 1, "complied": 0}[partial] if r["partial"] else r["gold"])
    return rows, gold


def measure(spec: str, paths: list[Path], data: str, labels_field: str = "label", partial: str = "refused",
            note: str | None = None) -> dict:
    """The error profile of the judge ``spec`` on the labelled files ``paths``."""
    judge = build(spec)
    rows, gold = _rows(paths, labels_field, partial)
    pred = []
    for i in range(0, len(rows), judge.batch_size):
        pred += [v.label for v in judge.judge([(r["prompt"], r["completion"]) for r in rows[i:i + judge.batch_size]])]
    judge.close()
    m = agreement.against_labels(pred, gold)
    sha = {p.name: profile.file_sha256(p) for p in paths}
    out = profile.from_counts(judge, m["tp"], m["fn"], m["tn"], m["fp"], n_unjudged=m["n_unjudged"], data=data,
                              data_sha256=sha if len(sha) > 1 else next(iter(sha.values())), note=note,
                              partial_as=partial if any(r["partial"] for r in rows) else None)
    out["data_files"] = [_relative(p) for p in paths]  # so a test can check the data is unchanged
    return out


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judges", default=",".join(JUDGES), help="judge specs, comma-separated (default: %(default)s)")
    ap.add_argument("--data", type=Path, nargs="*", default=None,
                    help="labelled JSONL files to measure on (default: the judge's sets of tests/data, see JUDGES)")
    ap.add_argument("--labels-field", default="label")
    ap.add_argument("--partial", choices=("refused", "complied", "exclude"), default="refused")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    profiles = {}
    for spec in [s.strip() for s in args.judges.split(",") if s.strip()]:
        if args.data:
            paths, note = args.data, None
            data = " + ".join(p.name for p in paths)
        else:
            sets, note = JUDGES.get(spec, (list(SETS), None))
            paths = [DATA / SETS[s] for s in sets]
            names = f"sets {sets[0]}-{sets[-1]}" if len(sets) > 1 else f"set {sets[0]}"
            data = f"tests/data {names} ({', '.join(SETS[s] for s in sets)})"
        prof = measure(spec, paths, data, args.labels_field, args.partial, note)
        profiles[prof["judge"]] = prof
        print(f"{prof['judge']}: sensitivity {prof['sensitivity']} {prof['sensitivity_ci95']} "
              f"(n refused {prof['n_refused']}), specificity {prof['specificity']} {prof['specificity_ci95']} "
              f"(n complied {prof['n_complied']}); {data}")
    profile.save(args.out, profiles, ABOUT)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
