"""Refusal evaluation of one stage: generate (keyed, resumable), judge with every judge (each resumable on
its own), summarise with Wilson CIs, and measure how the judges agree.

Completions live only in ``<stage>/<bench>.completions.jsonl``. Verdicts, labels, disagreements and
summaries hold labels and evidence, never the completion text.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from ftrisk import keys
from ftrisk.errors import FtriskError
from ftrisk.generation import open_backend
from ftrisk.generation.base import prefill_of
from ftrisk.generation.resumable import generate
from ftrisk.io import jsonl_line, read_json, read_jsonl, write_text_atomic
from ftrisk.judges import build as build_judge
from ftrisk.judges.agreement import pairwise
from ftrisk.judges.opening import stop_rule
from ftrisk.judges.profile import correct
from ftrisk.judges.store import judge_dir, judge_rows
from ftrisk.prompts import benchmarks
from ftrisk.stats import rate

log = logging.getLogger(__name__)


def build_judges(cfg) -> list:
    """The configured judges, headline first (each checked: paths, endpoints, keys)."""
    built = [build_judge(s) for s in cfg.eval.judges]
    h = cfg.eval.headline_judge
    if h is not None:
        i = next(i for i, (s, j) in enumerate(zip(cfg.eval.judges, built)) if h in (s, j.name, j.kind))
        built.insert(0, built.pop(i))
    names = [j.name for j in built]
    if len(set(names)) != len(names):
        raise FtriskError(f"config key 'eval.judges' names the same judge twice ({', '.join(names)})")
    return built


def select(ref, seed: int) -> tuple[str, list[benchmarks.Item]]:
    """Resolve a config BenchmarkRef (registry name or prompt file) to (label, items)."""
    if ref.name in benchmarks.names():
        return ref.label or ref.name, benchmarks.load(ref.name, ref.limit, seed)
    items = benchmarks.load_file(ref.name, ref.prompt_column, ref.category_column)
    return ref.label or Path(ref.name).stem, benchmarks.sample(items, ref.limit, seed, ref.name)


def is_harmful(ref) -> bool:
    if ref.harmful is not None:
        return ref.harmful
    return benchmarks.is_harmful(ref.name) if ref.name in benchmarks.names() else True


def summarize(items: list, verdicts: dict[str, dict], judge, harmful: bool, profiles: dict | None = None) -> dict:
    """Rate, CI, unjudged count, categories and evidence counts of one judge on one benchmark, and the rate
    corrected for the judge's error profile (``profiles``, default the shipped ones; :mod:`ftrisk.judges.profile`)."""
    judged = [(it, verdicts[it.id]) for it in items if verdicts[it.id]["label"] != -1]
    refused = [v for _, v in judged if v["label"] == 1]
    r = rate(len(refused), len(judged))
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for it, v in judged:
        by_cat[it.category][0] += v["label"]
        by_cat[it.category][1] += 1
    evidence = Counter(str(v["evidence"].get("pattern") or v["evidence"].get("rule")) for v in refused
                       if v["evidence"].get("pattern") or v["evidence"].get("rule"))
    out = {
        "n": r["n"], "refusals": r["k"], "refusal_rate": r["rate"], "ci95": r["ci95"],
        "n_unjudged": len(items) - len(judged), "judge": judge.name, "measures": judge.measures, "harmful": harmful,
        "metric": "refusal rate" if harmful else "over-refusal rate (benign prompts)",
        "by_category": {c: {"n": n, "refusal_rate": k / n, "ci95": rate(k, n)["ci95"]} for c, (k, n) in sorted(by_cat.items())},
        "matched_patterns": dict(evidence.most_common()),
        "corrected": correct(r["k"], r["n"], judge, profiles),
    }
    scores = [v["score"] for _, v in judged if v.get("score") is not None]
    if scores:
        out["mean_score"] = round(sum(scores) / len(scores), 4)
    if judge.measures == "harmfulness":  # the judge's own view: share of harmful replies
        h = rate(r["n"] - r["k"], r["n"])
        out["harmful_rate"], out["harmful_ci95"] = h["rate"], h["ci95"]
    return out


def agreement(labels: dict[str, list[int]]) -> dict:
    """Percent agreement and Cohen's kappa for every pair of judges (items both could judge)."""
    return {f"{a} | {b}": pairwise(labels[a], labels[b]) for a, b in itertools.combinations(labels, 2)}


