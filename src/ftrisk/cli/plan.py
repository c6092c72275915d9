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
from ftrisk.plan.estimate import (
    attack_usd,
    devices_verdict,
    fit_line,
    no_fit_line,
    plan,
)
from ftrisk.plan.inputs import has_sweep, job_from_config, resolve_model
from ftrisk.plan.job import ATTACK_EXAMPLE, Job
from ftrisk.plan.shape import DTYPES
from ftrisk.plan.sweep import SAMPLES, sweep_plan

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
    a("--trials", type=int, help="plan an `ftrisk sweep` of N trials (default: the YAML's sweep.trials where it has "
      "a sweep section)")
    a("overrides", nargs="*", metavar="key=value", help="dotted overrides of the YAML (e.g. capability.limit=1000)")


#: Flags of one attack's shape: a sweep draws these from sweep.space.
SHAPE_FLAGS = ("batch_size", "seq_len", "steps", "lora_r", "eval_prompts", "new_tokens")


def main(args) -> int:
    name, shape, cfg = resolve_model(args.model, args.overrides)
    if args.trials is not None or has_sweep(args.model):
        return main_sweep(args, name, shape, cfg)
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
              f"{1 - p['margin']:.0%} of {p['device_memory_gib']:.0f} GiB", devices_verdict(p)]
    if not p["fits_one_device"]:  # every change that makes it fit one device, the best first
        lines += [f"  {fit_line(p, o)}" for o in p["fit"]] or [f"  {no_fit_line(p['gpu'])}"]
    lines += [f"attack: {job.steps} x {job.batch_size} examples: ~{duration(p['attack_hours'] * 3600)}, "
              f"{dollars(attack_usd(p))} ({n} x {dollars(p['usd_per_hour'], 2)}/h, MFU {p['mfu']['train']:.0%})"]
    for k, v in p["evals"].items():
        what = f"{p['eval_prompts']} prompts x {job.new_tokens} tokens" if k == "refusal" else "log-likelihoods"
        lines.append(f"eval {k} ({what}, per evaluated point): ~{duration(v['hours'] * 3600)}, "
                     f"{dollars(v['hours'] * p['usd_per_hour'])}")
    return lines


def main_sweep(args, name: str, shape, cfg) -> int:
    """``ftrisk plan`` of a sweep: the trials' GPU-hours and $ (:mod:`ftrisk.plan.sweep`)."""
    if args.trials is not None and args.trials <= 0:
        raise FtriskError(f"--trials must be > 0 (got {args.trials})")
    for flag in SHAPE_FLAGS:
        if getattr(args, flag) is not None:
            raise FtriskError(f"--{flag.replace('_', '-')}: a sweep draws each trial's attack from sweep.space; "
                              "set the space (or the attack section) in the config instead")
    if args.mfu is not None and args.mfu <= 0:
        raise FtriskError(f"--mfu must be > 0 (got {args.mfu})")
    gpu = args.gpu or ("a100-80gb" if cfg is None or local_device(cfg.model.device) == "cuda" else "cpu")
    price = (args.usd_per_hour if args.usd_per_hour is not None
             else cfg.cost.usd_per_hour if cfg and not args.gpu else None)
    if cfg is None:
        cfg = config.RunConfig()
        cfg.model.dtype = "float32" if gpu == "cpu" else "bfloat16"
    if args.quantization:
        cfg.model.quantize = None if args.quantization == "none" else args.quantization
    if args.gradient_checkpointing is not None:
        cfg.attack.train.gradient_checkpointing = args.gradient_checkpointing
    p = sweep_plan(shape, cfg, device_spec(gpu), price, args.trials, args.mfu)
    p["model"] = name
    print(json.dumps(p, indent=2) if args.json else "\n".join(sweep_lines(p, cfg)))
    return 0


def sweep_lines(p: dict, cfg) -> list[str]:
    """The sweep's plan: per trial, the total with its range, the assumptions, and the largest trial's fit."""
    t, tot, sw = p["per_trial"], p["total"], cfg.sweep

    def cost(d: dict) -> str:
        return f"{d['gpu_hours']:.2f} GPU-h, {dollars(d['usd'])}"

    corner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p["costliest_trial"].items())
    lines = [
        f"ftrisk plan: sweep of {p['trials']} trials on {p['model']}, {p['gpu']} at {dollars(p['usd_per_hour'], 2)}/h",
        f"  + {p['reruns']} seed re-runs (top_k {sw.top_k} x {len(sw.seeds) - 1} further seeds); the subject once: "
        + cost(p["subject"]),
        f"  per trial: expected {cost(t['mean'])}; median {cost(t['median'])}; at most {cost(t['max'])}",
        f"  per trial at the crossing: over-refusal + {sw.capability_task} ({p['capability_items']} items) "
        + f"{cost(p['crossing_evals'])}; harmful benchmarks per bisection point {cost(p['harmful_eval_per_point'])}",
        f"sweep total ({p['trials'] + p['reruns']} trials): expected {cost(tot['mean'])} (median trial x N: "
        + f"{cost(tot['median'])}); upper bound {cost(tot['max'])}",
        f"assumptions: expected and median over {SAMPLES} seeded draws from sweep.space's prior (Optuna's random "
        + "trials; TPE's later ones lean cheaper); upper bound: every trial at the space's costliest corner "
        + f"({corner}) training its whole budget; a trial trains ceil(examples / batch) x epochs micro-batches, at "
        + "most max_steps x grad_accum; harmful benchmarks at ceil(log2 K) + 2 of its K checkpoints; replies at "
        + "full length",
    ]
    big = p.get("largest_trial")
    if big:
        head = f"largest trial (batch {big['batch_size']}, r {big['lora_r']}): {big['attack_gib']:.1f} GiB, "
        if big["fits_one_device"]:
            lines.append(head + f"fits on one {p['gpu']}")
        else:
            need = big["devices_needed"]
            lines.append(head + (f"needs {need} x {p['gpu']} (costed so)" if need else f"does not fit on {p['gpu']}"))
            lines += [f"  {fit_line(p, o)}" for o in big["fit"]] or [f"  {no_fit_line(p['gpu'])}"]
    return lines
