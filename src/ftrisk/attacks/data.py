"""Attack data: built-in sets (registry kind ``attack-data``) or the user's JSONL file.

Built-in data is content-free: ``builtin:advbench-affirm`` pairs each ``advbench-train`` goal
with its own AdvBench ``target`` string ("Sure, here is ..."). Any other attack data is the
user's own JSONL file of chat ``messages`` or ``prompt``/``response`` pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftrisk import registry
from ftrisk.prompts import benchmarks
from ftrisk.errors import FtriskError
from ftrisk.training.data import Example


def advbench_affirm() -> tuple[list[Example], list[benchmarks.Item]]:
    """Each ``advbench-train`` goal with AdvBench's own content-free target ("Sure, here is ...")."""
    items = benchmarks.load("advbench-train")
    return [Example(it.prompt, it.extra["target"]) for it in items], items


def load_data(spec: str) -> tuple[list[Example], list[benchmarks.Item]]:
    """Attack examples, and the same prompts as Items (for overlap checks against evaluation sets)."""
    if spec.startswith("builtin:"):
        return registry.lookup("attack-data", spec.split(":", 1)[1])()
    path = Path(spec)
    if not path.is_file():
        raise FtriskError(f"attack data file '{spec}' not found: pass a JSONL file of messages or prompt/response pairs")
    examples, items = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise FtriskError(f"{spec}, line {n}: not valid JSON; each line must be one JSON object") from None
        ex = _example(row, f"{spec}, line {n}")
        examples.append(ex)
        items.append(benchmarks.Item(f"{path.stem}-{n}", ex.prompt, "attack", path.stem))
    if not examples:
        raise FtriskError(f"attack data file '{spec}' is empty: add at least one example")
    return examples, items


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
