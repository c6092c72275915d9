"""Checks a type alone cannot express: ranges, registry names, judges that fit the settings, steps in order.

All of them run when a config is read, so a bad value fails in one line before any model loads.
"""

from __future__ import annotations

from pathlib import Path

from ftrisk import registry
from ftrisk.capability.data import parse_tasks, task_fewshot
from ftrisk.config.families import families
from ftrisk.config.schema import AblationConfig, RunConfig, TrainConfig
from ftrisk.config.sweep import validate_sweep
from ftrisk.errors import FtriskError
from ftrisk.judges.base import build, parse_spec
from ftrisk.prompts import benchmarks

#: judges that can read just the opening of a reply (rule-based: cheap to build while checking)
RULE_BASED_JUDGES = ("refusal-patterns", "gcg", "refusalbench-llama2", "refusalbench-mistral", "prefix")


def validate(cfg: RunConfig) -> None:
    """Range checks that a type alone cannot express."""
    for section in ("harden", "attack"):
        _validate_train(section, getattr(cfg, section).train)
        if getattr(cfg, section).lora.r <= 0:
            raise FtriskError(f"config key '{section}.lora.r' must be > 0")
    for key, kind, value in (("harden.method", "attack", cfg.harden.method), ("attack.method", "attack", cfg.attack.method),
                             ("generation.backend", "backend", cfg.generation.backend),
                             ("harden.recipe", "defense", cfg.harden.recipe)):
        try:
            registry.check(kind, value)
        except FtriskError as e:
            raise FtriskError(f"config key '{key}': {e}") from None
    fams = families(cfg.attack)  # unknown methods, bad overrides, repeated labels
    for f in fams:
        if f.method == "ablation":
            _validate_ablation(f.attack.ablation)
    _validate_benchmarks(cfg)
    _validate_judges(cfg)
    _validate_steps("attack.eval_at", cfg.attack.eval_at)
    _validate_steps("capability.at", cfg.capability.at)
    if cfg.attack.seeds is not None and (not cfg.attack.seeds or len(set(cfg.attack.seeds)) != len(cfg.attack.seeds)):
        raise FtriskError("config key 'attack.seeds' must list distinct seeds (or be unset for the run's seed)")
    if not 0.0 < cfg.report.threshold < 1.0:
        raise FtriskError(f"config key 'report.threshold' must be between 0 and 1, exclusive (got {cfg.report.threshold})")
    if cfg.model.quantize is not None and cfg.model.quantize not in ("4bit", "8bit"):
        raise FtriskError(f"config key 'model.quantize' must be 4bit or 8bit (got '{cfg.model.quantize}')")
    if cfg.capability.enabled:
        try:
            for t in parse_tasks(cfg.capability.tasks):
                task_fewshot(t, cfg.capability.num_fewshot)
        except FtriskError as e:
            raise FtriskError(f"config key 'capability': {e}") from None
        if cfg.capability.batch_size <= 0:
            raise FtriskError(f"config key 'capability.batch_size' must be > 0 (got {cfg.capability.batch_size})")
    if cfg.generation.max_new_tokens <= 0 or cfg.generation.batch_size <= 0:
        raise FtriskError("config keys 'generation.max_new_tokens' and 'generation.batch_size' must be > 0")
    if cfg.attack.n_examples is not None and cfg.attack.n_examples <= 0:
        raise FtriskError(f"config key 'attack.n_examples' must be > 0 (got {cfg.attack.n_examples})")
    validate_sweep(cfg)


def _validate_train(section: str, t: TrainConfig) -> None:
    for key in ("max_steps", "max_minutes", "checkpoint_every"):
        v = getattr(t, key)
        if v is not None and v <= 0:
            raise FtriskError(f"config key '{section}.train.{key}' must be > 0 (got {v}); leave it unset for no budget")
    for key in ("lr", "epochs", "batch_size", "grad_accum", "max_seq_len"):
        if getattr(t, key) <= 0:
            raise FtriskError(f"config key '{section}.train.{key}' must be > 0")
    if t.scheduler not in ("constant", "cosine", "linear"):
        raise FtriskError(f"config key '{section}.train.scheduler' is '{t.scheduler}': constant, cosine or linear")


