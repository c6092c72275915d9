"""``ftrisk attack CONFIG``: every attack family on the (hardened) subject, one line per family and seed.

Under ``accelerate launch ... -m ftrisk.cli attack CONFIG`` each of the N processes runs the attack stage
only (:func:`attack_process`); ``--accelerate-config`` starts that launch from one process.
"""

from __future__ import annotations

from ftrisk import distributed
from ftrisk.cli import common
from ftrisk.defenses import harden
from ftrisk.errors import FtriskError
from ftrisk.formatting import dollars, duration
from ftrisk.model import loading as models


def add_parser(sub):
    return common.add_config_parser(sub, "attack", "LoRA attack on the (hardened) subject (every family of "
                                    "attack.methods)", multi_process=True)


def main(args) -> int:
    from ftrisk.pipeline import run as pipeline  # the pipeline loads when a command runs, not for --help

    if distributed.launched():
        return attack_process(args)
    cfg = common.load_config(args)
    if args.accelerate_config:
        code = common.launch_attack(args, cfg)
        if code:
            return code
    exp = pipeline.Experiment(cfg, overwrite=args.overwrite)
    subject = exp.harden()
    for family in exp.families:
        for seed in exp.family_seeds(family):
            res = exp.attack(subject, seed, family)
            where = res.subject.adapter or res.subject.path
            name = "attack" if family.primary and len(exp.families) == 1 else f"attack {family.label}"
            if not family.trains:
                print(f"{name}: {where} ({duration(res.cost['wall_seconds'])}, {dollars(res.cost['usd'], 4)})")
                continue
            print(f"{name} (seed {seed}): {where} ({res.steps} steps, stopped by {res.stopped_by}, "
                  f"{duration(res.cost['wall_seconds'])}, {dollars(res.cost['usd'], 4)}; "
                  f"evaluable points at steps {', '.join(str(p.step) for p in res.points)})")
    return 0


def attack_process(args) -> int:
    """One of the N processes of ``accelerate launch ... -m ftrisk.cli attack CONFIG``: the attack stage only."""
    from ftrisk.pipeline import run as pipeline  # the pipeline loads when a command runs, not for --help

    distributed.accelerator()  # checks the launch; each process gets its own GPU before a model loads
    cfg = common.load_config(args)
    with distributed.main_process_first():  # rank 0 checks and claims (or empties) the output folder first
        exp = pipeline.Experiment(cfg, overwrite=args.overwrite and distributed.is_main_process())
    subject = exp.subject
    if cfg.harden.enabled:
        key = harden.cache_key(cfg, exp.subject, exp.harden_plan, exp.filter_judge)
        if not (models.cache_dir() / "hardened" / key / ".complete").is_file():
            raise FtriskError("the hardened model is not built yet: run `ftrisk harden CONFIG` first (one process), "
                              "or `ftrisk attack CONFIG --accelerate-config NAME`, which does")
        subject = exp.harden()  # from the cache
    for family in [f for f in exp.families if f.trains]:  # ablation and prefill run in one process (ftrisk run)
        name = "attack" if len(exp.families) == 1 else f"attack {family.label}"
        for seed in exp.family_seeds(family):
            res = exp.attack(subject, seed, family)
            if distributed.is_main_process():
                print(f"{name} (seed {seed}): {res.subject.adapter or res.subject.path} ({res.steps} "
                      f"steps on {res.cost['devices']} processes, ${res.cost['usd']:.4f})")
    return 0
