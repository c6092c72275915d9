"""``ftrisk run CONFIG``: base eval -> harden -> eval -> attack -> eval -> results.json + report.md."""

from __future__ import annotations

import sys

from ftrisk.cli import common
from ftrisk.plan.estimate import verdict_line
from ftrisk.report.families import family_lines
from ftrisk.report.markdown import cost_lines, refusal_table
from ftrisk.report.results import is_multi_family


def add_parser(sub):
    return common.add_config_parser(sub, "run", "base eval -> harden -> eval -> attack -> eval -> results.json + "
                                                "report.md", multi_process=True)


def main(args) -> int:
    from ftrisk.pipeline import run as pipeline  # the pipeline loads when a command runs, not for --help

    common.one_process("run")
    cfg = common.load_config(args)
    if args.accelerate_config:
        code = common.launch_attack(args, cfg)
        if code:
            return code
    results = pipeline.run(cfg, overwrite=args.overwrite,  # the plan's verdict: checked inputs, before any work
                           on_ready=lambda c: print(verdict_line(c), file=sys.stderr, flush=True))
    print(results["summary"]["headline"] + "\n")
    lines = refusal_table(results) + [""] + cost_lines(results)
    if is_multi_family(results):
        lines += [""] + family_lines(results)
    print("\n".join(lines))
    print(f"\nresults: {cfg.out / 'results.json'}\nreport:  {cfg.out / 'report.md'}, {cfg.out / 'report.html'}")
    return 0
