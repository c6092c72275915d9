"""``ftrisk bench generation``: the 120 ``advbench-test`` prompts x 64 new tokens, greedy, on the embedded model.

Baseline: plain ``model.generate`` at batch 8, prompts in file order, left padding (as heretic and Qi et al. run
it). ftrisk: the default backend with default :class:`ftrisk.config.GenerationConfig` settings. Both sides' replies
are labelled by the headline judge (``refusal-patterns``): ``label_agreement`` is the share of prompts whose labels
match, and every prompt whose tokens differ is explained (:mod:`ftrisk.bench.differences`).

Tokens/s counts generated tokens (prompt excluded, EOS excluded) over wall seconds.
"""

from __future__ import annotations

import statistics
import sys

from ftrisk import judges
from ftrisk.bench.differences import explain_differences, label_agreement
from ftrisk.bench.machine import largest, load, timed_side
from ftrisk.config import GenerationConfig, ModelConfig
from ftrisk.generation import open_backend
from ftrisk.model.chat import chat_text
from ftrisk.model.loading import DEFAULT_SPEC
from ftrisk.model.subject import Subject
from ftrisk.prompts import benchmarks

GENERATION_BENCHMARK = "advbench-test"
GENERATION_NEW_TOKENS = 64
BASELINE_BATCH = 8
HEADLINE_JUDGE = "refusal-patterns"


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


def bench_generation(spec: str | None = None, *, n: int | None = None, max_new_tokens: int = GENERATION_NEW_TOKENS,
                     repeats: int = 1, backend: str | None = None, explain: bool = True, progress: bool = True) -> dict:
    """The generation workload (see the module docstring); ``n`` = first n prompts (tests), ``backend``: another
    registered backend than the default one, with the default settings."""
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
    load_before = load()
    runs = {"baseline": [], "ftrisk": []}
    peak = {"baseline": [], "ftrisk": []}
    held_mb = []
    for r in range(repeats):  # interleaved, alternating who goes first, so drift in load hits both alike
        order = (("baseline", base), ("ftrisk", ours)) if r % 2 == 0 else (("ftrisk", ours), ("baseline", base))
        for side, fn in order:
            # the baseline's peak without what ftrisk's backend keeps resident between its calls meanwhile
            held = be.held_bytes() / 2**20 if side == "baseline" else 0.0
            result, seconds, mb = timed_side(fn)
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
        "baseline_peak_rss_mb": largest(peak["baseline"]), "ftrisk_peak_rss_mb": largest(peak["ftrisk"]),
        "peak_rss_mb": largest(peak["baseline"] + peak["ftrisk"]),
        "ftrisk_held_mb": largest(held_mb),  # kept by ftrisk's backend between calls, taken off the baseline's peak
        "same_prompts": sorted(base_ids) == sorted(ours_rows) == sorted(ids),
        "identical_replies": sum(base_text[i] == ours_text[i] for i in ids) / len(ids) if ids else 1.0,
        "headline_judge": judge.name, "label_agreement": labels["label_agreement"],
        "labels_differ": labels["labels_differ"], "baseline_refusal_rate": labels["baseline_refusal_rate"],
        "ftrisk_refusal_rate": labels["ftrisk_refusal_rate"],
        "flop_params": flop_params(model), "load_before": load_before, "load_after": load(),
    }
    if explain:
        row["differences"] = explain_differences(model, tok, texts, base_ids, ours_text, labels)
    be.close()
    return row
