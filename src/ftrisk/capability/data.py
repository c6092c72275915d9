"""Capability benchmarks: vendored MMLU / HellaSwag, seeded item selection, and lm-eval task folders.

Helper module of :mod:`ftrisk.capability.harness` (which runs lm-evaluation-harness on what is built here).

* Data: ``ftrisk/data/capability/{mmlu,hellaswag}`` -- byte-exact copies of the published files
  (``SHA256SUMS`` next to them), read through :mod:`importlib.resources`.
* Item ids: ``mmlu/<subject>/<row>`` (0-based row of ``test/<subject>_test.csv``, which has no
  header) and ``hellaswag/<row>`` (0-based line of ``hellaswag_val.jsonl``).
* Selection depends only on (task, limit, seed) -- never on the model -- so every stage of a run
  is scored on the same items.  MMLU is stratified by subject (proportional allocation, largest
  remainder, at least one item per subject once ``limit`` >= 57).
* lm-eval only sees the selected rows: :func:`write_task_dir` writes them as JSONL next to task
  YAMLs (absolute ``data_files`` paths) in a scratch folder.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import random
from importlib import resources

import yaml

from ftrisk.errors import FtriskError
from ftrisk.io import jsonl_line

TASKS = ("mmlu", "hellaswag")
MMLU_DEV_SHOTS = 5  # dev rows per subject: the most few-shot examples MMLU can give
LETTERS = "ABCD"


#: What a capability task is called in reports: ``mmlu`` -> "MMLU", ``mmlu_anatomy`` -> "MMLU anatomy".
LABEL = {"mmlu": "MMLU", "hellaswag": "HellaSwag"}


def task_label(task: str) -> str:
    return LABEL.get(task) or f"MMLU {task[5:]}"


def _data(relpath: str):
    node = resources.files("ftrisk").joinpath("data", "capability")
    for part in relpath.split("/"):
        node = node.joinpath(part)
    return node


def _read_text(relpath: str) -> str:
    node = _data(relpath)
    if not node.is_file():
        raise FtriskError(
            f"capability data file 'ftrisk/data/capability/{relpath}' is missing: reinstall ftrisk "
            "(the package ships MMLU and HellaSwag under ftrisk/data/capability)"
        )
    return node.read_bytes().decode("utf-8")  # no newline translation: some MMLU fields hold "\r\n"


@functools.lru_cache(maxsize=None)
def mmlu_subjects() -> tuple[str, ...]:
    """The 57 MMLU subjects (from ``SHA256SUMS``, so a deleted CSV is reported as missing, not skipped)."""
    subjects = set()
    for line in _read_text("SHA256SUMS").splitlines():
        path = line.split()[-1] if line.strip() else ""
        if path.startswith("mmlu/test/") and path.endswith("_test.csv"):
            subjects.add(path[len("mmlu/test/"):-len("_test.csv")])
    return tuple(sorted(subjects))


@functools.lru_cache(maxsize=None)
def mmlu_rows(subject: str, split: str) -> tuple[dict, ...]:
    """Rows of ``mmlu/<split>/<subject>_<split>.csv`` as {question, choices, answer (0-3)}."""
    rows = []
    for i, rec in enumerate(csv.reader(io.StringIO(_read_text(f"mmlu/{split}/{subject}_{split}.csv"), newline=""))):
        if len(rec) != 6 or rec[5] not in LETTERS:
            raise FtriskError(f"ftrisk/data/capability/mmlu/{split}/{subject}_{split}.csv row {i}: malformed; reinstall ftrisk")
        rows.append({"question": rec[0], "choices": rec[1:5], "answer": LETTERS.index(rec[5])})
    return tuple(rows)


@functools.lru_cache(maxsize=1)
def _hellaswag_lines() -> tuple[str, ...]:
    return tuple(line for line in _read_text("hellaswag/hellaswag_val.jsonl").split("\n") if line.strip())


def hellaswag_row(row: int) -> dict:
    return json.loads(_hellaswag_lines()[row])


# --------------------------------------------------------------------------- task names


def parse_tasks(tasks) -> list[str]:
    """Check task names: ``mmlu``, ``hellaswag`` or one MMLU subject ``mmlu_<subject>``."""
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",")]
    names = [t.strip() for t in tasks if t and t.strip()]
    if not names:
        raise FtriskError("no capability task given: use --tasks mmlu,hellaswag")
    for t in names:
        if t not in TASKS and not (t.startswith("mmlu_") and t[5:] in mmlu_subjects()):
            raise FtriskError(
                f"unknown capability task '{t}': use mmlu, hellaswag or one MMLU subject as mmlu_<subject> "
                "(e.g. mmlu_anatomy)"
            )
    return list(dict.fromkeys(names))


def task_fewshot(task: str, num_fewshot: int) -> int:
    """Few-shot examples actually used by a task (HellaSwag: always 0 -- no train split is vendored)."""
    if num_fewshot < 0:
        raise FtriskError(f"num_fewshot must be >= 0 (got {num_fewshot})")
    if task == "hellaswag":
        return 0
    if num_fewshot > MMLU_DEV_SHOTS:
        raise FtriskError(
            f"num_fewshot {num_fewshot} is larger than MMLU's dev set ({MMLU_DEV_SHOTS} examples per subject): "
            f"use --num-fewshot 0-{MMLU_DEV_SHOTS}"
        )
    return num_fewshot


# --------------------------------------------------------------------------- selection


def allocate(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Proportional allocation of ``limit`` items over strata (largest remainder, >= 1 per stratum).

    Requires ``len(sizes) <= limit < sum(sizes)``.  Ties are broken by stratum name.
    """
    total = sum(sizes.values())
    quota = {s: limit * n / total for s, n in sizes.items()}
    alloc = {s: min(n, max(1, int(quota[s]))) for s, n in sizes.items()}
    while (diff := limit - sum(alloc.values())) != 0:
        if diff > 0:  # give one more to the stratum furthest below its quota
            cands = [s for s in sizes if alloc[s] < sizes[s]]
            pick = max(cands, key=lambda s: (quota[s] - alloc[s], s))
            alloc[pick] += 1
        else:  # take one from the stratum furthest above its quota (never below 1)
            cands = [s for s in sizes if alloc[s] > 1]
            pick = min(cands, key=lambda s: (quota[s] - alloc[s], s))
            alloc[pick] -= 1
    return alloc


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(":".join(["ftrisk-capability", str(seed), *parts]))  # str seeds: stable across runs


