"""Hardening: make a safety-tuned subject out of a model that refuses little as shipped, by a defense recipe.

``harden.recipe`` names the recipe (registry kind ``defense``): ``refusal-sft`` (:mod:`.refusal_sft`, the default),
``deep-alignment`` (:mod:`.deep_alignment`) or ``vaccine`` (:mod:`.vaccine`); a recipe decides the harmful examples
and the trainer, this stage does the rest, the same for every recipe (docs/defenses.md).

Harmful prompts disjoint from the attack data and from every evaluation set (default:
StrongREJECT + HarmBench val) are paired with short refusals written for ftrisk; benign
instructions (written for ftrisk, some merely *sounding* risky) are paired with the base
model's own greedy answers (self-distillation keeps its benign behaviour). ``harden.method``:
LoRA then merge (the default), or a full fine-tune of every weight. The hardened model is cached
under ``$FTRISK_CACHE/hardened/<key>`` where key hashes the base model, the data and every
hyper-parameter, so a second run reuses it.
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from ftrisk import keys, registry
from ftrisk.config.identity import train_identity
from ftrisk.prompts import benchmarks
from ftrisk.model import loading as models
from ftrisk.errors import FtriskError
from ftrisk.generation import open_backend
from ftrisk.generation.resumable import generate
from ftrisk.io import read_json, write_json_atomic
from ftrisk.training.data import Example

log = logging.getLogger(__name__)


def builtin_refusals() -> list[str]:
    text = resources.files("ftrisk").joinpath("data/hardening/refusals.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def benign_items(spec: str, limit: int | None, seed: int, keep: list[str] = ()) -> list[benchmarks.Item]:
    """The benign instructions: every item of a ``keep`` category, plus a seeded sample of ``limit`` of the others."""
    items = benchmarks.builtin_benign() if spec == "builtin" else benchmarks.load_file(spec)
    rest = benchmarks.sample([it for it in items if it.category not in keep], limit, seed, "harden.benign_limit")
    chosen = {it.id for it in rest}
    return [it for it in items if it.category in keep or it.id in chosen]


def recipe(cfg):
    """The configured defense recipe (``harden.recipe``); an unknown name is one line with the known ones."""
    return registry.lookup("defense", cfg.harden.recipe)()


def plan(cfg, protected: list[benchmarks.Item]) -> dict:
    """Choose the hardening prompts: drop those that overlap attack or evaluation prompts (by normalised text); the
    recipe adds its own data (deep-alignment: an opening per augmented row)."""
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
    data_plan = {"harmful": pairs, "benign": [(it.id, it.prompt, it.category) for it in benign],
                 "n_excluded_overlap": excluded}
    return recipe(cfg).extend_plan(data_plan, cfg, protected)


def cache_key(cfg, subject, data_plan: dict, judge) -> str:
    """Every input of the hardened model: the base subject as loaded (weights, dtype, quantization, chat
    template, system prompt), the data, the method and its settings, the self-distillation decoding, and
    the judge that filters the self-distilled answers; the recipe's settings unless it is refusal-sft (whose key
    predates recipes, so its cached models are still found)."""
    h = cfg.harden
    settings = {} if h.recipe == "refusal-sft" else {"recipe": recipe(cfg).identity()}
    full = h.method == "full"
    g = cfg.generation
    return keys.stage_key(
        "harden", subject=subject.identity(), plan=data_plan, method=h.method, lora=None if full else asdict(h.lora),
        train=train_identity(h.train), benign_max_new_tokens=h.benign_max_new_tokens, seed=cfg.seed, judge=judge.identity(),
        distil={"backend": g.backend, "batch_size": g.batch_size, "max_batch_tokens": g.max_batch_tokens},
        format=2,  # 2: answers cut at benign_max_new_tokens are trained without the end-of-turn marker
        **settings,
    )


def run(cfg, work_dir: Path, data_plan: dict, judge, subject) -> tuple:
    """Harden ``subject`` on ``data_plan`` (from :func:`plan`); returns (hardened Subject, record for results.json).

    ``judge`` (the headline refusal judge) drops self-distilled benign answers that read as refusals.
    """
    if subject.quantize:
        raise FtriskError("hardening needs unquantized weights (it merges into them): unset model.quantize, "
                          "or set harden.enabled=false for a subject that is already safety-tuned")
    defense = recipe(cfg)
    key = cache_key(cfg, subject, data_plan, judge)
    final = models.cache_dir() / "hardened" / key
    if (final / ".complete").is_file():
        record = read_json(final / "hardening.json")
        record["reused_from_cache"] = True
        record.setdefault("recipe", defense.name)
        log.info("hardened model reused from cache %s", final)
        return subject.with_weights(final), record

    work_dir.mkdir(parents=True, exist_ok=True)
    benign = [benchmarks.Item(i, p, c) for i, p, c in data_plan["benign"]]
    backend = open_backend(cfg.generation.backend, subject, cfg.generation)
    answers = generate(backend, benign, work_dir / "benign_answers.jsonl", max_new_tokens=cfg.harden.benign_max_new_tokens,
                       desc="self-distil benign")
    loaded = backend.hf_model()
    backend.close()
    # a benign answer the judge reads as a refusal would teach over-refusal: leave it out
    texts = {it.id: answers[it.id]["completion"] for it in benign}
    verdicts = judge.judge([(it.prompt, texts[it.id]) for it in benign]) if benign else []
    kept = [it for it, v in zip(benign, verdicts) if texts[it.id].strip() and v.label != 1]
    examples = defense.harmful_examples(data_plan["harmful"], subject.load_tokenizer(), cfg.seed)
    examples += [Example(it.prompt, texts[it.id].strip(), complete=bool(answers[it.id].get("finished", True)))
                 for it in kept]
    random.Random(cfg.seed).shuffle(examples)
    if not examples:
        raise FtriskError("hardening has no examples: check harden.harmful and harden.benign")
    del loaded

    method = defense.trainer(cfg.harden)  # lora or full: the attack's training seam
    # another recipe's (or setting's) checkpoints and metrics in this folder are cleared, never resumed from
    keys.open_stage(work_dir / "train", key)
    result = method.run(subject, examples, work_dir / "train", seed=cfg.seed,
                        eval_at=[], usd_per_hour=cfg.cost.usd_per_hour, desc="harden")
    full = cfg.harden.method == "full"
    record = {
        "key": key, "base_model": subject.spec, "n_harmful": len(data_plan["harmful"]),
        "harmful_sources": cfg.harden.harmful, "n_benign": len(kept),
        "n_benign_dropped_refused_by_base": len(benign) - len(kept), "filter_judge": judge.name,
        "n_excluded_overlap": data_plan["n_excluded_overlap"],
        "training": {"steps": result.steps, "planned_steps": result.planned_steps, "stopped_by": result.stopped_by,
                     "examples_in_data": len(examples), "cost": result.cost, "metrics": "metrics.jsonl"},
        "method": "full fine-tune" if full else "LoRA, merged into the weights",
    }
    if defense.name != "refusal-sft":  # refusal-sft's stored record as before recipes, like its key
        record.update({"recipe": defense.name, **defense.record(data_plan)})
    merged, tok = result.subject.load()  # LoRA: the adapter merged into the weights

    def build(tmp: Path) -> None:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "hardening.json", record)
        shutil.copy(work_dir / "train" / "metrics.jsonl", tmp / "metrics.jsonl")

    models.atomic_dir(final, build)
    return subject.with_weights(final), {**record, "recipe": defense.name}
