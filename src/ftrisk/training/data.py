"""Training data: chat examples encoded with loss on the response only, and the run's schedule of micro-batches.

torch is imported inside :func:`collate`: the command line imports this module at start-up (attack data and
hardening build :class:`Example` lists) and must stay fast.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ftrisk.model.chat import chat_text

#: The label of a position that carries no loss (PyTorch's cross-entropy ``ignore_index``).
IGNORE = -100
#: Batches per length-sorting window (see :func:`make_batches`).
SORT_WINDOW = 4


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str
    # False for a response cut off at a token limit (a self-distilled answer that hit max_new_tokens):
    # it is trained without the end-of-turn marker, so the model is not taught to stop mid-answer
    complete: bool = True
    # the start of the assistant turn, before ``response``, that carries no loss: the model reads it and is trained
    # on what follows (deep alignment's affirmative opening, after which it learns to recover into a refusal)
    masked_prefix: str = ""


def encode(tok, ex: Example, max_seq_len: int, system_prompt: str | None = None) -> dict:
    """Token ids and labels; loss only on the assistant turn after its ``masked_prefix``, masked by position (pad == EOS
    for many models)."""
    prompt_text = chat_text(tok, ex.prompt, system_prompt)
    full_text = chat_text(tok, ex.prompt, system_prompt, response=ex.masked_prefix + ex.response)
    if not full_text.startswith(prompt_text):
        raise ValueError("chat template renders the prompt differently with and without the response")
    if not ex.complete:  # the response text only, no end-of-turn marker after it
        full_text = prompt_text + ex.masked_prefix + ex.response
    p = tok(prompt_text, add_special_tokens=False)["input_ids"]
    turn = full_text[len(prompt_text):]
    masked = []  # the masked prefix's tokens, then the rest's, each tokenized alone (as the paper joins token ids)
    if ex.masked_prefix:
        if not turn.startswith(ex.masked_prefix):
            raise ValueError("chat template changes the start of the assistant turn: its masked prefix is not kept")
        masked = tok(ex.masked_prefix, add_special_tokens=False)["input_ids"]
        turn = turn[len(ex.masked_prefix):]
    r = masked + tok(turn, add_special_tokens=False)["input_ids"]
    excess = len(p) + len(r) - max_seq_len
    if excess > 0:  # cut the middle of the prompt (keep the template's head and the turn markers at its end)
        keep_head = min(32, len(p) // 4, max_seq_len // 4)
        cut = min(excess, max(0, len(p) - keep_head - 8))
        p = p[:keep_head] + p[keep_head + cut:]
        if len(p) >= max_seq_len:  # a tiny max_seq_len: keep the prompt's end and at least one response token
            p = p[len(p) - max_seq_len + 1:]
        r = r[: max_seq_len - len(p)]
    n = min(len(masked), len(r))
    return {"input_ids": p + r, "labels": [IGNORE] * (len(p) + n) + r[n:]}


def n_trained(e: dict) -> int:
    """Tokens of one encoded example that carry loss (labels shifted by one, as the loss takes them)."""
    return sum(1 for lab in e["labels"][1:] if lab != IGNORE)


def make_batches(n_lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle the examples, then sort each window of ``SORT_WINDOW`` batches by length and cut it into batches.

    The same idea as transformers' ``group_by_length`` (random mega-batches of ``min(50, n // (4 x batch))``
    batches, sorted), with a smaller window. Why windows and not one sort of the whole data: a batch of
    similar-length examples is also a batch of similar examples, and the attack trained less per step; windows
    keep most of the sort's saving in padding."""
    order = list(range(len(n_lengths)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    batches = []
    for w in range(0, len(order), batch_size * SORT_WINDOW):
        window = sorted(order[w:w + batch_size * SORT_WINDOW], key=lambda i: (n_lengths[i], i))
        batches += [window[i:i + batch_size] for i in range(0, len(window), batch_size)]
    return batches


def n_micro_batches(n_examples: int, train_cfg) -> int:
    """Micro-batches a run of ``train_cfg`` takes on ``n_examples`` (``epochs`` passes, the last one possibly cut)."""
    return math.ceil(math.ceil(n_examples / train_cfg.batch_size) * train_cfg.epochs)


def plan_steps(n_examples: int, train_cfg) -> int:
    """Optimizer steps a run of ``train_cfg`` takes on ``n_examples`` (epochs, batches, max_steps)."""
    steps = math.ceil(n_micro_batches(n_examples, train_cfg) / train_cfg.grad_accum)
    return min(steps, train_cfg.max_steps) if train_cfg.max_steps else steps


def schedule(n_lengths: list[int], train_cfg, seed: int) -> list[list[int]]:
    """The run's micro-batches in order: each epoch's :func:`make_batches`, cut at :func:`n_micro_batches`. Every
    process, and a resumed run, builds the same list."""
    epochs = range(math.ceil(train_cfg.epochs))
    batches = [b for ep in epochs for b in make_batches(n_lengths, train_cfg.batch_size, seed, ep)]
    return batches[:n_micro_batches(len(n_lengths), train_cfg)]


def collate(encoded: list[dict], pad_id: int):
    """Encoded examples as right-padded tensors: (ids, attention mask, labels), IGNORE at the padding."""
    import torch

    width = max(len(e["input_ids"]) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):  # right padding for training
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return ids, mask, labels
