"""The cost of ``ftrisk sweep``: N trials drawn from ``sweep.space``, the best ``top_k`` re-run with each further seed
of ``sweep.seeds``, and the subject evaluated once.

A trained trial: its attack (:func:`ftrisk.plan.attack.attack_seconds` at the trial's batch, rank and steps:
``ceil(ceil(examples / batch) * epochs)`` micro-batches, at most ``max_steps * grad_accum``, as training counts
them; a drawn ``train.max_steps`` binds, since the sweep trains enough epochs for it); the harmful benchmarks at
the bisection's points over its K checkpoints (every ``sweep.checkpoint_every`` optimizer steps): ``ceil(log2 K) + 2`` points (the bisection, the end of its budget, the checkpoint that confirms
the crossing); at the crossing, the benign (over-refusal) benchmarks and ``sweep.capability_task`` on
``capability.limit`` items. An ablation trial trains nothing: the harmful benchmarks once and the crossing's
evaluations (its direction's forward passes are small beside them).

A trial's steps and batch vary over the space, so the plan draws :data:`SAMPLES` trials from the space's prior
(choices uniform, ranges uniform or log-uniform: what Optuna's random startup trials draw), seeded, and gives their
mean (the expected trial) and median; and the upper bound, a trial at the space's costliest corner training its
whole budget. A trial stops once its crossing is confirmed and TPE's later trials move towards cheap ones, so
both figures lean high. Replies run to ``max_new_tokens`` (``stop_when_judged`` shortens them).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import statistics

from ftrisk.config.families import families
from ftrisk.config.sweep import is_int, space_of
from ftrisk.errors import FtriskError
from ftrisk.plan.attack import attack_seconds
from ftrisk.plan.capability import capability_seconds
from ftrisk.plan.estimate import plan
from ftrisk.plan.generation import generation_seconds
from ftrisk.plan.inputs import attack_examples, benchmark_prompts, job_from_config
from ftrisk.plan.job import CAPABILITY, Job
from ftrisk.plan.memory import devices_needed, memory
from ftrisk.plan.shape import Shape

#: Trials drawn from the space's prior for the mean and median (seeded: the plan is the same every time).
SAMPLES = 2048
#: The space's keys a trial's cost depends on.
COST_KEYS = ("method", "train.batch_size", "train.max_steps", "lora.r", "n_examples")


def draw(p, rng: random.Random):
    """One value of a :class:`~ftrisk.config.schema.SweepParam` from its prior."""
    if p.choices is not None:
        return rng.choice(p.choices)
    x = math.exp(rng.uniform(math.log(p.low), math.log(p.high))) if p.log else rng.uniform(p.low, p.high)
    return round(x) if is_int(p) else x


def corners(p) -> list:
    """The values a costliest trial can take: every choice, or a range's two ends."""
    return list(p.choices) if p.choices is not None else [p.low, p.high]


def bisection_points(checkpoints: int) -> int:
    """Harmful-benchmark evaluations of a trial with ``checkpoints`` checkpoints (module docstring)."""
    return math.ceil(math.log2(checkpoints)) + 2 if checkpoints > 1 else 1


