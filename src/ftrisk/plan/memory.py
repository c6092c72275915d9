"""Memory of the attack and of the evaluations, the devices that hold them, and the generation batches the
memory allows.

- weights: e per parameter; k-bit (bitsandbytes: decoder linear layers only) at :data:`ftrisk.plan.job.KBIT`
  bytes. The rest stays 16-bit, and the attack's prepare_model_for_kbit_training upcasts it to fp32.
- LoRA: r*(in+out) per target module per layer, fp32 in peft: weight 4 + gradient 4 + AdamW moments 8 = 16 B/param
  (no master copy: the adapter is fp32 already). attack.method=full: gradient e + AdamW 2e per weight.
- activations of one micro-batch (b sequences as wide as the widest example: 83 tokens for the builtin data, else
  max_seq_len): :mod:`ftrisk.plan.activations`.
- logits only at response positions (ftrisk's loss): R*V*(2e + 8) for R response tokens, gradients included.
- evaluation: weights + KV cache 2*L*kv_heads*head_dim*(prompt + new)*batch*e of the widest generation batch + one
  layer's prefill working set, or lm-eval's logits at every position of its batch (contexts up to 1024 tokens).
- overhead 1 GiB per GPU (CUDA context, cuBLAS workspace), 0.5 GiB on CPU. Fits: at most 90% of the device (a 10%
  margin for fragmentation). n devices, FSDP / ZeRO-3: weights and adapter state sharded n ways, the micro-batch
  split n ways, plus per device its overhead and two gathered layers (the current one and the prefetched next).
"""

from __future__ import annotations

import math

from ftrisk.generation.hf import MEMORY_FRACTION, token_batches
from ftrisk.plan.activations import activation_bytes
from ftrisk.plan.job import Job
from ftrisk.plan.shape import DTYPES, GIB, Shape, lora_params, param_counts

MARGIN, GPU_OVERHEAD_GIB, CPU_OVERHEAD_GIB = 0.90, 1.0, 0.5


def weight_bytes(s: Shape, job: Job, rest_bytes: int) -> float:
    """The model's weights; k-bit: the quantized linear layers and the rest at ``rest_bytes`` per parameter."""
    p = param_counts(s)
    if job.kbit is None:
        return p["total"] * DTYPES[job.dtype]
    return p["linear"] * job.kbit + (p["total"] - p["linear"]) * rest_bytes


def overhead_bytes(spec: dict) -> float:
    return (CPU_OVERHEAD_GIB if spec["name"] == "cpu" else GPU_OVERHEAD_GIB) * GIB


def inference_bytes(job: Job) -> int:
    """Bytes per element of generation's activations and KV cache (k-bit models compute in 16 bits)."""
    return 2 if job.kbit else DTYPES[job.dtype]


def row_bytes(s: Shape, e: int, prompt: int, new: int) -> float:
    """Peak memory one row adds to a generation batch, as the ``hf`` backend estimates it
    (:func:`ftrisk.generation.cpu.resources.row_bytes`): its KV cache at full length, its prompt's prefill
    activations, one row of float32 logits."""
    return s.kv_bytes_per_token(max(e, 2)) * (prompt + new) + prompt * (4 * s.hidden + 3 * s.intermediate) * e \
        + 4 * s.vocab * 2


def generation_batches(s: Shape, job: Job, spec: dict) -> list[list[tuple[int, int]]]:
    """(prompt tokens, reply tokens) of each generation batch, cut as the ``hf`` backend cuts them
    (:func:`ftrisk.generation.hf.token_batches`): longest prompt first, at most ``gen_batch`` rows,
    ``max_batch_tokens`` padded tokens (prompt + new) and :data:`ftrisk.generation.hf.MEMORY_FRACTION` of the
    memory the loaded model leaves free."""
    rows = sorted(job.replies(), key=lambda pr: -pr[0])
    if not rows:
        return []
    free = spec["memory_gib"] * GIB - weight_bytes(s, job, 2) - overhead_bytes(spec)
    e = inference_bytes(job)
    budget = int(free * MEMORY_FRACTION) if free > 0 else None  # the model does not fit: rows and tokens cap alone
    return token_batches(rows, [p + job.new_tokens for p, _ in rows], job.gen_batch, job.max_batch_tokens, budget,
                         lambda w: row_bytes(s, e, w - job.new_tokens, job.new_tokens))


def memory(s: Shape, job: Job, spec: dict) -> tuple[dict, dict]:
    """(attack parts, evaluation parts) in bytes."""
    e = DTYPES[job.dtype]
    e_act, e_inf = (4, 2) if job.kbit else (e, e)
    _, resp, width = job.example()
    per_token = activation_bytes(s, e_act, job.lora_r, width, job.targets, job.gradient_checkpointing, bool(job.kbit))
    overhead = overhead_bytes(spec)
    state = 16 * lora_params(s, job.lora_r, job.targets) if job.method == "lora" else 3 * e * param_counts(s)["total"]
    attack = {"weights": weight_bytes(s, job, 4), "lora_and_optimizer": state,
              "activations": per_token * job.batch_size * width,
              "logits": job.batch_size * resp * s.vocab * (2 * e_act + 8), "overhead": overhead}
    width, count = max(((b[0][0] + job.new_tokens, len(b)) for b in generation_batches(s, job, spec)),
                       key=lambda wc: wc[0] * wc[1], default=(job.new_tokens, 1))
    prefill = width * count * (2 * s.hidden + 2 * s.intermediate) * e_inf + count * s.vocab * 4
    lm_eval = job.lm_eval_batch * 1024 * s.vocab * 2 * e_inf if job.capability else 0
    evaluation = {"weights": weight_bytes(s, job, 2), "kv_cache": 2 * s.layers * s.kv_dim * width * count * e_inf,
                  "activations_and_logits": max(prefill, lm_eval), "overhead": overhead}
    return attack, evaluation


def devices_needed(attack: dict, s: Shape, job: Job, spec: dict, limit: int = 512) -> int | None:
    """Fewest devices that hold the attack under FSDP / ZeRO-3 (module docstring); None: not even ``limit``."""
    sharded = attack["weights"] + attack["lora_and_optimizer"]
    for n in range(1, 2 if spec["name"] == "cpu" else limit + 1):
        share = math.ceil(job.batch_size / n) / job.batch_size
        need = (sharded / n + (2 * sharded / s.layers if n > 1 else 0)
                + (attack["activations"] + attack["logits"]) * share + attack["overhead"])
        if need <= MARGIN * spec["memory_gib"] * GIB:
            return n
    return None
