"""A config section from a raw mapping: every value checked against its field's annotation and converted.

Unknown keys and wrong types are an error that names the dotted key (``attack.lora.rank``).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from typing import Any

from ftrisk.config.schema import AttackFamily, BenchmarkRef, JudgeSpec, SweepParam
from ftrisk.errors import FtriskError
from ftrisk.judges.base import spec_from_mapping

_EXP_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it; raise naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], key)
    if tp is JudgeSpec:
        if isinstance(value, dict):
            return JudgeSpec(spec_from_mapping(value))
        if isinstance(value, str):
            return JudgeSpec(value)
        raise FtriskError(f"config key '{key}': expected a judge spec string or mapping, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and tp is BenchmarkRef:
            value = {"name": value}
        if isinstance(value, str) and tp is AttackFamily:
            value = {"method": value}
        if not isinstance(value, dict):
            raise FtriskError(f"config key '{key}': expected a mapping, got {value!r}")
        return build(tp, value, key)
    if tp is Any:
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if item_tp is SweepParam and isinstance(value, dict):  # YAML mapping form: name -> choices | {low, high, log}
            value = [{"name": k, **(v if isinstance(v, dict) else {"choices": v})} for k, v in value.items()]
        if isinstance(value, str) and item_tp is str:
            value = [v for v in value.split(",") if v]
        elif isinstance(value, str) and item_tp is JudgeSpec:
            value = [value]  # specs hold commas: several judges are a YAML list
        if not isinstance(value, list):
            raise FtriskError(f"config key '{key}': expected a list, got {value!r}")
        return [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, tp, key)


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise FtriskError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise FtriskError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXP_FLOAT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads "1e-4" without a dot as a string
        raise FtriskError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise FtriskError(f"config key '{key}': expected a string, got {value!r}")
    raise FtriskError(f"config key '{key}': unsupported type {_type_name(tp)}")


def build(cls: type, data: dict, prefix: str = "", base: Any = None) -> Any:
    """Build ``cls`` from ``data`` on top of ``base`` (a section's own defaults)."""
    obj = copy.deepcopy(base) if base is not None else cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise FtriskError(f"unknown config key '{dotted}' (known: {', '.join(sorted(names))})")
        default = getattr(obj, key)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = build(type(default), value, dotted, base=default)
        else:
            value = coerce(value, hints[key], dotted)
        setattr(obj, key, value)
    return obj