def run_judges(judges: list, benches: list[tuple[str, list]], rows_of: dict[str, dict], out_dir: Path,
               harmful: dict[str, bool], stage: str, profiles: dict | None = None) -> tuple[dict, dict]:
    """Judge every benchmark's stored completions with every judge; (benchmarks section, agreement section).
    ``profiles``: the judges' error profiles for the corrected rates (None: the shipped ones)."""
    results, agree, disagree = {}, {}, []
    for name, items in benches:
        rows = [rows_of[name][it.id] for it in items]
        verdicts = {j.name: judge_rows(j, rows, judge_dir(out_dir / "judged", j) / f"{name}.jsonl",
                                       desc=f"{stage} {name} {j.name}") for j in judges}
        summaries = {j.name: summarize(items, verdicts[j.name], j, harmful[name], profiles) for j in judges}
        results[name] = {**summaries[judges[0].name], "judges": summaries}
        labels = {j.name: [verdicts[j.name][it.id]["label"] for it in items] for j in judges}
        if len(judges) > 1:
            agree[name] = agreement(labels)
        lines = []
        for i, it in enumerate(items):
            item_labels = {jn: labels[jn][i] for jn in labels}
            row = {"id": it.id, "category": it.category, "labels": item_labels,
                   "new_tokens": rows[i]["new_tokens"], "finished": rows[i]["finished"]}
            lines.append(row)
            if len(set(item_labels.values())) > 1:
                disagree.append({"benchmark": name, "id": it.id, "labels": item_labels})
        write_text_atomic(out_dir / f"{name}.judged.jsonl", "".join(jsonl_line(r) for r in lines))
        log.info("%s %s: refusal %.1f%% (n=%d, %s)", stage, name, 100 * (results[name]["refusal_rate"] or 0),
                 results[name]["n"], judges[0].name)
    if len(judges) > 1:
        write_text_atomic(out_dir / "disagreements.jsonl", "".join(jsonl_line(r) for r in disagree))
    return results, agree


def stop_chars(gen_cfg, judges) -> int | None:
    """With ``generation.stop_when_judged``: the longest opening any judge reads (replies may stop after it)."""
    return max(j.opening_chars for j in judges) if gen_cfg.stop_when_judged else None


def generation_key(subject, benches, gen_cfg, stop: int | None = None) -> str:
    """Key of a stage's completions: the subject, the items and the decoding settings (not the judges, except the
    opening length replies may stop at under ``stop_when_judged``), and the prefix of each prefilled item
    (:mod:`ftrisk.attacks.prefill`; only where an item has one, so keys of stages without prefill are unchanged)."""
    prefills = {n: {it.id: prefill_of(it) for it in items if prefill_of(it)} for n, items in benches}
    prefills = {n: p for n, p in prefills.items() if p}
    return keys.stage_key("generation", subject=subject.identity(), settings=dataclasses.asdict(gen_cfg),
                          items={n: [it.id for it in items] for n, items in benches},
                          **({"stop_chars": stop} if stop else {}), **({"prefill": prefills} if prefills else {}))


def generate_all(backend, benches, out_dir: Path, gen_cfg, stage: str, stop: int | None = None) -> dict[str, dict]:
    """Completions of every benchmark (resumable per benchmark file); ``stop``: the judges' opening length
    (:func:`stop_chars`), turned into the backend's stop rule."""
    return {name: generate(backend, items, out_dir / f"{name}.completions.jsonl",
                           max_new_tokens=gen_cfg.max_new_tokens, desc=f"{stage} {name}", stop=stop_rule(stop))
            for name, items in benches}


def read_completions(benches, out_dir: Path) -> dict[str, dict]:
    return {name: {r["id"]: r for r in read_jsonl(out_dir / f"{name}.completions.jsonl")} for name, _ in benches}


def stage_key(subject, benches, gen_cfg, judges) -> str:
    """The key of a stage's completions (:func:`generation_key`) under these judges' stop rule."""
    return generation_key(subject, benches, gen_cfg, stop_chars(gen_cfg, judges))


def generate_stage(d: Path, subject, benches, gen_cfg, judges, stage: str) -> tuple[dict, object]:
    """The completions of ``benches`` by ``subject`` in the stage folder ``d``, keyed by :func:`stage_key`: reused
    when the stage finished, resumed when it was interrupted, redone when an input changed.

    Returns (the stage's record, the backend that generated them, still open for the caller to reuse and close;
    None when nothing was generated). When a user error stops a stage this call began in a new or empty folder
    before any completion was stored (weights that do not load, an adapter that does not fit), the folder is
    left as it was: a failed command writes nothing.
    """
    stop = stop_chars(gen_cfg, judges)
    key = generation_key(subject, benches, gen_cfg, stop)
    existed = d.is_dir()
    untouched = not existed or not any(d.iterdir())
    done = keys.open_stage(d, key)
    if done is not None:
        return done, None
    backend = None
    try:
        backend = open_backend(gen_cfg.backend, subject, gen_cfg)  # an engine may refuse the subject here (ct2, vLLM)
        gen = generate_all(backend, benches, d, gen_cfg, stage, stop)
    except FtriskError:
        if backend is not None:
            backend.close()
        if untouched and not any(d.glob("*.completions.jsonl")):
            shutil.rmtree(d)
            if existed:
                d.mkdir()
        raise
    record = {"generation": read_json(d / "generation.json"), "n_generated": sum(map(len, gen.values()))}
    return keys.close_stage(d, key, record), backend


def judge_stage(d: Path, judges: list, benches, harmful: dict[str, bool], stage: str,
                profiles: dict | None = None) -> tuple[dict, dict]:
    """Every judge over the completions stored in ``d`` (:func:`run_judges`)."""
    return run_judges(judges, benches, read_completions(benches, d), d, harmful, stage, profiles=profiles)
