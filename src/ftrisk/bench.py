"""``ftrisk bench``: speed and memory of ftrisk's own choices, as ratios against a baseline timed in the same run.

Machines here are noisy, so no absolute target is asserted anywhere; each line compares two ways
of doing the same work, interleaved and repeated, and prints the median ratio.
- training step: logits only at response positions (ftrisk) vs the full-vocabulary logits (baseline)
- generation: length-sorted batches of 16 (ftrisk) vs one prompt at a time (baseline)
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_training(model, tok, repeats: int = 5) -> dict:
    import torch
    import torch.nn.functional as F

    from . import benchmarks
    from .train import Example, collate, encode, response_loss

    items = benchmarks.load("advbench-train")[:8]
    enc = [encode(tok, Example(it.prompt, it.extra["target"]), 128) for it in items]
    ids, mask, labels = collate(enc, tok.pad_token_id)
    model.train()

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
    ours(), baseline()  # warm-up
    a, b = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        a += _time(ours, 1)
        b += _time(baseline, 1)
    model.eval()
    return {"what": "training step, response-only logits vs full logits",
            "ours_s": statistics.median(a), "baseline_s": statistics.median(b),
            "speedup": statistics.median(b) / statistics.median(a), "tokens": int(mask.sum())}


def bench_generation(model, tok, n: int = 16, max_new_tokens: int = 16) -> dict:
    from . import benchmarks
    from .generate import chat_text, generate_texts

    texts = [chat_text(tok, it.prompt) for it in benchmarks.load("xstest-safe")[:n]]
    texts.sort(key=len)
    batched = _time(lambda: generate_texts(model, tok, texts, max_new_tokens), 1)[0]
    single = _time(lambda: [generate_texts(model, tok, [t], max_new_tokens) for t in texts], 1)[0]
    return {"what": f"generation of {n} prompts x {max_new_tokens} tokens, batch {n} vs batch 1",
            "ours_s": batched, "baseline_s": single, "speedup": single / batched}


def main(args) -> int:
    from .config import ModelConfig
    from .models import DEFAULT_SPEC, load

    model, tok = load(ModelConfig(spec=args.model or DEFAULT_SPEC))
    rows = [bench_training(model, tok), bench_generation(model, tok)]
    for r in rows:
        print(f"{r['what']}: ftrisk {r['ours_s']:.3f}s, baseline {r['baseline_s']:.3f}s, ratio x{r['speedup']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0
