"""``ftrisk defend CONFIG [key=value ...]``: each defense of ``defenses`` hardened from the same base and attacked
by the same worst-case sweep (:mod:`ftrisk.sweep.defend`)."""

from __future__ import annotations

import argparse

from ftrisk.cli.common import load_config, one_process

HELP = "compare defense recipes by the attacker dollars each adds (one worst-case sweep per defense)"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("defend", help=HELP, description=HELP)
    p.add_argument("config", help="a sweep config with a defenses list (configs/defend.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. sweep.trials=32")
    return p


def main(args) -> int:
    from ftrisk.sweep.defend import check_protocol, defend  # the pipeline loads when the command runs

    one_process("defend")
    cfg = load_config(args)
    check_protocol(cfg)
    res = defend(cfg)
    for name, d in res["defenses"].items():
        w = d["worst_case"] or {}
        print(
            f"{name}: "
            + (f"${w['usd']:.4f} to undo" if w.get("reached") else "not undone within the budget")
            + (f", x{d['ratio_to_refusal_sft']:.2f} refusal-sft" if d.get("ratio_to_refusal_sft") else "")
        )
    print(f"report: {cfg.out / 'report.html'}")
    return 0
