"""Refusal evaluation of one model: generate (resumable), judge, aggregate with Wilson CIs.

Completions live only in ``<out>/<bench>.completions.jsonl``; the judged file and the summary
hold labels and evidence (matched pattern), never the completion text.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from . import benchmarks
from .generate import generate, generation_record
from .io import write_json_atomic, write_text_atomic
from .stats import rate

log = logging.getLogger(__name__)


def select(ref, seed: int) -> tuple[str, list[benchmarks.Item]]:
    """Resolve a config BenchmarkRef (registry name or prompt file) to (name, items)."""
    if ref.name in benchmarks.names():
        return ref.name, benchmarks.load(ref.name, ref.limit, seed)
    items = benchmarks.load_file(ref.name, ref.prompt_column, ref.category_column)
    return Path(ref.name).stem, benchmarks.sample(items, ref.limit, seed, ref.name)


def summarize(judged: list[dict], judge_name: str, harmful: bool) -> dict:
    refused = [r for r in judged if r["refused"]]
    out = rate(len(refused), len(judged))
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in judged:
        by_cat[r["category"]][0] += int(r["refused"])
        by_cat[r["category"]][1] += 1
    patterns: dict[str, int] = defaultdict(int)
    for r in refused:
        patterns[r["pattern"]] += 1
    return {
        "n": out["n"], "refusals": out["k"], "refusal_rate": out["rate"], "ci95": out["ci95"],
        "judge": judge_name, "harmful": harmful,
        "metric": "refusal rate" if harmful else "over-refusal rate (benign prompts)",
        "by_category": {c: {"n": n, "refusal_rate": k / n, "ci95": rate(k, n)["ci95"]} for c, (k, n) in sorted(by_cat.items())},
        "matched_patterns": dict(sorted(patterns.items(), key=lambda kv: -kv[1])),
    }


def evaluate(model, tok, benches: list[tuple[str, list]], out_dir: Path, *, judge, gen_cfg,
             system_prompt: str | None = None, stage: str = "eval", excluded: dict | None = None) -> dict:
    """Score each (name, items) benchmark; returns the ``benchmarks`` section of results.json."""
    out_dir = Path(out_dir)
    record = generation_record(tok, gen_cfg.max_new_tokens, gen_cfg.batch_size, system_prompt, gen_cfg.max_batch_tokens)
    write_json_atomic(out_dir / "generation.json", record)
    results = {}
    for name, items in benches:
        rows = generate(model, tok, items, out_dir / f"{name}.completions.jsonl",
                        max_new_tokens=gen_cfg.max_new_tokens, batch_size=gen_cfg.batch_size,
                        system_prompt=system_prompt, desc=f"{stage} {name}",
                        max_batch_tokens=gen_cfg.max_batch_tokens)
        judged = []
        for it in items:
            j = judge(rows[it.id]["completion"])
            judged.append({"id": it.id, "category": it.category, "refused": j.refused, "pattern": j.pattern,
                           "pattern_list": j.pattern_list, "position": j.position,
                           "new_tokens": rows[it.id]["new_tokens"], "finished": rows[it.id]["finished"]})
        import json

        write_text_atomic(out_dir / f"{name}.judged.jsonl", "".join(json.dumps(r) + "\n" for r in judged))
        harmful = benchmarks.is_harmful(name) if name in benchmarks.names() else True
        results[name] = summarize(judged, judge.name, harmful)
        if excluded and name in excluded:
            results[name]["n_excluded_overlap"] = excluded[name]
        log.info("%s %s: refusal %.1f%% (n=%d)", stage, name, 100 * (results[name]["refusal_rate"] or 0), len(items))
    return results
