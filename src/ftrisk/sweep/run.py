"""``ftrisk sweep``: prepare the subject once (the pipeline's own harden and evaluate stages, keyed and resumable),
run the study (:mod:`.study`), then write ``results.json`` and the reports (:mod:`.results`, :mod:`.report`)."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import TrialState

from ftrisk import config, keys
from ftrisk.io import write_json_atomic
from ftrisk.pipeline.run import Experiment
from ftrisk.sweep import results as sweep_results
from ftrisk.sweep import storage as stores
from ftrisk.sweep.measure import Measure
from ftrisk.sweep.report import write_reports
from ftrisk.sweep.study import OBJECTIVE_KEY, Worker, names

log = logging.getLogger(__name__)

#: settings that do not change what a trial does: a study may be continued under other values of these
NOT_IDENTITY = ("trials", "storage", "heartbeat_seconds", "max_retry", "top_k", "seeds")


@dataclass
class Context:
    cfg: object
    exp: Experiment
    subject: object
    fams: dict
    data: dict
    measure: Measure
    out: Path
    config_key: str
    subject_stage: dict


def config_key(cfg) -> str:
    d = config.to_dict(cfg)
    d.pop("output_dir", None)
    d["sweep"] = {k: v for k, v in d["sweep"].items() if k not in NOT_IDENTITY}
    return keys.stage_key("sweep", config=d)


def prepare(cfg, overwrite: bool = False) -> Context:
    """The checked experiment, its subject (hardened when the config says so) and the subject's own scores."""
    exp = Experiment(cfg, overwrite)
    subject = exp.harden()
    stage = "hardened" if cfg.harden.enabled else "base"
    rec = exp.evaluate(stage, subject, capability=True)
    fams = {f.label: f for f in exp.families}
    return Context(
        cfg,
        exp,
        subject,
        fams,
        {k: v[0] for k, v in exp.data.items()},
        Measure(exp, subject, rec),
        exp.out,
        config_key(cfg),
        rec,
    )


def sweep(cfg, *, storage: str | None = None, worker: bool = False, overwrite: bool = False) -> dict | None:
    """Run (or continue, or help with) the sweep; the coordinating process (not ``worker``) writes the results."""
    t0 = time.perf_counter()
    ctx = prepare(cfg, overwrite)
    url = storage or cfg.sweep.storage or stores.default_url(ctx.out)
    w = Worker(ctx, url, worker)
    w.run()
    if worker:
        return None
    return write_results(ctx, w, url, time.perf_counter() - t0)


def write_results(ctx, w, url: str, wall: float) -> dict:
    search, seeds = names(ctx.cfg)
    trials = w.study(search, create=False).get_trials(deepcopy=False)
    seed_trials = w.study(seeds).get_trials(deepcopy=False)
    res = sweep_results.build(
        trials,
        seed_trials,
        cfg=ctx.cfg,
        subject_stage=ctx.subject_stage,
        decision=ctx.measure.decision,
        objective_key=OBJECTIVE_KEY[ctx.cfg.sweep.objective],
    )
    res["storage"] = stores.mask(url)
    res["wall_seconds_this_process"] = round(wall, 1)
    res["drawn_while_running"] = drawn_while_running(trials)
    res["subject_stage"] = {k: ctx.subject_stage[k] for k in ("benchmarks", "capability") if k in ctx.subject_stage}
    res["headline_judge"] = ctx.exp.judges[0].name
    res["config"] = dataclasses.asdict(ctx.cfg.sweep)
    res["provenance"] = ctx.exp.results.get("provenance")
    write_json_atomic(ctx.out / "results.json", res)
    write_reports(ctx.out, res)
    return res


def drawn_while_running(trials) -> int:
    """Trials that started while an earlier one had not finished (their draw could not see its result)."""
    done = [(t.datetime_start, t.datetime_complete) for t in trials if t.datetime_start and t.datetime_complete]
    return sum(
        1
        for t in trials
        if t.datetime_start
        and t.state != TrialState.WAITING
        and any(s < t.datetime_start < c for s, c in done if (s, c) != (t.datetime_start, t.datetime_complete))
    )
