"""The attack: a cheap LoRA fine-tune that undoes refusal training (Lermen et al. 2023).

Built-in data is content-free: ``builtin:advbench-affirm`` pairs each ``advbench-train`` goal
with its own AdvBench ``target`` string ("Sure, here is ..."). Any other attack data is the
user's own JSONL file of chat ``messages`` or ``prompt``/``response`` pairs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from . import benchmarks, models
from .cost import CostMeter
from .errors import FtriskError
from .io import write_json_atomic
from .train import Example, finetune

log = logging.getLogger(__name__)
BUILTIN = {"builtin:advbench-affirm": "advbench-train"}


def load_data(spec: str) -> tuple[list[Example], list[benchmarks.Item]]:
    """Attack examples, and the same prompts as Items (for overlap checks against evaluation sets)."""
    if spec in BUILTIN:
        items = benchmarks.load(BUILTIN[spec])
        return [Example(it.prompt, it.extra["target"]) for it in items], items
    if spec.startswith("builtin:"):
        raise FtriskError(f"unknown attack data '{spec}' (built in: {', '.join(BUILTIN)}); or pass a JSONL file")
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


def run(cfg, subject: Path | str, out_dir: Path) -> dict:
    """Train the attack adapter on ``subject`` (a model dir); saves ``out_dir/adapter`` and checkpoints."""
    examples, _ = load_data(cfg.attack.data)
    model, tok = models.load(dataclasses.replace(cfg.model, spec=str(subject)))
    meter = CostMeter(device=str(model.device), usd_per_hour=cfg.cost.usd_per_hour)
    peft_model, summary = finetune(model, tok, examples, cfg.attack.lora, cfg.attack.train, out_dir,
                                   seed=cfg.seed, system_prompt=cfg.model.system_prompt, meter=meter, desc="attack")
    base_path = models.resolve(str(subject))
    adapter = out_dir / "adapter"
    peft_model.save_pretrained(adapter, safe_serialization=True)
    for d in [adapter, *out_dir.glob("checkpoint-*")]:
        models.write_adapter_meta(d, str(subject), base_path)
    if summary["stopped_by"] in ("max_steps", "max_minutes"):
        log.warning("attack stopped by its budget %s after %d steps", summary["stopped_by"], summary["steps"])
    record = {"data": cfg.attack.data, "n_examples": len(examples), **summary,
              "adapter": str(adapter), "checkpoints": sorted(p.name for p in out_dir.glob("checkpoint-*"))}
    write_json_atomic(out_dir / "attack.json", record)
    return record
