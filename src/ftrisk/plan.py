"""``ftrisk plan``: memory, devices, hours and dollars of an attack and its evaluations, before money is spent.

Reads only a model's config.json (no weights; torch only to measure a CPU). Every number is one of the
formulas below; ``--json`` gives them all. GiB = 2**30 bytes; e = bytes per element of the model dtype.

Memory
- weights: e per parameter; k-bit (bitsandbytes quantizes the decoder's linear layers only): 8bit 1 B + an
  fp32 scale per output row, 4bit NF4 0.5 B + an fp32 absmax per 64 weights (ftrisk loads without double
  quantization, which would save 0.47 bits). Embeddings, norms and lm_head stay 16-bit; in the attack peft's
  prepare_model_for_kbit_training upcasts them to fp32.
- LoRA: r*(in+out) per target module per layer, fp32 in peft: weight 4 + gradient 4 + AdamW exp_avg and
  exp_avg_sq 8 = 16 B/param (no separate master copy: the adapter already is fp32). attack.method=full: gradients e
  and AdamW moments 2e per parameter (ftrisk keeps no fp32 master copy).
- activations of one micro-batch of b sequences, s = max_seq_len tokens wide (the worst case): the tensors autograd
  saves per token per layer in transformers' Llama layer with peft LoRA and SDPA attention, counted with
  torch.autograd.graph.saved_tensors_hooks (tests/test_plan.py re-counts them): both RMSNorm inputs in fp32 (8h),
  q, k, v, the attention output and rope cos/sin (e each), SwiGLU's gate, silu and up (3e*i), each adapter's
  input in fp32 (shared when e=4), r fp32 per adapter, and the padding mask (e*s). No s^2 term: SDPA keeps no
  attention matrix. This is Korthikanti et al. (2022)'s per-layer count s*b*h*(34 + 5*a*s/h) redone for this
  code: ~67*s*b*h bytes for Llama-2-7B in bf16 (fp32 norm and adapter copies, the 2.7h SwiGLU; no dropout).
  Gradient checkpointing keeps each layer's input, e*(h + 2*head_dim) per token, plus one recomputed layer.
  A k-bit attack's activations are fp32 (the upcast embeddings and norms make the residual stream fp32).
- logits, only at response positions (ftrisk's loss): R*V*(2e + 8) bytes for R response tokens (logits and their
  fp32 log-softmax, and both gradients in the backward).
- evaluation: weights + the KV cache 2*L*kv_heads*head_dim*(prompt + new)*batch*e of the widest generation batch +
  one layer's prefill working set; capability (lm-eval) keeps logits at every position of its batch.
- overhead: 1 GiB per GPU (CUDA context, cuBLAS workspace), 0.5 GiB on CPU (torch + transformers imported).
  A plan fits when it needs at most 90% of the device's memory (10% margin for allocator fragmentation).
- n devices: FSDP / ZeRO-3 shards weights and adapter state n ways; a micro-batch is split across devices, and
  each keeps its share of activations and logits, its overhead, and two gathered layers (current + prefetched).

Time (roofline): a pass takes max(FLOPs / (peak * MFU), bytes moved / bandwidth), and at least the host's dispatch
time of dispatch_ms per layer pass (gpus.yaml; a GPU overlaps it with its kernels: max; a CPU adds it).
- attack: LoRA on a frozen base: forward 2*N + backward through the activations 2*N per token, no weight gradients
  (4*N*T; 6*N*T with checkpointing's recomputed forward, or for a full fine-tune) with N the non-embedding
  parameters, + attention 4*L*s*h per token and pass, + the vocabulary projection 2*h*V per response token forward
  and again backward. k-bit adds each pass's dequantization traffic, N_linear*(q + 4) bytes. Tokens: an
  advbench-affirm example is ~61 tokens (43 prompt with SmolLM2's chat template, 18 response), so T = steps *
  batch * min(61, max_seq_len); other attack data: max_seq_len.
- generation (per evaluated point): prefill as above; each decode step reads every weight once plus the KV cache
  (memory-bound at small batch: the max). Prompt tokens ~ characters / 4 + 30 (chat template).
- capability: 2*N + 2*h*V per scored token (lm-eval scores every position): MMLU ~112 tokens per item + ~104 per
  few-shot example, HellaSwag ~345 per item (4 endings), counted with SmolLM2's tokenizer on the vendored data.
- MFU defaults: 40% training, 50% prefill; the ``cpu`` entry's own (calibrated, see gpus.yaml). Dollars: devices
  x hours x $/hour.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import yaml

from .errors import FtriskError

GIB = 2**30
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MFU = {"train": 0.40, "prefill": 0.50}
MARGIN, GPU_OVERHEAD_GIB, CPU_OVERHEAD_GIB = 0.90, 1.0, 0.5
ATTACK_EXAMPLE = (43, 18)  # builtin:advbench-affirm: prompt (chat template included) and response tokens
TEMPLATE_TOKENS, CHARS_PER_TOKEN = 30, 4
CAPABILITY = {"mmlu": (14042, 112, 104), "hellaswag": (10042, 345, 0)}  # items, tokens per item, per few-shot
KBIT = {"8bit": 1.0, "4bit": 0.5 + 4 / 64}  # bytes per quantized weight, scales included
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """The config.json fields a plan needs (Llama-style decoder: GQA attention, gated MLP)."""
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False
    head_dim: int = 0

    @classmethod
    def from_config(cls, d: dict, where: str) -> "Shape":
        try:
            s = cls(int(d["hidden_size"]), int(d["intermediate_size"]), int(d["num_hidden_layers"]),
                    int(d["num_attention_heads"]), int(d.get("num_key_value_heads") or d["num_attention_heads"]),
                    int(d["vocab_size"]), bool(d.get("tie_word_embeddings", False)), int(d.get("head_dim") or 0))
        except (KeyError, TypeError, ValueError) as e:
            raise FtriskError(f"model config '{where}' lacks or mangles {e}: pass a Llama-style config.json") from None
        return replace(s, head_dim=s.head_dim or s.hidden // s.heads)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def module_dims(self) -> dict[str, tuple[int, int]]:
        h, i, q = self.hidden, self.intermediate, self.heads * self.head_dim
        return {"q_proj": (h, q), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_counts(s: Shape) -> dict[str, int]:
    """Parameters by part, as transformers' LlamaForCausalLM holds them (tested against it on the meta device)."""
    linear = s.layers * sum(i * o for i, o in s.module_dims().values())
    embed = s.vocab * s.hidden
    norms = (2 * s.layers + 1) * s.hidden
    lm_head = 0 if s.tied else embed
    return {"embed": embed, "linear": linear, "norms": norms, "lm_head": lm_head,
            "total": embed + linear + norms + lm_head, "body": linear + norms}


