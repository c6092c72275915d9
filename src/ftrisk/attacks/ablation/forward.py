"""Forward passes for the direction search: chat prompts in left-padded batches, the direction projected out of
every residual-stream write by hooks, and greedy replies under those hooks.

The hooks are plain PyTorch forward hooks on the modules of :func:`ftrisk.attacks.ablation.arch.writers`, so a
candidate costs nothing to try (no weight copy). Generation here is transformers' own ``model.generate``: ftrisk's
CPU decode kernels (:mod:`ftrisk.generation.cpu`) do not promise to call module hooks.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager

import torch

from ftrisk.attacks.ablation.arch import writers
from ftrisk.model.chat import chat_text

BATCH_SIZE = 16
"""Prompts per forward batch (the validation sets are 32 prompts a side by default: two batches)."""


def encode(tok, prompts: list[str], system_prompt: str | None) -> list[list[int]]:
    """Token ids of each prompt in the chat template with the generation prompt (as the hf backend encodes it)."""
    return [tok(chat_text(tok, p, system_prompt), add_special_tokens=False)["input_ids"] for p in prompts]


def batches(rows: list, size: int = BATCH_SIZE) -> list[list]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def padded(rows: list[list[int]], pad_id: int, device) -> dict:
    """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` (counted from each row's first real token,
    so a row's activations do not depend on the batch it lands in)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": pos.to(device)}


def pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def project_out(x: torch.Tensor, r: torch.Tensor, strength: float) -> torch.Tensor:
    """``x - strength (x . r) r`` along the last dimension (``r`` a unit vector)."""
    r = r.to(device=x.device, dtype=x.dtype)
    return x - strength * (x @ r).unsqueeze(-1) * r


@contextmanager
def ablated(model, r: torch.Tensor | None, strength: float = 1.0):
    """Within the block every residual-stream write of ``model`` (embedding output, each attention output
    projection, each MLP down projection) has ``strength`` of its component along ``r`` removed; ``r`` None: no
    hooks (the original model)."""
    if r is None:
        yield model
        return
    embed, attn, mlp = writers(model)
    r = r.to(device=embed.weight.device, dtype=embed.weight.dtype)  # once, not in every hook call
    handles = [m.register_forward_hook(lambda _m, _inp, out: project_out(out, r, strength))
               for m in [embed, *attn, *mlp]]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def cache_kw(model) -> str:
    """The forward argument of the key/value cache: transformers 5 renamed ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def common_prefix(rows: list[list[int]], keep: int = 1) -> int:
    """Length of the token prefix all ``rows`` share (the chat template's system turn and user header), leaving at
    least ``keep`` tokens of every row after it."""
    first, most = rows[0], min(len(r) for r in rows) - keep
    n = 0
    while n < most and all(r[n] == first[n] for r in rows):
        n += 1
    return n


@torch.no_grad()
def forward_batches(model, rows: list[list[int]], pad: int, *, batch_size: int = BATCH_SIZE, keep: int = 1,
                    start: int = 0, meter=None, hidden: bool = False):
    """(batch index, model output) for each batch of ``rows`` from ``start``, next-token logits at each row's last
    token (``hidden``: the hidden states of the tokens after the shared prefix too). The prefix the rows share is
    run once, when the first batch runs, and its key/value cache reused by every batch (the template's system turn
    is about half of a short chat prompt); the meter counts the real tokens run."""
    prefix, cache = common_prefix(rows, keep), None
    kw = cache_kw(model)
    for i, batch in enumerate(batches(rows, batch_size)):
        if i < start:
            continue
        if prefix and cache is None:
            head = torch.tensor([rows[0][:prefix]], device=model.device)
            out = model(input_ids=head, use_cache=True, logits_to_keep=1)
            cache = out.cache if kw == "cache" else out.past_key_values
            if meter is not None:
                meter.add_forward(prefix)
        enc = padded([r[prefix:] for r in batch], pad, model.device)
        if meter is not None:
            meter.add_forward(int(enc["attention_mask"].sum()))
        extra = {}
        if cache is not None:  # the batch continues the shared prefix: its positions and mask come after it
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(batch))
            ones = torch.ones((len(batch), prefix), dtype=enc["attention_mask"].dtype, device=model.device)
            enc["attention_mask"] = torch.cat([ones, enc["attention_mask"]], dim=1)
            enc["position_ids"] = enc["position_ids"] + prefix
            extra = {kw: past, "use_cache": True}
        yield i, model(**enc, **({"use_cache": False} | extra), logits_to_keep=1, output_hidden_states=hidden)


def last_logits(model, rows: list[list[int]], pad: int, meter=None, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Float32 next-token logits after each row's last token, (rows, vocab)."""
    out = [res.logits[:, -1, :].float().cpu()
           for _, res in forward_batches(model, rows, pad, batch_size=batch_size, meter=meter)]
    return torch.cat(out)


@torch.no_grad()
def greedy_replies(model, tok, rows: list[list[int]], max_new_tokens: int, meter=None,
                   batch_size: int = BATCH_SIZE) -> list[tuple[str, list[int]]]:
    """Greedy replies to each row: (text without special tokens, token ids up to EOS); the meter counts prompt and
    generated tokens. The replies go to a judge and nowhere else."""
    from transformers import GenerationConfig  # the engines load with the model, not with this module

    pad = pad_id(tok)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                           eos_token_id=tok.eos_token_id)
    replies = []
    for batch in batches(rows, batch_size):
        enc = padded(batch, pad, model.device)
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], generation_config=gen)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        for row in new.tolist():
            n = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            replies.append((tok.decode(row[:n], skip_special_tokens=True), row[:n]))
            if meter is not None:
                meter.add_forward(n)
        if meter is not None:
            meter.add_forward(int(enc["attention_mask"].sum()))
    return replies
