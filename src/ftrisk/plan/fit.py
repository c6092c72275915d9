"""What would make an attack fit one device: gradient checkpointing, a smaller micro-batch with gradient
accumulation, a 4-bit base, alone or together, each with its memory and its attack's time.

The order of the answer: changes that leave the attack's arithmetic as configured (checkpointing recomputes each
layer's forward; a micro-batch of b/k with k times the accumulation gives the same optimizer steps) before 4-bit,
which changes the model under attack (its measured cost to undo is then the quantized model's); among those, the
cheapest attack by the planner's own time model, then the fewest changes. Checkpointing costs a recomputed forward
(for LoRA, about +50% of the step's FLOPs); a smaller micro-batch costs the weight reads (a k-bit base: its
dequantization) and the host's dispatch of each extra pass, which is small for a 16-bit model and not for a k-bit
one.
"""

from __future__ import annotations

import dataclasses
import itertools

from ftrisk.plan.attack import attack_seconds
from ftrisk.plan.job import Job
from ftrisk.plan.memory import devices_needed, memory
from ftrisk.plan.shape import GIB, Shape


def micro_batches(b: int) -> list[int]:
    """Smaller micro-batches to try for ``b`` examples: each divisor of ``b`` (so the accumulated optimizer step
    holds the same examples), largest first."""
    return [d for d in range(b - 1, 0, -1) if b % d == 0]


def variants(job: Job, spec: dict) -> list[tuple[tuple[str, ...], Job]]:
    """Every combination of the changes not already in ``job`` (none first), each as (names, changed job)."""
    quant = [False] + ([True] if job.quantization != "4bit" and job.method == "lora" and spec["name"] != "cpu" else [])
    ckpt = [False] + ([True] if not job.gradient_checkpointing else [])
    out = []
    for q, c, m in itertools.product(quant, ckpt, [job.batch_size] + micro_batches(job.batch_size)):
        k = job.batch_size // m
        changed = dataclasses.replace(job, quantization="4bit" if q else job.quantization,
                                      gradient_checkpointing=job.gradient_checkpointing or c, batch_size=m,
                                      steps=job.steps * k, grad_accum=job.grad_accum * k)
        names = tuple(n for n, on in (("checkpointing", c), ("micro-batch", m != job.batch_size), ("4bit", q)) if on)
        out.append((names, changed))
    return out


def fit_options(s: Shape, job: Job, spec: dict) -> list[dict]:
    """The changes under which the attack fits one device, best first (module docstring); per combination of
    changes only its largest micro-batch that fits, and no combination that holds a fitting one. Empty: nothing
    fits one device, not even all of them together."""
    base = attack_seconds(s, job, spec)
    found: dict[tuple, dict] = {}
    for names, changed in variants(job, spec):
        key = names
        if not names or key in found:
            continue
        attack, _ = memory(s, changed, spec)
        if devices_needed(attack, s, changed, spec, limit=1) != 1:
            continue
        secs = attack_seconds(s, changed, spec)
        found[key] = {"changes": list(names), "job": changed, "attack_gib": round(sum(attack.values()) / GIB, 2),
                      "attack_seconds": secs, "slower": secs / base - 1 if base else 0.0}
    # a combination that holds one which fits by itself is never the better answer
    kept = [o for k, o in found.items() if not any(set(j) < set(k) for j in found)]
    return sorted(kept, key=lambda o: ("4bit" in o["changes"], o["attack_seconds"], len(o["changes"])))


def describe(option: dict, job: Job) -> str:
    """``gradient checkpointing``, ``micro-batch 4 x grad_accum 2``, ``4-bit base``, joined by ``and``."""
    j = option["job"]
    words = {"checkpointing": "gradient checkpointing",
             "micro-batch": f"micro-batch {j.batch_size} x grad_accum {j.grad_accum} (was {job.batch_size} x "
                            f"{job.grad_accum})",
             "4bit": "a 4-bit base (QLoRA; a different model under attack)"}
    return " and ".join(words[c] for c in option["changes"])
