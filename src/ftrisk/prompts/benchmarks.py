"""Benchmark prompts: the vendored registry (``data/benchmarks.yaml``) and user prompt files.

Only prompts are read -- never completion columns; the only targets kept are AdvBench's and JailbreakBench's
content-free affirmatives ("Sure, here is ..."), for the built-in attack data and the prefill attack.  Data files are read through
:mod:`importlib.resources`, so a non-editable install works.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ftrisk.errors import FtriskError

CONTEXT_SEPARATOR = "\n\n---\n\n"  # HarmBench: context + separator + behavior
FILE_TYPES = (".csv", ".jsonl", ".json")  # user prompt files


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str
    category: str = "uncategorized"
    source: str = ""  # benchmark (registry) name, or the stem of a user file
    # Metadata columns named by the registry's `extra` (e.g. StrongREJECT's `source`).
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)


# --------------------------------------------------------------------------- registry


def _data(relpath: str):
    node = resources.files("ftrisk").joinpath("data")
    for part in relpath.split("/"):
        node = node.joinpath(part)
    return node


@functools.lru_cache(maxsize=None)
def _registry() -> dict:
    return yaml.safe_load(_data("benchmarks.yaml").read_text(encoding="utf-8"))


def names() -> list[str]:
    """Names of all registered benchmarks, in registry order."""
    return list(_registry())


def _unknown(name: str) -> str:
    return f"unknown benchmark {name!r} (known: {', '.join(names())})"


def spec(name: str) -> dict:
    """A copy of the registry entry for ``name``."""
    reg = _registry()
    if name not in reg:
        raise FtriskError(_unknown(name))
    return copy.deepcopy(reg[name])  # callers cannot edit the cached registry


def check_name(name: str) -> None:
    """Fail in one line unless ``name`` is a registered benchmark or can be a prompt file (a .csv, .jsonl or
    .json path, or any existing path: :func:`load_file` says what is wrong with it)."""
    p = Path(name)
    if name in _registry() or p.suffix.lower() in FILE_TYPES or p.exists():
        return
    raise FtriskError(f"{_unknown(name)}; or pass a .csv, .jsonl or .json prompt file")


def license_of(name: str) -> str:
    return str(spec(name)["license"])


def is_harmful(name: str) -> bool:
    return bool(spec(name)["harmful"])


def load(name: str, limit: int | None = None, seed: int = 0) -> list[Item]:
    """Items of a registered benchmark; ``limit`` takes a seeded sample, kept in original order."""
    return sample(list(_load_all(name)), limit, seed, name)


def sample(items: list, limit: int | None, seed: int = 0, what: str = "prompts") -> list:
    """A seeded sample of ``limit`` items in their original order (all of them when limit is None or >= n)."""
    if limit is None:
        return items
    if limit <= 0:
        raise FtriskError(f"limit for {what!r} must be a positive number of prompts, got {limit}")
    if limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


@functools.lru_cache(maxsize=None)
def _load_all(name: str) -> tuple[Item, ...]:
    s = spec(name)
    where = f"benchmark {name!r} ({s['path']})"
    text = _data(f"benchmarks/{s['path']}").read_bytes().decode("utf-8")
    rows = {"csv": _csv_rows, "jsonl": _jsonl_rows, "json": _json_rows}[s["format"]](text, where)
    wanted = None
    if s.get("split"):
        split = json.loads(_data(f"benchmarks/{s['split']['file']}").read_text(encoding="utf-8"))
        wanted = set(split[s["split"]["key"]])
    items = []
    for i, (_line, row) in enumerate(rows):
        if any(row.get(col) not in allowed for col, allowed in s["filters"].items()):
            continue
        key = i if s["id_column"] is None else row[s["id_column"]]
        item_id = f"{s['id_prefix']}{key}"
        if wanted is not None and item_id not in wanted:
            continue
        prompt = row[s["prompt"]]
        if s.get("context") and row.get(s["context"], "").strip():
            prompt = row[s["context"]] + CONTEXT_SEPARATOR + prompt
        category = row[s["category"]] if s["category"] else "uncategorized"
        extra = {col: row[col] for col in s["extra"]}
        items.append(Item(item_id, prompt, category or "uncategorized", name, extra))
    if len(items) != s["count"]:
        raise FtriskError(f"{where}: got {len(items)} items, registry says {s['count']}; "
                          "the vendored data or benchmarks.yaml is corrupt, reinstall ftrisk")
    _check_unique(items, where)
    return tuple(items)


# --------------------------------------------------------------------------- parsing


def _csv_rows(text: str, where: str) -> list[tuple[int, dict]]:
    """(line number, row dict) per data row; strict parsing, no newline translation."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise FtriskError(f"{where}: no CSV header row; the first line must name the columns")
        rows = []
        for fields in reader:
            if not fields:  # blank line
                continue
            if len(fields) != len(header):
                raise FtriskError(f"{where}: bad CSV at line {reader.line_num}: {len(fields)} "
                                  f"fields, header has {len(header)}; quote fields containing commas")
            rows.append((reader.line_num, dict(zip(header, fields))))
    except csv.Error as e:
        raise FtriskError(f"{where}: bad CSV at line {reader.line_num}: {e}; fix the quoting") from None
    return rows


