"""Attacks: fine-tunes that try to undo a subject's safety training (``attack.method``).

:mod:`.base` holds the typed result (the attacked Subject, its cost, and the evaluable points along
the way, each with the cost so far); :mod:`.finetune` the LoRA and full fine-tuning methods, both
on the training recipe of :mod:`ftrisk.training.recipe` that hardening uses too; :mod:`.data` the attack data.
"""

from ftrisk.attacks.base import AttackResult, Point, default_eval_at, eval_steps, run_attack

__all__ = ["AttackResult", "Point", "default_eval_at", "eval_steps", "run_attack"]
