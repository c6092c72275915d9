"""The attack families of a run: ``attack.methods`` (or ``attack.method`` alone), each resolved to its own
:class:`~ftrisk.config.schema.AttackConfig` (the attack section with the family's method, data and overrides)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from ftrisk import registry
from ftrisk.config.coerce import build
from ftrisk.config.overrides import apply_overrides
from ftrisk.config.schema import AttackConfig, AttackFamily
from ftrisk.errors import FtriskError

#: methods that change no weight and train nothing: one point, no seeds
UNTRAINED = ("ablation", "prefill")


@dataclass(frozen=True)
class Family:
    label: str
    """Its name in results.json and the reports."""
    attack: AttackConfig
    """The attack section as this family runs it (``methods`` unset)."""
    primary: bool
    """The first family: its points keep the plain stage names (``attacked``, ``step-N``, ``seed-S/...``)."""

    @property
    def method(self) -> str:
        return self.attack.method

    @property
    def trains(self) -> bool:
        return self.attack.method not in UNTRAINED


def _data_name(spec: str) -> str:
    return spec.split(":", 1)[1] if spec.startswith("builtin:") else spec.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _one(base: AttackConfig, fam: AttackFamily, i: int) -> tuple[str, AttackConfig]:
    key = f"attack.methods[{i}]"
    try:
        registry.check("attack", fam.method)
    except FtriskError as e:
        raise FtriskError(f"config key '{key}.method': {e}") from None
    raw = dataclasses.asdict(base)
    raw.pop("methods")
    raw["method"] = fam.method
    if fam.data is not None:
        raw["data"] = fam.data
    for item in fam.overrides:
        if "=" not in item or item.split("=", 1)[0].strip().split(".")[0] in ("method", "methods", "data"):
            raise FtriskError(f"config key '{key}.overrides': '{item}' must be key=value of the attack section "
                              f"(e.g. train.lr=2e-5); set method and data as the family's own keys")
    try:
        cfg = build(AttackConfig, apply_overrides(raw, list(fam.overrides)), "attack")
    except FtriskError as e:
        raise FtriskError(f"config key '{key}.overrides': {e}") from None
    label = fam.label or (fam.method if fam.data is None else f"{fam.method}-{_data_name(fam.data)}")
    return label, cfg


def families(attack: AttackConfig) -> list[Family]:
    """Every family of ``attack`` in order; labels distinct (else one line naming the two)."""
    if not attack.methods:
        plain = copy.deepcopy(attack)
        plain.methods = None
        return [Family(attack.method, plain, True)]
    out: list[Family] = []
    for i, fam in enumerate(attack.methods):
        label, cfg = _one(attack, fam, i)
        if any(f.label == label for f in out):
            raise FtriskError(f"config key 'attack.methods[{i}]': two attack families are named '{label}': "
                              f"give one a distinct 'label'")
        if "/" in label or not label.strip():
            raise FtriskError(f"config key 'attack.methods[{i}].label': '{label}' must be a non-empty name without '/'")
        out.append(Family(label, cfg, not out))
    return out
