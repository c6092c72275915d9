"""One stage-key scheme: a stage's key is the hash of every input it reads, computed here.

A stage folder holds ``stage.json`` = {key, done, result}. :func:`open_stage` returns the stored
result when the key matches and the stage finished; a folder whose key differs is cleared (its
partial work belongs to other inputs); an unfinished one with the same key keeps its partial work
(completions, training checkpoints) for the stage to resume from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ftrisk.io import read_json, write_json_atomic

FORMAT = 2  # bump when a stage's stored result changes shape


def stage_key(kind: str, **inputs) -> str:
    blob = json.dumps({"kind": kind, "format": FORMAT, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def open_stage(d: Path, key: str) -> dict | None:
    state = read_json(d / "stage.json")
    if state and state.get("key") == key and state.get("done"):
        return state["result"]
    if state and state.get("key") != key:
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    write_json_atomic(d / "stage.json", {"key": key, "done": False})
    return None


def stage_state(d: Path) -> dict | None:
    return read_json(Path(d) / "stage.json")


def close_stage(d: Path, key: str, result: dict) -> dict:
    write_json_atomic(d / "stage.json", {"key": key, "done": True, "result": result})
    return result
