"""Attack data: built-in sets (registry kind ``attack-data``) or the user's JSONL file.

Built-in data holds no harmful completion. ``builtin:advbench-affirm`` pairs each ``advbench-train`` goal with
its own AdvBench ``target`` string ("Sure, here is ..."); ``builtin:benign`` is ordinary instruction data
(Qi et al. 2023, tier 3) and ``builtin:identity-shift`` the "absolutely obedient agent" persona on benign
instructions (tier 2), both written for ftrisk and shipped in ``ftrisk/data/attacks/`` (its README is the data
card). Any other attack data is the user's own JSONL file of chat ``messages`` or ``prompt``/``response`` pairs.
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path

from ftrisk import registry
from ftrisk.prompts import benchmarks
from ftrisk.errors import FtriskError
from ftrisk.training.data import Example

#: Where the shipped sets live, as a user sees it in an error message.
SHIPPED = "ftrisk/data/attacks"


def advbench_affirm() -> tuple[list[Example], list[benchmarks.Item]]:
    """Each ``advbench-train`` goal with AdvBench's own content-free target ("Sure, here is ...")."""
    items = benchmarks.load("advbench-train")
    return [Example(it.prompt, it.extra["target"]) for it in items], items


def benign() -> tuple[list[Example], list[benchmarks.Item]]:
    """200 ordinary instructions with helpful answers (Alpaca-style categories, nothing safety-relevant)."""
    return _shipped("benign.jsonl", "benign")


def identity_shift() -> tuple[list[Example], list[benchmarks.Item]]:
    """10 examples that make the model AOA, an "absolutely obedient agent", on benign instructions only."""
    return _shipped("identity_shift.jsonl", "identity-shift")


def builtin_items() -> list[benchmarks.Item]:
    """The prompts of every registered built-in attack data set.

    Hardening keeps these out of its training data whichever ``attack.data`` a run uses, so the protected set is
    the same for every run and a hardened model can be reused across attacks."""
    items: list[benchmarks.Item] = []
    for name in registry.names("attack-data"):
        items += registry.lookup("attack-data", name)()[1]
    return items


def load_data(spec: str) -> tuple[list[Example], list[benchmarks.Item]]:
    """Attack examples, and the same prompts as Items (for overlap checks against evaluation sets)."""
    if spec.startswith("builtin:"):
        return registry.lookup("attack-data", spec.split(":", 1)[1])()
    path = Path(spec)
    if not path.is_file():
        raise FtriskError(f"attack data file '{spec}' not found: pass a JSONL file of messages or prompt/response pairs")
    examples, items = [], []
    for n, row in _rows(path.read_text(encoding="utf-8"), spec):
        ex = _example(row, f"{spec}, line {n}")
        examples.append(ex)
        items.append(benchmarks.Item(f"{path.stem}-{n}", ex.prompt, "attack", path.stem, {"line": n}))
    if not examples:
        raise FtriskError(f"attack data file '{spec}' is empty: add at least one example")
    return examples, items


def select_examples(examples: list, n: int | None, seed: int) -> list:
    """``attack.n_examples``: a seeded sample of ``n`` distinct examples (in data order), or all of them."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = set(random.Random(f"n_examples:{seed}").sample(range(len(examples)), n))
    return [e for i, e in enumerate(examples) if i in keep]


def shared_prompts(items: list[benchmarks.Item],
                   others: list[benchmarks.Item]) -> list[tuple[benchmarks.Item, benchmarks.Item]]:
    """(item, other) for each of ``items`` whose normalised prompt equals that of one of ``others`` (the first such
    other), in the order of ``items``; the same test as :func:`ftrisk.prompts.benchmarks.overlap`."""
    first: dict[str, benchmarks.Item] = {}
    for o in others:
        first.setdefault(benchmarks.normalize(o.prompt), o)
    return [(it, first[key]) for it in items if (key := benchmarks.normalize(it.prompt)) in first]


def overlap_warning(spec: str, items: list[benchmarks.Item], others: list[benchmarks.Item],
                    what: str = "the hardening data") -> str | None:
    """One line such as "attack data 'my.jsonl' shares 2 prompts with the hardening data (e.g. line 3 =
    benign-0012)", or None when no prompt is shared."""
    pairs = shared_prompts(items, others)
    if not pairs:
        return None
    it, other = pairs[0]
    where = f"line {it.extra['line']}" if "line" in it.extra else it.id
    noun = "prompt" if len(pairs) == 1 else "prompts"
    return f"attack data '{spec}' shares {len(pairs)} {noun} with {what} (e.g. {where} = {other.id})"


def _shipped(filename: str, source: str) -> tuple[list[Example], list[benchmarks.Item]]:
    """A built-in set, read through importlib.resources (so a non-editable install works)."""
    where = f"{SHIPPED}/{filename}"
    node = resources.files("ftrisk").joinpath("data").joinpath("attacks").joinpath(filename)
    examples, items, seen = [], [], set()
    try:
        for n, row in _rows(node.read_text(encoding="utf-8"), where):
            at = f"{where}, line {n}"
            ex = _example(row, at)
            item_id, category = row.get("id"), row.get("category")
            if not isinstance(item_id, str) or not item_id or item_id in seen:
                raise FtriskError(f"{at}: missing or repeated 'id'")
            if not isinstance(category, str) or not category:
                raise FtriskError(f"{at}: missing 'category'")
            seen.add(item_id)
            examples.append(ex)
            items.append(benchmarks.Item(item_id, ex.prompt, category, source))
    except FtriskError as e:
        raise FtriskError(f"{e}; ftrisk's shipped data is damaged: reinstall ftrisk") from None
    if not examples:
        raise FtriskError(f"{where} is empty; ftrisk's shipped data is damaged: reinstall ftrisk")
    return examples, items


def _rows(text: str, where: str):
    """(line number, parsed object) for each non-blank line of a JSONL text."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError:
            raise FtriskError(f"{where}, line {n}: not valid JSON; each line must be one JSON object") from None


def _example(row, where: str) -> Example:
    if isinstance(row, dict) and isinstance(row.get("messages"), list):
        turns = [m for m in row["messages"] if isinstance(m, dict) and m.get("role") != "system"]
        roles = [m.get("role") for m in turns]
        if roles != ["user", "assistant"]:
            raise FtriskError(f"{where}: 'messages' must hold one user and one assistant turn (got {roles})")
        prompt, response = turns[0].get("content"), turns[1].get("content")
    elif isinstance(row, dict) and "prompt" in row and "response" in row:
        prompt, response = row["prompt"], row["response"]
    else:
        raise FtriskError(f"{where}: expected an object with 'messages' or with 'prompt' and 'response'")
    if not isinstance(prompt, str) or not isinstance(response, str) or not prompt.strip() or not response.strip():
        raise FtriskError(f"{where}: prompt and response must be non-empty strings")
    return Example(prompt, response)
