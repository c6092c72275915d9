"""A run config from a YAML file (or a mapping) and dotted overrides, checked; and back to YAML."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from ftrisk.config.coerce import build
from ftrisk.config.overrides import apply_overrides
from ftrisk.config.schema import JudgeSpec, RunConfig
from ftrisk.config.checks import validate
from ftrisk.errors import FtriskError

yaml.SafeDumper.add_representer(JudgeSpec, lambda dumper, v: dumper.represent_str(str(v)))


def from_dict(data: dict) -> RunConfig:
    """A checked config from a raw mapping (types, then ranges and names)."""
    cfg = build(RunConfig, data)
    validate(cfg)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        data = _read_yaml(p)
        data.setdefault("name", p.stem)
    return from_dict(apply_overrides(data, list(overrides)))


def _read_yaml(p: Path) -> dict:
    if p.is_dir():
        raise FtriskError(f"config file '{p}' is a directory: pass the path of a YAML config file (see configs/)")
    if not p.is_file():
        raise FtriskError(f"config file '{p}' not found: pass the path of a YAML config (see configs/)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as e:
        raise FtriskError(f"config file '{p}' is unreadable: {e}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise FtriskError(f"config file '{p}' is not valid YAML{where}: fix the syntax") from None
    if not isinstance(data, dict):
        raise FtriskError(f"config file '{p}': expected a mapping of keys at the top level")
    return data


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