class SweepCost:
    """One trial's seconds and devices from its drawn values; the evaluations' seconds are computed once."""

    def __init__(self, s: Shape, cfg, spec: dict, mfu: float | None = None):
        self.s, self.cfg, self.spec = s, cfg, spec
        self.fams = {f.label: f for f in families(cfg.attack)}
        self.base = dataclasses.replace(job_from_config(cfg), mfu_train=mfu, mfu_prefill=mfu)
        prompts = benchmark_prompts(cfg)
        self.gen = {h: self._generation(tuple(m for m, n, harm in prompts if harm == h for _ in range(n)))
                    for h in (True, False)}
        task, c = cfg.sweep.capability_task, cfg.capability
        if task not in CAPABILITY:
            raise FtriskError(f"config key 'sweep.capability_task' is '{task}': the planner knows "
                              f"{', '.join(CAPABILITY)}")
        self.capability_items = c.limit or CAPABILITY[task][0]
        self.capability = capability_seconds(s, self.base, spec, task, self.capability_items,
                                             c.num_fewshot if task == "mmlu" else 0)
        self._devices: dict[tuple, int | None] = {}

    def _generation(self, tokens: tuple) -> float:
        return generation_seconds(self.s, dataclasses.replace(self.base, prompt_tokens=tokens, reply_tokens=None),
                                  self.spec) if tokens else 0.0

    def crossing(self) -> float:
        """The crossing's evaluations: over-refusal and the capability task."""
        return self.gen[False] + self.capability

    def job(self, values: dict) -> Job | None:
        """The trial's attack as a :class:`Job`; None for a family that trains nothing."""
        fam = self.fams[values.get("method", next(iter(self.fams)))]
        if not fam.trains:
            return None
        t = fam.attack.train
        b = int(values.get("train.batch_size", t.batch_size))
        accum = t.grad_accum
        max_steps = values.get("train.max_steps", t.max_steps)
        n = values.get("n_examples")
        examples = attack_examples(dataclasses.replace(fam.attack, n_examples=int(n) if n else fam.attack.n_examples))
        micro = math.ceil(math.ceil(examples / b) * t.epochs)
        micro = min(micro, int(max_steps) * accum) if max_steps else micro
        if "train.max_steps" in values:  # a drawn budget binds: the sweep trains enough epochs (sweep.space.configure)
            micro = int(max_steps) * accum
        return dataclasses.replace(self.base, method=fam.method, batch_size=b, steps=micro, grad_accum=accum,
                                   lora_r=int(values.get("lora.r", fam.attack.lora.r)),
                                   gradient_checkpointing=t.gradient_checkpointing)

    def devices(self, job: Job) -> int | None:
        key = (job.method, job.batch_size, job.lora_r)
        if key not in self._devices:
            self._devices[key] = devices_needed(memory(self.s, job, self.spec)[0], self.s, job, self.spec)
        return self._devices[key]

    def trial(self, values: dict) -> tuple[float, float]:
        """(device-seconds of the attack, seconds of the evaluations) of one trial."""
        job = self.job(values)
        if job is None:
            return 0.0, self.gen[True] + self.crossing()
        n = self.devices(job) or 1
        opt_steps = math.ceil(job.steps / job.grad_accum)
        points = bisection_points(math.ceil(opt_steps / self.cfg.sweep.checkpoint_every))
        return n * attack_seconds(self.s, job, self.spec, n), points * self.gen[True] + self.crossing()


def sweep_plan(s: Shape, cfg, spec: dict, usd_per_hour: float | None = None, trials: int | None = None,
               mfu: float | None = None) -> dict:
    """GPU-hours and $ of a sweep of ``trials`` (default ``sweep.trials``) trials (module docstring)."""
    trials = cfg.sweep.trials if trials is None else trials
    if trials <= 0:
        raise FtriskError(f"--trials must be > 0 (got {trials})")
    price = spec["usd_per_hour"] if usd_per_hour is None else usd_per_hour
    if cfg.model.quantize and spec["name"] == "cpu":
        raise FtriskError(f"quantization {cfg.model.quantize} needs a CUDA GPU (bitsandbytes): use --quantization "
                          "none on cpu")
    cost = SweepCost(s, cfg, spec, mfu)
    space = [p for p in space_of(cfg) if p.name in COST_KEYS]
    rng = random.Random(cfg.sweep.seed)
    drawn = [sum(cost.trial({p.name: draw(p, rng) for p in space})) for _ in range(SAMPLES)]
    grid = [dict(zip([p.name for p in space], vals)) for vals in itertools.product(*map(corners, space))]
    worst = max(grid, key=lambda v: sum(cost.trial(v)))
    reruns = cfg.sweep.top_k * (len(cfg.sweep.seeds) - 1)
    subject = cost.gen[True] + cost.crossing()
    per_trial = {"mean": statistics.fmean(drawn), "median": statistics.median(drawn), "max": sum(cost.trial(worst))}

    def money(seconds: float) -> dict:
        return {"gpu_hours": round(seconds / 3600, 3), "usd": round(seconds / 3600 * price, 2)}

    # the trial that needs the most memory: each range at its top, each choice at its largest (methods: each)
    tops = {p.name: max(corners(p)) for p in space if p.name != "method"}
    methods = next((p.choices for p in space if p.name == "method"), [next(iter(cost.fams))])
    jobs = [j for j in (cost.job({**tops, "method": m}) for m in methods) if j is not None]
    largest = max(jobs, key=lambda j: sum(memory(s, j, spec)[0].values()), default=None)
    out = {"trials": trials, "reruns": reruns, "samples": SAMPLES, "usd_per_hour": price, "gpu": spec["name"],
           "per_trial": {k: money(v) for k, v in per_trial.items()},
           "subject": money(subject), "crossing_evals": money(cost.crossing()),
           "harmful_eval_per_point": money(cost.gen[True]), "capability_items": cost.capability_items,
           "total": {k: money((trials + reruns) * per_trial[k] + subject) for k in ("mean", "median", "max")},
           "costliest_trial": worst}
    if largest is not None:
        p = plan(s, largest, spec, price)
        out["largest_trial"] = {"method": largest.method, "batch_size": largest.batch_size, "lora_r": largest.lora_r,
                                "devices_needed": p["devices_needed"], "fits_one_device": p["fits_one_device"],
                                "attack_gib": p["memory_gib"]["attack"]["total"], "fit": p["fit"]}
    return out
