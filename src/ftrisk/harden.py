"""Hardening: make a safety-tuned subject out of a model that refuses little as shipped.

Harmful prompts disjoint from the attack data and from every evaluation set (default:
StrongREJECT + HarmBench val) are paired with short refusals written for ftrisk; benign
instructions (written for ftrisk, some merely *sounding* risky) are paired with the base
model's own greedy answers (self-distillation keeps its benign behaviour). ``harden.method``:
LoRA then merge (the default), or a full fine-tune of every weight. The hardened model is cached
under ``$FTRISK_CACHE/hardened/<key>`` where key hashes the base model, the data and every
hyper-parameter, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from . import benchmarks, models
from .cost import CostMeter
from .errors import FtriskError
from .generate import generate
from .io import read_json, write_json_atomic
from .train import Example, finetune

log = logging.getLogger(__name__)


def builtin_refusals() -> list[str]:
    text = resources.files("ftrisk").joinpath("data/hardening/refusals.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def benign_items(spec: str, limit: int | None, seed: int, keep: list[str] = ()) -> list[benchmarks.Item]:
    """The benign instructions: every item of a ``keep`` category, plus a seeded sample of ``limit`` of the others."""
    if spec == "builtin":
        path = resources.files("ftrisk").joinpath("data/hardening/benign.jsonl")
        with resources.as_file(path) as p:
            items = benchmarks.load_file(p)
    else:
        items = benchmarks.load_file(spec)
    rest = benchmarks.sample([it for it in items if it.category not in keep], limit, seed, "harden.benign_limit")
    chosen = {it.id for it in rest}
    return [it for it in items if it.category in keep or it.id in chosen]


def plan(cfg, protected: list[benchmarks.Item]) -> dict:
    """Choose the hardening prompts: drop those that overlap attack or evaluation prompts (by normalised text)."""
    h = cfg.harden
    harmful, excluded = [], {}
    for name in h.harmful:
        items = benchmarks.load(name) if name in benchmarks.names() else benchmarks.load_file(name)
        drop = set() if h.allow_overlap else benchmarks.overlap(items, protected)
        excluded[name] = len(drop)
        harmful += [it for it in items if it.id not in drop]
    harmful = benchmarks.sample(harmful, h.harmful_limit, cfg.seed, "harden.harmful_limit")
    benign = benign_items(h.benign, h.benign_limit, cfg.seed, h.benign_keep)
    drop = set() if h.allow_overlap else benchmarks.overlap(benign, protected)
    excluded["benign"] = len(drop)
    benign = [it for it in benign if it.id not in drop]
    refusals = builtin_refusals()
    rng = random.Random(cfg.seed)
    pairs = [(it.id, it.prompt, rng.choice(refusals)) for it in harmful]
    return {"harmful": pairs, "benign": [(it.id, it.prompt, it.category) for it in benign], "n_excluded_overlap": excluded}


def cache_key(cfg, base_fingerprint: str, data_plan: dict) -> str:
    h = cfg.harden
    full = h.method == "full"
    blob = json.dumps({
        "base": base_fingerprint, "plan": data_plan, "lora": None if full else asdict(h.lora), "train": asdict(h.train),
        # "method" only for full fine-tuning, so the keys of LoRA-hardened models cached before it existed stay valid
        **({"method": "full"} if full else {}),
        "benign_max_new_tokens": h.benign_max_new_tokens, "seed": cfg.seed, "system_prompt": cfg.model.system_prompt,
        "format": 2,  # 2: answers cut at benign_max_new_tokens are trained without the end-of-turn marker
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def run(cfg, work_dir: Path, data_plan: dict, judge) -> tuple[Path, dict]:
    """Harden ``cfg.model.spec`` on ``data_plan`` (from :func:`plan`); returns (model dir, record for results.json)."""
    base_path = models.resolve(cfg.model.spec)
    key = cache_key(cfg, models.fingerprint(base_path), data_plan)
    final = models.cache_dir() / "hardened" / key
    record_path = final / "hardening.json"
    if (final / ".complete").is_file():
        record = read_json(record_path)
        record["reused_from_cache"] = True
        log.info("hardened model reused from cache %s", final)
        return final, record

    model, tok = models.load(cfg.model)
    work_dir.mkdir(parents=True, exist_ok=True)
    benign = [benchmarks.Item(i, p, c) for i, p, c in data_plan["benign"]]
    answers = generate(model, tok, benign, work_dir / "benign_answers.jsonl",
                       max_new_tokens=cfg.harden.benign_max_new_tokens, batch_size=cfg.generation.batch_size,
                       system_prompt=cfg.model.system_prompt, desc="self-distil benign",
                       max_batch_tokens=cfg.generation.max_batch_tokens)
    # a benign answer the judge reads as a refusal would teach over-refusal: leave it out
    kept = [it for it in benign if answers[it.id]["completion"].strip() and not judge(answers[it.id]["completion"]).refused]
    examples = [Example(p, r) for _, p, r in data_plan["harmful"]]
    examples += [Example(it.prompt, answers[it.id]["completion"].strip(), complete=bool(answers[it.id].get("finished", True)))
                 for it in kept]
    random.Random(cfg.seed).shuffle(examples)
    if not examples:
        raise FtriskError("hardening has no examples: check harden.harmful and harden.benign")

    meter = CostMeter(device=str(model.device), usd_per_hour=cfg.cost.usd_per_hour)
    full = cfg.harden.method == "full"
    trained, summary = finetune(model, tok, examples, None if full else cfg.harden.lora, cfg.harden.train,
                                work_dir / "train", seed=cfg.seed, system_prompt=cfg.model.system_prompt, meter=meter,
                                desc="harden")
    merged = trained if full else trained.merge_and_unload()
    record = {
        "key": key, "base_model": cfg.model.spec, "n_harmful": len(data_plan["harmful"]),
        "harmful_sources": cfg.harden.harmful, "n_benign": len(kept),
        "n_benign_dropped_refused_by_base": len(benign) - len(kept),
        "n_excluded_overlap": data_plan["n_excluded_overlap"], "training": summary,
        "method": "full fine-tune" if full else "LoRA, merged into the weights",
    }

    def build(tmp: Path) -> None:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "hardening.json", record)

    models.atomic_dir(final, build)
    return final, record