def lora_params(s: Shape, r: int, targets=TARGETS) -> int:
    dims = s.module_dims()
    unknown = [t for t in targets if t not in dims]
    if unknown:
        raise FtriskError(f"attack.lora.target_modules: unknown module {unknown[0]} (known: {', '.join(dims)})")
    return s.layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets)


def activation_bytes(s: Shape, e: int, r: int, seq: int, targets=TARGETS) -> float:
    """Bytes autograd saves per token per layer (no checkpointing): see the module docstring."""
    h, i = s.hidden, s.intermediate
    b = 2 * (4 * h + 4) + e * (2 * h + 2 * s.kv_dim + 2 * s.head_dim) + 4 * s.heads + 3 * e * i + e * seq
    inputs = {"q_proj": ("x1", h), "k_proj": ("x1", h), "v_proj": ("x1", h), "o_proj": ("attn", 0),
              "gate_proj": ("x2", h), "up_proj": ("x2", h), "down_proj": ("act", i)}
    if e == 4:  # the adapters read the fp32 tensors themselves (the attention output is counted above)
        b += 4 * sum(size for _, size in {inputs[t] for t in targets})
    else:  # peft casts each adapter's input to fp32 separately
        b += 4 * sum(s.module_dims()[t][0] for t in targets)
    return b + 4 * r * len(targets)


# --------------------------------------------------------------------------- devices

def load_gpus() -> dict[str, dict]:
    return yaml.safe_load(resources.files("ftrisk").joinpath("data", "gpus.yaml").read_text(encoding="utf-8"))


