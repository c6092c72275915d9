"""Run any judge over stored completions, resumably (the judging half of "generation separate from judging").

Verdicts go to one JSONL file per (judge, benchmark), appended batch by batch, each row keyed by the
item id and the sha256 of the completion it judged. A re-run reuses every stored verdict whose
completion is unchanged and judges only the rest, so a crash mid-judging loses at most one batch and
nothing is judged twice; adding a judge to a finished run judges only with that judge. A -1 verdict
whose evidence says ``transient`` (a timeout, a dropped connection) is judged again on the next run.
The files hold labels and evidence, never the completion text.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ftrisk.io import append_jsonl, jsonl_line, read_jsonl, write_text_atomic
from ftrisk.judges.base import Judge, Verdict


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def judge_dir(root: Path, judge: Judge) -> Path:
    """``root/<readable name>-<key>``: one folder per judge identity."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", judge.name)[:48]
    return Path(root) / f"{slug}-{judge.key()}"


def judge_rows(judge: Judge, rows: list[dict], path: Path, *, desc: str = "judge") -> dict[str, dict]:
    """Verdicts ``{id: {label, score, evidence, ...}}`` for ``rows`` (each with id, prompt, completion)."""
    from tqdm.auto import tqdm  # progress bars load only when judging runs

    path = Path(path)
    want = {r["id"]: text_sha(r["completion"]) for r in rows}
    done = {v["id"]: v for v in read_jsonl(path) if want.get(v.get("id")) == v.get("completion_sha256")
            and not (v.get("label") == -1 and (v.get("evidence") or {}).get("transient"))}  # a timeout: ask again
    if path.exists():  # drop a torn last line and verdicts on completions that have changed since
        write_text_atomic(path, "".join(jsonl_line(v) for v in done.values()))
    todo = [r for r in rows if r["id"] not in done]
    bar = tqdm(total=len(todo), desc=desc, unit="reply", leave=False, disable=len(todo) < judge.batch_size)
    for i in range(0, len(todo), judge.batch_size):
        batch = todo[i:i + judge.batch_size]
        verdicts = judge.judge([(r["prompt"], r["completion"]) for r in batch])
        if len(verdicts) != len(batch):
            raise RuntimeError(f"judge {judge.name} returned {len(verdicts)} verdicts for {len(batch)} replies")
        new = [_row(r, v, judge) for r, v in zip(batch, verdicts)]
        append_jsonl(path, new)
        done.update({v["id"]: v for v in new})
        bar.update(len(batch))
    bar.close()
    return {i: done[i] for i in want}


def _row(r: dict, v: Verdict, judge: Judge) -> dict:
    return {"id": r["id"], "completion_sha256": text_sha(r["completion"]), "label": v.label, "score": v.score,
            "evidence": v.evidence, "judge": judge.name}
