"""Command line: ``ftrisk run|harden|attack CONFIG [key=value ...]``, ``ftrisk eval refusal|capability``, ...

One module per command, each with ``add_parser(sub)`` and ``main(args)`` (TRL's and lm-eval's shape),
named in :data:`COMMANDS`. Every user error is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ftrisk import distributed, logs
from ftrisk.errors import FtriskError

#: command -> the module that implements it (``add_parser(sub)`` and ``main(args)``), in ``ftrisk --help`` order
COMMANDS = {
    "run": "ftrisk.cli.run",
    "harden": "ftrisk.cli.harden",
    "attack": "ftrisk.cli.attack",
    "sweep": "ftrisk.cli.sweep",
    "defend": "ftrisk.cli.defend",
    "accelerate-config": "ftrisk.cli.accelerate_config",
    "benchmarks": "ftrisk.cli.benchmarks",
    "judges": "ftrisk.cli.judges",
    "judge": "ftrisk.cli.judge",
    "plan": "ftrisk.cli.plan",
    "report": "ftrisk.cli.report",
    "compare": "ftrisk.cli.compare",
    "gate": "ftrisk.cli.gate",
    "bench": "ftrisk.cli.bench",
    "eval": "ftrisk.cli.eval",
}


def command(name: str):
    """The module of ``ftrisk <name>``: ``add_parser(sub)`` and ``main(args)``."""
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ftrisk", description="How cheaply can a chat model's safety training be fine-tuned away?")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in COMMANDS:
        command(name).add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = not distributed.is_main_process()  # under accelerate launch rank 0 logs and shows progress
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
    level = logging.ERROR if quiet else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logs.setup(verbose=args.verbose)  # library warnings: to the run's log, not the console
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return command(args.cmd).main(args)
    except FtriskError as e:
        if not quiet:  # the same line from every process of a launch: rank 0 says it
            print(f"ftrisk: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftrisk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        logs.close()
