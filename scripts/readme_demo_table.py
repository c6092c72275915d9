#!/usr/bin/env python3
"""Write README.md's demo table from a finished run's results.json, so the README says what the demo prints.

    python3 scripts/readme_demo_table.py runs/demo            # rewrite the block in README.md
    python3 scripts/readme_demo_table.py runs/demo --check    # exit 1 if README.md's block differs

The block sits between ``<!-- demo-table:start -->`` and ``<!-- demo-table:end -->``. Its cells are the
report's own (``ftrisk.report.markdown``: refusal rate with Wilson 95% CI and n; the cost to undo's step,
examples and tokens; ``ftrisk.report.capability``: the capability lines), so the README reads like report.md.
Training minutes and dollars are left out: they depend on the machine, and the block must be equal on every
re-run. tests/test_readme.py checks the block against a fresh demo run (slow tier).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ftrisk.report.capability import report_lines
from ftrisk.report.markdown import cell, undo_rows

START = "<!-- demo-table:start -->"
END = "<!-- demo-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"

# undo_rows' columns: benchmark, judge, from, first ≤ t, steps, examples, tokens, minutes, $, conservative, seeds
_FIRST, _STEPS, _EXAMPLES, _TOKENS, _CONSERVATIVE = 3, 4, 5, 6, 9


def _undo_cells(row: list[str] | None) -> list[str]:
    """The cost to undo and its conservative variant as two cells, in the report's words, without time or $."""
    if row is None:  # a benign benchmark (over-refusal) has no cost to undo
        return ["–", "–"]
    if row[_STEPS] in ("0", "–"):  # "already x% before the attack ..." or "not reached; lowest ..."
        first = row[_FIRST]
    else:
        first = f"step {row[_STEPS]}: {row[_EXAMPLES]} examples, {row[_TOKENS]} tokens"
    return [first, row[_CONSERVATIVE]]


def render(results: dict) -> str:
    """The block's text: one row per benchmark and judge (the subject the attack starts from, the attacked
    subject, the cost to undo, then each other attack family's final refusal), then the report's capability
    lines."""
    stages = results["stages"]
    points = [v["point"] for v in stages.values() if v.get("point")]
    start = points[0].get("subject_stage") if points else None
    if start not in stages or "attacked" not in stages:
        raise ValueError("results.json has no attack (stages 'hardened'/'base' and 'attacked' are needed)")
    step = stages["attacked"]["point"]["step"]
    head, rows = undo_rows(results)
    undo = {(r[0], r[1]): r for r in rows}
    judges = list(results.get("judges") or [results["headline_judge"]])
    # the other attack families' final points (ablation, prefill, ...): their refusal beside the first family's
    others = [f["label"] for f in (results.get("families") or [])[1:] if f"{f['label']}/attacked" in stages]
    lines = [f"| benchmark | judge | {start} | attacked (step {step}) | cost to undo ({head[_FIRST]}) | "
             f"{head[_CONSERVATIVE]} |" + "".join(f" {label} |" for label in others),
             "|---|---|---|---|---|---|" + "---|" * len(others)]
    for bench, b in stages[start]["benchmarks"].items():
        name = bench if b.get("harmful", True) else f"{bench} (over-refusal)"
        after = stages["attacked"]["benchmarks"].get(bench, {})
        for judge in judges:
            cells = [name, f"`{judge}`", cell(b["judges"].get(judge)), cell(after.get("judges", {}).get(judge))]
            cells += _undo_cells(undo.get((bench, judge)) if b.get("harmful", True) else None)
            for label in others:
                j = stages[f"{label}/attacked"]["benchmarks"].get(bench, {}).get("judges", {}).get(judge)
                cells.append(cell(j) if j else "–")
            lines.append("| " + " | ".join(cells) + " |")
    capability = report_lines(stages)
    if capability:
        lines += [""] + [f"- {line}" for line in capability]
    return "\n".join(lines)


def block(readme: str) -> str:
    """The text between the markers (without them and the newlines next to them)."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"README needs exactly one {START} ... {END} block")
    return readme[readme.index(START) + len(START):readme.index(END)].strip("\n")


def replace(readme: str, text: str) -> str:
    block(readme)  # the markers are checked
    return readme[:readme.index(START) + len(START)] + "\n" + text + "\n" + readme[readme.index(END):]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="output folder of `ftrisk run configs/demo.yaml` (holds results.json)")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--check", action="store_true", help="exit 1 if the README's block differs; write nothing")
    a = p.parse_args(argv)
    table = render(json.loads((a.run_dir / "results.json").read_text(encoding="utf-8")))
    text = a.readme.read_text(encoding="utf-8")
    if a.check:
        if block(text) != table:
            print(f"{a.readme}: the demo table differs from {a.run_dir / 'results.json'}; run "
                  f"python3 scripts/readme_demo_table.py {a.run_dir}", file=sys.stderr)
            return 1
        return 0
    a.readme.write_text(replace(text, table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
