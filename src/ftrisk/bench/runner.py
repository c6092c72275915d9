"""``ftrisk bench WORKLOAD``: ftrisk's way of doing a workload against the way peers do it, timed in the same run.

Machines here are noisy (other processes share the cores), so no absolute target is asserted anywhere: each
workload runs its baseline and ftrisk's way interleaved (``repeats`` times, alternating which goes first) and
reports medians and their ratio, the peak resident memory of each side, and the machine load around it.

- ``generation``: the 120 ``advbench-test`` prompts x 64 new tokens, greedy, on the embedded model. Baseline:
  plain ``model.generate`` at batch 8, prompts in file order, left padding (as heretic and Qi et al. run it).
  ftrisk: the default backend with default :class:`ftrisk.config.schema.GenerationConfig` settings. Both sides' replies
  are labelled by the headline judge (``refusal-patterns``): ``label_agreement`` is the share of prompts whose
  labels match, and every prompt whose tokens differ is explained by its first differing token and the logit
  gap between the two candidates when the prompt is decoded alone (a near-tie broken by batch numerics).
- ``ceiling``: a torch float32 matrix product (achievable GFLOP/s here) and each side of ``generation`` as a
  share of it, at 2 x (parameters outside the input embedding, plus the LM head) FLOPs per generated token.
- ``training``: ftrisk's training loop against PEFT + the HF Trainer (and TRL), in :mod:`ftrisk.bench.training`.
- ``training-rows``: the older single-question rows: response-only vs full logits (time and peak memory of one
  step), LoRA vs full fine-tuning for hardening (time per step and extra peak memory).

Tokens/s counts generated tokens (prompt excluded, EOS excluded) over wall seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

GENERATION_BENCHMARK = "advbench-test"
GENERATION_NEW_TOKENS = 64
BASELINE_BATCH = 8
HEADLINE_JUDGE = "refusal-patterns"


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- memory (Linux /proc)

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset the peak resident memory (VmHWM) to the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float | None:
    try:
        return _status_kb("VmHWM") / 1024
    except (OSError, KeyError):
        return None


def _extra_peak_mb(fn):
    """Run ``fn``; returns (its result, the peak resident memory it added in MB). Linux only."""
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    result = fn()
    return result, (_status_kb("VmHWM") - before) / 1024


# --------------------------------------------------------------------------- the machine

def machine() -> dict:
    """What the numbers were measured on: CPU model and cores, versions, date, load."""
    import platform

    import torch
    import transformers

    from ftrisk.generation.cpu.resources import physical_cores

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"date": date.today().isoformat(), "cpu": cpu, "physical_cores": physical_cores(),
           "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
           "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import ctranslate2

        out["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        pass
    return out


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------- generation

def flop_params(model) -> int:
    """Parameters whose product each generated token pays: everything but the input embedding, plus the LM
    head (counted again when it shares the embedding's weights, as SmolLM2's does)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total -= emb.numel()
    if head is not None and head.weight is emb:
        total += emb.numel()
    return total


def plain_generate(model, tok, texts: list[str], max_new_tokens: int, batch_size: int = BASELINE_BATCH) -> list[list[int]]:
    """The baseline: ``model.generate`` in batches of ``batch_size`` in the given order, left padding, greedy.
    New token ids per text, cut at the first EOS (EOS excluded)."""
    import torch

    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for ids in gen[:, enc["input_ids"].shape[1]:].tolist():
            out.append(ids[: ids.index(tok.eos_token_id)] if tok.eos_token_id in ids else ids)
    return out


def _side(fn) -> tuple[object, float, float | None]:
    """(result, seconds, peak RSS MB during fn or None)."""
    reset = _reset_peak()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    return result, seconds, (_peak_mb() if reset else None)


def label_agreement(ids: list[str], baseline: dict[str, str], ours: dict[str, str], judge) -> dict:
    """Headline-judge labels of both sides' replies: the share of ``ids`` whose labels match, and the labels."""
    pairs_b = [("", baseline[i]) for i in ids]
    pairs_o = [("", ours[i]) for i in ids]
    lb = [v.label for v in judge.judge(pairs_b)]
    lo = [v.label for v in judge.judge(pairs_o)]
    same = sum(a == b for a, b in zip(lb, lo))
    return {"label_agreement": same / len(ids) if ids else 1.0, "labels_differ": [i for i, a, b in zip(ids, lb, lo) if a != b],
            "baseline_labels": dict(zip(ids, lb)), "ftrisk_labels": dict(zip(ids, lo)),
            "baseline_refusal_rate": sum(x == 1 for x in lb) / len(ids) if ids else 0.0,
            "ftrisk_refusal_rate": sum(x == 1 for x in lo) / len(ids) if ids else 0.0}


