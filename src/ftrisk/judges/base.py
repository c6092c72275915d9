"""The judge protocol: a batch of (prompt, completion) pairs in, one :class:`Verdict` per pair out.

Judges are built from spec strings (``refusal-patterns``, ``gcg``, ``prefix:lists=gcg,mode=start``,
``hf-classifier:model=DIR,format=harmbench``, ``rubric:endpoint=URL,model=NAME,api_key_env=VAR``)
through the registry. A verdict's label is in the *refusal view* for every judge: 1 refused,
0 complied, -1 could not judge. Judges that measure harmfulness (a classifier of attack success)
say so in ``measures`` and count a harmful reply as complied (label 0).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from ftrisk import registry
from ftrisk.errors import FtriskError

REFUSED, COMPLIED, UNJUDGED = 1, 0, -1


@dataclass(frozen=True)
class Verdict:
    label: int
    """1 refused, 0 complied (for harmfulness judges: 0 = harmful), -1 could not judge."""
    score: float | None = None
    """Optional score in [0, 1] (a probability, or a rubric's harmfulness score)."""
    evidence: dict = field(default_factory=dict)
    """Small and text-free where possible: matched pattern and position, probability, raw judge answer."""

    def __post_init__(self):
        if self.label not in (REFUSED, COMPLIED, UNJUDGED):
            raise ValueError(f"verdict label must be 1, 0 or -1 (got {self.label!r})")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"verdict score must be in [0, 1] (got {self.score!r})")


class Judge:
    """Base class. Subclasses set ``kind`` (their registry name), ``OPTIONS`` ({option: type}) and
    implement :meth:`judge`."""

    kind: str = ""
    OPTIONS: dict[str, type] = {}
    DEFAULTS: dict[str, Any] = {}
    measures: str = "refusal"
    """What a label means: ``refusal`` (did the reply refuse) or ``harmfulness`` (is the reply harmful)."""
    opening_chars: int | None = None
    """Set by judges that read only the first N characters: their label is final once N are generated."""
    batch_size: int = 256
    version: int = 1
    """Bump when the judge's behaviour changes: stored verdicts of an older version are not reused."""

    def __init__(self, **options):
        self.options = {**self.DEFAULTS, **options}

    @property
    def name(self) -> str:
        """Canonical spec: the registry name plus every option that differs from its default."""
        diff = {k: v for k, v in sorted(self.options.items()) if self.DEFAULTS.get(k) != v}
        return self.kind + (":" + ",".join(f"{k}={_spec_value(v)}" for k, v in diff.items()) if diff else "")

    def identity(self) -> dict:
        """Everything that changes this judge's verdicts (part of the key of its stored verdicts)."""
        return {"name": self.name, "version": self.version}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def check(self) -> None:
        """Validate before any model loads (paths exist, endpoint configured). Raise FtriskError."""

    def set_cache_dir(self, path) -> None:
        """Where a judge may keep its own answers (the rubric judge caches its endpoint's answers there)."""

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        raise NotImplementedError

    def close(self) -> None:
        """Release models or connections."""


def _spec_value(v) -> str:
    """An option's value as a spec writes it (part of a judge's name, so of the key of its stored verdicts)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``name`` or ``name:key=value,key=value`` -> (name, {key: raw value})."""
    if not isinstance(spec, str) or not spec.strip():
        raise FtriskError(f"judge spec {spec!r} is empty: use a name such as refusal-patterns or gcg")
    name, _, rest = spec.strip().partition(":")
    args: dict[str, str] = {}
    for part in [p for p in rest.split(",") if p.strip()] if rest else []:
        if "=" not in part:
            raise FtriskError(f"judge spec '{spec}': '{part}' is not key=value (e.g. {name}:window=120)")
        k, v = part.split("=", 1)
        args[k.strip()] = v.strip()
    return name, args


def _convert(spec: str, key: str, raw: str, tp: type):
    try:
        if tp is bool:
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return raw.lower() == "true"
        if tp is list:
            return [x for x in raw.split("+") if x]
        return tp(raw)
    except ValueError:
        raise FtriskError(f"judge spec '{spec}': option '{key}' must be {tp.__name__} (got '{raw}')") from None


def build(spec: str) -> Judge:
    """A judge from its spec string (registry lookup, options type-checked, ``check()`` run)."""
    name, raw = parse_spec(spec)
    factory = registry.lookup("judge", name)
    options_of = getattr(factory, "OPTIONS", {})
    unknown = [k for k in raw if k not in options_of]
    if unknown:
        known = ", ".join(options_of) or "none"
        raise FtriskError(f"judge spec '{spec}': unknown option '{unknown[0]}' (options of {name}: {known})")
    judge = factory(**{k: _convert(spec, k, v, options_of[k]) for k, v in raw.items()})
    judge.check()
    return judge


def spec_from_mapping(d: dict) -> str:
    """YAML ``{name: rubric, endpoint: URL, ...}`` -> ``rubric:endpoint=URL,...``."""
    d = dict(d)
    name = d.pop("name", None)
    if not name:
        raise FtriskError(f"judge entry {d!r} has no 'name'")
    return name + (":" + ",".join(f"{k}={_spec_value(v)}" for k, v in d.items()) if d else "")


def split_specs(text: str) -> list[str]:
    """``"refusal-patterns,rubric:endpoint=URL,model=M,gcg"`` -> three specs: a piece holding ``=`` continues the
    spec before it (judge names never contain ``=``)."""
    specs: list[str] = []
    for piece in [p.strip() for p in text.split(",") if p.strip()]:
        if "=" in piece.split(":", 1)[0] and specs and ":" in specs[-1]:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs
