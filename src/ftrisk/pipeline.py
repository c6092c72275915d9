"""``ftrisk run``: base eval -> harden -> eval -> attack -> eval (-> checkpoints) -> results.json + report.md.

Resumable: every stage stores a key (a hash of its inputs) in ``<stage dir>/stage.json``; a stage
whose key matches is skipped, one whose key differs is redone from scratch, and a stage that was
interrupted picks up its partial work (completions, training checkpoints) when its key matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

from . import attack, benchmarks, config, harden, judges, models, refusal
from .errors import FtriskError
from .io import read_json, write_json_atomic, write_text_atomic
from .provenance import record as provenance_record

log = logging.getLogger(__name__)


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _open_stage(d: Path, key: str) -> dict | None:
    """Return the stage's finished result if its key matches; otherwise make ``d`` ready for (re)work."""
    state = read_json(d / "stage.json")
    if state and state.get("key") == key and state.get("done"):
        return state["result"]
    if state and state.get("key") != key:
        shutil.rmtree(d)  # inputs changed: partial work belongs to other inputs
    d.mkdir(parents=True, exist_ok=True)
    write_json_atomic(d / "stage.json", {"key": key, "done": False})
    return None


def _close_stage(d: Path, key: str, result: dict) -> dict:
    write_json_atomic(d / "stage.json", {"key": key, "done": True, "result": result})
    return result


def prepare_output(cfg, overwrite: bool = False) -> Path:
    """Claim the output folder; refuse one left by a different config unless ``overwrite``."""
    out = cfg.out
    dump = config.dump(cfg)
    old = out / "config.yaml"
    if old.is_file() and old.read_text(encoding="utf-8") != dump:
        if not overwrite:
            raise FtriskError(f"output folder '{out}' holds a run of a different config: "
                              "pass --overwrite to replace it, or set output_dir")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(old, dump)
    return out