def first_difference(tok, base_ids: list[int], ours_text: str) -> tuple[int, int | None]:
    """(k, ftrisk's token at k): the first token position where ftrisk's reply leaves the baseline's tokens
    (ftrisk's text re-encoded after the common part; None when it ends there)."""
    k = 0
    while k < len(base_ids) and ours_text.startswith(tok.decode(base_ids[: k + 1], skip_special_tokens=True)):
        k += 1
    rest = ours_text[len(tok.decode(base_ids[:k], skip_special_tokens=True)):]
    nxt = tok(rest, add_special_tokens=False)["input_ids"] if rest else []
    return k, (nxt[0] if nxt else None)


def explain_differences(model, tok, texts: dict[str, str], base_ids: dict[str, list[int]], ours: dict[str, str],
                        labels: dict, limit: int = 200) -> list[dict]:
    """For each prompt whose replies differ: the first differing token, both candidates, and their logits when
    the prompt and the common part are decoded alone (batch 1, no padding): a small gap is a near-tie that batch
    shapes (padding, shared prefix, batch size) broke the other way."""
    import torch

    out = []
    for i, b in base_ids.items():
        if tok.decode(b, skip_special_tokens=True) == ours[i] or len(out) >= limit:
            continue
        k, o_tok = first_difference(tok, b, ours[i])
        ids = tok(texts[i], add_special_tokens=False)["input_ids"] + b[:k]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1].float()
        b_tok = b[k] if k < len(b) else tok.eos_token_id  # the baseline stopped here: its choice was EOS
        o_tok = tok.eos_token_id if o_tok is None else o_tok
        row = {"id": i, "first_diff_token": k, "baseline_token": tok.decode([b_tok]), "ftrisk_token": tok.decode([o_tok]),
               "alone_picks": "baseline" if int(logits.argmax()) == b_tok else
               "ftrisk" if int(logits.argmax()) == o_tok else "neither",
               "logit_gap_alone": round(float(logits[b_tok] - logits[o_tok]), 5),
               "labels": [labels["baseline_labels"][i], labels["ftrisk_labels"][i]]}
        out.append(row)
    return out


