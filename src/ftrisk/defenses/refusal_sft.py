"""``refusal-sft``: plain refusal fine-tuning, the recipe every other defense is compared with.

Each harmful hardening prompt is paired with one short refusal (``ftrisk/data/hardening/refusals.txt``, chosen by
the run's seed in :func:`ftrisk.defenses.harden.plan`), and trained on with loss on the whole refusal; the benign
anchors (the base model's own answers) are shared by every recipe. A new recipe subclasses :class:`RefusalSFT`,
changes what it must (the data plan, the harmful examples, the trainer), and adds one line to the registry (kind
``defense``)."""

from __future__ import annotations

from ftrisk import registry
from ftrisk.training.data import Example


class RefusalSFT:
    """A defense recipe: what it adds to the hardening plan, the harmful examples it trains on, and the training
    method. Benign anchors, overlap removal, self-distillation and caching are the hardening stage's, the same for
    every recipe."""

    name = "refusal-sft"

    def identity(self) -> dict:
        """The recipe's settings, part of the hardened model's key (refusal-sft's key leaves them out, so models
        hardened before recipes existed are still found)."""
        return {"name": self.name}

    def extend_plan(self, data_plan: dict, cfg, protected: list) -> dict:
        """The recipe's own additions to the plan (``data_plan["harmful"]`` holds (id, prompt, refusal) rows)."""
        return data_plan

    def harmful_examples(self, harmful: list, tok, seed: int) -> list[Example]:
        """The training examples of the plan's harmful rows (``tok``: the subject's tokenizer)."""
        return [Example(p, r) for _, p, r, *_ in harmful]

    def trainer(self, harden_cfg):
        """The training method (``harden.method``: lora or full), through the attacks' training seam."""
        return registry.lookup("attack", harden_cfg.method)(harden_cfg)

    def record(self, data_plan: dict) -> dict:
        """What the recipe adds to ``hardening.json`` and ``results.json.harden``."""
        return {}
