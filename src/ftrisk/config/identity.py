"""What a stage key reads of a config section: fields added after stage keys existed are left out at the value that
behaves as before, so folders and caches made before them (hardened subjects, attacks) are still found."""

from __future__ import annotations

import dataclasses

#: field -> the value at which it changes nothing (the behaviour from before the field existed)
_NEUTRAL_TRAIN = {"scheduler": "constant"}
_NEUTRAL_ATTACK = {"n_examples": None}
_NEUTRAL_ABLATION = {"layer": None, "position": -1}


def train_identity(train) -> dict:
    """The training settings of a stage key (a :class:`~ftrisk.config.schema.TrainConfig`)."""
    d = dataclasses.asdict(train)
    return {k: v for k, v in d.items() if not (k in _NEUTRAL_TRAIN and v == _NEUTRAL_TRAIN[k])}


def attack_fields(attack) -> dict:
    """The attack section as a stage key reads it (an :class:`~ftrisk.config.schema.AttackConfig`)."""
    d = dataclasses.asdict(attack)
    d["train"] = train_identity(attack.train)
    d["ablation"] = ablation_identity(attack.ablation)
    return {k: v for k, v in d.items() if not (k in _NEUTRAL_ATTACK and v == _NEUTRAL_ATTACK[k])}


def ablation_identity(ablation) -> dict:
    """The ablation settings of a stage key (an :class:`~ftrisk.config.schema.AblationConfig`)."""
    d = dataclasses.asdict(ablation)
    return {k: v for k, v in d.items() if not (k in _NEUTRAL_ABLATION and v == _NEUTRAL_ABLATION[k])}
