"""``ftrisk bench training-rows``: the older single-question rows, each side in the same run: response-only vs full
logits (time and peak memory of one training step), LoRA vs full fine-tuning for hardening (time per step and extra
peak memory). The training workload itself (ftrisk's loop vs the HF Trainer) is :mod:`ftrisk.bench.training`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ftrisk.bench.machine import extra_peak_mb, time_calls
from ftrisk.config import LoraConfig, TrainConfig
from ftrisk.cost import CostMeter
from ftrisk.model.subject import load_spec
from ftrisk.prompts import benchmarks
from ftrisk.training.data import Example, collate, encode
from ftrisk.training.loss import response_loss
from ftrisk.training.recipe import finetune


def _training_step(model, tok):
    """Two ways to run one training step on the same 8 attack examples: (ftrisk's, baseline)."""
    import torch.nn.functional as F

    items = benchmarks.load("advbench-train")[:8]
    enc = [encode(tok, Example(it.prompt, it.extra["target"]), 128) for it in items]
    ids, mask, labels = collate(enc, tok.pad_token_id)

    def ours():
        model.zero_grad()
        response_loss(model, ids, mask, labels).backward()

    def baseline():
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask).logits
        F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1),
                        ignore_index=-100).backward()

    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    return ours, baseline, int(mask.sum())


def bench_training(model, tok, repeats: int = 5) -> dict:
    ours, baseline, n_tokens = _training_step(model, tok)
    ours(), baseline()  # warm-up
    a, b = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        a += time_calls(ours, 1)
        b += time_calls(baseline, 1)
    model.eval()
    return {"what": "training step, response-only logits vs full logits",
            "ours_s": statistics.median(a), "baseline_s": statistics.median(b),
            "speedup": statistics.median(b) / statistics.median(a), "tokens": n_tokens}


def _each_in_fresh_process(target, variants, *args, timeout: float) -> dict | None:
    """``target(*args, variant, queue)`` once per variant, each in its own spawned process so that none
    inherits another's allocator pool; {variant: what it put on the queue}. None off Linux (no clear_refs)."""
    import multiprocessing as mp

    if not Path("/proc/self/clear_refs").exists():
        return None
    ctx = mp.get_context("spawn")
    out = {}
    for variant in variants:
        queue = ctx.Queue()
        proc = ctx.Process(target=target, args=(*args, variant, queue))
        proc.start()
        out[variant] = queue.get(timeout=timeout)
        proc.join()
    return out


def _step_memory_child(spec: str, variant: str, queue) -> None:
    """In a fresh process: the peak resident memory one training step adds on top of the loaded model."""
    import torch

    torch.set_num_threads(1)  # memory, not speed, is measured here
    model, tok = load_spec(spec)
    ours, baseline, _ = _training_step(model, tok)
    queue.put(extra_peak_mb(ours if variant == "ours" else baseline)[1])


def bench_step_memory(spec: str) -> dict | None:
    """Peak extra memory of one training step, response-only vs full logits. None off Linux."""
    out = _each_in_fresh_process(_step_memory_child, ("ours", "baseline"), spec, timeout=900)
    if out is None:
        return None
    return {"what": "training-step peak memory, response-only logits vs full logits",
            "ours_mb": out["ours"], "baseline_mb": out["baseline"], "ratio": out["baseline"] / out["ours"]}


def _method_child(spec: str, steps: int, method: str, queue) -> None:
    """In a fresh process: ``steps`` optimizer steps of ftrisk's training loop; (seconds per step after
    the first, extra peak memory in MB)."""
    import tempfile

    model, tok = load_spec(spec)
    items = benchmarks.load("advbench-train")[:8 * steps]
    examples = [Example(it.prompt, it.extra["target"]) for it in items]
    cfg = TrainConfig(lr=1e-5, batch_size=8, max_seq_len=128, max_steps=steps)
    with tempfile.TemporaryDirectory() as d:
        lora = LoraConfig(r=16, alpha=32) if method == "lora" else None
        _, extra_mb = extra_peak_mb(lambda: finetune(model, tok, examples, lora, cfg, Path(d), meter=CostMeter()))
        rows = [json.loads(line) for line in (Path(d) / "metrics.jsonl").read_text().splitlines()]
    queue.put(((rows[-1]["seconds"] - rows[0]["seconds"]) / (len(rows) - 1), extra_mb))


def bench_hardening_method(spec: str, steps: int = 4) -> dict | None:
    """LoRA vs full fine-tuning in ftrisk's own loop: seconds per optimizer step and the extra peak memory
    of training (gradients, optimizer state, activations), each in its own process. None off Linux."""
    out = _each_in_fresh_process(_method_child, ("lora", "full"), spec, steps, timeout=1800)
    if out is None:
        return None
    (lora_s, lora_mb), (full_s, full_mb) = out["lora"], out["full"]
    return {"what": f"hardening method, LoRA r=16 vs full fine-tune ({steps} optimizer steps of 8 examples)",
            "lora_s_per_step": lora_s, "full_s_per_step": full_s, "time_ratio": full_s / lora_s,
            "lora_mb": lora_mb, "full_mb": full_mb, "memory_ratio": full_mb / lora_mb}


def run_training(spec: str) -> dict:
    model, tok = load_spec(spec)
    rows = [bench_training(model, tok)]
    print(f"{rows[0]['what']}: ftrisk {rows[0]['ours_s']:.3f}s, baseline {rows[0]['baseline_s']:.3f}s, "
          f"ratio x{rows[0]['speedup']:.2f}")
    mem = bench_step_memory(spec)
    if mem is None:
        print("training-step peak memory: not measured (needs Linux /proc/self/clear_refs)")
    else:
        rows.append(mem)
        print(f"{mem['what']}: ftrisk +{mem['ours_mb']:.0f} MB, baseline +{mem['baseline_mb']:.0f} MB, "
              f"ratio x{mem['ratio']:.2f}")
    method = bench_hardening_method(spec)
    if method is not None:
        rows.append(method)
        print(f"{method['what']}: LoRA {method['lora_s_per_step']:.2f}s/step +{method['lora_mb']:.0f} MB, "
              f"full {method['full_s_per_step']:.2f}s/step +{method['full_mb']:.0f} MB, "
              f"full/LoRA time x{method['time_ratio']:.2f}, memory x{method['memory_ratio']:.2f}")
    return {"workload": "training", "rows": rows}
