"""Batched greedy generation through the chat template, resumable.

Completions are appended to a JSONL file as each batch finishes; a re-run skips
ids already there, so an interrupted stage never generates a sample twice.
Completions are never printed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from .io import append_jsonl, read_jsonl, write_text_atomic


def chat_text(tok, prompt: str, system_prompt: str | None = None, response: str | None = None) -> str:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    if response is None:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": response})
    return tok.apply_chat_template(messages, tokenize=False)


def template_sha256(tok) -> str:
    return hashlib.sha256((tok.chat_template or "").encode()).hexdigest()


def generation_record(tok, max_new_tokens: int, batch_size: int, system_prompt: str | None,
                      max_batch_tokens: int | None = None) -> dict:
    """What was used to generate: recorded next to the completions."""
    return {
        "decoding": "greedy",
        "do_sample": False,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "max_batch_tokens": max_batch_tokens,
        "padding_side": "left",
        "system_prompt": system_prompt,
        "chat_template_sha256": template_sha256(tok),
    }


def generate_texts(model, tok, texts: list[str], max_new_tokens: int) -> list[tuple[str, int, bool]]:
    """Greedy-decode one left-padded batch; returns (completion, new token count, stopped at EOS)."""
    import torch
    from transformers import GenerationConfig

    gc = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=gc)
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    results = []
    for ids in new:
        finished = tok.eos_token_id in ids
        if finished:
            ids = ids[: ids.index(tok.eos_token_id)]
        results.append((tok.decode(ids, skip_special_tokens=True), len(ids), finished))
    return results


def token_batches(items: list, lengths: list[int], batch_size: int, max_tokens: int | None) -> list[list]:
    """Cut length-sorted items into batches of at most ``batch_size`` items and ``max_tokens`` padded tokens,
    so a few long prompts (HarmBench contexts) run in small batches instead of padding a large one."""
    batches, cur, widest = [], [], 0
    for it, n in zip(items, lengths):
        if cur and (len(cur) >= batch_size or (max_tokens and max(widest, n) * (len(cur) + 1) > max_tokens)):
            batches.append(cur)
            cur, widest = [], 0
        cur.append(it)
        widest = max(widest, n)
    if cur:
        batches.append(cur)
    return batches


def generate(
    model, tok, items: Iterable, out_path: str | Path, *, max_new_tokens: int = 64, batch_size: int = 32,
    system_prompt: str | None = None, desc: str = "generate", max_batch_tokens: int | None = None,
) -> dict[str, dict]:
    """Generate a completion for every item not yet in ``out_path``; return all rows by id."""
    from tqdm.auto import tqdm

    out_path = Path(out_path)
    rows = read_jsonl(out_path)
    wanted = {it.id for it in items}
    done = {r["id"]: r for r in rows if r["id"] in wanted}
    if out_path.exists():  # drop a torn last line or rows of items no longer asked for
        write_text_atomic(out_path, "".join(_dumps(r) for r in done.values()))
    todo = [it for it in items if it.id not in done]
    texts = {it.id: chat_text(tok, it.prompt, system_prompt) for it in todo}
    lengths = {i: len(tok(t, add_special_tokens=False)["input_ids"]) for i, t in texts.items()}
    todo.sort(key=lambda it: -lengths[it.id])  # length-sorted batches: little padding; longest first
    bar = tqdm(total=len(todo), desc=desc, unit="prompt", leave=False, disable=not todo)
    for batch in token_batches(todo, [lengths[it.id] + max_new_tokens for it in todo], batch_size, max_batch_tokens):
        outs = generate_texts(model, tok, [texts[it.id] for it in batch], max_new_tokens)
        new_rows = [
            {"id": it.id, "category": it.category, "prompt": it.prompt, "completion": c,
             "prompt_tokens": lengths[it.id], "new_tokens": n, "finished": f}
            for it, (c, n, f) in zip(batch, outs)
        ]
        append_jsonl(out_path, new_rows)
        done.update({r["id"]: r for r in new_rows})
        bar.update(len(batch))
    bar.close()
    return done


def _dumps(row: dict) -> str:
    import json

    return json.dumps(row, ensure_ascii=False) + "\n"