def _jsonl_rows(text: str, where: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise FtriskError(f"{where}: line {n} is not valid JSON ({e.msg}); "
                              "write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise FtriskError(f"{where}: line {n} is not a JSON object; write one object per line")
        rows.append((n, obj))
    return rows


def _json_rows(text: str, where: str) -> list[tuple[int, dict]]:
    data = _parse_json(text, where)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise FtriskError(f"{where}: expected a JSON list of objects")
    return [(0, r) for r in data]


def _parse_json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FtriskError(f"{where}: invalid JSON at line {e.lineno} ({e.msg})") from None


def _check_unique(items: list[Item], where: str) -> None:
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise FtriskError(f"{where}: duplicate id {it.id!r}; every prompt needs a unique id")
        seen.add(it.id)


# --------------------------------------------------------------------------- user files


def builtin_benign() -> list[Item]:
    """The shipped benign instructions (``data/hardening/benign.jsonl``): hardening's ``benign: builtin`` and
    ablation's ``harmless: builtin``."""
    with resources.as_file(_data("hardening/benign.jsonl")) as p:
        return load_file(p)


def load_file(path, prompt_column: str | None = None,
              category_column: str | None = None) -> list[Item]:
    """Prompts from a user file: .csv, .jsonl, or .json ({category: [prompt, ...]})."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in FILE_TYPES:
        check_name(str(path))  # neither a registered benchmark nor a file
        raise FtriskError(f"{p}: unsupported prompt file type {p.suffix or '(none)'!r}; "
                          "use .csv, .jsonl or .json")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FtriskError(f"{p}: prompt file not found; check the path") from None
    except UnicodeDecodeError:
        raise FtriskError(f"{p}: not UTF-8 text; save the file as UTF-8") from None
    except OSError as e:
        raise FtriskError(f"{p}: cannot read prompt file ({e.strerror}); check the path "
                          "and permissions") from None
    if not text.strip():
        raise FtriskError(f"{p}: prompt file is empty; add at least one prompt")
    where, stem = str(p), p.stem
    if suffix == ".json":
        if prompt_column or category_column:
            raise FtriskError(f"{p}: prompt/category columns do not apply to .json files "
                              "(an object mapping category -> list of prompts)")
        items = _refusalbench_items(_parse_json(text, where), where, stem)
    else:
        pcol, ccol = prompt_column or "prompt", category_column or "category"
        rows = _csv_rows(text, where) if suffix == ".csv" else _jsonl_rows(text, where)
        if not rows:
            raise FtriskError(f"{p}: no prompts, only a header; add at least one row")
        if suffix == ".csv":
            columns = list(rows[0][1])
            for col, what in ((pcol, "prompt"), (category_column, "category")):
                if col and col not in columns:
                    raise FtriskError(f"{p}: no {what} column {col!r}; the columns are: "
                                      f"{', '.join(columns)}; name the right one")
        items = []
        for i, (line, row) in enumerate(rows):
            if pcol not in row:
                raise FtriskError(f"{p}: line {line} has no {pcol!r} key; every object needs one")
            prompt = row[pcol]
            if not isinstance(prompt, str) or not prompt.strip():
                raise FtriskError(f"{p}: line {line}: empty {pcol!r}; every prompt needs text")
            item_id = str(row["id"]) if row.get("id") not in (None, "") else f"{stem}-{i}"
            category = str(row.get(ccol) or "uncategorized")
            items.append(Item(item_id, prompt, category, stem))
    _check_unique(items, where)
    return items


def _refusalbench_items(data, where: str, stem: str) -> list[Item]:
    if not isinstance(data, dict) or not data:
        raise FtriskError(f"{where}: expected a JSON object mapping category -> list of prompts")
    items = []
    for category, prompts in data.items():
        if not isinstance(prompts, list):
            raise FtriskError(f"{where}: category {category!r} must map to a list of prompts")
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise FtriskError(f"{where}: category {category!r} item {i}: empty or non-text "
                                  "prompt; every prompt needs text")
            items.append(Item(f"{stem}-{category}-{i}", prompt, category, stem))
    return items


# --------------------------------------------------------------------------- overlap


def normalize(text: str) -> str:
    """Lower-case, keep letters/digits/whitespace only, collapse whitespace to single spaces."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c.isspace())
    return re.sub(r"\s+", " ", kept).strip()


def overlap(items: list[Item], others: list[Item]) -> set[str]:
    """Ids in ``items`` whose normalized prompt equals the normalized prompt of any of ``others``."""
    seen = {normalize(o.prompt) for o in others}
    return {it.id for it in items if normalize(it.prompt) in seen}
