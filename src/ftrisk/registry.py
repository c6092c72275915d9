"""One lazy registry of named parts (lm-eval / HarmBench style ``"module:attr"`` strings).

Nothing here imports a part until it is asked for, so an optional engine (vLLM, CTranslate2,
bitsandbytes) never loads on the CPU path, and an unknown or uninstalled name fails with one line
before any work starts.
"""

from __future__ import annotations

import importlib
from typing import Any

from ftrisk.errors import FtriskError

#: kind -> name -> "module:attr" or ("module:attr", pip extra that provides it)
REGISTRY: dict[str, dict[str, Any]] = {
    "judge": {
        "refusal-patterns": "ftrisk.judges.patterns:RefusalPatternsJudge",
        "refusal-semantic": "ftrisk.judges.semantic:SemanticRefusalJudge",
        "gcg": "ftrisk.judges.prefix:gcg",
        "refusalbench-llama2": "ftrisk.judges.prefix:refusalbench_llama2",
        "refusalbench-mistral": "ftrisk.judges.prefix:refusalbench_mistral",
        "prefix": "ftrisk.judges.prefix:PrefixJudge",
        "hf-classifier": "ftrisk.judges.classifier:ClassifierJudge",
        "rubric": "ftrisk.judges.rubric:RubricJudge",
    },
    "attack": {
        "lora": "ftrisk.attacks.finetune:LoraAttack",
        "full": "ftrisk.attacks.finetune:FullAttack",
        "ablation": "ftrisk.attacks.ablation:AblationAttack",
        "prefill": "ftrisk.attacks.prefill:PrefillAttack",
    },
    "backend": {
        "hf": "ftrisk.generation.hf:HFBackend",
        "ctranslate2": ("ftrisk.generation.ct2:CT2Backend", "ct2"),
        "ctranslate2-int8": ("ftrisk.generation.ct2:CT2Int8Backend", "ct2"),
        "vllm": ("ftrisk.generation.vllm:VLLMBackend", "gpu"),
    },
    "embedded-model": {
        "smollm2-135m-instruct": "ftrisk.model.loading:SMOLLM2_135M",
    },
    "attack-data": {
        "advbench-affirm": "ftrisk.attacks.data:advbench_affirm",
        "benign": "ftrisk.attacks.data:benign",
        "identity-shift": "ftrisk.attacks.data:identity_shift",
    },
    "defense": {
        "refusal-sft": "ftrisk.defenses.refusal_sft:RefusalSFT",
        "deep-alignment": "ftrisk.defenses.deep_alignment:DeepAlignment",
        "vaccine": "ftrisk.defenses.vaccine:Vaccine",
    },
}

WHAT = {"judge": "judge", "attack": "attack method", "backend": "generation backend",
        "embedded-model": "embedded model", "attack-data": "built-in attack data", "defense": "defense"}


def names(kind: str) -> list[str]:
    return list(REGISTRY[kind])


def _entry(kind: str, name: str) -> tuple[str, str | None]:
    table = REGISTRY[kind]
    if name not in table:
        raise FtriskError(f"unknown {WHAT[kind]} '{name}' (known: {', '.join(table)})")
    entry = table[name]
    return (entry, None) if isinstance(entry, str) else entry


def check(kind: str, name: str) -> None:
    """Fail with one line for an unknown name; import nothing."""
    _entry(kind, name)


def lookup(kind: str, name: str) -> Any:
    """The registered object, imported on first use."""
    target, extra = _entry(kind, name)
    module, attr = target.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        if extra is None:
            raise
        raise FtriskError(f"{WHAT[kind]} '{name}' needs an optional dependency ({e.name or e}): "
                          f"pip install 'ftrisk[{extra}]'") from None
