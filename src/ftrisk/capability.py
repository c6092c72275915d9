"""Capability retention: MMLU and HellaSwag through lm-evaluation-harness, on vendored data.

``evaluate`` scores one model (optionally with a PEFT adapter) with lm-eval's log-likelihood
multiple-choice scoring (``HFLM`` + ``simple_evaluate``), on task YAMLs ftrisk writes at run time
(:mod:`ftrisk.capability_data`) so lm-eval reads only the selected rows of the vendored files and
never the hub.  ``compare`` pairs two stages item by item (paired delta + exact McNemar test);
``report_lines`` renders one line per task for ``report.md``.

Out folder of one stage::

    capability.json          {task: {n, k, acc, ci95, metric, num_fewshot, items, correct, ...}}
    items_<task>.txt         the scored item ids, one a line, in the order of ``correct``
    samples_<task>.jsonl     lm-eval's per-sample logs (prompt, choices' log-likelihoods, metric)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from . import capability_data as data
from . import models, stats
from .config import CapabilityConfig
from .errors import FtriskError
from .io import read_json, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METRIC = {"hellaswag": "acc_norm"}  # every MMLU task: acc
LABEL = {"mmlu": "MMLU", "hellaswag": "HellaSwag"}


def _label(task: str) -> str:
    return LABEL.get(task) or f"MMLU {task[5:]}"


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


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


def _load_lm(HFLM, model_path, adapter, device, dtype, batch_size, trust_remote_code):
    try:
        return HFLM(pretrained=str(model_path), peft=str(adapter) if adapter else None, device=device,
                    dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        what = f"adapter '{adapter}' on model '{model_path}'" if adapter else f"model '{model_path}'"
        raise FtriskError(f"lm-eval could not load {what}: {str(e).splitlines()[0][:200]}") from None


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
        raise RuntimeError(f"lm-eval scored {len(correct)} items of {task}, expected the {len(ids)} selected ones")
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


def evaluate(model: str | Path, adapter: str | Path | None, cfg: CapabilityConfig, out_dir: Path, *,
             seed: int = 0, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False) -> dict:
    """Score ``model`` (+ ``adapter``) on ``cfg.tasks``; resumable per task. Returns ``{task: result}``."""
    tasks = data.parse_tasks(cfg.tasks)
    if cfg.batch_size is None or cfg.batch_size <= 0:
        raise FtriskError(f"capability batch_size must be > 0 (got {cfg.batch_size})")
    fewshot = {t: data.task_fewshot(t, cfg.num_fewshot) for t in tasks}
    ids = {t: data.select_items(t, cfg.limit, seed) for t in tasks}  # also checks limit and the data files
    model_path = models.resolve(str(model))
    adapter_path = models.check_adapter(model_path, adapter) if adapter is not None else None
    common = {
        "format": FORMAT_VERSION, "model": models.fingerprint(model_path),
        "adapter": models.adapter_fingerprint(adapter_path),
        "dtype": dtype, "tasks_yaml": data.shipped_tasks_digest(),
    }  # the selection (seed, limit) enters through the item ids
    want = {t: _hash({**common, "task": t, "num_fewshot": fewshot[t], "items": data.ids_digest(ids[t])}) for t in tasks}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "capability.json"
    done = read_json(path, {}) or {}
    results = {t: done[t] for t in tasks if isinstance(done.get(t), dict) and done[t].get("input_hash") == want[t]}
    todo = [t for t in tasks if t not in results]
    if todo:
        _, evaluator, HFLM, TaskManager = _offline_lm_eval()
        t0 = time.perf_counter()
        dev = models.pick_device(device)
        lm = _load_lm(HFLM, model_path, adapter_path, dev, dtype, cfg.batch_size, trust_remote_code)
        load_s = round(time.perf_counter() - t0, 2)
        cache_db = None
        if cfg.cache:  # one response database per exact model (+ adapter) and scoring settings
            import lm_eval

            ident = _hash({"weights": models.weights_identity(model_path), "adapter": common["adapter"], "dtype": dtype,
                           "device": dev, "batch_size": cfg.batch_size, "lm_eval": lm_eval.__version__})
            cache_db = str(models.cache_dir() / "lm-eval" / ident / "responses")
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


def _delta_pair(names: list[str]) -> tuple[str, str] | None:
    """The stages whose paired delta the report shows: attacked vs hardened (else vs base), else the last two."""
    for ref in ("hardened", "base"):
        if "attacked" in names and ref in names:
            return ref, "attacked"
    return (names[-2], names[-1]) if len(names) >= 2 else None


def report_lines(stages: dict[str, dict]) -> list[str]:
    """One line per task: each stage's accuracy with its CI, then the paired delta (attacked - hardened).

    ``checkpoint-<step>`` stages are listed after the main stages, without CIs.
    """
    tasks: list[str] = []
    for caps in stages.values():
        tasks += [t for t in (caps or {}) if t not in tasks]
    lines = []
    for task in tasks:
        have = {name: caps[task] for name, caps in stages.items() if caps and task in caps}
        main = [n for n in have if not n.startswith("checkpoint-")] or list(have)
        first = have[main[0]]
        metric = "" if first["metric"] == "acc" else f" {first['metric']}"
        line = f"{_label(task)} {first['num_fewshot']}-shot{metric} (n={first['n']}): "
        line += " → ".join(f"{n} {_fmt_acc(have[n])}" for n in main)
        pair = _delta_pair(main)
        if pair:
            n0, n1 = pair
            try:
                d = compare({task: have[n0]}, {task: have[n1]})[task]
                line += (f", Δ({n1}−{n0}) {d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                         f" (McNemar p={d['p_mcnemar']:.3g})")
            except FtriskError:
                line += f", no paired Δ ({n0} and {n1} were scored on different items)"
        cached = [n for n in have if have[n].get("requests_from_cache")]
        if cached:  # say which scores were read back from lm-eval's response cache rather than recomputed
            line += "; from the response cache: " + ", ".join(
                f"{n} {have[n]['requests_from_cache']}/{have[n]['requests']} requests" for n in cached)
        ckpts = [n for n in have if n not in main]
        if ckpts:
            line += "; checkpoints: " + ", ".join(f"{n.removeprefix('checkpoint-')} {have[n]['acc']:.3f}" for n in ckpts)
        lines.append(line)
    return lines


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
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    parser.add_argument("--out", required=True, type=Path, help="output folder (capability.json, item ids, lm-eval logs)")


def main(args: argparse.Namespace) -> int:
    cfg = CapabilityConfig(enabled=True, tasks=data.parse_tasks(args.tasks), limit=args.limit,
                           num_fewshot=args.num_fewshot, batch_size=args.batch_size)
    res = evaluate(args.model, args.adapter, cfg, args.out, seed=args.seed, device=args.device,
                   dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    for task, r in res.items():
        print(f"{_label(task)} {r['num_fewshot']}-shot {r['metric']}: {_fmt_acc(r)} n={r['n']} "
              f"({r['seconds']:.1f} s, {r['items_per_s']:.2f} items/s)")
    print(f"wrote {Path(args.out) / 'capability.json'}")
    return 0