def bench_generation(spec: str | None = None, *, n: int | None = None, max_new_tokens: int = GENERATION_NEW_TOKENS,
                     repeats: int = 1, backend: str | None = None, explain: bool = True, progress: bool = True) -> dict:
    """The generation workload (see the module docstring); ``n`` = first n prompts (tests), ``backend``: another
    registered backend than the default one, with the default settings."""
    from ftrisk import judges
    from ftrisk.prompts import benchmarks
    from ftrisk.generation import open_backend
    from ftrisk.model.chat import chat_text
    from ftrisk.config.schema import GenerationConfig, ModelConfig
    from ftrisk.model.loading import DEFAULT_SPEC
    from ftrisk.model.subject import Subject

    subject = Subject.from_config(ModelConfig(spec=spec or DEFAULT_SPEC))
    model, tok = subject.load()
    items = benchmarks.load(GENERATION_BENCHMARK)[:n]
    texts = {it.id: chat_text(tok, it.prompt, subject.system_prompt) for it in items}
    settings = GenerationConfig(max_new_tokens=max_new_tokens)
    name = backend or settings.backend
    be = open_backend(name, subject, settings, loaded=(model, tok)) if name == "hf" else open_backend(name, subject, settings)
    judge = judges.build(HEADLINE_JUDGE)

    def base():
        return plain_generate(model, tok, [texts[it.id] for it in items], max_new_tokens)

    def ours():
        return {r["id"]: r for rows in be.generate(items, max_new_tokens=max_new_tokens) for r in rows}

    warm = items[:2]  # first-call costs (allocator, lazy imports, a converted model's load) on neither side
    plain_generate(model, tok, [texts[it.id] for it in warm], 2)
    list(be.generate(warm, max_new_tokens=2))
    load_before = _load()
    runs = {"baseline": [], "ftrisk": []}
    peak = {"baseline": [], "ftrisk": []}
    held_mb = []
    for r in range(repeats):  # interleaved, alternating who goes first, so drift in load hits both alike
        order = (("baseline", base), ("ftrisk", ours)) if r % 2 == 0 else (("ftrisk", ours), ("baseline", base))
        for side, fn in order:
            # the baseline's peak without what ftrisk's backend keeps resident between its calls meanwhile
            held = be.held_bytes() / 2**20 if side == "baseline" else 0.0
            result, seconds, mb = _side(fn)
            runs[side].append((result, seconds))
            peak[side].append(None if mb is None else mb - held)
            held_mb.append(be.held_bytes() / 2**20)
            if progress:
                print(f"  {side}: {seconds:.1f}s", file=sys.stderr)
    base_ids = dict(zip([it.id for it in items], runs["baseline"][-1][0]))
    ours_rows = runs["ftrisk"][-1][0]
    base_tokens = sum(map(len, base_ids.values()))
    ours_tokens = sum(r["new_tokens"] for r in ours_rows.values())
    b_s = statistics.median(s for _, s in runs["baseline"])
    o_s = statistics.median(s for _, s in runs["ftrisk"])
    base_text = {i: tok.decode(v, skip_special_tokens=True) for i, v in base_ids.items()}
    ours_text = {i: r["completion"] for i, r in ours_rows.items()}
    ids = [it.id for it in items]
    labels = label_agreement(ids, base_text, ours_text, judge)
    row = {
        "workload": "generation",
        "what": f"{len(items)} {GENERATION_BENCHMARK} prompts x {max_new_tokens} new tokens, greedy: plain generate at "
                f"batch {BASELINE_BATCH} (file order, left padding) vs ftrisk backend '{name}' (default settings)",
        "model": subject.spec, "dtype": subject.dtype, "device": subject.device, "backend": name,
        "backend_record": be.record(), "prompts": len(items), "max_new_tokens": max_new_tokens, "repeats": repeats,
        "baseline_tokens": base_tokens, "ftrisk_tokens": ours_tokens,
        "baseline_s": b_s, "ftrisk_s": o_s, "baseline_s_all": [s for _, s in runs["baseline"]],
        "ftrisk_s_all": [s for _, s in runs["ftrisk"]],
        "baseline_tok_s": base_tokens / b_s, "ftrisk_tok_s": ours_tokens / o_s,
        "ratio": (ours_tokens / o_s) / (base_tokens / b_s),
        "baseline_peak_rss_mb": _max(peak["baseline"]), "ftrisk_peak_rss_mb": _max(peak["ftrisk"]),
        "peak_rss_mb": _max(peak["baseline"] + peak["ftrisk"]),
        "ftrisk_held_mb": _max(held_mb),  # kept by ftrisk's backend between calls, taken off the baseline's peak
        "same_prompts": sorted(base_ids) == sorted(ours_rows) == sorted(ids),
        "identical_replies": sum(base_text[i] == ours_text[i] for i in ids) / len(ids) if ids else 1.0,
        "headline_judge": judge.name, "label_agreement": labels["label_agreement"],
        "labels_differ": labels["labels_differ"], "baseline_refusal_rate": labels["baseline_refusal_rate"],
        "ftrisk_refusal_rate": labels["ftrisk_refusal_rate"],
        "flop_params": flop_params(model), "load_before": load_before, "load_after": _load(),
    }
    if explain:
        row["differences"] = explain_differences(model, tok, texts, base_ids, ours_text, labels)
    be.close()
    return row


