"""The seconds of the refusal evaluation's greedy generation, counted as the default ``hf`` backend runs it
(:mod:`ftrisk.generation.hf`, :mod:`ftrisk.generation.cpu.loop`; vLLM and CTranslate2 schedule their own work).

Per generation batch (:func:`ftrisk.plan.memory.generation_batches`):

- the prompt prefix its rows have alike (``Job.shared_tokens``: the chat template's system turn and user header)
  is computed once, as one row;
- the rest of each prompt is prefilled in groups on top of it, each padded only to its own longest (on the CPU at
  most :data:`~ftrisk.generation.cpu.prefill.PREFILL_ROWS` rows and
  :data:`~ftrisk.generation.cpu.prefill.PREFILL_TOKENS` padded tokens, elsewhere one group:
  :func:`ftrisk.generation.cpu.prefill.prefill_groups`); this pass gives each row its first new token, from the
  LM head at the last position only;
- then one decode step per further token over the rows whose reply has not ended (finished rows leave the batch;
  without reply lengths every row runs to ``new_tokens``). A step computes 2*N + attention + the LM head per row and
  reads every weight once, plus the KV cache: on the CPU the positions every row holds alike (the prefix) and the
  padding once, from the first row; elsewhere each row's whole cache. At a small batch it is bound by the weights.

Each pass is one roofline step (:mod:`ftrisk.plan.roofline`) at the FLOP/s of the decode loop's linear kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftrisk.generation.cpu.loop import MIN_SHARED_PREFIX
from ftrisk.generation.cpu.prefill import prefill_groups
from ftrisk.plan.job import Job
from ftrisk.plan.memory import generation_batches, inference_bytes
from ftrisk.plan.roofline import forward_flops, pass_bytes, seconds
from ftrisk.plan.shape import Shape


@dataclass(frozen=True)
class Pass:
    """One forward pass of the decode loop."""
    what: str  # "prefix" (the shared prefix, once), "prefill" (a group of rows' own tokens), "decode" (one step)
    rows: int  # rows in the pass: each gets one position through the LM head
    tokens: int  # positions computed (padding included)
    context: float  # twice the mean cache positions a computed position attends to (roofline.forward_flops)
    kv_read: int  # cache positions read from memory (keys and values of every layer)


def batch_passes(batch: list[tuple[int, int]], job: Job, cpu: bool) -> list[Pass]:
    """The passes of one batch of (prompt tokens, reply tokens), longest prompt first."""
    shared = min(job.shared_tokens, min(p for p, _ in batch) - 1) if len(batch) > 1 else 0
    shared = shared if shared >= MIN_SHARED_PREFIX else 0
    tails = [p - shared for p, _ in batch]
    width = tails[0]
    passes = [Pass("prefix", 1, shared, shared, 0)] if shared else []
    for group in prefill_groups(tails, cpu):
        w = tails[group[0]]
        passes.append(Pass("prefill", len(group), len(group) * w, 2 * shared + w, 0))
    for step in range(1, job.new_tokens):
        alive = [tail for tail, (_, reply) in zip(tails, batch) if reply >= step]
        if not alive:
            break
        ctx = shared + width + step
        kv = shared + width - min(alive) + sum(t + step for t in alive) if cpu else len(alive) * ctx
        passes.append(Pass("decode", len(alive), len(alive), 2 * ctx, kv))
    return passes


def generation_passes(s: Shape, job: Job, spec: dict) -> list[Pass]:
    """Every pass of the evaluation's generation, batch after batch."""
    cpu = spec["name"] == "cpu"
    return [p for batch in generation_batches(s, job, spec) for p in batch_passes(batch, job, cpu)]


def pass_seconds(s: Shape, job: Job, spec: dict, p: Pass) -> float:
    nbytes = pass_bytes(s, job) + p.kv_read * s.kv_bytes_per_token(inference_bytes(job))
    return seconds(forward_flops(s, p.tokens, p.context, p.rows), nbytes, s.layers, spec, job, "prefill",
                   generation=True)


def generation_seconds(s: Shape, job: Job, spec: dict) -> float:
    """Greedy generation of every evaluation prompt (module docstring)."""
    return sum(pass_seconds(s, job, spec, p) for p in generation_passes(s, job, spec))
