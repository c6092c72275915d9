"""``ftrisk plan``: memory, devices, hours and dollars of an attack and its evaluations, before money is spent.

This module is the model; the command line and its table are :mod:`ftrisk.cli.plan`.

Reads only a model's config.json (no weights; torch only to measure a CPU). GiB = 2**30 B; e = bytes per element of
the model dtype; N = non-embedding parameters; h, i, L, V = hidden, MLP, layers, vocabulary; s = tokens per sequence.

Memory
- weights: e per parameter; k-bit (bitsandbytes: decoder linear layers only) 8bit 1 B + an fp32 scale per row, 4bit
  NF4 0.5 B + an fp32 absmax per 64 weights (ftrisk loads without double quantization). The rest stays 16-bit, and
  the attack's prepare_model_for_kbit_training upcasts it to fp32.
- LoRA: r*(in+out) per target module per layer, fp32 in peft: weight 4 + gradient 4 + AdamW moments 8 = 16 B/param
  (no master copy: the adapter is fp32 already). attack.method=full: gradient e + AdamW 2e per weight.
- activations of one micro-batch (b sequences as wide as the widest batch: 83 tokens for the builtin data, else
  max_seq_len): what autograd saves per token per layer in transformers' Llama layer with peft LoRA and SDPA, counted
  with torch.autograd.graph.saved_tensors_hooks (the tests re-count it): both RMSNorm inputs in fp32 (8h); q, k, v
  (repeated to every head in a padded batch), the attention output (e*h each); SwiGLU's gate, silu, up (3e*i); each
  adapter's input in fp32 (shared when e=4) and r fp32; the padding mask (e*s). No s^2 term (SDPA
  keeps no attention matrix). Korthikanti et al. (2022)'s s*b*h*(34 + 5*a*s/h), redone for this code, is ~67*s*b*h
  for Llama-2-7B in bf16. Gradient checkpointing keeps each layer's input (e*h per token) + one recomputed layer.
  k-bit: fp32 activations (the upcast embeddings and norms make the residual stream fp32) + bitsandbytes' bf16 copy
  of each linear layer's input.
- logits only at response positions (ftrisk's loss): R*V*(2e + 8) for R response tokens, gradients included.
- evaluation: weights + KV cache 2*L*kv_heads*head_dim*(prompt + new)*batch*e of the widest generation batch + one
  layer's prefill working set, or lm-eval's logits at every position of its batch (contexts up to 1024 tokens).
- overhead 1 GiB per GPU (CUDA context, cuBLAS workspace), 0.5 GiB on CPU. Fits: at most 90% of the device (a 10%
  margin for fragmentation). n devices, FSDP / ZeRO-3: weights and adapter state sharded n ways, the micro-batch
  split n ways, plus per device its overhead and two gathered layers (the current one and the prefetched next).

Time: a pass takes max(FLOPs / (peak * MFU), bytes moved / bandwidth) (roofline), and at least the host's dispatch_ms
per layer pass (gpus.yaml; a GPU overlaps it with its kernels: max; a CPU runs it in line: added).
- attack (LoRA, frozen base): forward 2*N + backward through the activations 2*N per token, no weight gradients:
  4*N*T (6*N*T with checkpointing's recomputed forward, or a full fine-tune), + causal attention 2*L*s*h per token
  and pass, + 2*h*V per response token forward and backward. k-bit: + each pass's dequantization traffic. T: an
  advbench-affirm example is ~61 tokens (43 prompt with the chat template, 18 response; SmolLM2's tokenizer).
- generation (per evaluated point): a prefill, then per new token a decode step that reads every weight and the KV
  cache (memory-bound at small batch). Prompt tokens ~ characters / 4 + 30 (chat template).
- capability: 2*N + 2*h*V per scored token (lm-eval scores every position): MMLU ~112 tokens per item + ~104 per
  few-shot example (one forward per item), HellaSwag 4 forwards of ~86 tokens.
- MFU: 40% training, 50% prefill, or the device's own (cpu: calibrated, gpus.yaml). $ = devices x hours x $/hour.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ftrisk.errors import FtriskError

GIB = 2**30
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MFU = {"train": 0.40, "prefill": 0.50}
MARGIN, GPU_OVERHEAD_GIB, CPU_OVERHEAD_GIB = 0.90, 1.0, 0.5
ATTACK_EXAMPLE = {"tokens": 61, "response": 18, "widest": 83, "examples": 400}  # builtin:advbench-affirm
TEMPLATE_TOKENS, CHARS_PER_TOKEN = 30, 4
CAPABILITY = {"mmlu": (14042, 112, 104), "hellaswag": (10042, 345, 0)}  # items, tokens per item, per few-shot
KBIT = {"8bit": 1.0, "4bit": 0.5 + 4 / 64}  # bytes per quantized weight, scales included
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """The config.json fields a plan needs (a Llama-style decoder: GQA attention, gated MLP)."""
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False
    head_dim: int = 0

    def __post_init__(self):
        object.__setattr__(self, "head_dim", self.head_dim or self.hidden // self.heads)

    @classmethod
    def from_config(cls, d: dict, where: str) -> "Shape":
        try:
            return cls(int(d["hidden_size"]), int(d["intermediate_size"]), int(d["num_hidden_layers"]),
                       int(d["num_attention_heads"]), int(d.get("num_key_value_heads") or d["num_attention_heads"]),
                       int(d["vocab_size"]), bool(d.get("tie_word_embeddings", False)), int(d.get("head_dim") or 0))
        except (KeyError, TypeError, ValueError) as e:
            raise FtriskError(f"model config '{where}' lacks or mangles {e}: pass a Llama-style config.json") from None

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def module_dims(self) -> dict[str, tuple[int, int]]:
        h, i, q, kv = self.hidden, self.intermediate, self.heads * self.head_dim, self.kv_dim
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_counts(s: Shape) -> dict[str, int]:
    """Parameters by part, as transformers' LlamaForCausalLM holds them (tested on the meta device)."""
    linear = s.layers * sum(i * o for i, o in s.module_dims().values())
    embed, norms = s.vocab * s.hidden, (2 * s.layers + 1) * s.hidden
    total = embed + linear + norms + (0 if s.tied else embed)
    return {"embed": embed, "linear": linear, "norms": norms, "total": total, "body": linear + norms}


