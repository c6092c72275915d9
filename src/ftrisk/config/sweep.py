"""``sweep.space``: its defaults and its checks (one line naming the key, before any model loads).

The defaults follow TamperBench's Optuna space and the durability paper (Qi, Wei, Carlini et al., ICLR 2025):
the attack method, lr on a log scale over two decades and more, LoRA rank, batch size, scheduler, distinct examples
and max steps; for ablation the direction's layer (a fraction of the depth) and the strength of the edit.
"""

from __future__ import annotations

from ftrisk.config.families import UNTRAINED, families
from ftrisk.config.schema import AttackConfig, SweepConfig, SweepParam
from ftrisk.errors import FtriskError

#: methods a sweep can search (prefill changes no weight and costs nothing: it is the floor, reported apart)
SEARCHABLE = ("lora", "full", "ablation")
OBJECTIVES = ("usd", "seconds", "flops")
PRUNERS = ("median", "none")
SCHEDULERS = ("constant", "cosine", "linear")
#: dotted keys a trained family's trial may set, and those an ablation trial may set
TRAINED_KEYS = ("train.lr", "train.batch_size", "train.scheduler", "train.max_steps", "train.warmup_steps",
                "train.weight_decay", "lora.r", "lora.alpha", "n_examples")
ABLATION_KEYS = ("ablation.layer", "ablation.position", "ablation.strength")


def default_space(attack: AttackConfig) -> list[SweepParam]:
    """TamperBench's dimensions, sized so that one trial on the embedded model stays within minutes on a CPU."""
    labels = [f.label for f in families(attack) if f.method in SEARCHABLE]
    return [SweepParam("method", choices=labels),
            SweepParam("train.lr", low=1e-5, high=1e-3, log=True),
            SweepParam("lora.r", choices=[8, 16, 32, 64]),
            SweepParam("train.batch_size", choices=[8, 16, 32, 64]),
            SweepParam("train.scheduler", choices=list(SCHEDULERS)),
            SweepParam("n_examples", choices=[16, 64, 256, 1024]),
            SweepParam("train.max_steps", low=16, high=512, log=True),
            SweepParam("ablation.layer", low=0.2, high=0.8),
            SweepParam("ablation.strength", low=0.5, high=1.5)]


def space_of(cfg) -> list[SweepParam]:
    return cfg.sweep.space if cfg.sweep.space is not None else default_space(cfg.attack)


def is_int(p: SweepParam) -> bool:
    """A range of integers: both bounds written as integers (``16``, not ``16.0``)."""
    return float(p.low).is_integer() and float(p.high).is_integer() and p.name in (
        "train.batch_size", "train.max_steps", "train.warmup_steps", "lora.r", "lora.alpha", "n_examples",
        "ablation.position")


def validate_sweep(cfg) -> None:
    """Every check of the ``sweep`` section; an empty or contradictory space names its key."""
    s: SweepConfig = cfg.sweep
    for key in ("trials", "top_k", "checkpoint_every", "heartbeat_seconds"):
        if getattr(s, key) <= 0:
            raise FtriskError(f"config key 'sweep.{key}' must be > 0 (got {getattr(s, key)})")
    for key in ("max_retry", "audit_trials", "startup_trials"):
        if getattr(s, key) < 0:
            raise FtriskError(f"config key 'sweep.{key}' must be >= 0 (got {getattr(s, key)})")
    if not 0.0 <= s.epsilon < 1.0:
        raise FtriskError(f"config key 'sweep.epsilon' must be in [0, 1) (got {s.epsilon})")
    if s.kl_max is not None and s.kl_max <= 0:
        raise FtriskError(f"config key 'sweep.kl_max' must be > 0 (got {s.kl_max}); leave it unset for no KL bound")
    for key, value, known in (("objective", s.objective, OBJECTIVES), ("pruner", s.pruner, PRUNERS)):
        if value not in known:
            raise FtriskError(f"config key 'sweep.{key}' is '{value}': one of {', '.join(known)}")
    if not s.seeds or len(set(s.seeds)) != len(s.seeds):
        raise FtriskError("config key 'sweep.seeds' must list distinct seeds")
    if cfg.capability.limit is not None and cfg.capability.limit <= 0:
        raise FtriskError("config key 'capability.limit' must be > 0")
    labels = [b.label or b.name for b in cfg.eval.benchmarks]
    if s.benchmark is not None and s.benchmark not in labels:
        raise FtriskError(f"config key 'sweep.benchmark' is '{s.benchmark}', not one of eval.benchmarks "
                          f"({', '.join(labels)})")
    fams = {f.label: f for f in families(cfg.attack)}
    space = space_of(cfg)
    if not space:
        raise FtriskError("config key 'sweep.space' is empty: name at least one dimension (or leave it unset for "
                          "the defaults)")
    names = [p.name for p in space]
    for i, p in enumerate(space):
        key = f"sweep.space[{i}]"
        if p.name in names[:i]:
            raise FtriskError(f"config key '{key}': '{p.name}' is declared twice")
        _check_param(p, key, fams)
    methods = next((p.choices for p in space if p.name == "method"), None) or [
        f.label for f in fams.values() if f.method in SEARCHABLE][:1]
    if not methods:
        raise FtriskError("config key 'attack.methods' has no family a sweep can search (lora, full or ablation)")


def _check_param(p: SweepParam, key: str, fams: dict) -> None:
    if p.name != "method" and p.name not in TRAINED_KEYS + ABLATION_KEYS:
        raise FtriskError(f"config key '{key}.name': '{p.name}' is not a searchable key "
                          f"(method, {', '.join(TRAINED_KEYS + ABLATION_KEYS)})")
    ranged = p.low is not None or p.high is not None
    if p.choices is not None and ranged:
        raise FtriskError(f"config key '{key}': give either choices or low/high for '{p.name}', not both")
    if p.choices is None and not ranged:
        raise FtriskError(f"config key '{key}': '{p.name}' needs choices or low and high")
    if p.choices is not None:
        if not p.choices:
            raise FtriskError(f"config key '{key}.choices': empty for '{p.name}'")
        if p.name == "method":
            for c in p.choices:
                if c not in fams:
                    raise FtriskError(f"config key '{key}.choices': '{c}' is not an attack family of attack.methods "
                                      f"({', '.join(fams)})")
                if fams[c].method not in SEARCHABLE:
                    raise FtriskError(f"config key '{key}.choices': '{c}' ({fams[c].method}) cannot be searched "
                                      f"(one of {', '.join(SEARCHABLE)}); {', '.join(UNTRAINED)} runs in ftrisk run")
        if p.name == "train.scheduler":
            bad = [c for c in p.choices if c not in SCHEDULERS]
            if bad:
                raise FtriskError(f"config key '{key}.choices': unknown scheduler '{bad[0]}' ({', '.join(SCHEDULERS)})")
        return
    if p.low is None or p.high is None:
        raise FtriskError(f"config key '{key}': '{p.name}' needs both low and high")
    if p.low > p.high:
        raise FtriskError(f"config key '{key}': low {p.low:g} > high {p.high:g} for '{p.name}'")
    if p.log and p.low <= 0:
        raise FtriskError(f"config key '{key}': a log scale needs low > 0 for '{p.name}' (got {p.low:g})")
    if p.name == "method" or p.name == "train.scheduler":
        raise FtriskError(f"config key '{key}': '{p.name}' takes choices, not a range")
