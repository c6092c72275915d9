"""Typed run configuration: YAML file + dotted ``key=value`` overrides (``ftrisk run configs/demo.yaml
attack.lora.r=16``). Unknown keys and wrong types are an error that names the key.

:mod:`.schema` holds the dataclasses (a docstring per field), :mod:`.files` reads and writes YAML,
:mod:`.overrides` applies dotted overrides, :mod:`.coerce` checks types and :mod:`.checks` ranges and names.
"""

from ftrisk.config.files import dump, from_dict, load, to_dict
from ftrisk.config.overrides import apply_overrides
from ftrisk.config.schema import (AblationConfig, AttackConfig, AttackFamily, BenchmarkRef, CapabilityConfig, CostConfig, EvalConfig,
                                  GenerationConfig, HardenConfig, JudgeSpec, LoraConfig, ModelConfig, ReportConfig,
                                  RunConfig, TrainConfig)
from ftrisk.config.checks import validate
from ftrisk.config.families import Family, families

__all__ = ["AblationConfig", "AttackConfig", "AttackFamily", "Family", "families", "BenchmarkRef", "CapabilityConfig", "CostConfig", "EvalConfig", "GenerationConfig",
           "HardenConfig", "JudgeSpec", "LoraConfig", "ModelConfig", "ReportConfig", "RunConfig", "TrainConfig",
           "apply_overrides", "dump", "from_dict", "load", "to_dict", "validate"]
