"""``ftrisk harden CONFIG``: refusal-train the subject (cached) and print where the hardened model is."""

from __future__ import annotations

from ftrisk.cli import common


def add_parser(sub):
    return common.add_config_parser(sub, "harden", "refusal-train the subject (cached)")


def main(args) -> int:
    from ftrisk.pipeline import run as pipeline  # the pipeline loads when a command runs, not for --help

    common.one_process("harden")
    exp = pipeline.Experiment(common.load_config(args), overwrite=args.overwrite)
    subject = exp.harden()
    print(f"hardened model: {subject.path}")
    return 0
