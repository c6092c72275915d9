"""Capability retention: MMLU and HellaSwag scored through lm-evaluation-harness, on vendored data.

``evaluate`` scores one model (optionally with a PEFT adapter) with lm-eval's log-likelihood
multiple-choice scoring (``HFLM`` + ``simple_evaluate``), on task YAMLs ftrisk writes at run time
(:mod:`ftrisk.capability.data`) so lm-eval reads only the selected rows of the vendored files and
never the hub. :mod:`ftrisk.capability.deltas` pairs two stages item by item;
:mod:`ftrisk.report.capability` renders one line per task for ``report.md``.

Out folder of one stage::

    capability.json          {task: {n, k, acc, ci95, metric, num_fewshot, items, correct, ...}}
    items_<task>.txt         the scored item ids, one a line, in the order of ``correct``
    samples_<task>.jsonl     lm-eval's per-sample logs (prompt, choices' log-likelihoods, metric)
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from ftrisk import keys, stats
from ftrisk.capability import data
from ftrisk.errors import FtriskError
from ftrisk.io import read_json, write_json_atomic, write_text_atomic
from ftrisk.model import loading as models

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METRIC = {"hellaswag": "acc_norm"}  # every MMLU task: acc


def offline_lm_eval():
    """Import lm-eval with the hub switched off (env vars must be set before datasets is imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "datasets" in sys.modules:  # imported earlier by someone else: flip its cached flags too
        cfg = sys.modules["datasets"].config
        for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            if hasattr(cfg, flag):
                setattr(cfg, flag, True)
    import lm_eval
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    return lm_eval, evaluator, HFLM, TaskManager


def load_lm(HFLM, subject, batch_size, loaded=None):
    """lm-eval's HFLM around the subject as ftrisk's one loader builds it (same dtype, device, quantization;
    a PEFT adapter stays unmerged, as lm-eval's own ``peft=`` loading does)."""
    model, tok = loaded if loaded is not None else models.load_subject(subject, merge=False)
    lm_log = logging.getLogger("lm_eval.models.huggingface")
    level = lm_log.level
    lm_log.setLevel(logging.ERROR)  # it warns that a model object (not a name) was passed: that is the point
    try:
        return HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise FtriskError(f"lm-eval could not use model '{subject.spec}': {str(e).splitlines()[0][:200]}") from None
    finally:
        lm_log.setLevel(level)


def cache_entries(db: str | None) -> int:
    if db is None or not Path(db + "_rank0.db").is_file():
        return 0
    from sqlitedict import SqliteDict  # lm-eval's response cache: installed with the capability extra

    with SqliteDict(db + "_rank0.db", flag="r") as d:
        return len(d)


def run_task(lm, evaluator, TaskManager, task: str, ids: list[str], k: int, seed: int, out_dir: Path,
              cache_db: str | None = None) -> dict:
    """Score one task with lm-eval on exactly ``ids``; write its item list and per-sample log."""
    import datasets  # lm-eval's (heavy) data library, loaded after offline_lm_eval switched the hub off
    from lm_eval.utils import handle_non_serializable

    metric = METRIC.get(task, "acc")
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one "Generating split" bar per MMLU subject is noise
    try:
        with tempfile.TemporaryDirectory(prefix="ftrisk-capability-") as tmp:
            name = data.write_task_dir(Path(tmp), task, ids, k)
            tm = TaskManager(include_path=tmp, include_defaults=False)
            before = cache_entries(cache_db)
            t0 = time.perf_counter()
            res = evaluator.simple_evaluate(
                model=lm, tasks=[name], task_manager=tm, log_samples=True, bootstrap_iters=0, use_cache=cache_db,
                random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                verbosity="WARNING",
            )
            seconds = time.perf_counter() - t0
    finally:
        if bars:
            datasets.enable_progress_bars()
    correct: dict[str, bool] = {}
    lines = []
    n_requests = sum(len(s["arguments"]) for samples in res["samples"].values() for s in samples)
    from_cache = n_requests - (cache_entries(cache_db) - before) if cache_db else 0
    for sub, samples in sorted(res["samples"].items()):
        for s in samples:
            correct[s["doc"]["ftrisk_id"]] = bool(s[metric])
            lines.append(json.dumps({"task": sub, **s}, default=handle_non_serializable, ensure_ascii=False))
    if sorted(correct) != sorted(ids):
        raise FtriskError(f"capability task '{task}': lm-eval scored {len(correct)} items, expected the {len(ids)} "
                          "selected ones; the vendored task files may be damaged: reinstall ftrisk")
    write_text_atomic(out_dir / f"items_{task}.txt", "\n".join(ids) + "\n")
    write_text_atomic(out_dir / f"samples_{task}.jsonl", "\n".join(lines) + "\n")
    flags = [correct[i] for i in ids]
    r = stats.rate(sum(flags), len(flags))
    entry = {"n": r["n"], "k": r["k"], "acc": round(r["rate"], 4), "ci95": r["ci95"], "metric": metric,
             "num_fewshot": k, "items": f"items_{task}.txt", "items_sha256": data.ids_digest(ids),
             "samples": f"samples_{task}.jsonl", "correct": flags,
             "seconds": round(seconds, 2), "items_per_s": round(len(ids) / seconds, 3),
             "requests": n_requests, "requests_from_cache": from_cache,
             "lm_eval_acc": res["results"].get(name, {}).get(f"{metric},none"),
             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if task == "mmlu":
        by = {}
        for i, ok in zip(ids, flags):
            s = i.split("/")[1]
            by.setdefault(s, [0, 0])
            by[s][0] += ok
            by[s][1] += 1
        entry["by_subject"] = by  # subject: [correct, n]
    return entry


def evaluate(subject, cfg, out_dir: Path, *, seed: int = 0, loaded=None) -> dict:
    """Score the :class:`ftrisk.model.subject.Subject` on ``cfg.tasks`` (``cfg``: the run's
    :class:`ftrisk.config.schema.CapabilityConfig`); resumable per task. Returns ``{task: result}``.

    ``loaded`` is the subject's (model, tokenizer) when a stage already holds it (no adapter merged into it).
    """
    tasks = data.parse_tasks(cfg.tasks)
    if cfg.batch_size is None or cfg.batch_size <= 0:
        raise FtriskError(f"capability batch_size must be > 0 (got {cfg.batch_size})")
    fewshot = {t: data.task_fewshot(t, cfg.num_fewshot) for t in tasks}
    ids = {t: data.select_items(t, cfg.limit, seed) for t in tasks}  # also checks limit and the data files
    ident = {k: v for k, v in subject.identity().items() if k not in ("system_prompt", "chat_template")}
    want = {t: keys.stage_key("capability", subject=ident, task=t, num_fewshot=fewshot[t], items=data.ids_digest(ids[t]),
                              tasks_yaml=data.shipped_tasks_digest(), version=FORMAT_VERSION)
            for t in tasks}  # the selection (seed, limit) enters through the item ids

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "capability.json"
    done = read_json(path, {}) or {}
    results = {t: done[t] for t in tasks if isinstance(done.get(t), dict) and done[t].get("input_hash") == want[t]}
    todo = [t for t in tasks if t not in results]
    if todo:
        _, evaluator, HFLM, TaskManager = offline_lm_eval()
        t0 = time.perf_counter()
        lm = load_lm(HFLM, subject, cfg.batch_size, loaded)
        load_s = round(time.perf_counter() - t0, 2)
        cache_db = None
        if cfg.cache:  # one response database per exact model (+ adapter) and scoring settings
            import lm_eval

            db = keys.stage_key("lm-eval-cache", weights=models.weights_identity(subject.path), subject=ident,
                                batch_size=cfg.batch_size, lm_eval=lm_eval.__version__)
            cache_db = str(models.cache_dir() / "lm-eval" / db / "responses")
        for t in todo:
            log.info("capability: %s (%d items, %d-shot)", t, len(ids[t]), fewshot[t])
            entry = run_task(lm, evaluator, TaskManager, t, ids[t], fewshot[t], seed, out_dir, cache_db)
            results[t] = {**entry, "load_seconds": load_s, "input_hash": want[t]}
            write_json_atomic(path, {x: results[x] for x in tasks if x in results})
    return {t: results[t] for t in tasks}