def lora_params(s: Shape, r: int, targets=TARGETS) -> int:
    dims = s.module_dims()
    for t in targets:
        if t not in dims:
            raise FtriskError(f"attack.lora.target_modules: unknown module '{t}' (known: {', '.join(dims)})")
    return s.layers * sum(r * sum(dims[t]) for t in targets)


def layer_activation_bytes(s: Shape, e: int, r: int, seq: int, targets=TARGETS, kbit: bool = False) -> float:
    """Bytes autograd keeps per token in one decoder layer (module docstring)."""
    h, i = s.hidden, s.intermediate
    # norms' fp32 inputs; q, k, v, output (k, v repeated to every head: a padded batch makes transformers call
    # repeat_kv rather than SDPA's own GQA) and the logsumexp; SwiGLU; the padding mask
    b = 2 * (4 * h + 4) + 4 * e * s.heads * s.head_dim + 4 * s.heads + 3 * e * i + e * seq
    if e == 4:  # the adapters read the fp32 tensors themselves; o_proj's input is the attention output above
        source = {"q_proj": ("x1", h), "k_proj": ("x1", h), "v_proj": ("x1", h), "o_proj": ("attn", 0),
                  "gate_proj": ("x2", h), "up_proj": ("x2", h), "down_proj": ("act", i)}
        b += 4 * sum(size for _, size in {source[t] for t in targets})
    else:  # peft casts each adapter's input to fp32 separately
        b += 4 * sum(s.module_dims()[t][0] for t in targets)
    if kbit:  # bitsandbytes' k-bit matmul keeps its own bf16 copy of each linear layer's input
        b += 2 * sum(i for i, _ in s.module_dims().values())
    return b + 4 * r * len(targets)


def activation_bytes(s: Shape, e: int, r: int, seq: int, targets=TARGETS, checkpointing: bool = False,
                     kbit: bool = False) -> float:
    """Bytes autograd keeps per token in the whole decoder, at the peak of the backward."""
    layer = layer_activation_bytes(s, e, r, seq, targets, kbit)
    if checkpointing:  # each layer's input, one layer recomputed at a time, the final norm's fp32 input
        return s.layers * e * s.hidden + layer + 4 * s.hidden + 4
    return s.layers * layer  # the final norm's input stands in for the first norm's (the embedding needs no grad)