def measure_cpu_gflops(n: int = 2048, seconds: float = 0.3) -> float:
    """fp32 matmul GFLOP/s of this CPU with torch's current thread count (best of 3 timed bursts)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = 0.0
    for _ in range(3):
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            k += 1
        best = max(best, 2 * n**3 * k / (time.perf_counter() - t0) / 1e9)
    return best


def measure_cpu_bandwidth(mib: int = 256) -> float:
    """Memory bandwidth in GB/s: a tensor copy (read + write), best of 5."""
    import time

    import torch

    x = torch.empty(mib * 2**20 // 4)
    y = torch.empty_like(x)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        y.copy_(x)
        best = max(best, 2 * x.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    return best


def device_spec(name: str) -> dict:
    """A gpus.yaml entry; ``cpu`` is measured on this machine (memory, fp32 FLOP/s, bandwidth)."""
    gpus = load_gpus()
    if name not in gpus:
        raise FtriskError(f"unknown --gpu '{name}' (known: {', '.join(gpus)})")
    spec = dict(gpus[name], name=name)
    if name == "cpu":
        spec["memory_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
        spec["fp32_tflops"] = measure_cpu_gflops() / 1e3
        spec["bandwidth_gbs"] = measure_cpu_bandwidth()
    return spec


# --------------------------------------------------------------------------- the plan

@dataclass
class Job:
    """What is planned: the attack's shape and the evaluations of one point (one evaluated model)."""
    quantization: str = "none"  # none | 8bit | 4bit
    dtype: str = "bfloat16"
    method: str = "lora"
    batch_size: int = 8
    seq_len: int = 256
    steps: int = 50
    lora_r: int = 8
    targets: tuple = TARGETS
    gradient_checkpointing: bool = False
    builtin_data: bool = True
    prompt_tokens: tuple = (60,) * 710  # one entry per evaluation prompt
    new_tokens: int = 64
    gen_batch: int = 32
    max_batch_tokens: int | None = 8192
    capability: tuple = (("mmlu", 14042, 5), ("hellaswag", 10042, 0))  # (task, items, few-shot)
    lm_eval_batch: int = 4
    mfu_train: float | None = None
    mfu_prefill: float | None = None


def _gib(parts: dict) -> dict:
    out = {k: round(v / GIB, 3) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()) / GIB, 3)
    return out


def memory(s: Shape, job: Job, spec: dict) -> tuple[dict, dict]:
    """(attack parts, evaluation parts) in bytes."""
    p, e = param_counts(s), DTYPES[job.dtype]
    rest = p["total"] - p["linear"]
    q = KBIT.get(job.quantization)
    weights = p["total"] * e if q is None else p["linear"] * q + rest * 4
    n_lora = lora_params(s, job.lora_r, job.targets)
    state = 16 * n_lora if job.method == "lora" else 3 * e * p["total"]
    e_act = 4 if q else e
    per_layer = activation_bytes(s, e_act, job.lora_r, job.seq_len, job.targets)
    kept = e_act * (s.hidden + 2 * s.head_dim) * s.layers + per_layer if job.gradient_checkpointing else per_layer * s.layers
    tokens = job.batch_size * job.seq_len
    resp = job.batch_size * min(job.seq_len, ATTACK_EXAMPLE[1] if job.builtin_data else job.seq_len)
    overhead = (CPU_OVERHEAD_GIB if spec["name"] == "cpu" else GPU_OVERHEAD_GIB) * GIB
    attack = {"weights": weights, "lora_and_optimizer": state, "activations": kept * tokens,
              "logits": resp * s.vocab * (2 * e_act + 8), "overhead": overhead}
    e_inf = e if q is None else 2
    widest = max(_gen_batches(job), key=lambda b: b[0] * b[1])
    ctx_tokens = widest[0] * widest[1]
    layer_work = ctx_tokens * (2 * s.hidden + 2 * s.intermediate) * e_inf
    cap = job.lm_eval_batch * 1024 * s.vocab * 2 * e_inf if job.capability else 0  # contexts up to 1024 tokens
    evaluation = {"weights": p["total"] * e_inf if q is None else p["linear"] * q + rest * 2,
                  "kv_cache": 2 * s.layers * s.kv_dim * ctx_tokens * e_inf,
                  "activations_and_logits": max(layer_work + widest[1] * s.vocab * 4, cap), "overhead": overhead}
    return attack, evaluation


