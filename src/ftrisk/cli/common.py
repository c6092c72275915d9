"""What ``ftrisk run``, ``harden`` and ``attack`` share: the config arguments, reading the config, and the attack
trained on several processes through ``accelerate launch``."""

from __future__ import annotations

import argparse

from ftrisk import config, distributed
from ftrisk.errors import FtriskError


def add_config_parser(sub, name: str, help_: str, multi_process: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_)
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. attack.lora.r=16")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder left by a different config")
    if multi_process:
        p.add_argument("--accelerate-config", metavar="NAME", default=None,
                       help="train the attack on several processes through accelerate launch: ddp, fsdp, "
                            "deepspeed-zero3 (packaged, after TRL's) or an accelerate YAML file; evaluation runs once")
        p.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="processes for --accelerate-config, one per GPU (default: every visible GPU)")
    return p


def load_config(args) -> config.RunConfig:
    return config.load(args.config, args.overrides)


def one_process(cmd: str) -> None:
    """Refuse a command that must not run under ``accelerate launch`` (only the attack trains on N processes)."""
    if distributed.launched():
        raise FtriskError(f"ftrisk {cmd} runs in one process, not under accelerate launch: "
                          f"use ftrisk {cmd} CONFIG --accelerate-config ddp --num-processes N"
                          + (" (the attack trains on N processes, evaluation runs once)" if cmd == "run" else ""))


def launch_attack(args, cfg) -> int:
    """``--accelerate-config``: this process checks everything, claims the output folder and hardens; the attack
    then trains on N processes (``accelerate launch ... ftrisk attack``). Returns the launch's exit code; after it
    the attack stages are done, and the caller's evaluation runs here, once."""
    from ftrisk.pipeline import run as pipeline  # the pipeline loads when a command runs, not for --help

    argv = ["-v"] * args.verbose + ["attack", args.config, *args.overrides]
    launch = distributed.launch_command(args.accelerate_config, args.num_processes, argv)
    exp = pipeline.Experiment(cfg, overwrite=args.overwrite)
    exp.harden()
    code = distributed.run_launch(*launch)
    args.overwrite = False
    return code
