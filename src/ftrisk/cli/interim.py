"""Commands whose own modules are still being written, given the contract's shape (``add_parser(sub)`` and
``main(args)``) over today's argument and main functions.

The table in :mod:`ftrisk.cli` names ``ftrisk.cli.interim:<command>`` until ``ftrisk.cli.<command>`` lands;
then its entry here goes, and this file with the last one.
"""

from __future__ import annotations

import argparse
import importlib


def _resolve(target: str):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


class Command:
    """``ftrisk <name>``: ``arguments`` adds its flags to a parser, ``run`` runs it (``"module:function"`` each)."""

    def __init__(self, name: str, help_: str, arguments: str, run: str):
        self.name, self.help, self.arguments, self.run = name, help_, arguments, run

    def add_parser(self, sub) -> argparse.ArgumentParser:
        p = sub.add_parser(self.name, help=self.help)
        _resolve(self.arguments)(p)
        return p

    def main(self, args: argparse.Namespace) -> int:
        return _resolve(self.run)(args)


judge = Command("judge", "judge a JSONL of {id, prompt, completion} with several judges",
                "ftrisk.cli.judge:add_arguments", "ftrisk.cli.judge:main")
plan = Command("plan", "memory, devices, hours and $ of an attack and its evaluations",
               "ftrisk.cli.plan:add_arguments", "ftrisk.cli.plan:main")
report = Command("report", "rebuild report.md and report.html of a run from its results.json",
                 "ftrisk.report.compare:add_report_arguments", "ftrisk.report.compare:report_main")
compare = Command("compare", "compare finished runs, one row per run; --html overlays curves",
                  "ftrisk.report.compare:add_compare_arguments", "ftrisk.report.compare:compare_main")
