"""Capability retention: MMLU and HellaSwag through lm-evaluation-harness, on vendored data.

``evaluate`` scores one model (optionally with a PEFT adapter) with lm-eval's log-likelihood
multiple-choice scoring (``HFLM`` + ``simple_evaluate``), on task YAMLs ftrisk writes at run time
(:mod:`ftrisk.capability.data`) so lm-eval reads only the selected rows of the vendored files and
never the hub.  ``compare`` pairs two stages item by item (paired delta + exact McNemar test);
``report_lines`` renders one line per task for ``report.md``.

Out folder of one stage::

    capability.json          {task: {n, k, acc, ci95, metric, num_fewshot, items, correct, ...}}
    items_<task>.txt         the scored item ids, one a line, in the order of ``correct``
    samples_<task>.jsonl     lm-eval's per-sample logs (prompt, choices' log-likelihoods, metric)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from ftrisk.capability import data
from ftrisk import keys, stats
from ftrisk.model import loading as models
from ftrisk.config.schema import CapabilityConfig
from ftrisk.errors import FtriskError
from ftrisk.io import read_json, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METRIC = {"hellaswag": "acc_norm"}  # every MMLU task: acc
LABEL = {"mmlu": "MMLU", "hellaswag": "HellaSwag"}


def _label(task: str) -> str:
    return LABEL.get(task) or f"MMLU {task[5:]}"


def _offline_lm_eval():
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


def _load_lm(HFLM, subject, batch_size, loaded=None):
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


def _cache_entries(db: str | None) -> int:
    if db is None or not Path(db + "_rank0.db").is_file():
        return 0
    from sqlitedict import SqliteDict

    with SqliteDict(db + "_rank0.db", flag="r") as d:
        return len(d)


def _run_task(lm, evaluator, TaskManager, task: str, ids: list[str], k: int, seed: int, out_dir: Path,
              cache_db: str | None = None) -> dict:
    """Score one task with lm-eval on exactly ``ids``; write its item list and per-sample log."""
    import datasets
    from lm_eval.utils import handle_non_serializable

    metric = METRIC.get(task, "acc")
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one "Generating split" bar per MMLU subject is noise
    try:
        with tempfile.TemporaryDirectory(prefix="ftrisk-capability-") as tmp:
            name = data.write_task_dir(Path(tmp), task, ids, k)
            tm = TaskManager(include_path=tmp, include_defaults=False)
            before = _cache_entries(cache_db)
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
    from_cache = n_requests - (_cache_entries(cache_db) - before) if cache_db else 0
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


def evaluate(subject, cfg: CapabilityConfig, out_dir: Path, *, seed: int = 0, loaded=None) -> dict:
    """Score the :class:`ftrisk.model.subject.Subject` on ``cfg.tasks``; resumable per task. Returns ``{task: result}``.

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
        _, evaluator, HFLM, TaskManager = _offline_lm_eval()
        t0 = time.perf_counter()
        lm = _load_lm(HFLM, subject, cfg.batch_size, loaded)
        load_s = round(time.perf_counter() - t0, 2)
        cache_db = None
        if cfg.cache:  # one response database per exact model (+ adapter) and scoring settings
            import lm_eval

            db = keys.stage_key("lm-eval-cache", weights=models.weights_identity(subject.path), subject=ident,
                                batch_size=cfg.batch_size, lm_eval=lm_eval.__version__)
            cache_db = str(models.cache_dir() / "lm-eval" / db / "responses")
        for t in todo:
            log.info("capability: %s (%d items, %d-shot)", t, len(ids[t]), fewshot[t])
            entry = _run_task(lm, evaluator, TaskManager, t, ids[t], fewshot[t], seed, out_dir, cache_db)
            results[t] = {**entry, "load_seconds": load_s, "input_hash": want[t]}
            write_json_atomic(path, {x: results[x] for x in tasks if x in results})
    return {t: results[t] for t in tasks}


# --------------------------------------------------------------------------- comparison and report


def compare(before: dict, after: dict) -> dict:
    """Per task in both: paired delta (after - before) with a 95% CI and the exact McNemar p-value."""
    out = {}
    for task in [t for t in before if t in after]:
        b, a = before[task], after[task]
        if b.get("items_sha256") != a.get("items_sha256") or b["n"] != a["n"]:
            raise FtriskError(
                f"capability task '{task}': the two stages were scored on different items "
                f"(n={b['n']} vs n={a['n']}): rerun both with the same seed, limit and num_fewshot"
            )
        if b.get("num_fewshot") != a.get("num_fewshot"):
            raise FtriskError(f"capability task '{task}': {b.get('num_fewshot')}-shot vs {a.get('num_fewshot')}-shot "
                              "scores cannot be paired: rerun both with the same num_fewshot")
        d = stats.paired_delta(list(b["correct"]), list(a["correct"]))
        out[task] = {**d, "before": b["acc"], "after": a["acc"], "metric": a["metric"]}
    return out


