"""The study: Optuna's TPE over ``sweep.space``, one trial at a time per worker, any number of workers.

Parallelism is Optuna's own: every worker runs ``study.optimize(n_trials=1)`` against the shared storage until the
study has ``sweep.trials`` finished trials (complete or pruned; failed ones are not counted: a worker killed mid-trial
leaves its trial failed, and the heartbeat's ``RetryFailedTrialCallback`` enqueues it again, to resume in the same
folder). Trial n draws from a TPE sampler seeded by (``sweep.seed``, n), so the random start-up trials are the same
however many workers run; later draws depend on which trials had finished when they were drawn, so several workers
can differ from one (the report says how many trials were drawn while others were running). Trial 0 is the config's
own recipe, unchanged. After the search the best ``top_k`` configurations are re-run with ``sweep.seeds`` in a
second study (``<name>-seeds``) that workers share the same way.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from ftrisk.errors import FtriskError
from ftrisk.sweep import storage as stores
from ftrisk.sweep.space import RECIPE, configure, suggest
from ftrisk.sweep.trial import Hooks, Stopped, run_trial

log = logging.getLogger(__name__)

OBJECTIVE_KEY = {"usd": "usd", "seconds": "wall_seconds", "flops": "flops"}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
POLL_SECONDS = 2.0
SEEDS_ENQUEUED = "ftrisk_seeds_enqueued"


def names(cfg) -> tuple[str, str]:
    return f"ftrisk-{cfg.name}", f"ftrisk-{cfg.name}-seeds"


def feasible(rec: dict, cfg) -> tuple[bool, list[float]]:
    """(the crossing is within the capability and KL bounds, Optuna constraint values: <= 0 is feasible)."""
    c = rec.get("crossing") or {}
    cap = c.get("capability") or {}
    values = [-(cap["delta"]) - cfg.sweep.epsilon if cap.get("delta") is not None else 0.0]
    if cfg.sweep.kl_max is not None:
        values.append((c.get("kl_harmless") or 0.0) - cfg.sweep.kl_max)
    return rec.get("reached", False) and all(v <= 0 for v in values), values


def best_cost(study, cfg) -> float | None:
    """The objective of the cheapest feasible finished trial so far (None: none yet)."""
    vals = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and t.user_attrs.get("feasible")
    ]
    return min(vals, default=None)


class Worker:
    def __init__(self, ctx, url: str, worker: bool):
        self.ctx, self.cfg, self.worker = ctx, ctx.cfg, worker
        self.storage = stores.open_storage(url, ctx.cfg.sweep.heartbeat_seconds, ctx.cfg.sweep.max_retry)
        self.heartbeat = isinstance(self.storage, RDBStorage)  # Optuna's journal storage has no heartbeats
        self.n_data = {label: len(ex) for label, ex in ctx.data.items()}
        self.obj = OBJECTIVE_KEY[self.cfg.sweep.objective]

    def study(self, name: str, n: int = 0, create: bool = True):
        s = self.cfg.sweep
        sampler = optuna.samplers.TPESampler(seed=s.seed * 1_000_003 + n, n_startup_trials=s.startup_trials)
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=s.startup_trials, n_warmup_steps=2 * s.checkpoint_every)
            if s.pruner == "median"
            else optuna.pruners.NopPruner()
        )
        return stores.load_study(name, self.storage, self.ctx.config_key, sampler=sampler, pruner=pruner, create=create)

    # ------------------------------------------------------------------ phases
    def run(self) -> None:
        search, seeds = names(self.cfg)
        study = self.study(search, create=not self.worker)
        if not self.worker and not study.get_trials(deepcopy=False):
            study.enqueue_trial({}, user_attrs={RECIPE: True})  # trial 0: the config's own recipe
        self.phase(search, "search")
        if not self.worker:
            self.wait(search)
            self.enqueue_seeds()
        self.phase(seeds, "seeds")
        if not self.worker:
            self.wait(seeds)

    def phase(self, name: str, kind: str) -> None:
        failed_budget = max(3, self.cfg.sweep.trials)
        while True:
            try:
                study = self.study(
                    name,
                    len(self.study(name, create=kind == "search" and not self.worker).get_trials(deepcopy=False)),
                    create=False,
                )
            except FtriskError:
                if kind == "seeds":
                    return  # no seeds study yet: nothing for a worker to do
                raise
            if self.heartbeat:
                optuna.storages.fail_stale_trials(study)
            states = Counter(t.state for t in study.get_trials(deepcopy=False))
            finished = sum(states[s] for s in FINISHED)
            fails = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                if t.user_attrs.get("fail_reason")
            ]  # a killed worker's trial has none: it is retried
            if len(fails) >= failed_budget:
                raise FtriskError(
                    f"{len(fails)} trials of the sweep failed on their own; the first: "
                    f"{fails[0].user_attrs['fail_reason'][:300]}"
                )
            if kind == "search":
                if finished >= self.cfg.sweep.trials:
                    return
                if finished + states[TrialState.RUNNING] >= self.cfg.sweep.trials and not states[TrialState.WAITING]:
                    time.sleep(POLL_SECONDS)  # enough trials are running elsewhere: wait for them (or their retry)
                    continue
            elif not states[TrialState.WAITING]:
                return
            study.optimize(
                lambda t: self.objective(t, kind, study), n_trials=1, catch=(Exception,), gc_after_trial=True
            )

    def wait(self, name: str) -> None:
        """Until no trial of ``name`` is running or waiting (a dead worker's trial is failed, retried and run here)."""
        while True:
            study = self.study(name, create=False)
            if self.heartbeat:
                optuna.storages.fail_stale_trials(study)
            states = Counter(t.state for t in study.get_trials(deepcopy=False))
            if states[TrialState.WAITING]:
                study.optimize(
                    lambda t: self.objective(t, "seeds" if name.endswith("-seeds") else "search", study),
                    n_trials=1,
                    catch=(Exception,),
                    gc_after_trial=True,
                )
            elif states[TrialState.RUNNING]:
                time.sleep(POLL_SECONDS)
            else:
                return

    def enqueue_seeds(self) -> None:
        search, seeds = names(self.cfg)
        study = self.study(seeds)
        if study.user_attrs.get(SEEDS_ENQUEUED):
            return
        done = self.study(search, create=False).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = sorted((t for t in done if t.user_attrs.get("feasible")), key=lambda t: (t.value, t.number))
        for t in best[: self.cfg.sweep.top_k]:
            rec = t.user_attrs["record"]
            for seed in self.cfg.sweep.seeds:
                if seed != rec["seed"]:
                    study.enqueue_trial(
                        {},
                        user_attrs={"of": t.number, "seed": seed, "label": rec["label"], "settings": rec["settings"]},
                    )
        study.set_user_attr(SEEDS_ENQUEUED, True)

    # ------------------------------------------------------------------ one trial
    def objective(self, trial, kind: str, study) -> float:
        ctx = self.ctx
        if kind == "seeds":
            ua = trial.user_attrs
            tc = configure(ctx.fams[ua["label"]], ua["settings"], self.n_data[ua["label"]])
            seed, folder, hooks = ua["seed"], ctx.out / "trials" / f"seed-{ua['of']}-{ua['seed']}", Hooks()
        else:
            number = stores.retried_from(trial)
            if trial.user_attrs.get(RECIPE):
                fam = next(f for f in ctx.fams.values() if f.method in ("lora", "full", "ablation"))
                tc = configure(fam, {}, self.n_data[fam.label])
            else:
                tc = suggest(trial, self.cfg, ctx.fams, self.n_data)
            seed, folder = self.cfg.seed, ctx.out / "trials" / f"trial-{number}"
            hooks = Hooks(report=self.reporter(trial, study), audit=number < self.cfg.sweep.audit_trials and tc.trains)
        trial.set_user_attr("config", {"label": tc.label, "settings": tc.settings})
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        before = Counter(ctx.measure.times)
        try:
            rec = run_trial(ctx, tc, seed, folder, hooks)
        except Exception as e:  # noqa: BLE001 -- a trial that crashes on its own (OOM, NaN loss) fails with its reason
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:500])
            raise
        spent = {k: round(v - before.get(k, 0.0), 2) for k, v in ctx.measure.times.items() if v - before.get(k, 0.0)}
        rec.setdefault("seconds", spent)
        ok, constraints = feasible(rec, self.cfg)
        rec["feasible"] = ok
        trial.set_user_attr("record", rec)
        trial.set_user_attr("feasible", ok)
        trial.set_user_attr("folder", str(folder.relative_to(ctx.out)))
        for i, v in enumerate(constraints):
            trial.set_constraint(f"c{i}", v)
        if not rec["reached"]:
            lowest = rec.get("lowest") or {}
            raise optuna.TrialPruned(
                rec.get("stopped") or f"not reached; lowest {100 * (lowest.get('rate') or 0):.1f}%"
            )
        return float(rec["cost"][self.obj])

    def reporter(self, trial, study):
        def report(step: int, rate: float, cost: dict) -> None:
            trial.report(rate, step)
            if trial.should_prune():
                raise Stopped(
                    f"pruned at step {step}: refusal {100 * rate:.1f}% above the median of other trials there"
                )
            best = best_cost(study, self.cfg)
            if best is not None and cost.get(self.obj, 0.0) >= best:
                raise Stopped(f"stopped at step {step}: already costlier than the cheapest feasible trial")

        return report
