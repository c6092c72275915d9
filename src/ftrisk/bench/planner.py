"""``ftrisk bench planner``: the planner's seconds (:mod:`ftrisk.plan`) against the seconds measured here, for the
two workloads of a run that this host does in seconds: greedy generation through the default backend (16
``advbench-test`` prompts x 32 new tokens in one batch) and LoRA attack steps (batch 8, max_seq_len 128, r=8 on
every linear layer; the first step is warm-up). The device is planned as ``ftrisk plan`` plans it (``cpu``: its
FLOP/s and bandwidth measured just before), at torch's thread count (``OMP_NUM_THREADS`` sets it).

``ratio`` = predicted / measured is the planner's accuracy on this host: a benchmark figure, not a test (it
depends on the host). The generation is predicted twice: from the prompts', prefix's and replies' real token
counts (``predicted_s``: the time model alone) and from the planner's own estimates (``planned_s``: characters / 4
+ the template, every reply as long as allowed; what ``ftrisk plan`` says for these prompts).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from ftrisk.bench.machine import load
from ftrisk.config import GenerationConfig, LoraConfig, ModelConfig, TrainConfig
from ftrisk.cost import CostMeter
from ftrisk.generation import open_backend
from ftrisk.model.chat import chat_text
from ftrisk.model.loading import DEFAULT_SPEC
from ftrisk.model.subject import Subject
from ftrisk.plan.attack import attack_seconds
from ftrisk.plan.devices import cuda_spec, device_spec
from ftrisk.plan.generation import generation_passes, pass_seconds
from ftrisk.plan.inputs import prompt_tokens
from ftrisk.plan.job import Job
from ftrisk.plan.shape import Shape
from ftrisk.prompts import benchmarks
from ftrisk.tokens import common_prefix
from ftrisk.training.data import Example
from ftrisk.training.recipe import finetune

PROMPTS, NEW_TOKENS, TRAIN_STEPS = 16, 32, 5


def _generation_seconds(shape, job, spec) -> tuple[float, float]:
    """(all passes, the prefix and prefill passes alone) of the planned generation."""
    secs = [(p.what, pass_seconds(shape, job, spec, p)) for p in generation_passes(shape, job, spec)]
    return sum(s for _, s in secs), sum(s for what, s in secs if what != "decode")


def _measure_generation(be, items, new_tokens: int, repeats: int) -> tuple[list[float], list[dict]]:
    """Seconds of each of ``repeats`` backend calls over ``items``, and the last call's rows."""
    times, rows = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = [r for batch in be.generate(items, max_new_tokens=new_tokens) for r in batch]
        times.append(time.perf_counter() - t0)
    return times, rows


def bench_generation_plan(subject, model, tok, shape: Shape, spec: dict, n: int, new_tokens: int,
                          repeats: int) -> dict:
    """The generation workload: measured through the default backend (kernels set up by a warm-up call, as a
    run's many batches share them), predicted from real and from estimated token counts."""
    items = benchmarks.load("advbench-test")[:n]
    settings = GenerationConfig(max_new_tokens=new_tokens, batch_size=n)
    be = open_backend("hf", subject, settings, loaded=(model, tok))
    list(be.generate(items[:2], max_new_tokens=2))
    times, rows = _measure_generation(be, items, new_tokens, repeats)
    prefill_times, _ = _measure_generation(be, items, 1, repeats)
    be.close()
    texts = [chat_text(tok, it.prompt, subject.system_prompt) for it in items]
    shared = common_prefix([tok(t, add_special_tokens=False)["input_ids"] for t in texts])
    by_id = {r["id"]: r for r in rows}
    common = {"dtype": subject.dtype, "new_tokens": new_tokens, "gen_batch": n,
              "max_batch_tokens": settings.max_batch_tokens}
    real = Job(prompt_tokens=tuple(by_id[it.id]["prompt_tokens"] for it in items), shared_tokens=shared,
               reply_tokens=tuple(by_id[it.id]["new_tokens"] for it in items), **common)
    planned = Job(prompt_tokens=(prompt_tokens([it.prompt for it in items]),) * n, **common)
    predicted, predicted_prefill = _generation_seconds(shape, real, spec)
    planned_s, _ = _generation_seconds(shape, planned, spec)
    measured, measured_prefill = statistics.median(times), statistics.median(prefill_times)
    return {"prompts": n, "max_new_tokens": new_tokens, "batch_size": n,
            "prompt_tokens_mean": round(sum(real.prompt_tokens) / n, 1), "shared_tokens": shared,
            "planned_prompt_tokens": planned.prompt_tokens[0], "new_tokens": sum(real.reply_tokens),
            "measured_s": measured, "measured_s_all": times, "measured_prefill_s": measured_prefill,
            "predicted_s": predicted, "predicted_prefill_s": predicted_prefill, "ratio": predicted / measured,
            "prefill_ratio": predicted_prefill / measured_prefill,
            "planned_s": planned_s, "planned_ratio": planned_s / measured}


def bench_training_plan(model, tok, shape: Shape, spec: dict, dtype: str, steps: int) -> dict:
    """The attack workload: seconds per LoRA step of ftrisk's loop after the first, against the plan's."""

    examples = [Example(it.prompt, it.extra["target"]) for it in benchmarks.load("advbench-train")[:8 * steps]]
    cfg = TrainConfig(lr=1e-5, batch_size=8, max_seq_len=128, max_steps=steps, warmup_steps=1)
    with tempfile.TemporaryDirectory() as d:
        finetune(model, tok, examples, LoraConfig(r=8, alpha=16), cfg, Path(d), meter=CostMeter())
        rows = [json.loads(line) for line in (Path(d) / "metrics.jsonl").read_text().splitlines()]
    measured = (rows[-1]["seconds"] - rows[0]["seconds"]) / (len(rows) - 1)
    predicted = attack_seconds(shape, Job(dtype=dtype, seq_len=128, steps=1), spec)
    return {"steps_timed": len(rows) - 1, "batch_size": 8, "max_seq_len": 128, "lora_r": 8,
            "measured_s_per_step": measured, "predicted_s_per_step": predicted, "ratio": predicted / measured}


def bench_planner(spec: str | None = None, *, n: int = PROMPTS, max_new_tokens: int = NEW_TOKENS,
                  steps: int = TRAIN_STEPS, repeats: int = 1) -> dict:
    """Predicted against measured seconds of generation and of attack steps (module docstring)."""
    import torch

    subject = Subject.from_config(ModelConfig(spec=spec or DEFAULT_SPEC))
    model, tok = subject.load()
    shape = Shape.from_config(model.config.to_dict(), subject.spec)
    dev = device_spec("cpu") if subject.device == "cpu" else cuda_spec(subject.device)
    load_before = load()
    gen = bench_generation_plan(subject, model, tok, shape, dev, n, max_new_tokens, repeats)
    train = bench_training_plan(model, tok, shape, dev, subject.dtype, steps)
    return {"workload": "planner",
            "what": f"the planner's seconds against measured ones: {n} advbench-test prompts x {max_new_tokens} new "
                    f"tokens through the default backend, {steps - 1} LoRA attack steps (batch 8, max_seq_len 128)",
            "model": subject.spec, "dtype": subject.dtype, "device": subject.device,
            "threads": torch.get_num_threads(),
            "device_spec": {k: dev.get(k) for k in ("name", "fp32_tflops", "generation_fp32_tflops", "bf16_tflops",
                                                    "bandwidth_gbs", "dispatch_ms", "mfu")},
            "generation": gen, "training": train, "load_before": load_before, "load_after": load()}
