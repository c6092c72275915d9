"""``ftrisk sweep CONFIG [key=value ...] [--storage URL] [--worker]``: the cheapest attack across the attacker's
choices (:mod:`ftrisk.sweep`)."""

from __future__ import annotations

import argparse

from ftrisk.cli.common import load_config, one_process

HELP = "search the attacker's choices (Optuna) for the cheapest way to undo safety"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help=HELP, description=HELP)
    p.add_argument("config", help="a run config with a sweep section (configs/sweep.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. sweep.trials=32")
    p.add_argument(
        "--storage",
        help="Optuna storage URL shared by workers: sqlite:///PATH, postgresql://USER@HOST/DB, "
        "journal:PATH (default: study.db in the run folder)",
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="only run trials of the study until it is done (start one "
        "per machine or GPU; the command without --worker writes "
        "the results)",
    )
    p.add_argument(
        "--slot",
        metavar="K/N",
        help="with N workers on this machine, this one takes the K-th share of its "
        "cores and GPUs (e.g. --slot 1/2 and --slot 2/2)",
    )
    p.add_argument("--overwrite", action="store_true", help="empty the output folder first")
    return p


def main(args) -> int:
    from ftrisk.sweep.run import sweep  # the pipeline loads when the command runs, not for --help

    one_process("sweep")
    cfg = load_config(args)
    if args.slot:
        from ftrisk.sweep.slots import take

        print(f"ftrisk sweep: slot {take(args.slot)}")
    res = sweep(cfg, storage=args.storage, worker=args.worker, overwrite=args.overwrite)
    if res is None:
        print("ftrisk sweep: this worker has no trial left to run")
        return 0
    print(res["summary"]["headline"])
    print(f"report: {cfg.out / 'report.html'}")
    return 0
