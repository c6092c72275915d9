"""The plan of one job on one device: memory, devices, hours and dollars ($ = devices x hours x $/hour); its
verdict, and the line ``ftrisk run`` prints before it starts."""

from __future__ import annotations

from ftrisk.errors import FtriskError
from ftrisk.formatting import dollars, duration
from ftrisk.plan.attack import attack_seconds
from ftrisk.plan.capability import capability_seconds
from ftrisk.plan.devices import cuda_spec, device_spec, local_device
from ftrisk.plan.fit import describe, fit_options
from ftrisk.plan.generation import generation_seconds
from ftrisk.plan.inputs import job_from_config, resolve_model
from ftrisk.plan.job import Job
from ftrisk.plan.memory import GIB, MARGIN, devices_needed, memory
from ftrisk.plan.roofline import MFU, mfu
from ftrisk.plan.shape import Shape, lora_params, param_counts


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
            "job": {k: v for k, v in vars(job).items() if k not in ("prompt_tokens", "reply_tokens", "targets")},
            "eval_prompts": len(job.prompt_tokens), "memory_gib": gib, "fits_one_device": n == 1,
            "devices_needed": n, "usd_per_hour": price, "attack_hours": round(hours, 4),
            "attack_usd": round(hours * price * (n or 1), 2), "mfu": {k: mfu(job, spec, k) for k in MFU},
            "margin": round(1 - MARGIN, 2),
            "evals": {k: {"hours": round(v, 4), "usd": round(v * price, 2)} for k, v in evals.items()},
            "fit": [] if n == 1 else [
                {"changes": o["changes"], "describe": describe(o, job), "attack_gib": o["attack_gib"],
                 "attack_hours": round(o["attack_seconds"] / 3600, 4), "slower": round(o["slower"], 3),
                 "attack_usd": round(o["attack_seconds"] / 3600 * price, 2)} for o in fit_options(s, job, spec)]}


def fit_line(p: dict, option: dict) -> str:
    """``fits on 1 x GPU with CHANGE (GiB, the attack's time and its change)``."""
    return (f"fits on 1 x {p['gpu']} with {option['describe']} ({option['attack_gib']:.1f} GiB; attack "
            f"~{duration(option['attack_hours'] * 3600)}, {option['slower']:+.0%})")


def no_fit_line(gpu: str) -> str:
    return f"no change fits one {gpu} (not even gradient checkpointing, micro-batch 1 and a 4-bit base together)"


def devices_verdict(p: dict) -> str:
    """Fits one device, or the devices the job needs as configured."""
    used, cap, gpu = p["memory_gib"]["attack"]["total"], p["device_memory_gib"], p["gpu"]
    if p["fits_one_device"]:
        return f"fits on one {gpu} ({used:.1f} of {cap:.0f} GiB)"
    if p["devices_needed"] is None:
        return f"does not fit on {gpu} ({used:.1f} GiB needed, {cap:.0f} GiB there)"
    return f"needs {p['devices_needed']} x {gpu} (FSDP; {used:.1f} GiB on one device)"


def verdict(p: dict) -> str:
    """:func:`devices_verdict`; where the job does not fit one device, the best change that makes it fit
    (:mod:`ftrisk.plan.fit`), or that nothing does."""
    if p["fits_one_device"]:
        return devices_verdict(p)
    best = fit_line(p, p["fit"][0]) if p["fit"] else no_fit_line(p["gpu"])
    return f"{devices_verdict(p)}; {best}"


def attack_usd(p: dict) -> float:
    """The attack's dollars from the plan's hours, unrounded (the plan's ``attack_usd`` is rounded to cents)."""
    return p["attack_hours"] * p["usd_per_hour"] * (p["devices_needed"] or 1)


def verdict_line(cfg) -> str:
    """The line ``ftrisk run`` prints before it starts: fits / devices, the attack's time and dollars."""
    try:
        device = local_device("auto") if cfg.model.device == "auto" else cfg.model.device
        spec = device_spec("cpu") if device == "cpu" else cuda_spec(device)
        p = plan(resolve_model(cfg.model.spec)[1], job_from_config(cfg), spec, cfg.cost.usd_per_hour)
    except (FtriskError, RuntimeError, AssertionError) as e:  # e.g. model.device=cuda without a CUDA build
        return f"plan: not available ({e})"
    return f"plan: {verdict(p)}; attack ~{duration(p['attack_hours'] * 3600)}, {dollars(attack_usd(p))}"
