"""``ftrisk report RUN_DIR``: rebuild report.md and report.html of a finished run from its results.json (no model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ftrisk.report.html import write_reports
from ftrisk.report.results import guard, load_results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="output folder of `ftrisk run` (holds results.json)")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``report`` to ``sub`` (argparse subparsers) and return its parser."""
    parser = sub.add_parser("report", help="rebuild report.md and report.html of a run from its results.json")
    add_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    results = load_results(run_dir)
    paths = guard(run_dir, write_reports, run_dir, results, None)
    print("\n".join(f"report: {p}" for p in paths))
    return 0
