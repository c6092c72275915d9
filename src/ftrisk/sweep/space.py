"""A trial's configuration: the attack family and the settings drawn from ``sweep.space`` (Optuna's define-by-run
API: a family's own keys are drawn only for trials of that family), turned into the attack section it runs and into
the ``ftrisk run`` overrides that reproduce it."""

from __future__ import annotations

import dataclasses
import math

from ftrisk.config.coerce import build
from ftrisk.config.overrides import apply_overrides
from ftrisk.config.schema import AttackConfig
from ftrisk.config.sweep import ABLATION_KEYS, SEARCHABLE, is_int, space_of

RECIPE = "recipe"
"""User attribute of the trial that runs the config's own attack, unchanged (the single recipe)."""


@dataclasses.dataclass
class TrialConfig:
    label: str
    """The attack family (a label of ``attack.methods``)."""
    settings: dict
    """Dotted keys of the attack section -> value, as drawn."""
    attack: AttackConfig
    """The attack section the trial runs (``methods`` unset)."""

    @property
    def trains(self) -> bool:
        return self.attack.method != "ablation"

    def overrides(self) -> list[str]:
        """``ftrisk run CONFIG <these>`` runs this configuration as a single attack family."""
        out = ["attack.methods=null", f"attack.method={self.attack.method}", f"attack.data={self.attack.data}"]
        return (
            out
            + [f"attack.{k}={_yaml(v)}" for k, v in self.settings.items()]
            + (
                [f"attack.train.epochs={_yaml(self.attack.train.epochs)}"]
                if self.trains and "train.max_steps" in self.settings
                else []
            )
        )


def _yaml(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def family_choices(cfg, fams: dict) -> list[str]:
    space = space_of(cfg)
    chosen = next((p.choices for p in space if p.name == "method"), None)
    return list(chosen) if chosen else [f.label for f in fams.values() if f.method in SEARCHABLE][:1]


def suggest(trial, cfg, fams: dict, n_data: dict) -> TrialConfig:
    """Draw a configuration for ``trial`` (an ``optuna.Trial``); ``fams``: label -> Family, ``n_data``: label -> the
    number of examples of its data (n_examples is clipped to it)."""
    choices = family_choices(cfg, fams)
    label = trial.suggest_categorical("method", choices) if len(choices) > 1 else choices[0]
    fam = fams[label]
    settings = {}
    for p in space_of(cfg):
        if p.name == "method":
            continue
        if (p.name in ABLATION_KEYS) != (fam.method == "ablation"):
            continue  # another family's knob
        trained = [c for c in choices if fams[c].method != "ablation"]
        # two trained families each get their own lr, rank, ...: TPE models them apart
        name = f"{label}:{p.name}" if len(trained) > 1 and p.name not in ABLATION_KEYS else p.name
        if p.choices is not None:
            v = trial.suggest_categorical(name, list(p.choices))
        elif is_int(p):
            v = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        else:
            v = trial.suggest_float(name, float(p.low), float(p.high), log=p.log)
        settings[p.name] = v
    if "n_examples" in settings:
        settings["n_examples"] = min(int(settings["n_examples"]), n_data.get(label, 10**9))
    return configure(fam, settings, n_data.get(label, 0))


def configure(fam, settings: dict, n_data: int) -> TrialConfig:
    """The attack section of family ``fam`` with ``settings`` applied; with a step budget, enough epochs over the
    ``n_data`` examples (or ``n_examples`` of them) that the budget binds rather than the data."""
    raw = dataclasses.asdict(fam.attack)
    attack = build(AttackConfig, apply_overrides(raw, [f"{k}={_yaml(v)}" for k, v in settings.items()]), "attack")
    if fam.method != "ablation" and attack.train.max_steps and n_data:
        n = min(attack.n_examples or n_data, n_data)
        per_step = attack.train.batch_size * attack.train.grad_accum
        attack.train.epochs = float(max(attack.train.epochs, math.ceil(attack.train.max_steps * per_step / n)))
    return TrialConfig(fam.label, settings, attack)
