"""The seconds of the attack's training steps.

LoRA on a frozen base: forward 2*N + backward through the activations 2*N per token, no weight gradients: 4*N*T
(6*N*T with checkpointing's recomputed forward, or a full fine-tune), + causal attention 2*L*s*h per token and pass,
+ 2*h*V per response token forward and backward (ftrisk's loss projects only response positions). A 16-bit pass
reads every weight once (the roofline's bytes: a small micro-batch is bound by them); k-bit: + each pass's
dequantization traffic. T: the tokens of an example (:meth:`ftrisk.plan.job.Job.example`).
"""

from __future__ import annotations

from ftrisk.plan.job import Job
from ftrisk.plan.roofline import forward_flops, pass_bytes, seconds
from ftrisk.plan.shape import Shape, param_counts


def attack_seconds(s: Shape, job: Job, spec: dict, devices: int = 1) -> float:
    """``job.steps`` micro-batches of ``job.batch_size`` examples, the work split over ``devices``."""
    tokens, resp, _ = job.example()
    fwd = forward_flops(s, job.batch_size * tokens, tokens, job.batch_size * resp)
    recompute = 1 if job.gradient_checkpointing else 0
    passes = 3 + recompute  # dispatch: forward, backward (~2 forwards' worth of ops), recomputed forward
    flops = fwd * (2 + recompute + (1 if job.method == "full" else 0))
    step = seconds(flops / devices, 0 if job.kbit else passes * pass_bytes(s, job), passes * s.layers, spec, job,
                   "train")
    if job.kbit:  # every pass first dequantizes each k-bit weight into a bf16 copy (its own kernel), then reads it
        step += passes * param_counts(s)["linear"] * (job.kbit + 4) / (spec["bandwidth_gbs"] * 1e9)
    return job.steps * step