def _validate_ablation(a: AblationConfig) -> None:
    for key in ("n_train", "n_val", "positions", "top_k", "val_max_new_tokens"):
        if getattr(a, key) <= 0:
            raise FtriskError(f"config key 'attack.ablation.{key}' must be > 0 (got {getattr(a, key)})")
    if not 0.0 < a.max_layer_fraction <= 1.0:
        raise FtriskError(f"config key 'attack.ablation.max_layer_fraction' must be in (0, 1] (got {a.max_layer_fraction})")
    if a.kl_max <= 0.0:
        raise FtriskError(f"config key 'attack.ablation.kl_max' must be > 0 (got {a.kl_max})")
    if not 0.0 < a.strength <= 2.0:
        raise FtriskError(f"config key 'attack.ablation.strength' must be in (0, 2] (got {a.strength})")
    if a.layer is not None and not 0.0 <= a.layer <= 1.0:
        raise FtriskError(f"config key 'attack.ablation.layer' must be a fraction of the depth in [0, 1] (got {a.layer})")
    if not -a.positions <= a.position <= -1:
        raise FtriskError(f"config key 'attack.ablation.position' must be in [-{a.positions}, -1] (got {a.position})")
    _check_name("attack.ablation.harmful", a.harmful)
    if a.harmless != "builtin":
        _check_name("attack.ablation.harmless", a.harmless)


def _validate_benchmarks(cfg: RunConfig) -> None:
    for i, b in enumerate(cfg.eval.benchmarks):
        if not b.name:
            raise FtriskError(f"config key 'eval.benchmarks[{i}].name' is empty: a registry name or a prompt file")
        _check_name(f"eval.benchmarks[{i}].name", b.name)
        if b.limit is not None and b.limit <= 0:
            raise FtriskError(f"config key 'eval.benchmarks[{i}].limit' must be > 0 (got {b.limit})")
    labels = [b.label or (b.name if "/" not in b.name and "." not in b.name else Path(b.name).stem)
              for b in cfg.eval.benchmarks]
    for i, lab in enumerate(labels):
        if lab in labels[:i]:
            raise FtriskError(f"config key 'eval.benchmarks[{i}]': two benchmarks are named '{lab}': "
                              f"give one a distinct 'label'")
    for i, name in enumerate(cfg.harden.harmful):
        _check_name(f"harden.harmful[{i}]", name)


def _check_name(key: str, name: str) -> None:
    try:
        benchmarks.check_name(name)
    except FtriskError as e:
        raise FtriskError(f"config key '{key}': {e}") from None


def _validate_judges(cfg: RunConfig) -> None:
    if not cfg.eval.judges:
        raise FtriskError("config key 'eval.judges' is empty: name at least one judge (e.g. refusal-patterns)")
    names = []
    for i, spec in enumerate(cfg.eval.judges):
        try:
            name, _ = parse_spec(spec)
            registry.check("judge", name)
        except FtriskError as e:
            raise FtriskError(f"config key 'eval.judges[{i}]': {e}") from None
        names.append(spec)
    if cfg.generation.stop_when_judged:
        for spec in cfg.eval.judges:
            if parse_spec(spec)[0] not in RULE_BASED_JUDGES or build(spec).opening_chars is None:
                raise FtriskError(f"config key 'generation.stop_when_judged' needs judges that read only the opening of "
                                  f"a reply; '{spec}' reads the whole reply (use e.g. gcg:mode=start,window=80)")
    h = cfg.eval.headline_judge
    if h is not None and h not in names and h not in [parse_spec(s)[0] for s in names]:
        raise FtriskError(f"config key 'eval.headline_judge' is '{h}', which is not one of eval.judges ({', '.join(names)})")


def _validate_steps(key: str, steps) -> None:
    if steps is None:
        return
    if any(s < 0 for s in steps):
        raise FtriskError(f"config key '{key}' has a negative step: steps count optimizer steps from 0")
    if list(steps) != sorted(set(steps)):
        raise FtriskError(f"config key '{key}' must be increasing steps without repeats (got {list(steps)})")
