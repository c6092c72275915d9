"""The decode loop's prefill: every prompt's KV cache and first greedy token, in the left-padded layout
``[shared prefix | padding | row's own tokens]``, the prefix common to the batch computed once. On the CPU the
prompts go in groups (:func:`prefill_groups`), each padded only to its own longest prompt, and their keys and values
are then placed in one buffer per layer (:mod:`.kv_layer`).
"""

from __future__ import annotations

from typing import Optional

from ftrisk.generation.cpu.caches import KVPool
from ftrisk.generation.cpu.key_blocks import blocked_shape, write_blocked
from ftrisk.generation.cpu.kv_layer import growing_layer, plain_layers
from ftrisk.generation.cpu.next_token import NextToken

#: At most this many rows per prefill group: each group is padded only to its own longest prompt, and its
#: activations stay small (a large prefill's fresh activations cost more, page by page, than the work on them).
PREFILL_ROWS = 16
#: Padded tokens per prefill group (a longer prompt goes alone): long prompts padded to the group's longest cost far
#: more than their extra tokens.
PREFILL_TOKENS = 1024


def left_padded_mask(own_lengths: list[int], shared: int, width: int):
    """The attention mask of the layout ``[shared prefix | padding | row's own tokens]``, ``shared + width`` wide."""
    import torch

    mask = torch.zeros((len(own_lengths), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for i, n in enumerate(own_lengths):
        mask[i, shared + width - n:] = 1
    return mask


def prefill_groups(lengths: list[int], cpu: bool = True) -> list[list[int]]:
    """Indices of ``lengths`` (sorted longest first) in prefill groups: on the CPU at most :data:`PREFILL_ROWS` rows
    and :data:`PREFILL_TOKENS` padded tokens each (always at least one row); elsewhere one group."""
    if not cpu:  # measured on the CPU only: a GPU prefills one batch
        return [list(range(len(lengths)))] if lengths else []
    groups: list[list[int]] = []
    for i in range(len(lengths)):
        g = groups[-1] if groups else None
        if g is None or len(g) >= PREFILL_ROWS or lengths[g[0]] * (len(g) + 1) > PREFILL_TOKENS:
            groups.append([i])
        else:
            g.append(i)
    return groups


def prefill(model, step: NextToken, rows, shared: int, width: int, capacity: int, pad_id: int, set_threads,
            blocked: bool = False, pool: Optional[KVPool] = None):
    """Prefill every row; returns (cache holding ``shared + width`` positions per row in the left-padded layout
    ``[shared prefix | padding | row's own tokens]``, first greedy token per row).

    With plain cache layers the rows are prefilled in groups (:func:`prefill_groups`, in length order), each group
    padded to its own longest row, on top of the shared prefix computed once; the groups' keys and values are then
    placed in one preallocated buffer per layer (padding positions zero and masked), keys in the blocked layout
    (:mod:`.key_blocks`) when ``blocked``, on ``pool``'s storage when given. Otherwise: one padded batch."""
    import torch
    from transformers import DynamicCache

    dev = model.device
    n = len(rows)
    tails = [r[shared:] for r in rows]
    prefix = DynamicCache(config=model.config)
    if shared:  # the common prefix once
        set_threads()
        step(prefix, input_ids=torch.tensor([rows[0][:shared]], device=dev),
             position_ids=torch.arange(shared, device=dev)[None])

    def run(idx, w, cache):
        ids = torch.full((len(idx), w), pad_id, dtype=torch.long)
        for j, i in enumerate(idx):  # left padding, between the shared prefix and each row's own tokens
            ids[j, w - len(tails[i]):] = torch.tensor(tails[i])
        mask = left_padded_mask([len(tails[i]) for i in idx], shared, w)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        set_threads()
        return step(cache, input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev))

    def copy_of_prefix(rows_in_group):
        if not shared:
            return DynamicCache(config=model.config)
        return DynamicCache(ddp_cache_data=[(k.expand(rows_in_group, -1, -1, -1), v.expand(rows_in_group, -1, -1, -1))
                                            for k, v, *_ in prefix], config=model.config)

    if not plain_layers(prefix):  # sliding-window or other special layers: one padded batch, transformers' cache
        cache = copy_of_prefix(n)
        return cache, run(list(range(n)), width, cache)
    order = sorted(range(n), key=lambda i: -len(tails[i]))
    first = torch.empty(n, dtype=torch.long, device=dev)
    bufs = None
    for idx in prefill_groups([len(tails[i]) for i in order], dev.type == "cpu"):
        idx = [order[j] for j in idx]
        w = len(tails[idx[0]])
        cache = copy_of_prefix(len(idx))
        first[idx] = run(idx, w, cache)
        rows_t = torch.tensor(idx, device=dev)
        if bufs is None:
            def zeros(slot, shape, like):
                return pool.zeros(slot, shape, like) if pool is not None else like.new_zeros(shape)
            bufs = [(zeros((i, "k"), blocked_shape(k, n, capacity) if blocked else (n, k.shape[1], capacity, k.shape[3]), k),
                     zeros((i, "v"), (n, v.shape[1], capacity, v.shape[3]), v)) for i, (k, v, *_) in enumerate(cache)]
        for (kb, vb), (k, v, *_) in zip(bufs, cache):  # [prefix | zeros | own tokens], right-aligned at shared + width
            if blocked:
                write_blocked(kb, 0, k[:, :, :shared], rows_t)
                write_blocked(kb, shared + width - w, k[:, :, shared:], rows_t)
            else:
                kb[rows_t, :, :shared] = k[:, :, :shared]
                kb[rows_t, :, shared + width - w:shared + width] = k[:, :, shared:]
            vb[rows_t, :, :shared] = v[:, :, :shared]
            vb[rows_t, :, shared + width - w:shared + width] = v[:, :, shared:]
        del cache
    Growing = growing_layer()
    out = DynamicCache(config=model.config)
    out.layers = [Growing(kb, vb, shared + width) for kb, vb in bufs]
    return out, first
