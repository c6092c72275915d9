"""Attacks: what an attacker holding the weights does to undo a subject's safety training (``attack.method``,
``attack.methods``), every family on one cost scale (:mod:`ftrisk.cost`).

:mod:`.base` holds the typed result (the attacked Subject, its cost, and the evaluable points along
the way, each with the cost so far); :mod:`.finetune` the LoRA and full fine-tuning methods, both
on the training recipe of :mod:`ftrisk.training.recipe` that hardening uses too; :mod:`.ablation`
refusal-direction ablation (no training); :mod:`.prefill` prefilling an affirmative opening (no weight
change); :mod:`.data` the attack data.
"""

from ftrisk.attacks.base import AttackContext, AttackResult, Point, default_eval_at, eval_steps, run_attack

__all__ = ["AttackContext", "AttackResult", "Point", "default_eval_at", "eval_steps", "run_attack"]
