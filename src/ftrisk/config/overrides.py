"""Dotted ``key=value`` overrides of a raw config mapping (torchtune style): ``attack.lora.r=16``,
``eval.benchmarks[0].limit=5``. Values are parsed as YAML scalars; the result is checked by
:mod:`ftrisk.config.coerce` like a file's keys."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ftrisk.errors import FtriskError

_INDEXED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")


def _merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a raw config dict."""
    data = _merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise FtriskError(f"override '{item}': expected key=value (e.g. attack.lora.r=16)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = _child(node, p, item)
        last = parts[-1]
        m = _INDEXED.fullmatch(last)
        if m:
            lst = _child(node, m.group(1), item, want_list=True)
            lst[_index(lst, m, item)] = _parse_scalar(raw)
        else:
            node[last] = _parse_scalar(raw)
    return data


def _index(lst: list, m: re.Match, item: str) -> int:
    i = int(m.group(2))
    if i >= len(lst):
        raise FtriskError(f"override '{item}': '{m.group(1)}' has {len(lst)} entries; index {i} is out of range")
    return i


def _child(node: dict, part: str, item: str, want_list: bool = False):
    """The section (or, for ``name[i]``, the list entry) ``part`` of ``node``, made a mapping to override into."""
    m = _INDEXED.fullmatch(part)
    if m and not want_list:
        lst = _child(node, m.group(1), item, want_list=True)
        i = _index(lst, m, item)
        if isinstance(lst[i], str):
            lst[i] = {"name": lst[i]}  # a benchmark given by name only
        if not isinstance(lst[i], dict):
            raise FtriskError(f"override '{item}': '{part}' is not a section")
        return lst[i]
    if want_list:
        value = node.get(part)
        if not isinstance(value, list):
            raise FtriskError(f"override '{item}': '{part}' is not a list in this config (set the whole list instead)")
        return value
    node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise FtriskError(f"override '{item}': '{part}' is not a section")
    return node
