"""``ftrisk plan``'s command line: flags over a model and a config, printed as a table or as JSON.

The memory, time and dollar model it prints is :mod:`ftrisk.plan`.
"""

from __future__ import annotations

import argparse
import json
import math

from ftrisk import config
from ftrisk.errors import FtriskError
from ftrisk.formatting import dollars, duration
from ftrisk.plan.devices import device_spec, load_gpus, local_device
from ftrisk.plan.estimate import attack_usd, plan, verdict
from ftrisk.plan.inputs import job_from_config, resolve_model
from ftrisk.plan.job import ATTACK_EXAMPLE, Job
from ftrisk.plan.shape import DTYPES

HELP = "memory, devices, hours and $ of an attack and its evaluations"


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``plan``'s parser to ``sub`` (argparse subparsers) and return it."""
    parser = sub.add_parser("plan", help=HELP)
    add_arguments(parser)
    return parser


def add_arguments(parser) -> None:
    a = parser.add_argument
    a("--model", default="embedded:smollm2-135m-instruct", help="ftrisk YAML config, HF model dir, config.json, "
      "or a shipped id (meta-llama/Llama-2-{7b,13b,70b}-chat-hf, embedded:smollm2-135m-instruct)")
    a("--gpu", default=None, help=f"default: the YAML's device, else a100-80gb; known: {', '.join(load_gpus())}")
    a("--quantization", choices=["none", "8bit", "4bit"], default=None, help="default: the YAML's, else none")
    a("--json", action="store_true", help="print the plan as JSON")
    a("--batch-size", type=int, help="attack micro-batch (default 8)")
    a("--seq-len", type=int, help="attack max_seq_len (default 256)")
    a("--steps", type=int, help="attack micro-batches (default: one epoch of 400 examples at batch 8 = 50)")
    a("--lora-r", type=int, help="LoRA rank (default 8)")
    a("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None)
    a("--eval-prompts", type=int, help="refusal-evaluation prompts (default: the configured benchmarks, 710)")
    a("--new-tokens", type=int, help="generated tokens per prompt (default 64)")
    a("--mfu", type=float, help="utilisation of training and prefill (default 0.4 and 0.5)")
    a("--usd-per-hour", type=float, help="price of one device (default: gpus.yaml)")


def main(args) -> int:
    name, shape, cfg = resolve_model(args.model)
    gpu = args.gpu or ("a100-80gb" if cfg is None or local_device(cfg.model.device) == "cuda" else "cpu")
    spec = device_spec(gpu)
    # the price: --usd-per-hour, else the YAML's cost.usd_per_hour for the YAML's own device, else gpus.yaml's
    price = (args.usd_per_hour if args.usd_per_hour is not None
             else cfg.cost.usd_per_hour if cfg and not args.gpu else None)
    if cfg is None:  # defaults: bf16 on a GPU (float32 on CPU), the full capability sets
        cfg = config.RunConfig()
        cfg.model.dtype, cfg.capability.enabled = ("float32" if gpu == "cpu" else "bfloat16"), True
    job = job_from_config(cfg)
    for flag, field in (("batch_size", "batch_size"), ("seq_len", "seq_len"), ("steps", "steps"), ("lora_r", "lora_r"),
                        ("new_tokens", "new_tokens"), ("mfu", "mfu_train"), ("mfu", "mfu_prefill")):
        if (value := getattr(args, flag)) is not None and value <= 0:
            raise FtriskError(f"--{flag.replace('_', '-')} must be > 0 (got {value})")
        setattr(job, field, getattr(job, field) if value is None else value)
    job.quantization = args.quantization or job.quantization
    if args.gradient_checkpointing is not None:
        job.gradient_checkpointing = args.gradient_checkpointing
    if args.steps is None and args.batch_size and job.builtin_data:
        job.steps = math.ceil(ATTACK_EXAMPLE["examples"] / args.batch_size)
    if args.eval_prompts:
        job.prompt_tokens = (round(sum(job.prompt_tokens) / max(1, len(job.prompt_tokens))),) * args.eval_prompts
    p = plan(shape, job, spec, price, model=name)
    print(json.dumps(p, indent=2) if args.json else "\n".join(report_lines(p, job)))
    return 0


def report_lines(p: dict, job: Job) -> list[str]:
    mem, n = p["memory_gib"], p["devices_needed"] or 1
    notes = {"weights": job.quantization + " linear layers, the rest fp32 (attack) / 16-bit (eval)" if job.kbit
             else f"{job.dtype}, {DTYPES[job.dtype]} B/param",
             "lora_and_optimizer": f"{p['lora_params'] / 1e6:.1f} M LoRA params x 16 B (fp32 weight, grad, AdamW m, v)"
             if job.method == "lora" else "full fine-tune: grads + AdamW moments",
             "activations": f"b={job.batch_size} x s={job.example()[2]}, "
             + ("checkpointed" if job.gradient_checkpointing else "no checkpointing"),
             "logits": "response positions only", "kv_cache": f"widest batch, prompt + {job.new_tokens} new",
             "activations_and_logits": "prefill layer / lm-eval logits", "overhead": "context, workspace"}
    lines = [f"ftrisk plan: {p['model']} ({p['params'] / 1e9:.2f} B params), LoRA r={job.lora_r}, on {p['gpu']}",
             f"  {'memory (GiB)':22s}{'attack':>9s}{'eval':>9s}  assumption"]
    for part, note in notes.items():
        a, e = mem["attack"].get(part), mem["eval"].get(part)
        lines.append(f"  {part:22s}{'' if a is None else f'{a:.2f}':>9s}{'' if e is None else f'{e:.2f}':>9s}  {note}")
    lines += [f"  {'total':22s}{mem['attack']['total']:9.2f}{mem['eval']['total']:9.2f}  fits: <= "
              f"{1 - p['margin']:.0%} of {p['device_memory_gib']:.0f} GiB", verdict(p),
              f"attack: {job.steps} x {job.batch_size} examples: ~{duration(p['attack_hours'] * 3600)}, "
              f"{dollars(attack_usd(p))} ({n} x {dollars(p['usd_per_hour'], 2)}/h, MFU {p['mfu']['train']:.0%})"]
    for k, v in p["evals"].items():
        what = f"{p['eval_prompts']} prompts x {job.new_tokens} tokens" if k == "refusal" else "log-likelihoods"
        lines.append(f"eval {k} ({what}, per evaluated point): ~{duration(v['hours'] * 3600)}, "
                     f"{dollars(v['hours'] * p['usd_per_hour'])}")
    return lines
