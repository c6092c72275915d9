"""The attack protocol and its typed result."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ftrisk import registry
from ftrisk.attacks.data import select_examples
from ftrisk.errors import FtriskError
from ftrisk.model.subject import Subject
from ftrisk.training.data import plan_steps

log = logging.getLogger(__name__)


@dataclass
class Point:
    """An evaluable state of the attack: after ``step`` optimizer steps (a point's index for an attack without
    steps), at a cumulative ``cost`` (wall_seconds, flops, usd, and steps, examples, tokens where they mean
    something: :mod:`ftrisk.cost`)."""

    step: int
    cost: dict
    subject: Subject
    prefill: bool = False
    """Evaluate with each harmful prompt's reply started from an affirmative prefix (:mod:`ftrisk.attacks.prefill`)."""

    def to_json(self, root: Path) -> dict:
        return {"step": self.step, "cost": self.cost, "subject": self.subject.to_json(root),
                **({"prefill": True} if self.prefill else {})}

    @classmethod
    def from_json(cls, d: dict, root: Path) -> "Point":
        return cls(d["step"], d["cost"], Subject.from_json(d["subject"], root), bool(d.get("prefill", False)))


@dataclass
class AttackContext:
    """What an attack may need beyond its config: methods that evaluate while they search (ablation) judge
    replies with the run's headline refusal judge and generate with the run's generation settings."""

    judge: object = None
    """The headline refusal judge (a :class:`ftrisk.judges.base.Judge`)."""
    generation: object = None
    """The run's :class:`ftrisk.config.schema.GenerationConfig`."""
    protected: list = field(default_factory=list)
    """Items of every evaluation set: an attack's own prompts must be disjoint from them."""
    cache_dir: Path | None = None
    """Where work shared by attacks on the same subject is kept (``ftrisk sweep``: ablation's activations pass);
    None: each attack's own folder."""


@dataclass
class AttackResult:
    method: str
    seed: int
    subject: Subject
    """The attacked subject (the last point)."""
    cost: dict
    points: list[Point]
    """Evaluable points in step order, the last one included (step 0, the unattacked subject, is not)."""
    steps: int
    planned_steps: int
    stopped_by: str
    """data | max_steps | max_minutes"""
    info: dict = field(default_factory=dict)
    """n_examples, data, truncated_examples, metrics file."""

    def to_json(self, root: Path) -> dict:
        return {"method": self.method, "seed": self.seed, "subject": self.subject.to_json(root), "cost": self.cost,
                "points": [p.to_json(root) for p in self.points], "steps": self.steps,
                "planned_steps": self.planned_steps, "stopped_by": self.stopped_by, **self.info}

    @classmethod
    def from_json(cls, d: dict, root: Path) -> "AttackResult":
        known = {"method", "seed", "subject", "cost", "points", "steps", "planned_steps", "stopped_by"}
        return cls(d["method"], d["seed"], Subject.from_json(d["subject"], root), d["cost"],
                   [Point.from_json(p, root) for p in d["points"]], d["steps"], d["planned_steps"], d["stopped_by"],
                   {k: v for k, v in d.items() if k not in known})


class Attack:
    """Base class: ``run`` attacks ``subject`` (training on ``examples`` where the method trains) and returns an
    AttackResult. ``check`` fails with one line, before any model loads, on input this method cannot use."""

    name = ""
    trains = True
    """False: the method uses no attack data and has no steps or seeds (ablation, prefill)."""

    def __init__(self, cfg, context: AttackContext | None = None):
        self.cfg = cfg  # the ftrisk.config.schema.AttackConfig
        self.context = context or AttackContext()

    @classmethod
    def check(cls, cfg, *, subject: Subject, protected: list, backend_cls=None) -> None:
        """One line for input this method cannot use (overlap with ``protected`` evaluation items, an
        architecture it cannot edit, a backend that cannot prefill); nothing loaded, nothing written."""

    def run(self, subject: Subject, examples: list, out_dir: Path, *, seed: int, eval_at: list[int],
            usd_per_hour: float, desc: str | None = None) -> AttackResult:
        raise NotImplementedError


def default_eval_at(total: int) -> list[int]:
    """Log-spaced points up to the last step: 0, 2, 5, 10, 20, 35, 50 for 50 steps."""
    return sorted({0, total} | {max(1, round(total * f)) for f in (0.04, 0.1, 0.2, 0.4, 0.7)})


def eval_steps(requested: list[int] | None, total: int) -> list[int]:
    """The evaluation schedule for a run of ``total`` steps: default, or the requested steps within budget."""
    if requested is None:
        return default_eval_at(total)
    beyond = [s for s in requested if s > total]
    if beyond:
        log.warning("attack.eval_at: steps %s are beyond the attack's %d steps and are dropped",
                    ", ".join(map(str, beyond)), total)
    return sorted({s for s in requested if s <= total} | {total})


def run_attack(cfg, subject: Subject, examples: list, out_dir: Path, *, seed: int, usd_per_hour: float,
               context: AttackContext | None = None, desc: str | None = None) -> AttackResult:
    """Run ``cfg.method`` (registry kind ``attack``) with the evaluation schedule ``cfg.eval_at``."""
    method = registry.lookup("attack", cfg.method)(cfg, context)
    if not method.trains:
        return method.run(subject, [], out_dir, seed=seed, eval_at=[], usd_per_hour=usd_per_hour, desc=desc)
    if not examples:
        raise FtriskError("the attack has no examples: check attack.data")
    examples = select_examples(examples, cfg.n_examples, seed)
    total = plan_steps(len(examples), cfg.train)
    return method.run(subject, examples, out_dir, seed=seed, eval_at=eval_steps(cfg.eval_at, total),
                      usd_per_hour=usd_per_hour, desc=desc)
