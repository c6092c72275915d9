"""The ``hf`` backend's greedy decode loop: the model's ``forward`` called with a KV cache, instead of
``model.generate``, so that work a loop of its own can skip or share is skipped or shared:

- finished rows (EOS, or ``stop`` says the label is final) leave the batch, and their KV cache rows with it;
- a prompt prefix common to the batch (the chat template's system turn) is computed once (:mod:`.prefill`);
- one KV buffer per layer for the whole decode, written in place (:mod:`.kv_layer`), kept across calls
  (:mod:`.caches`);
- logits only at the last position, and only the greedy token of the LM head (:mod:`.head`);
- on the CPU: packed linear kernels (:mod:`.linear`), one-query attention as weighted sums (:mod:`.attention`),
  a lean Llama step (:mod:`.step`), and each step on the cores other processes leave free
  (:class:`ftrisk.generation.cpu.resources.CpuShare`).

:class:`ftrisk.generation.cpu.options.DecodeOptions` turns each CPU kernel off. Greedy tokens equal ``generate``'s
for one prompt alone (tested). In a batch, padding and the shared prefix change the shapes of the matrix products
and so the order of float additions: a near-tie between two tokens may then break the other way
(``ftrisk bench generation`` lists every such difference with its logit gap).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

from ftrisk.generation.cpu import key_blocks
from ftrisk.generation.cpu import options as decode_options
from ftrisk.generation.cpu.attention import keys_blocked, same_positions
from ftrisk.generation.cpu.caches import kernels
from ftrisk.generation.cpu.next_token import NextToken
from ftrisk.generation.cpu.options import DecodeOptions
from ftrisk.generation.cpu.prefill import left_padded_mask, prefill
from ftrisk.tokens import common_prefix

#: A shared prefix shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 4


@dataclass
class Decoded:
    ids: list[int]
    """New tokens, EOS excluded."""
    finished: bool
    """Stopped at EOS."""
    truncated: bool = False
    """Stopped early because ``stop`` said so (the rest of the reply would not change its label)."""


def _thread_setter(threads):
    import torch

    def set_threads():
        if threads is not None:
            n = threads()
            if n != torch.get_num_threads():
                torch.set_num_threads(n)
    return set_threads


def greedy(model, rows: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
           stop: Optional[Callable[[int, list[int]], bool]] = None, share_prefix: bool = True,
           threads: Optional[Callable[[], int]] = None, options: Optional[DecodeOptions] = None) -> list[Decoded]:
    """Greedy-decode one batch of token-id prompts. ``stop(row, new_ids)`` -> True ends that row early
    (marked ``truncated``); ``threads()`` -> the intra-op thread count for the next forward pass (CPU); ``options``:
    which CPU kernels run (None: the enclosing :func:`ftrisk.generation.cpu.caches.kernels` block's, or the
    defaults), the running options of the call for the attention that transformers calls."""
    import torch

    options = options if options is not None else decode_options.current()
    dev = model.device
    n = len(rows)
    out = [Decoded([], False) for _ in rows]
    if n == 0 or max_new_tokens <= 0:
        return out
    shared = common_prefix(rows) if share_prefix and n > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    width = max(len(r) for r in rows) - shared
    set_threads = _thread_setter(threads)
    with (torch.inference_mode(), kernels(model, options=options) as kept, decode_options.use(options),
          contextlib.ExitStack() as within):
        pool = within.enter_context(kept.kv.lease()) if kept is not None and dev.type == "cpu" else None
        blocked = keys_blocked(model)
        # with blocked keys, a masked gap after the shared prefix up to a block edge: then the prefix's key blocks are
        # the same in every row, and the decode attention reads them (and masked positions) from the first row only
        gap = -shared % key_blocks.KEY_BLOCK if shared and blocked else 0
        width += gap
        step = NextToken(model, options=options)
        cache, nxt = prefill(model, step, rows, shared, width, shared + width + max_new_tokens, pad_id, set_threads,
                             blocked, pool)
        if shared and getattr(cache.layers[0], "blocked", False):
            within.enter_context(same_positions(shared + gap))
        mask = left_padded_mask([len(r) - shared for r in rows], shared, width)
        pos = mask.sum(-1, keepdim=True) - 1
        mask, pos = mask.to(dev), pos.to(dev)
        alive = list(range(n))  # batch row -> prompt index
        for step_no in range(max_new_tokens):
            keep = []
            for j, tok in enumerate(nxt.tolist()):
                r = alive[j]
                if tok == eos_id:
                    out[r].finished = True
                    continue
                out[r].ids.append(tok)
                if stop is not None and step_no < max_new_tokens - 1 and stop(r, out[r].ids):
                    out[r].truncated = True
                    continue
                keep.append(j)
            if not keep or step_no == max_new_tokens - 1:
                break
            if len(keep) < len(alive):  # finished rows leave the batch, and their cache rows with them
                k = torch.tensor(keep, device=dev)
                cache.batch_select_indices(k)
                mask, pos, nxt = mask[k], pos[k], nxt[k]
                alive = [alive[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            pos = pos + 1
            set_threads()
            nxt = step(cache, input_ids=nxt[:, None], attention_mask=mask, position_ids=pos)
    return out