# --------------------------------------------------------------------------- devices

def load_gpus() -> dict[str, dict]:
    return yaml.safe_load(resources.files("ftrisk").joinpath("data", "gpus.yaml").read_text(encoding="utf-8"))


def _median_rate(work: float, fn, bursts: int = 5, seconds: float = 0.1) -> float:
    """work / second of ``fn``: the median of short bursts (robust to a busy machine)."""
    rates = []
    for _ in range(bursts):
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            fn()
            k += 1
        rates.append(work * k / (time.perf_counter() - t0))
    return sorted(rates)[bursts // 2]


def measure_cpu_gflops(n: int = 1536) -> float:
    """fp32 matmul GFLOP/s at torch's current thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return _median_rate(2 * n**3 / 1e9, lambda: a @ b)


def measure_cpu_bandwidth(mib: int = 128) -> float:
    """Memory bandwidth in GB/s: a tensor copy (read + write)."""
    import torch

    x = torch.empty(mib * 2**18)
    y = torch.empty_like(x)
    return _median_rate(2 * mib * 2**20 / 1e9, lambda: y.copy_(x))


def device_spec(name: str) -> dict:
    """A gpus.yaml entry; ``cpu`` is measured on this machine (memory, fp32 FLOP/s, bandwidth)."""
    gpus = load_gpus()
    if name not in gpus:
        raise FtriskError(f"unknown --gpu '{name}' (known: {', '.join(gpus)})")
    spec = dict(gpus[name], name=name)
    if name == "cpu":
        spec.update(memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
                    fp32_tflops=measure_cpu_gflops() / 1e3, bandwidth_gbs=measure_cpu_bandwidth())
    return spec


# --------------------------------------------------------------------------- the plan

@dataclass
class Job:
    """What is planned: the attack, and the evaluations of one evaluated point (one model)."""
    quantization: str = "none"  # none | 8bit | 4bit
    dtype: str = "bfloat16"
    method: str = "lora"  # lora | full
    batch_size: int = 8
    seq_len: int = 256
    steps: int = 50  # micro-batches of batch_size
    lora_r: int = 8
    targets: tuple = TARGETS
    gradient_checkpointing: bool = False
    builtin_data: bool = True
    prompt_tokens: tuple = (60,) * 710  # one per evaluation prompt
    new_tokens: int = 64
    gen_batch: int = 32
    max_batch_tokens: int | None = 8192
    capability: tuple = (("mmlu", 14042, 5), ("hellaswag", 10042, 0))  # (task, items, few-shot)
    lm_eval_batch: int = 4
    mfu_train: float | None = None
    mfu_prefill: float | None = None

    @property
    def kbit(self) -> float | None:
        return KBIT.get(self.quantization)

    def example(self) -> tuple[int, int, int]:
        """(mean tokens, response tokens, widest) of an attack example."""
        if not self.builtin_data:
            return self.seq_len, self.seq_len // 2, self.seq_len
        n = min(self.seq_len, ATTACK_EXAMPLE["tokens"])
        return n, min(n - 1, ATTACK_EXAMPLE["response"]), min(self.seq_len, ATTACK_EXAMPLE["widest"])


def weight_bytes(s: Shape, job: Job, rest_bytes: int) -> float:
    p = param_counts(s)
    if job.kbit is None:
        return p["total"] * DTYPES[job.dtype]
    return p["linear"] * job.kbit + (p["total"] - p["linear"]) * rest_bytes


def memory(s: Shape, job: Job, spec: dict) -> tuple[dict, dict]:
    """(attack parts, evaluation parts) in bytes."""
    e = DTYPES[job.dtype]
    e_act, e_inf = (4, 2) if job.kbit else (e, e)
    _, resp, width = job.example()
    per_token = activation_bytes(s, e_act, job.lora_r, width, job.targets, job.gradient_checkpointing, bool(job.kbit))
    overhead = (CPU_OVERHEAD_GIB if spec["name"] == "cpu" else GPU_OVERHEAD_GIB) * GIB
    state = 16 * lora_params(s, job.lora_r, job.targets) if job.method == "lora" else 3 * e * param_counts(s)["total"]
    attack = {"weights": weight_bytes(s, job, 4), "lora_and_optimizer": state,
              "activations": per_token * job.batch_size * width,
              "logits": job.batch_size * resp * s.vocab * (2 * e_act + 8), "overhead": overhead}
    width, count = max(_gen_batches(job), key=lambda b: b[0] * b[1])
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


def _mfu(job: Job, spec: dict, kind: str) -> float:
    return (job.mfu_train if kind == "train" else job.mfu_prefill) or (spec.get("mfu") or {}).get(kind) or MFU[kind]


def _seconds(flops: float, nbytes: float, layer_passes: int, spec: dict, job: Job, kind: str) -> float:
    """One roofline step: max(compute, memory traffic), with the host's dispatch time (max on a GPU, + on a CPU)."""
    bf16 = (job.dtype != "float32" or job.kbit) and spec.get("bf16_tflops")
    peak = (spec["bf16_tflops"] if bf16 else spec["fp32_tflops"]) * 1e12
    busy = max(flops / (peak * _mfu(job, spec, kind)), nbytes / (spec["bandwidth_gbs"] * 1e9))
    dispatch = layer_passes * spec["dispatch_ms"] / 1e3
    return busy + dispatch if spec["name"] == "cpu" else max(busy, dispatch)


def _forward_flops(s: Shape, tokens: float, context: float, vocab_positions: float) -> float:
    """2*N per token, causal attention 2*L*context*h per token, the vocabulary 2*h*V per projected position."""
    per_token = 2 * param_counts(s)["body"] + 2 * s.layers * context * s.hidden
    return tokens * per_token + vocab_positions * 2 * s.hidden * s.vocab


def attack_seconds(s: Shape, job: Job, spec: dict, devices: int = 1) -> float:
    tokens, resp, _ = job.example()
    fwd = _forward_flops(s, job.batch_size * tokens, tokens, job.batch_size * resp)
    recompute = 1 if job.gradient_checkpointing else 0
    passes = 3 + recompute  # dispatch: forward, backward (~2 forwards' worth of ops), recomputed forward
    flops = fwd * (2 + recompute + (1 if job.method == "full" else 0))
    step = _seconds(flops / devices, 0, passes * s.layers, spec, job, "train")
    if job.kbit:  # every pass dequantizes each k-bit weight into a bf16 copy, then reads it
        step += passes * param_counts(s)["linear"] * (job.kbit + 4) / (spec["bandwidth_gbs"] * 1e9)
    return job.steps * step


def _gen_batches(job: Job) -> list[tuple[int, int]]:
    """(width, count) of each generation batch: length-sorted, capped by batch size and max_batch_tokens."""
    batches, cur = [], []
    for n in sorted(job.prompt_tokens, reverse=True):
        if cur and (len(cur) >= job.gen_batch or
                    job.max_batch_tokens and (cur[0] + job.new_tokens) * (len(cur) + 1) > job.max_batch_tokens):
            batches.append((cur[0] + job.new_tokens, len(cur)))
            cur = []
        cur.append(n)
    return batches + [(cur[0] + job.new_tokens, len(cur))] if cur else [(job.new_tokens, 1)]


def generation_seconds(s: Shape, job: Job, spec: dict) -> float:
    """Greedy generation of every prompt: a prefill, then new_tokens decode steps per batch."""
    wbytes = weight_bytes(s, job, 2) + (param_counts(s)["linear"] * 4 if job.kbit else 0)  # + dequantized copy
    e, total = (2 if job.kbit else DTYPES[job.dtype]), 0.0
    for width, count in _gen_batches(job):
        prompt = width - job.new_tokens
        total += _seconds(_forward_flops(s, count * prompt, prompt, count), wbytes, s.layers, spec, job, "prefill")
        for ctx in range(prompt, width):
            kv = 2 * s.layers * s.kv_dim * ctx * count * e
            total += _seconds(_forward_flops(s, count, 2 * ctx, count), wbytes + kv, s.layers, spec, job, "prefill")
    return total


def capability_seconds(s: Shape, job: Job, spec: dict, task: str, items: int, shots: int) -> float:
    """lm-eval log-likelihoods in batches of ``lm_eval_batch`` requests."""
    n_req = items * (4 if task == "hellaswag" else 1)
    per_req = (CAPABILITY[task][1] + shots * CAPABILITY[task][2]) * items / n_req
    batches = math.ceil(n_req / job.lm_eval_batch)
    flops = _forward_flops(s, n_req * per_req, per_req, n_req * per_req) / batches
    wbytes = weight_bytes(s, job, 2) + (param_counts(s)["linear"] * 4 if job.kbit else 0)
    return batches * _seconds(flops, wbytes, s.layers, spec, job, "prefill")


def plan(s: Shape, job: Job, spec: dict, usd_per_hour: float | None = None, model: str = "") -> dict:
    if job.kbit and spec["name"] == "cpu":
        raise FtriskError(f"quantization {job.quantization} needs a CUDA GPU (bitsandbytes): "
                          "use --quantization none on cpu")
    price = spec["usd_per_hour"] if usd_per_hour is None else usd_per_hour
    attack, evaluation = memory(s, job, spec)
    n = devices_needed(attack, s, job, spec)
    hours = attack_seconds(s, job, spec, n or 1) / 3600
    evals = {"refusal": generation_seconds(s, job, spec) / 3600}
    evals.update({t: capability_seconds(s, job, spec, t, k, f) / 3600 for t, k, f in job.capability})
    gib = {k: {**{p: round(v / GIB, 3) for p, v in d.items()}, "total": round(sum(d.values()) / GIB, 3)}
           for k, d in (("attack", attack), ("eval", evaluation))}
    return {"model": model, "gpu": spec["name"], "device_memory_gib": round(spec["memory_gib"], 1),
            "params": param_counts(s)["total"], "lora_params": lora_params(s, job.lora_r, job.targets),
            "job": {k: v for k, v in vars(job).items() if k not in ("prompt_tokens", "targets")},
            "eval_prompts": len(job.prompt_tokens), "memory_gib": gib, "fits_one_device": n == 1,
            "devices_needed": n, "usd_per_hour": price, "attack_hours": round(hours, 4),
            "attack_usd": round(hours * price * (n or 1), 2), "mfu": {k: _mfu(job, spec, k) for k in MFU},
            "margin": round(1 - MARGIN, 2),
            "evals": {k: {"hours": round(v, 4), "usd": round(v * price, 2)} for k, v in evals.items()}}


def verdict(p: dict) -> str:
    used, cap, gpu = p["memory_gib"]["attack"]["total"], p["device_memory_gib"], p["gpu"]
    if p["fits_one_device"]:
        return f"fits on one {gpu} ({used:.1f} of {cap:.0f} GiB)"
    if p["devices_needed"] is None:
        return f"does not fit on {gpu} ({used:.1f} GiB needed, {cap:.0f} GiB there)"
    return f"needs {p['devices_needed']} x {gpu} (FSDP; {used:.1f} GiB on one device)"


# --------------------------------------------------------------------------- inputs and ftrisk run's verdict line

def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FtriskError(f"model config '{path}' is unreadable ({type(e).__name__}): "
                          "pass a valid config.json") from None
    if not isinstance(data, dict):
        raise FtriskError(f"model config '{path}' is not a JSON object: pass a Hugging Face config.json")
    return data


def resolve_model(arg: str):
    """``--model`` -> (name, Shape, RunConfig or None): an ftrisk YAML, a model dir, a config.json or a shipped id."""
    p = Path(arg).expanduser()
    if p.suffix in (".yaml", ".yml"):
        from ftrisk.config import schema as config

        cfg = config.load(p)
        return (*resolve_model(cfg.model.spec)[:2], cfg)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FtriskError(f"model directory '{p}' has no config.json: pass a Hugging Face model directory")
        p = p / "config.json"
    if p.is_file() or p.suffix == ".json":
        return p.parent.name if p.name == "config.json" else p.stem, Shape.from_config(_read_json(p), str(p)), None
    key = arg.split(":", 1)[1] if arg.startswith("embedded:") else arg.rsplit("/", 1)[-1]
    shipped = resources.files("ftrisk").joinpath("data", "model_configs")
    if not shipped.joinpath(f"{key.lower()}.json").is_file():
        known = ", ".join(sorted(f.name[:-5] for f in shipped.iterdir() if f.name.endswith(".json")))
        raise FtriskError(f"model '{arg}': no config.json shipped for it (shipped: {known}); "
                          "pass the path of its config.json or of a local model directory")
    return key, Shape.from_config(json.loads(shipped.joinpath(f"{key.lower()}.json").read_text()), key), None


USER_FILE_PROMPTS = 500  # assumed size of a configured prompt file that does not exist (yet) on this machine


def job_from_config(cfg) -> Job:
    """The attack and evaluation sizes of an ftrisk RunConfig."""
    from ftrisk.prompts import benchmarks

    t, c = cfg.attack.train, cfg.capability
    builtin = cfg.attack.data == "builtin:advbench-affirm"
    n_ex = (ATTACK_EXAMPLE["examples"] if builtin
            else sum(1 for ln in open(cfg.attack.data, encoding="utf-8") if ln.strip()))
    micro = math.ceil(math.ceil(n_ex / t.batch_size) * t.epochs)
    prompts = []
    for ref in cfg.eval.benchmarks:
        if ref.name in benchmarks.names() or Path(ref.name).is_file():
            items = (benchmarks.load(ref.name) if ref.name in benchmarks.names()
                     else benchmarks.load_file(ref.name, ref.prompt_column, ref.category_column))
            mean = sum(len(it.prompt) for it in items) / max(1, len(items)) / CHARS_PER_TOKEN + TEMPLATE_TOKENS
            n = len(items)
        else:  # a user prompt file not here yet (the paper configs' RefusalBench): plan with a typical size
            mean, n = 40 + TEMPLATE_TOKENS, USER_FILE_PROMPTS
        prompts += [round(mean)] * (n if ref.limit is None else min(ref.limit, n))
    return Job(quantization=cfg.model.quantize or "none", dtype=cfg.model.dtype,
               method=getattr(cfg.attack, "method", "lora"), batch_size=t.batch_size, seq_len=t.max_seq_len,
               steps=min(micro, t.max_steps * t.grad_accum) if t.max_steps else micro, lora_r=cfg.attack.lora.r,
               targets=tuple(cfg.attack.lora.target_modules), gradient_checkpointing=t.gradient_checkpointing,
               builtin_data=builtin, prompt_tokens=tuple(prompts), new_tokens=cfg.generation.max_new_tokens,
               gen_batch=cfg.generation.batch_size, max_batch_tokens=cfg.generation.max_batch_tokens,
               capability=tuple((task, c.limit or CAPABILITY[task][0], c.num_fewshot if task == "mmlu" else 0)
                                for task in c.tasks) if c.enabled else (), lm_eval_batch=c.batch_size)


def _cuda_spec(device: str) -> dict:
    """The gpus.yaml entry matching the CUDA device's name (unknown: a100-80gb speeds), with its real memory."""
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    key = next((k for k, pat in (("h200", "H200"), ("h100-80gb", "H100"), ("a100-80gb", "A100"), ("l40s", "L40S"),
                                 ("rtx4090", "4090")) if pat in props.name.upper()), "a100-80gb")
    return dict(device_spec(key), memory_gib=props.total_memory / GIB)


def _local(device: str) -> str:
    """A config's model.device as a gpus.yaml key: cpu, or "cuda" (auto: cuda when available)."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu" if device == "cpu" else "cuda"


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def verdict_line(cfg) -> str:
    """The line ``ftrisk run`` prints before it starts: fits / devices, the attack's time and dollars."""
    try:
        device = _local("auto") if cfg.model.device == "auto" else cfg.model.device
        spec = device_spec("cpu") if device == "cpu" else _cuda_spec(device)
        p = plan(resolve_model(cfg.model.spec)[1], job_from_config(cfg), spec, cfg.cost.usd_per_hour)
    except (FtriskError, RuntimeError, AssertionError) as e:  # e.g. model.device=cuda without a CUDA build
        return f"plan: not available ({e})"
    return f"plan: {verdict(p)}; attack ~{_hours(p['attack_hours'])}, ${p['attack_usd']:.2f}"
