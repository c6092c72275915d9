"""``ftrisk run``: base eval -> harden -> eval -> attack (evaluated along the way) -> results.json + reports.

Every stage is keyed by all of its inputs (:mod:`ftrisk.keys`): re-running the same command resumes,
never redoes finished work, and a changed input redoes only the stages that read it. Judging is
keyed apart from generation, so adding a judge to a finished run judges only. ``results.json`` is
rebuilt from the stages of the current config at every run.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from ftrisk import config, distributed, keys, logs, registry
from ftrisk.attacks import AttackContext, AttackResult, eval_steps, run_attack
from ftrisk.attacks.data import builtin_items, load_data, overlap_warning
from ftrisk.attacks.prefill import with_prefix
from ftrisk.capability import harness
from ftrisk.capability.deltas import deltas
from ftrisk.config.identity import attack_fields
from ftrisk.defenses import harden
from ftrisk.io import write_json_atomic, write_text_atomic
from ftrisk.judges import profile
from ftrisk.memory import release_freed_memory
from ftrisk.model import loading as models
from ftrisk.model.subject import Subject
from ftrisk.pipeline import evaluate
from ftrisk.progress import Progress
from ftrisk.prompts import benchmarks
from ftrisk.provenance import record as provenance_record
from ftrisk.report import summary
from ftrisk.report.html import write_reports
from ftrisk.training.data import plan_steps

log = logging.getLogger(__name__)


def prepare_output(cfg, overwrite: bool = False) -> Path:
    """Claim the output folder (``--overwrite`` empties it first); the current config is written there."""
    out = cfg.out
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", config.dump(cfg))
    return out


def hardening_protected(cfg) -> list:
    """The prompts hardening never trains on, whatever the run attacks or evaluates: every built-in attack data
    set and every registered benchmark that is not one of ``harden.harmful``."""
    items = builtin_items()
    for name in benchmarks.names():
        if name not in cfg.harden.harmful:
            items += benchmarks.load(name)
    return items


def attack_identity(attack) -> dict:
    """What a family's attack stage depends on: a trained family its data, LoRA and training settings (the keys
    of a single-method run are as before); ablation its settings; prefill nothing but its name."""
    d = attack_fields(attack)
    for k in ("seeds", "eval_at", "methods"):
        d.pop(k, None)
    if attack.method == "ablation":
        return {"method": "ablation", "ablation": d["ablation"]}
    if attack.method == "prefill":
        return {"method": "prefill"}
    d.pop("ablation", None)
    return d


def stage_name(seed: int, step: int, final: bool, first_seed: bool) -> str:
    name = "attacked" if final else f"step-{step}"
    return name if first_seed else f"seed-{seed}/{name}"


class Experiment:
    """One configured experiment; each method is a stage and is safe to call again.

    Everything is checked before the first model loads: judges, backend, attack method and data,
    quantization, benchmarks and capability tasks. A failed check writes nothing.
    """

    def __init__(self, cfg, overwrite: bool = False):
        self.cfg = cfg
        self.judges = evaluate.build_judges(cfg)
        self.profiles = ({**profile.shipped(), **profile.load(cfg.eval.judge_profiles)} if cfg.eval.judge_profiles
                         else None)  # a bad profile file fails here, before any model loads
        refusal_judges = [j for j in self.judges if j.measures == "refusal"]
        self.filter_judge = refusal_judges[0] if refusal_judges else registry.lookup("judge", "refusal-patterns")()
        backend_cls = registry.lookup("backend", cfg.generation.backend)  # a missing optional engine fails here
        self.families = config.families(cfg.attack)
        methods = {f.label: registry.lookup("attack", f.method) for f in self.families}
        models.check_quantization(cfg.model.quantize, models.pick_device(cfg.model.device))
        self.data = {f.label: load_data(f.attack.data) if f.trains else ([], []) for f in self.families}  # bad data fails early
        self.attack_examples, self.attack_items = self.data[self.families[0].label]
        self.subject = Subject.from_config(cfg.model)
        self.subject.load_tokenizer()  # no chat template: fail now, not after the output folder exists
        backend_cls.check(self.subject, cfg.generation)
        evals = [(evaluate.select(ref, cfg.seed), evaluate.is_harmful(ref)) for ref in cfg.eval.benchmarks]
        self.harmful = {name: h for (name, _), h in evals}
        self.license = {name: benchmarks.license_of(ref.name) if ref.name in benchmarks.names() else f"user file {ref.name}"
                        for ((name, _), _), ref in zip(evals, cfg.eval.benchmarks)}
        full = [evaluate.select(dataclasses.replace(ref, limit=None), cfg.seed) for ref in cfg.eval.benchmarks]
        self.protected = [it for _, items in full for it in items]
        for f in self.families:  # an attack's own prompts disjoint from evaluation, its architecture, its backend
            methods[f.label].check(f.attack, subject=self.subject, protected=self.protected, backend_cls=backend_cls)
        # the hardened subject depends only on the base model and the hardening recipe: hardening leaves out a
        # fixed protected set (every built-in attack data set, every registered benchmark it does not train on),
        # never the configured attack data, so every attack family of every run attacks the same subject
        self.harden_plan = harden.plan(cfg, hardening_protected(cfg)) if cfg.harden.enabled else {"harmful": [], "benign": []}
        hardened = [benchmarks.Item(i, p) for i, p, *_ in self.harden_plan["harmful"]]
        hardened += [benchmarks.Item(i, p) for i, p, *_ in self.harden_plan["benign"]]
        for f in self.families:  # user data that shares prompts with hardening: allowed (the subject stays the same)
            line = overlap_warning(f.attack.data, self.data[f.label][1], hardened) if f.trains else None
            if line:
                log.warning("%s: the attack trains on prompts the subject was hardened to refuse", line)
        trained = [it for _, items in self.data.values() for it in items] + hardened
        self.evals, self.excluded = [], {}
        for (name, items), _ in evals:
            drop = set() if cfg.eval.allow_overlap else benchmarks.overlap(items, trained)
            self.excluded[name] = len(drop)
            self.evals.append((name, [it for it in items if it.id not in drop]))
        self.eval_at = {f.label: eval_steps(f.attack.eval_at, plan_steps(min(len(self.data[f.label][0]),
                                                                             f.attack.n_examples or 10**12),
                                                                         f.attack.train))
                        if f.trains else [1] for f in self.families}
        self.seeds = cfg.attack.seeds or [cfg.seed]
        # claim the output folder only once every input has been checked: a failed command writes nothing
        self.out = prepare_output(cfg, overwrite)
        if distributed.is_main_process():
            logs.log_to(self.out)  # library warnings go to the run's log, not the console
        for j in self.judges:
            j.set_cache_dir(self.out / "judge-cache")
        self.results: dict = {"stages": {}}
        self.progress = Progress(self._stage_count())

    def family_seeds(self, family) -> list[int]:
        """A family that trains runs every seed of ``attack.seeds``; ablation and prefill, the first only."""
        return self.seeds if family.trains else self.seeds[:1]

    def _begin(self, what: str) -> None:
        self.progress.begin(what)
        release_freed_memory()  # what the last stage freed, given back before this one allocates in its own pattern

    def _stage_count(self) -> int:
        attacks = sum(len(self.family_seeds(f)) * (1 + len([s for s in self.eval_at[f.label] if s > 0]))
                      for f in self.families)
        return 1 + 2 * self.cfg.harden.enabled + attacks

    # ------------------------------------------------------------------ stages
    def evaluate(self, stage: str, subject: Subject, *, point: dict | None = None, capability: bool = False) -> dict:
        cfg = self.cfg
        self._begin(f"evaluate {stage}")
        d = self.out / "eval" / stage
        evals = self.evals
        if point is not None and point.get("prefill"):  # harmful prompts only, each reply started from its prefix
            evals = [(name, with_prefix(items)) for name, items in self.evals if self.harmful[name]]
        done, backend = evaluate.generate_stage(d, subject, evals, cfg.generation, self.judges, stage)
        bench, agree = evaluate.judge_stage(d, self.judges, evals, self.harmful, stage, profiles=self.profiles)
        for name in bench:
            bench[name]["n_excluded_overlap"] = self.excluded.get(name, 0)
        s = subject.to_json(self.out)
        result = {"model": s["path"], "adapter": s["adapter"], "subject": s, "generation": done["generation"],
                  "benchmarks": bench}
        if agree:
            result["agreement"] = agree
        if point is not None:
            result["point"] = point
        if capability and cfg.capability.enabled:
            reuse = backend.hf_model() if backend and (subject.adapter is None or subject.quantize) else None
            if backend is not None:  # an engine (vLLM) holding GPU memory, or what hf keeps between calls: freed first
                backend.close()
                backend = None
            result["capability"] = harness.evaluate(subject, cfg.capability, self.out / "capability" / stage,
                                                    seed=cfg.seed, loaded=reuse)
        if backend is not None:
            backend.close()
        self.results["stages"][stage] = result
        self.save()
        return result

    def harden(self) -> Subject:
        if not self.cfg.harden.enabled:
            return self.subject
        self._begin("harden")
        subject, rec = harden.run(self.cfg, self.out / "harden", self.harden_plan, self.filter_judge, self.subject)
        self.results["harden"] = {**rec, "model": subject.path}
        self.save()
        return subject

    def attack(self, subject: Subject, seed: int, family=None) -> AttackResult:
        cfg = self.cfg
        family = family or self.families[0]
        label = "" if family.primary else f"{family.label}/"
        self._begin(f"attack {label}(seed {seed})" if family.trains else f"attack {family.label}")
        d = self.out / "attack" / f"{label}seed-{seed}"
        key = keys.stage_key("attack", subject=subject.identity(), attack=attack_identity(family.attack),
                             eval_at=self.eval_at[family.label], seed=seed)
        with distributed.main_process_first():  # under accelerate launch rank 0 claims (or clears) the folder first
            done = keys.open_stage(d, key)
        if done is None:
            context = AttackContext(judge=self.filter_judge, generation=cfg.generation, protected=self.protected)
            result = run_attack(dataclasses.replace(family.attack, eval_at=self.eval_at[family.label] if family.trains
                                                    else None), subject, self.data[family.label][0], d, seed=seed,
                                usd_per_hour=cfg.cost.usd_per_hour, context=context)
            if distributed.is_main_process():
                keys.close_stage(d, key, result.to_json(d))
        else:
            result = AttackResult.from_json(done, d)
        rec = {**result.to_json(self.out), "adapter": result.subject.to_json(self.out)["adapter"],
               "data": family.attack.data if family.trains else None, "eval_at": self.eval_at[family.label],
               "family": family.label}
        seeds = self.family_seeds(family)
        entry = self._family_entry(family)
        entry["records"][str(seed)] = rec
        if seed == seeds[0]:
            entry["info"] = {k: v for k, v in rec.items() if k not in ("subject", "cost", "points", "adapter", "metrics")}
        if family.primary:
            if seed == seeds[0]:
                self.results["attack"] = rec
            if len(seeds) > 1:
                self.results.setdefault("attacks", {})[str(seed)] = rec
        self.save()
        return result

    def _family_entry(self, family) -> dict:
        fams = self.results.setdefault("families", [])
        for e in fams:
            if e["label"] == family.label:
                return e
        e = {"label": family.label, "method": family.method, "trains": family.trains,
             "data": family.attack.data if family.trains else None, "seeds": self.family_seeds(family),
             "info": {}, "records": {}}
        fams.append(e)
        return e

    def evaluate_attack(self, result: AttackResult, subject_stage: str, family=None) -> None:
        family = family or self.families[0]
        cap_at = set(self.cfg.capability.at or []) if family.trains else set()
        first = result.seed == self.family_seeds(family)[0]
        for p in result.points:
            final = p is result.points[-1]
            name = ("" if family.primary else f"{family.label}/") + stage_name(result.seed, p.step, final, first)
            point = {"seed": result.seed, "step": p.step, "cost": p.cost, "subject_stage": subject_stage,
                     "method": family.label, "trains": family.trains, **({"prefill": True} if p.prefill else {})}
            # a prefilled reply changes no weight: its capability is the subject's, not measured again
            self.evaluate(name, p.subject, point=point, capability=(final or p.step in cap_at) and not p.prefill)

    def capability_deltas(self, subject_stage: str) -> None:
        """The paired capability change, computed once and stored: hardened vs base, every attack point vs the
        attack's subject."""
        stages = self.results["stages"]
        for name, st in stages.items():
            ref = subject_stage if st.get("point") else ("base" if name == "hardened" else None)
            if ref and st.get("capability") and stages.get(ref, {}).get("capability"):
                st["capability_delta"] = {"vs": ref, **deltas(stages[ref]["capability"], st["capability"])}
        self.save()

    def save(self) -> None:
        if not distributed.is_main_process():  # under accelerate launch rank 0 writes
            return
        self.results["headline_judge"] = self.judges[0].name
        self.results["judges"] = {j.name: {"measures": j.measures, "identity": j.identity()} for j in self.judges}
        self.results["provenance"] = provenance_record(
            config.dump(self.cfg), seed=self.cfg.seed, model_spec=self.cfg.model.spec,
            model_fingerprint=self.subject.fingerprint, subject=self.subject.identity(), judge=self.judges[0].name,
            quantization=models.QUANTIZATION.get(self.cfg.model.quantize),
            benchmarks={n: {"n": len(items), "harmful": self.harmful[n], "license": self.license[n]}
                        for n, items in self.evals})
        write_json_atomic(self.out / "results.json", self.results)


def run(cfg, overwrite: bool = False, until: str = "report", on_ready=None) -> dict:
    """The whole experiment; ``until`` = harden | attack | report stops early. ``on_ready(cfg)`` is called once every
    input has been checked, before any work (the CLI prints the plan's verdict there)."""
    exp = Experiment(cfg, overwrite)
    if on_ready is not None:
        on_ready(cfg)
    cap = cfg.capability.enabled
    exp.evaluate("base", exp.subject, capability=cap)
    subject = exp.harden()
    if until == "harden":
        return exp.results
    subject_stage = "base"
    if cfg.harden.enabled:
        exp.evaluate("hardened", subject, capability=cap)
        subject_stage = "hardened"
    for family in exp.families:
        for seed in exp.family_seeds(family):
            result = exp.attack(subject, seed, family)
            if until != "attack":
                exp.evaluate_attack(result, subject_stage, family)
    if until == "attack":
        return exp.results
    exp.capability_deltas(subject_stage)
    exp.results["summary"] = summary.build(exp.results, cfg.report.threshold)
    exp.save()
    exp.progress.done()
    write_reports(exp.out, exp.results, cfg)
    return exp.results