class Experiment:
    """One configured experiment; each method is a stage and is safe to call again."""

    def __init__(self, cfg, overwrite: bool = False):
        self.cfg = cfg
        self.judge = judges.from_config(cfg.eval.judge)
        self.attack_examples, self.attack_items = attack.load_data(cfg.attack.data)  # bad data fails early
        self.base_path = models.resolve(cfg.model.spec)
        evals = [refusal.select(ref, cfg.seed) for ref in cfg.eval.benchmarks]
        # hardening must not see any prompt of an evaluation set, sampled this time or not: the cached
        # hardened model is then valid for every `limit`
        full = [refusal.select(dataclasses.replace(ref, limit=None), cfg.seed) for ref in cfg.eval.benchmarks]
        protected = self.attack_items + [it for _, items in full for it in items]
        self.harden_plan = harden.plan(cfg, protected) if cfg.harden.enabled else {"harmful": [], "benign": []}
        trained = self.attack_items + [benchmarks.Item(i, p) for i, p, *_ in self.harden_plan["harmful"]]
        trained += [benchmarks.Item(i, p) for i, p, *_ in self.harden_plan["benign"]]
        self.evals, self.excluded = [], {}
        for name, items in evals:
            drop = set() if cfg.eval.allow_overlap else benchmarks.overlap(items, trained)
            self.excluded[name] = len(drop)
            self.evals.append((name, [it for it in items if it.id not in drop]))
        # claim the output folder only once every input has been checked: a failed command writes nothing
        self.out = prepare_output(cfg, overwrite)
        self.results = read_json(self.out / "results.json") or {}
        self.results.setdefault("stages", {})

    # ------------------------------------------------------------------ stages
    def evaluate(self, stage: str, model_path: Path | str, adapter: Path | None = None) -> dict:
        cfg = self.cfg
        key = _key({"model": models.fingerprint(model_path), "adapter": models.adapter_fingerprint(adapter),
                    "items": {n: [it.id for it in items] for n, items in self.evals},
                    "generation": dataclasses.asdict(cfg.generation), "system": cfg.model.system_prompt,
                    "judge": self.judge.name, "capability": dataclasses.asdict(cfg.capability), "seed": cfg.seed})
        d = self.out / "eval" / stage
        done = _open_stage(d, key)
        if done is None:
            model, tok = models.load(dataclasses.replace(cfg.model, spec=str(model_path)), adapter=adapter)
            result = {"model": str(model_path), "adapter": str(adapter) if adapter else None,
                      "benchmarks": refusal.evaluate(model, tok, self.evals, d, judge=self.judge,
                                                     gen_cfg=cfg.generation, system_prompt=cfg.model.system_prompt,
                                                     stage=stage, excluded=self.excluded)}
            result["generation"] = read_json(d / "generation.json")
            del model
            if cfg.capability.enabled:
                from . import capability

                result["capability"] = capability.evaluate(
                    model_path, adapter, cfg.capability, d / "capability", seed=cfg.seed,
                    device=models.pick_device(cfg.model.device), dtype=cfg.model.dtype,
                    trust_remote_code=cfg.model.trust_remote_code)
            done = _close_stage(d, key, result)
        self.results["stages"][stage] = done
        self.save()
        return done

    def harden(self) -> Path:
        if not self.cfg.harden.enabled:
            return self.base_path
        path, rec = harden.run(self.cfg, self.out / "harden", self.harden_plan, self.judge)
        self.results["harden"] = {**rec, "model": str(path)}
        self.save()
        return path

    def attack(self, subject: Path) -> dict:
        cfg = self.cfg
        key = _key({"subject": models.fingerprint(subject), "attack": dataclasses.asdict(cfg.attack),
                    "seed": cfg.seed, "system": cfg.model.system_prompt})
        d = self.out / "attack"
        done = _open_stage(d, key)
        if done is None:
            done = _close_stage(d, key, attack.run(cfg, subject, d))
        self.results["attack"] = done
        self.save()
        return done

    def capability_deltas(self) -> None:
        """Paired capability change of each stage against the stage before it (same items)."""
        if not self.cfg.capability.enabled:
            return
        from .capability import compare

        stages = self.results["stages"]
        names = list(stages)
        for prev, cur in zip(names, names[1:]):
            ref = "hardened" if cur.startswith("checkpoint-") and "hardened" in stages else prev
            if stages[cur].get("capability") and stages[ref].get("capability"):
                stages[cur]["capability_delta"] = {"vs": ref, **compare(stages[ref]["capability"], stages[cur]["capability"])}
        self.save()

    def save(self) -> None:
        self.results["provenance"] = provenance_record(
            config.dump(self.cfg), seed=self.cfg.seed, model_spec=self.cfg.model.spec,
            model_fingerprint=models.fingerprint(self.base_path), judge=self.judge.name,
            benchmarks={n: {"n": len(items), "license": benchmarks.license_of(n) if n in benchmarks.names() else "user file"}
                        for n, items in self.evals})
        write_json_atomic(self.out / "results.json", self.results)


def run(cfg, overwrite: bool = False, until: str = "report") -> dict:
    """The whole experiment; ``until`` = harden | attack | report stops early."""
    exp = Experiment(cfg, overwrite)
    exp.evaluate("base", exp.base_path)
    subject = exp.harden()
    if until == "harden":
        return exp.results
    if cfg.harden.enabled:
        exp.evaluate("hardened", subject)
    rec = exp.attack(subject)
    if until == "attack":
        return exp.results
    adapter = Path(rec["adapter"])
    exp.evaluate("attacked", subject, adapter)
    if cfg.eval_checkpoints:
        for name in rec["checkpoints"]:
            exp.evaluate(name, subject, exp.out / "attack" / name)
    exp.capability_deltas()
    from . import report

    write_text_atomic(exp.out / "report.md", report.render(exp.results, cfg))
    return exp.results