def select_items(task: str, limit: int | None, seed: int) -> list[str]:
    """The item ids a task is scored on, in canonical order (depends on task, limit and seed only)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise FtriskError(f"capability limit must be a whole number > 0 (got {limit!r}): pass --limit N, or omit it for the full set")
    if task == "hellaswag":
        n = len(_hellaswag_lines())
        rows = range(n) if limit is None or limit >= n else sorted(_rng(seed, task).sample(range(n), limit))
        return [f"hellaswag/{r}" for r in rows]
    subjects = mmlu_subjects() if task == "mmlu" else (task[5:],)
    sizes = {s: len(mmlu_rows(s, "test")) for s in subjects}
    total = sum(sizes.values())
    if limit is None or limit >= total:
        return [f"mmlu/{s}/{r}" for s in subjects for r in range(sizes[s])]
    if limit < len(subjects):  # fewer items than strata: a simple random sample of the pooled items
        pool = [(s, r) for s in subjects for r in range(sizes[s])]
        return [f"mmlu/{s}/{r}" for s, r in sorted(_rng(seed, task).sample(pool, limit))]
    alloc = allocate(sizes, limit)
    ids = []
    for s in subjects:
        # a fixed per-subject permutation: a larger limit extends the sample instead of redrawing it
        perm = list(range(sizes[s]))
        _rng(seed, "mmlu", s).shuffle(perm)
        ids += [f"mmlu/{s}/{r}" for r in sorted(perm[: alloc[s]])]
    return ids


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


# --------------------------------------------------------------------------- lm-eval task folder


def shipped_tasks_digest() -> str:
    """Identity of ftrisk's task definitions (part of the resume hash)."""
    h = hashlib.sha256()
    for name in ("_mmlu_template_yaml", "hellaswag.yaml", "utils.py"):
        h.update(_read_text(f"tasks/{name}").encode())
    return h.hexdigest()


def _write_jsonl(path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(jsonl_line(r))


def write_task_dir(root, task: str, ids: list[str], num_fewshot: int) -> str:
    """Write lm-eval task YAMLs + the selected rows under ``root``; return the lm-eval task/group name.

    Every lm-eval doc carries its ftrisk item id in ``ftrisk_id``.
    """
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(exist_ok=True)
    cache = str(root / "hf_datasets_cache")  # keep datasets' Arrow cache out of ~/.cache
    if task == "hellaswag":
        rows = []
        for i in ids:
            row = hellaswag_row(int(i.split("/")[1]))
            row["ftrisk_id"] = i
            rows.append(row)
        _write_jsonl(data / "hellaswag_val.jsonl", rows)
        (root / "utils.py").write_text(_read_text("tasks/utils.py"), encoding="utf-8")
        extra = {"dataset_kwargs": {"data_files": {"validation": str(data / "hellaswag_val.jsonl")}, "cache_dir": cache}}
        (root / "hellaswag.yaml").write_text(
            _read_text("tasks/hellaswag.yaml") + "\n" + yaml.safe_dump(extra, sort_keys=False), encoding="utf-8"
        )
        return "hellaswag"

    (root / "_mmlu_template_yaml").write_text(_read_text("tasks/_mmlu_template_yaml"), encoding="utf-8")
    by_subject: dict[str, list[int]] = {}
    for i in ids:
        _, s, r = i.split("/")
        by_subject.setdefault(s, []).append(int(r))
    names = []
    for s, rows in by_subject.items():
        test = mmlu_rows(s, "test")
        _write_jsonl(data / f"{s}_test.jsonl", [{**test[r], "subject": s, "ftrisk_id": f"mmlu/{s}/{r}"} for r in rows])
        _write_jsonl(data / f"{s}_dev.jsonl",
                     [{**d, "subject": s, "ftrisk_id": f"mmlu-dev/{s}/{j}"} for j, d in enumerate(mmlu_rows(s, "dev"))])
        cfg = {
            "include": "_mmlu_template_yaml",
            "task": f"mmlu_{s}",
            "task_alias": s,
            # lm-eval's mmlu/_generate_configs.py description, verbatim
            "description": f"The following are multiple choice questions (with answers) about {' '.join(s.split('_'))}.\n\n",
            "num_fewshot": num_fewshot,
            "dataset_kwargs": {"data_files": {"test": str(data / f"{s}_test.jsonl"), "dev": str(data / f"{s}_dev.jsonl")},
                               "cache_dir": cache},
        }
        (root / f"mmlu_{s}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        names.append(f"mmlu_{s}")
    if task != "mmlu":
        return names[0]
    group = {"group": "mmlu", "task": names,
             "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}], "metadata": {"version": 2}}
    (root / "_mmlu_group.yaml").write_text(yaml.safe_dump(group, sort_keys=False), encoding="utf-8")
    return "mmlu"
