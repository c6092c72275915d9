"""The prompts of the direction search: harmful and harmless sets, disjoint from every evaluation set, split by the
seed into train prompts (the mean activations) and validation prompts (choosing the direction)."""

from __future__ import annotations

import random

from ftrisk.config.schema import AblationConfig
from ftrisk.errors import FtriskError
from ftrisk.prompts import benchmarks

def load(spec: str, builtin: bool = False) -> list[benchmarks.Item]:
    """A registry benchmark, a prompt file, or (``builtin``) the shipped benign instructions."""
    if builtin:
        return benchmarks.builtin_benign()
    return benchmarks.load(spec) if spec in benchmarks.names() else benchmarks.load_file(spec)


def check_disjoint(key: str, name: str, items: list, protected: list) -> None:
    """One line when ``items`` (``attack.ablation.<key>`` = ``name``) share a prompt with an evaluation set."""
    shared = benchmarks.overlap(items, protected)
    if not shared:
        return
    mine = {benchmarks.normalize(it.prompt): it.id for it in items if it.id in shared}
    hits = [o for o in protected if benchmarks.normalize(o.prompt) in mine]
    source = hits[0].source or "?"
    n = len({benchmarks.normalize(o.prompt) for o in hits if o.source == hits[0].source})
    example = mine[benchmarks.normalize(hits[0].prompt)]
    raise FtriskError(f"attack.ablation.{key} '{name}' shares {n} prompts with evaluation set '{source}' "
                      f"(e.g. id {example}): choose disjoint prompts")


def prompt_sets(cfg, protected: list) -> dict[str, list]:
    """{"harmful": items, "harmless": items} of an AblationConfig, each disjoint from ``protected`` and large enough
    for ``n_train + n_val``. The default sets are made disjoint by leaving out their prompts that also occur in an
    evaluation set (AdvBench's training goals share a few with JailbreakBench); a set the user names must be
    disjoint already (else one line naming both)."""
    need = cfg.n_train + cfg.n_val
    defaults = AblationConfig()
    sets = {}
    for key, name in (("harmful", cfg.harmful), ("harmless", cfg.harmless)):
        items = load(name, builtin=key == "harmless" and name == "builtin")
        if name == getattr(defaults, key):
            shared = benchmarks.overlap(items, protected)
            items = [it for it in items if it.id not in shared]
        check_disjoint(key, name, items, protected)
        if len(items) < need:
            raise FtriskError(f"attack.ablation.{key} '{name}' has {len(items)} prompts, fewer than n_train + n_val "
                              f"= {need}: lower attack.ablation.n_train or n_val, or give more prompts")
        sets[key] = items
    return sets


def split(sets: dict[str, list], n_train: int, n_val: int, seed: int) -> dict[str, list]:
    """A seeded draw of ``n_train`` train and ``n_val`` validation prompts (disjoint) from each set: keys
    harmful_train, harmless_train, harmful_val, harmless_val."""
    out = {}
    for key, items in sets.items():
        picked = random.Random(f"ablation:{seed}:{key}").sample(items, n_train + n_val)
        out[f"{key}_train"], out[f"{key}_val"] = picked[:n_train], picked[n_train:]
    return out
