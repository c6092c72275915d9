"""attack.methods: families resolved from the config, checked before any model loads, and keyed so a single-method
run's attack stage keeps its key."""

import dataclasses

import pytest

from ftrisk import config
from ftrisk.errors import FtriskError
from ftrisk.pipeline.run import attack_identity


def _fams(*overrides):
    return config.families(config.load("configs/demo.yaml", list(overrides)).attack)


def test_plain_method_is_one_primary_family():
    fams = _fams("attack.methods=null", "attack.method=full")
    assert [(f.label, f.method, f.primary) for f in fams] == [("full", "full", True)]
    assert fams[0].attack.methods is None


def test_strings_and_mappings_resolve_to_their_own_attack_section():
    cfg = config.from_dict({"attack": {"train": {"lr": 2e-4}, "methods": [
        "lora", {"method": "lora", "data": "builtin:benign"},
        {"method": "lora", "label": "aoa", "data": "builtin:identity-shift", "overrides": ["train.epochs=10", "lora.r=4"]},
        "ablation", "prefill"]}})
    fams = config.families(cfg.attack)
    assert [f.label for f in fams] == ["lora", "lora-benign", "aoa", "ablation", "prefill"]
    assert [f.primary for f in fams] == [True, False, False, False, False]
    assert [f.trains for f in fams] == [True, True, True, False, False]
    aoa = fams[2].attack
    assert (aoa.data, aoa.train.epochs, aoa.lora.r, aoa.train.lr) == ("builtin:identity-shift", 10.0, 4, 2e-4)
    assert fams[0].attack.train.epochs == 1.0 and fams[0].attack.lora.r == 8  # overrides stay with their family


@pytest.mark.parametrize("methods, message", [
    (["lora", "nosuch"], "attack.methods[1].method"),
    (["lora", "lora"], "two attack families are named 'lora'"),
    ([{"method": "lora", "overrides": ["train.nosuch=1"]}], "attack.methods[0].overrides"),
    ([{"method": "lora", "overrides": ["data=x.jsonl"]}], "set method and data as the family's own keys"),
    ([{"method": "lora", "label": "a/b"}], "without '/'"),
])
def test_bad_families_fail_in_one_line_naming_the_key(methods, message):
    with pytest.raises(FtriskError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        config.from_dict({"attack": {"methods": methods}})
    assert "\n" not in str(e.value)


def test_bad_ablation_settings_name_the_key():
    with pytest.raises(FtriskError, match="attack.ablation.kl_max"):
        config.from_dict({"attack": {"methods": ["ablation"], "ablation": {"kl_max": 0}}})
    with pytest.raises(FtriskError, match="attack.ablation.harmless"):
        config.from_dict({"attack": {"methods": ["ablation"], "ablation": {"harmless": "nosuchbench"}}})


def test_a_single_method_runs_attack_key_is_as_before():
    """The attack stage of a plain LoRA run hashes the same fields as before families existed, so finished runs
    resume instead of training again."""
    a = config.load("configs/demo.yaml", ["attack.methods=null"]).attack
    before = {k: v for k, v in dataclasses.asdict(a).items()
              if k not in ("seeds", "eval_at", "methods", "ablation", "n_examples")}  # n_examples: added later
    before["train"] = {k: v for k, v in before["train"].items() if k != "scheduler"}  # added later
    assert attack_identity(a) == before
    assert attack_identity(dataclasses.replace(a, n_examples=16))["n_examples"] == 16
    cosine = dataclasses.replace(a, train=dataclasses.replace(a.train, scheduler="cosine"))
    assert attack_identity(cosine)["train"]["scheduler"] == "cosine"  # a new value is part of the key
    assert attack_identity(dataclasses.replace(a, method="prefill")) == {"method": "prefill"}
    abl = attack_identity(dataclasses.replace(a, method="ablation"))
    assert set(abl) == {"method", "ablation"}  # its key ignores the LoRA and training settings it does not use
