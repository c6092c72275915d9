"""Generation, resumable, for any backend: completions are appended to a JSONL file as each batch
finishes; a re-run skips ids already there, so an interrupted stage never generates a sample twice.
Completions are never printed.

A row of an item with a prefill (:func:`ftrisk.generation.base.prefill_of`) carries ``"prefill"``: the prefix the
reply was started from, so a reader sees it (``completion`` is only what the model added); a stored row counts as
done only when its prefill is the item's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ftrisk.generation.base import prefill_of
from ftrisk.io import append_jsonl, jsonl_line, read_jsonl, write_json_atomic, write_text_atomic


def generate(backend, items: list, out_path: str | Path, *, max_new_tokens: int, desc: str = "generate",
             record_path: str | Path | None = None, stop: Callable[[str], bool] | None = None) -> dict[str, dict]:
    """A completion for every item not yet in ``out_path``; returns all rows by id. The backend's
    generation record goes to ``record_path`` (default: next to the completions). ``stop``: see
    :meth:`ftrisk.generation.base.Backend.generate`."""
    from tqdm.auto import tqdm

    out_path = Path(out_path)
    wanted = {it.id: prefill_of(it) for it in items}
    done = {r["id"]: r for r in read_jsonl(out_path)
            if r.get("id") in wanted and (r.get("prefill") or "") == wanted[r["id"]]}
    if out_path.exists():  # drop a torn last line or rows of items no longer asked for
        write_text_atomic(out_path, "".join(jsonl_line(r) for r in done.values()))
    todo = [it for it in items if it.id not in done]
    if todo:
        write_json_atomic(record_path or out_path.with_name("generation.json"), backend.record())
    by_id = {it.id: it for it in todo}
    bar = tqdm(total=len(todo), desc=desc, unit="prompt", leave=False, disable=not todo)
    early = {"stop": stop} if stop else {}
    for rows in backend.generate(todo, max_new_tokens=max_new_tokens, desc=desc, **early) if todo else ():
        rows = [stored(r, by_id[r["id"]]) for r in rows]
        append_jsonl(out_path, rows)
        done.update({r["id"]: r for r in rows})
        bar.update(len(rows))
    bar.close()
    return {it.id: done[it.id] for it in items}


def stored(row: dict, item) -> dict:
    """A backend's row as the file keeps it: what was asked (category, prompt, the prefill if any), then the reply."""
    prefix = prefill_of(item)
    return {"id": row["id"], "category": item.category, "prompt": item.prompt, **({"prefill": prefix} if prefix else {}),
            **{k: v for k, v in row.items() if k != "id"}}