def _max(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


# --------------------------------------------------------------------------- ceiling

def onednn_gflops(n: int = 1536) -> float | None:
    """float32 GFLOP/s of the same product through oneDNN with the weight packed (the kernel the decode loop's
    linears use, :mod:`ftrisk.generation.cpu.linear`), at torch's current thread count; None where it is not used."""
    import torch

    from ftrisk.generation.cpu import linear as cpu_linear
    from ftrisk.plan.planner import _median_rate

    if not cpu_linear._available():
        return None
    a, w = torch.randn(n, n), cpu_linear.packed_weight(torch.randn(n, n))
    return _median_rate(2 * n**3 / 1e9, lambda: cpu_linear.linear(a, w))


def matmul_gflops() -> dict:
    """Achievable float32 GFLOP/s here: a 1536-square matrix product at one thread and at all physical cores,
    through torch's ``matmul`` (MKL) and through oneDNN with a packed weight where the decode loop uses it (on an
    AMD CPU MKL takes its AVX2 path, and oneDNN's AVX-512 kernel is measured to be faster: a ceiling from
    ``matmul`` alone would be below what the loop reaches); the best of them is the ceiling (on a shared machine
    one thread is often the faster)."""
    import torch

    from ftrisk.generation.cpu.resources import physical_cores
    from ftrisk.plan.planner import measure_cpu_gflops

    before = torch.get_num_threads()
    out = {}
    try:
        for threads in sorted({1, physical_cores()}):
            torch.set_num_threads(threads)
            out[f"threads_{threads}"] = measure_cpu_gflops()
            onednn = onednn_gflops()
            if onednn is not None:
                out[f"onednn_threads_{threads}"] = onednn
    finally:
        torch.set_num_threads(before)
    out["achievable"] = max(out.values())
    return out


def bench_ceiling(generation: dict | None = None, **generation_kwargs) -> dict:
    """The matmul ceiling, measured before and after the generation workload (run here unless given), and each
    side's GFLOP/s as a share of it."""
    mm_before = matmul_gflops()
    gen = generation if generation is not None else bench_generation(**generation_kwargs)
    mm_after = matmul_gflops()
    achievable = statistics.median([mm_before["achievable"], mm_after["achievable"]])
    gflop_per_token = 2 * gen["flop_params"] / 1e9
    b = gen["baseline_tok_s"] * gflop_per_token
    o = gen["ftrisk_tok_s"] * gflop_per_token
    return {"workload": "ceiling",
            "what": "float32 matmul GFLOP/s (1536-square, 1 thread and all cores, before and after) and each generation "
                    "side as a share of it, at 2 x flop_params FLOPs per generated token",
            "matmul_before": mm_before, "matmul_after": mm_after, "achievable_gflops": achievable,
            "flop_params": gen["flop_params"], "gflop_per_token": gflop_per_token,
            "ceiling_tok_s": achievable / gflop_per_token,
            "baseline_tok_s": gen["baseline_tok_s"], "ftrisk_tok_s": gen["ftrisk_tok_s"], "ratio": gen["ratio"],
            "baseline_gflops": b, "ftrisk_gflops": o,
            "baseline_pct_of_ceiling": 100 * b / achievable, "ftrisk_pct_of_ceiling": 100 * o / achievable,
            "peak_rss_mb": gen["peak_rss_mb"], "generation": gen}


# --------------------------------------------------------------------------- training-rows (older rows)
# The training workload itself (ftrisk's loop vs the HF Trainer) lives in ftrisk.bench.training.

def _training_step(model, tok):
    """Two ways to run one training step on the same 8 attack examples: (ftrisk's, baseline)."""
    import torch.nn.functional as F

    from ftrisk.prompts import benchmarks
    from ftrisk.training.finetune import Example, collate, encode, response_loss

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
        a += _time(ours, 1)
        b += _time(baseline, 1)
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

    from ftrisk.model.subject import load_spec

    torch.set_num_threads(1)  # memory, not speed, is measured here
    model, tok = load_spec(spec)
    ours, baseline, _ = _training_step(model, tok)
    queue.put(_extra_peak_mb(ours if variant == "ours" else baseline)[1])


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

    from ftrisk.prompts import benchmarks
    from ftrisk.config.schema import LoraConfig, TrainConfig
    from ftrisk.cost import CostMeter
    from ftrisk.model.subject import load_spec
    from ftrisk.training.finetune import Example, finetune

    model, tok = load_spec(spec)
    items = benchmarks.load("advbench-train")[:8 * steps]
    examples = [Example(it.prompt, it.extra["target"]) for it in items]
    cfg = TrainConfig(lr=1e-5, batch_size=8, max_seq_len=128, max_steps=steps)
    with tempfile.TemporaryDirectory() as d:
        lora = LoraConfig(r=16, alpha=32) if method == "lora" else None
        _, extra_mb = _extra_peak_mb(lambda: finetune(model, tok, examples, lora, cfg, Path(d), meter=CostMeter()))
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
    from ftrisk.model.subject import load_spec

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


# --------------------------------------------------------------------------- command line

WORKLOADS = ("generation", "ceiling", "training", "training-rows")


def _mb(x) -> str:
    return "n/a" if x is None else f"{x:.0f} MB"


def print_generation(row: dict) -> None:
    print(f"generation: {row['what']}")
    print(f"  baseline {row['baseline_tok_s']:.1f} tok/s ({row['baseline_s']:.1f}s), "
          f"ftrisk {row['ftrisk_tok_s']:.1f} tok/s ({row['ftrisk_s']:.1f}s), ratio x{row['ratio']:.2f}")
    print(f"  label agreement ({row['headline_judge']}) {100 * row['label_agreement']:.1f}%, identical replies "
          f"{100 * row['identical_replies']:.1f}%, refusal rate baseline {100 * row['baseline_refusal_rate']:.1f}% "
          f"ftrisk {100 * row['ftrisk_refusal_rate']:.1f}%")
    print(f"  peak RSS baseline {_mb(row['baseline_peak_rss_mb'])}, ftrisk {_mb(row['ftrisk_peak_rss_mb'])} (of which "
          f"{_mb(row.get('ftrisk_held_mb'))} kept between calls); load {row['load_before']} -> {row['load_after']}")
    for d in row.get("differences", []):
        print(f"  differs {d['id']}: token {d['first_diff_token']} {d['baseline_token']!r} vs {d['ftrisk_token']!r}, "
              f"alone picks {d['alone_picks']} (logit gap {d['logit_gap_alone']:+.4f}), labels {d['labels']}")


def print_ceiling(row: dict) -> None:
    print(f"ceiling: matmul {row['achievable_gflops']:.1f} GFLOP/s achievable "
          f"(before {row['matmul_before']}, after {row['matmul_after']}); {row['flop_params'] / 1e6:.1f}M params "
          f"per token = {row['gflop_per_token']:.3f} GFLOP/token, ceiling {row['ceiling_tok_s']:.0f} tok/s")
    print(f"  baseline {row['baseline_gflops']:.1f} GFLOP/s ({row['baseline_pct_of_ceiling']:.1f}% of ceiling), "
          f"ftrisk {row['ftrisk_gflops']:.1f} GFLOP/s ({row['ftrisk_pct_of_ceiling']:.1f}%)")


def main(args) -> int:
    """``ftrisk bench [generation|ceiling|training|training-rows] [--model SPEC] [--out FILE.json]`` (default:
    generation)."""
    from ftrisk.model.loading import DEFAULT_SPEC

    spec = getattr(args, "model", None) or DEFAULT_SPEC
    workload = getattr(args, "workload", None) or "generation"
    kwargs = {"spec": spec, "repeats": getattr(args, "repeats", None) or 1, "backend": getattr(args, "backend", None)}
    if workload == "generation":
        row = bench_generation(**kwargs)
        print_generation(row)
    elif workload == "ceiling":
        row = bench_ceiling(**kwargs)
        print_generation(row["generation"])
        print_ceiling(row)
    elif workload == "training":  # ftrisk's training loop vs the HF Trainer: ftrisk.bench.training
        from ftrisk.bench import training as bench_train

        row = bench_train.bench(spec, rounds=getattr(args, "repeats", None) or 3)
        print(f"training: {row['workload']}: baseline {row['baseline_tok_s']} tok/s, ftrisk {row['ftrisk_tok_s']} tok/s, "
              f"ratio x{row['ratio']:.2f}, peak RSS {_mb(row.get('peak_rss_mb'))}")
        for m in bench_train.METHODS:
            if m in row:
                r = row[m]
                print(f"  {m}: {r['tok_s']} tok/s, {r['gflop_s']} GFLOP/s, loss of the last 5 steps {r['final_loss']}, "
                      f"loss over all attack data after training {r['data_loss']} (seeds: {r['data_loss_by_seed']}), "
                      f"peak RSS {_mb(r['peak_rss_mb'])}")
        d = row["loss"]
        verdict = {True: "the same within noise", False: "NOT the same within noise", None: "noise not estimated"}
        print(f"  loss, ftrisk minus baseline: {d['difference']:+.4f} (standard error {d['standard_error']}): "
              f"{verdict[d['within_noise']]}; schedule: {row['schedule']}")
    elif workload == "training-rows":
        row = run_training(spec)
    else:
        from ftrisk.errors import FtriskError

        raise FtriskError(f"unknown bench workload '{workload}' (known: {', '.join(WORKLOADS)})")
    row["machine"] = machine()
    if getattr(args, "out", None):
        Path(args.out).write_text(json.dumps(row, indent=2))
    return 0
