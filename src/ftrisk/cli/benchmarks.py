"""``ftrisk benchmarks``: the registered prompt sets, one line each (name, prompts, description)."""

from __future__ import annotations

from ftrisk.prompts import benchmarks


def add_parser(sub):
    return sub.add_parser("benchmarks", help="list the registered prompt sets")


def main(args) -> int:
    for n in benchmarks.names():
        print(f"{n:24s} {len(benchmarks.load(n)):4d}  {benchmarks.spec(n)['description']}")
    return 0