def devices_needed(attack: dict, s: Shape, job: Job, spec: dict, limit: int = 512) -> int | None:
    """Fewest devices that hold the attack under FSDP / ZeRO-3 (see the docstring); None: not even ``limit``."""
    usable = MARGIN * spec["memory_gib"] * GIB
    if sum(attack.values()) <= usable:
        return 1
    if spec["name"] == "cpu":
        return None
    layer = (attack["weights"] + attack["lora_and_optimizer"]) / s.layers
    for n in range(2, limit + 1):
        share = math.ceil(job.batch_size / n) / job.batch_size
        need = ((attack["weights"] + attack["lora_and_optimizer"]) / n + 2 * layer
                + (attack["activations"] + attack["logits"]) * share + attack["overhead"])
        if need <= usable:
            return n
    return None


def _pass_seconds(flops: float, nbytes: float, dispatch: float, spec: dict, mfu: float, bf16: bool) -> float:
    peak = (spec["bf16_tflops"] if bf16 and spec.get("bf16_tflops") else spec["fp32_tflops"]) * 1e12
    compute = max(flops / (peak * mfu), nbytes / (spec["bandwidth_gbs"] * 1e9))
    return compute + dispatch if spec["name"] == "cpu" else max(compute, dispatch)


def _mfu(job: Job, spec: dict, kind: str) -> float:
    given = job.mfu_train if kind == "train" else job.mfu_prefill
    return given or (spec.get("mfu") or {}).get(kind) or MFU[kind]


def attack_seconds(s: Shape, job: Job, spec: dict, devices: int = 1) -> float:
    p = param_counts(s)
    n, bf16 = p["body"], job.dtype != "float32" or job.quantization != "none"
    ex = min(job.seq_len, sum(ATTACK_EXAMPLE)) if job.builtin_data else job.seq_len
    resp = min(ex - 1, ATTACK_EXAMPLE[1]) if job.builtin_data else ex // 2
    passes = 3 if job.method == "lora" else 3  # forward + backward (two dispatch passes)
    passes += 1 if job.gradient_checkpointing else 0
    fwd = job.batch_size * ex * (2 * n + 4 * s.layers * ex * s.hidden) + job.batch_size * resp * 2 * s.hidden * s.vocab
    grad_passes = 2 if job.method == "full" else 1  # backward: input gradients (+ weight gradients)
    flops = fwd * (1 + grad_passes + (1 if job.gradient_checkpointing else 0))
    q = KBIT.get(job.quantization)
    dequant = passes * p["linear"] * (q + 4) if q else 0
    dispatch = passes * s.layers * spec["dispatch_ms"] / 1e3
    step = _pass_seconds(flops / devices, 0, dispatch, spec, _mfu(job, spec, "train"), bf16)
    step += dequant / (spec["bandwidth_gbs"] * 1e9)
    return job.steps * step


def _gen_batches(job: Job) -> list[tuple[int, int]]:
    """(width, count) of each generation batch: length-sorted, capped by batch size and max_batch_tokens."""
    batches, cur = [], []
    for n in sorted(job.prompt_tokens, reverse=True):
        if cur and (len(cur) >= job.gen_batch or
                    (job.max_batch_tokens and (cur[0] + job.new_tokens) * (len(cur) + 1) > job.max_batch_tokens)):
            batches.append((cur[0] + job.new_tokens, len(cur)))
            cur = []
        cur.append(n)
    return batches + [(cur[0] + job.new_tokens, len(cur))] if cur else batches or [(job.new_tokens, 1)]


