"""``ftrisk judges``: the registered judges, one line each (name, what it measures, its docstring's start)."""

from __future__ import annotations

import textwrap

from ftrisk import registry


def add_parser(sub):
    return sub.add_parser("judges", help="list the registered judges")


def main(args) -> int:
    for n in registry.names("judge"):
        cls = registry.lookup("judge", n)
        doc = textwrap.shorten(" ".join((cls.__doc__ or "").split()), 90, placeholder=" ...")
        print(f"{n:22s} measures {cls.measures:12s} {doc}")
    return 0
