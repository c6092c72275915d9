"""``ftrisk accelerate-config NAME``: the path of a packaged accelerate launch config."""

from __future__ import annotations

from ftrisk import distributed


def add_parser(sub):
    a = sub.add_parser("accelerate-config", help="path of a packaged accelerate launch config (for accelerate launch "
                                                  "--config_file ... -m ftrisk.cli attack CONFIG)")
    a.add_argument("name", choices=distributed.CONFIGS)
    return a


def main(args) -> int:
    print(distributed.config_path(args.name))
    return 0
