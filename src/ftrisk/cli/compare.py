"""``ftrisk compare RUN_DIR...``: one row per finished run as a Markdown table, the notes on what could not be
compared, and with ``--html`` a page with every run's curves overlaid (no model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ftrisk.io import write_text_atomic
from ftrisk.report.comparison import Run, comparison, markdown
from ftrisk.report.comparison_page import compare_html
from ftrisk.report.results import guard, load_results
from ftrisk.report.sweeps import HEAD as SWEEP_HEAD
from ftrisk.report.sweeps import is_sweep, sweep_row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="output folders of `ftrisk run` or `ftrisk sweep`")
    parser.add_argument("--html", default=None, metavar="FILE", help="also write an HTML page with the curves overlaid")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``compare`` to ``sub`` (argparse subparsers) and return its parser."""
    parser = sub.add_parser("compare", help="compare finished runs, one row per run; --html overlays curves")
    add_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    dirs = [Path(d) for d in args.run_dirs]
    loaded = [(d, load_results(d)) for d in dirs]
    sweeps = [(d, r) for d, r in loaded if is_sweep(r)]
    if sweeps:  # sweep folders: their worst cases, one row each
        print(markdown(SWEEP_HEAD, [sweep_row(d, r) for d, r in sweeps]))
    runs = [guard(d, Run, d, r) for d, r in loaded if not is_sweep(r)]
    if not runs:
        return 0
    names = [r.name for r in runs]
    for r in runs:  # two runs of the same name are told apart by their folders
        if names.count(r.name) > 1:
            r.name = str(r.dir)
    head, rows, notes, plan = comparison(runs)
    print(markdown(head, rows))
    for n in notes:
        print(f"note: {n}")
    if args.html:
        text = compare_html(runs, head, rows, notes, plan)
        print(f"html: {write_text_atomic(args.html, text)}")
    return 0
