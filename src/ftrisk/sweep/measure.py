"""What a trial measures, and only where it needs it: refusal on the decision benchmark at the checkpoints the
search asks for; every evaluation benchmark (over-refusal included), capability on ``sweep.capability_task`` and the
first-token KL on harmless prompts at the crossing alone. Generation and judging are the pipeline's own
(:mod:`ftrisk.pipeline.evaluate`: keyed, resumable, completions only in the run folder); each measurement's time goes
to its own account (generation, judging, capability, kl)."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from pathlib import Path

from ftrisk.attacks.ablation.select import first_token_kl
from ftrisk.capability import harness
from ftrisk.capability.deltas import deltas
from ftrisk.io import read_jsonl
from ftrisk.memory import release_freed_memory
from ftrisk.pipeline import evaluate
from ftrisk.prompts import benchmarks
from ftrisk.sweep.degenerate import degenerate_counts

KL_PROMPTS = 32
"""Harmless prompts of the KL measure (a seeded sample of the shipped benign instructions)."""


class Measure:
    """The measurements of one sweep on one subject (the hardened model every trial attacks)."""

    def __init__(self, exp, subject, subject_stage: dict):
        cfg = exp.cfg
        self.cfg, self.exp, self.subject = cfg, exp, subject
        self.judges = exp.judges
        harmful = [n for n, _ in exp.evals if exp.harmful[n]]
        self.decision = cfg.sweep.benchmark or harmful[0]
        self.benches = dict(exp.evals)
        self.subject_rate = subject_stage["benchmarks"][self.decision]["refusal_rate"]
        self.subject_capability = subject_stage.get("capability") or {}
        self.times: Counter = Counter()
        self.kl_prompts = [
            it.prompt for it in random.Random(f"sweep-kl:{cfg.seed}").sample(benchmarks.builtin_benign(), KL_PROMPTS)
        ]
        self._base = None

    def refusal(self, subject, d: Path, names: list[str], full_length: bool = False) -> tuple[dict, int]:
        """({benchmark: the headline judge's summary}, tokens generated) of ``subject`` on ``names``, stored in
        ``d``; ``full_length``: replies to max_new_tokens even under ``stop_when_judged`` (the plain schedule)."""
        gen = dataclasses.replace(self.cfg.generation, stop_when_judged=False) if full_length else self.cfg.generation
        benches = [(n, self.benches[n]) for n in names]
        t0 = time.perf_counter()
        done, backend = evaluate.generate_stage(d, subject, benches, gen, self.judges, d.name)
        if backend is not None:
            backend.close()
            self.times["generation"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        results, _ = evaluate.judge_stage(d, self.judges, benches, self.exp.harmful, d.name, profiles=self.exp.profiles)
        self.times["judging"] += time.perf_counter() - t1
        tokens = sum(int(r.get("new_tokens") or 0) for n in names for r in read_jsonl(d / f"{n}.completions.jsonl"))
        return results, tokens

    def rate(self, subject, d: Path) -> tuple[float, int]:
        """(refusal rate on the decision benchmark by the headline judge, tokens generated)."""
        results, tokens = self.refusal(subject, d, [self.decision])
        return results[self.decision]["refusal_rate"], tokens

    def at_crossing(self, subject, d: Path, decided: Path) -> dict:
        """Every benchmark, capability, KL and degenerate replies of the attacked ``subject``; ``decided``: the
        folder of its evaluation on the decision benchmark (reused, not generated again)."""
        others = [n for n in self.benches if n != self.decision]
        results, tokens = self.refusal(subject, d / "eval", others) if others else ({}, 0)
        results.update(self.refusal(subject, decided, [self.decision])[0])
        out = {
            "benchmarks": {
                n: {"refusal_rate": r["refusal_rate"], "ci95": r["ci95"], "n": r["n"], "harmful": self.exp.harmful[n]}
                for n, r in results.items()
            },
            "tokens": tokens,
            "degenerate": degenerate_counts(read_jsonl(decided / f"{self.decision}.completions.jsonl")),
        }
        task = self.cfg.sweep.capability_task
        if self.cfg.capability.enabled and task in self.subject_capability:
            t0 = time.perf_counter()
            cap_cfg = dataclasses.replace(self.cfg.capability, tasks=[task])
            cap = harness.evaluate(subject, cap_cfg, d / "capability", seed=self.cfg.seed)
            self.times["capability"] += time.perf_counter() - t0
            delta = deltas({task: self.subject_capability[task]}, cap)[task]
            out["capability"] = {
                "task": task,
                "score": cap[task]["acc"],
                "subject": self.subject_capability[task]["acc"],
                "delta": delta.get("delta"),
                "ci95": delta.get("ci95"),
                "n": cap[task]["n"],
            }
        t0 = time.perf_counter()
        out["kl_harmless"] = self.kl(subject)
        self.times["kl"] += time.perf_counter() - t0
        release_freed_memory()
        return out

    def kl(self, subject) -> float:
        """First-token KL(subject || attacked) on the harmless prompts, in nats (heretic's measure)."""
        if self._base is None:
            self._base = self.subject.load()
        model, tok = self._base
        attacked, _ = subject.load()
        try:
            return round(first_token_kl(model, attacked, tok, self.kl_prompts, self.subject.system_prompt), 5)
        finally:
            del attacked
