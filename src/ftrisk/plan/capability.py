"""The seconds of lm-eval's capability tasks: 2*N + 2*h*V per scored token (lm-eval scores every position), in
batches of ``lm_eval_batch`` requests, each a forward pass that reads the weights once."""

from __future__ import annotations

import math

from ftrisk.plan.job import CAPABILITY, Job
from ftrisk.plan.roofline import forward_flops, pass_bytes, seconds
from ftrisk.plan.shape import Shape


def capability_seconds(s: Shape, job: Job, spec: dict, task: str, items: int, shots: int) -> float:
    """lm-eval log-likelihoods of ``items`` of ``task`` with ``shots`` few-shot examples."""
    n_req = items * (4 if task == "hellaswag" else 1)
    per_req = (CAPABILITY[task][1] + shots * CAPABILITY[task][2]) * items / n_req
    batches = math.ceil(n_req / job.lm_eval_batch)
    flops = forward_flops(s, n_req * per_req, per_req, n_req * per_req) / batches
    return batches * seconds(flops, pass_bytes(s, job), s.layers, spec, job, "prefill")