def _fmt_acc(r: dict) -> str:
    return f"{r['acc']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"


def report_lines(stages: dict[str, dict]) -> list[str]:
    """One line per task: each stage's accuracy with its CI, then the stored paired delta of the last stage.

    ``stages`` maps a stage name to its results.json entry (``capability`` and ``capability_delta``, the delta
    computed once by the pipeline). Attack points (``step-N``) are listed after the main stages, without CIs.
    """
    tasks: list[str] = []
    for st in stages.values():
        tasks += [t for t in (st.get("capability") or {}) if t not in tasks]
    lines = []
    for task in tasks:
        have = {name: st["capability"][task] for name, st in stages.items() if task in (st.get("capability") or {})}
        main = [n for n in have if not stages[n].get("point") or n == "attacked"] or list(have)
        first = have[main[0]]
        metric = "" if first["metric"] == "acc" else f" {first['metric']}"
        line = f"{_label(task)} {first['num_fewshot']}-shot{metric} (n={first['n']}): "
        line += " → ".join(f"{n} {_fmt_acc(have[n])}" for n in main)
        last = main[-1]
        d = (stages[last].get("capability_delta") or {}).get(task)
        if d and d.get("delta") is not None:
            ref = stages[last]["capability_delta"]["vs"]
            line += (f", Δ({last}−{ref}) {d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                     f" (McNemar p={d['p_mcnemar']:.3g})")
        elif d and d.get("error"):
            line += f", no paired Δ ({d['error']})"
        cached = [n for n in have if have[n].get("requests_from_cache")]
        if cached:  # say which scores were read back from lm-eval's response cache rather than recomputed
            line += "; from the response cache: " + ", ".join(
                f"{n} {have[n]['requests_from_cache']}/{have[n]['requests']} requests" for n in cached)
        points = [n for n in have if n not in main]
        if points:
            line += "; attack points: " + ", ".join(f"{n} {have[n]['acc']:.3f}" for n in points)
        lines.append(line)
    return lines


def deltas(before: dict, after: dict) -> dict:
    """:func:`compare` per task, with a task that cannot be paired recorded as an error instead of raised."""
    out = {}
    for task in [t for t in before if t in after]:
        try:
            out[task] = compare({task: before[task]}, {task: after[task]})[task]
        except FtriskError as e:
            out[task] = {"delta": None, "error": str(e)}
    return out


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = CapabilityConfig()
    parser.add_argument("--model", default=models.DEFAULT_SPEC, help="model spec: HF dir, .gguf or embedded:NAME")
    parser.add_argument("--adapter", default=None, help="PEFT adapter directory trained on --model")
    parser.add_argument("--tasks", default=",".join(d.tasks),
                        help="comma-separated: mmlu, hellaswag, mmlu_<subject> (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=d.limit,
                        help="items per task (seeded; stratified by subject for MMLU); default: the full set")
    parser.add_argument("--num-fewshot", type=int, default=d.num_fewshot,
                        help="MMLU few-shot examples from its dev split, 0-5 (HellaSwag is 0-shot) (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="lm-eval batch size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="item-selection seed (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (default: %(default)s)")
    parser.add_argument("--quantize", default=None, choices=["4bit", "8bit"], help="k-bit loading (CUDA, bitsandbytes)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    parser.add_argument("--out", required=True, type=Path, help="output folder (capability.json, item ids, lm-eval logs)")


def main(args: argparse.Namespace) -> int:
    from ftrisk.config.schema import ModelConfig
    from ftrisk.model.subject import Subject

    cfg = CapabilityConfig(enabled=True, tasks=data.parse_tasks(args.tasks), limit=args.limit,
                           num_fewshot=args.num_fewshot, batch_size=args.batch_size)
    mcfg = ModelConfig(spec=args.model, dtype=args.dtype, device=args.device, quantize=args.quantize,
                       trust_remote_code=args.trust_remote_code)
    subject = Subject.from_config(mcfg).with_adapter(args.adapter)
    res = evaluate(subject, cfg, args.out, seed=args.seed)
    for task, r in res.items():
        print(f"{_label(task)} {r['num_fewshot']}-shot {r['metric']}: {_fmt_acc(r)} n={r['n']} "
              f"({r['seconds']:.1f} s, {r['items_per_s']:.2f} items/s)")
    print(f"wrote {Path(args.out) / 'capability.json'}")
    return 0