def generation_seconds(s: Shape, job: Job, spec: dict) -> float:
    p, e = param_counts(s), DTYPES[job.dtype]
    q = KBIT.get(job.quantization)
    wbytes = p["total"] * e if q is None else p["linear"] * (q + 4) + (p["total"] - p["linear"]) * 2
    bf16, mfu = job.dtype != "float32" or q is not None, _mfu(job, spec, "prefill")
    dispatch = s.layers * spec["dispatch_ms"] / 1e3
    total = 0.0
    for width, count in _gen_batches(job):
        prompt = width - job.new_tokens
        flops = count * prompt * (2 * p["body"] + 4 * s.layers * prompt * s.hidden) + count * 2 * s.hidden * s.vocab
        total += _pass_seconds(flops, wbytes, dispatch, spec, mfu, bf16)
        for t in range(job.new_tokens):
            ctx = prompt + t
            kv = 2 * s.layers * s.kv_dim * ctx * count * (e if q is None else 2)
            flops = count * (2 * p["body"] + 2 * s.hidden * s.vocab + 4 * s.layers * ctx * s.hidden)
            total += _pass_seconds(flops, wbytes + kv, dispatch, spec, mfu, bf16)
    return total


def capability_seconds(s: Shape, job: Job, spec: dict, task: str, items: int, shots: int) -> float:
    p = param_counts(s)
    per_item = CAPABILITY[task][1] + shots * CAPABILITY[task][2]
    flops = items * per_item * (2 * p["body"] + 2 * s.hidden * s.vocab + 2 * s.layers * per_item * s.hidden)
    batches = math.ceil(items * (4 if task == "hellaswag" else 1) / job.lm_eval_batch)
    wbytes = param_counts(s)["total"] * DTYPES[job.dtype] * (0.3 if job.quantization == "4bit" else 1)
    bf16 = job.dtype != "float32" or job.quantization != "none"
    return batches * _pass_seconds(flops / batches, wbytes, s.layers * spec["dispatch_ms"] / 1e3, spec,
                                   _mfu(job, spec, "prefill"), bf16)


def plan(s: Shape, job: Job, spec: dict, usd_per_hour: float | None = None, model: str = "") -> dict:
    if job.quantization != "none" and spec["name"] == "cpu":
        raise FtriskError(f"--quantization {job.quantization} needs a CUDA GPU (bitsandbytes): use --quantization none on cpu")
    price = spec["usd_per_hour"] if usd_per_hour is None else usd_per_hour
    attack, evaluation = memory(s, job, spec)
    n = devices_needed(attack, s, job, spec)
    hours = attack_seconds(s, job, spec, n or 1) / 3600
    evals = {"refusal": generation_seconds(s, job, spec) / 3600}
    evals.update({t: capability_seconds(s, job, spec, t, k, f) / 3600 for t, k, f in job.capability})
    return {
        "model": model, "gpu": spec["name"], "device_memory_gib": round(spec["memory_gib"], 1),
        "quantization": job.quantization, "dtype": job.dtype, "params": param_counts(s)["total"],
        "lora_params": lora_params(s, job.lora_r, job.targets), "job": {k: v for k, v in vars(job).items()
                                                                        if k not in ("prompt_tokens", "targets")},
        "eval_prompts": len(job.prompt_tokens), "memory_gib": {"attack": _gib(attack), "eval": _gib(evaluation)},
        "fits_one_device": n == 1, "devices_needed": n, "usd_per_hour": price,
        "attack_hours": round(hours, 4), "attack_usd": round(hours * price * (n or 1), 2),
        "evals": {k: {"hours": round(v, 4), "usd": round(v * price, 2)} for k, v in evals.items()},
        "assumptions": f"margin {1 - MARGIN:.0%} of device memory; MFU train {_mfu(job, spec, 'train'):.0%}, "
                       f"prefill {_mfu(job, spec, 'prefill'):.0%}; formulas: ftrisk/plan.py docstring",
    }


def verdict(p: dict) -> str:
    used, cap = p["memory_gib"]["attack"]["total"], p["device_memory_gib"]
    if p["fits_one_device"]:
        return f"fits on one {p['gpu']} ({used:.1f} of {cap:.0f} GiB)"
    if p["devices_needed"] is None:
        return f"does not fit on {p['gpu']} ({used:.1f} GiB needed, {cap:.0f} GiB there)"
    return f"needs {p['devices_needed']} x {p['gpu']} (FSDP; {used:.1f} GiB in all)"
