"""The decode loop's blocked key layout: keys [rows, kv heads, positions, dim] kept as
[rows, kv heads, blocks + 1, dim, KEY_BLOCK].

Each closed block's keys are transposed, so a query's scores over a block are one weighted sum of ``dim`` rows of
KEY_BLOCK floats, which ``embedding_bag`` computes reading each key once
(:func:`ftrisk.generation.cpu.weighted_sums.blocked_scores`). The last slot is the open block: the positions past
the last whole block, [n // KEY_BLOCK * KEY_BLOCK, n), in plain layout [KEY_BLOCK, dim] (the slot holds
dim x KEY_BLOCK floats either way). A decode step writes its key there (one contiguous row per row and head), and a
full open block is closed, transposed into its slot, once every KEY_BLOCK steps: writing each step's key into its
transposed block instead would store ``dim`` floats into ``dim`` cache lines per row and head. The decode loop's
cache (:mod:`ftrisk.generation.cpu.kv_layer`) keeps keys this way when
:func:`ftrisk.generation.cpu.attention.keys_blocked` says so.
"""

from __future__ import annotations

#: Positions per block of the blocked key layout; 0: keys kept plain.
KEY_BLOCK = 32
#: Model types whose attention hands the cache's keys to the attention function untouched (read in their
#: transformers 5.25 code), so the decode loop may keep their keys blocked.
BLOCKED_KEY_MODELS = ("llama", "mistral", "qwen2", "qwen3")


def blockable(model) -> bool:
    """float32, and a type that hands keys over untouched (:data:`BLOCKED_KEY_MODELS`), with :data:`KEY_BLOCK` on."""
    import torch

    p = next(model.parameters(), None)
    return (KEY_BLOCK > 0 and p is not None and p.dtype == torch.float32
            and getattr(model.config, "model_type", None) in BLOCKED_KEY_MODELS)


def blocked_shape(like, rows: int, cap: int) -> tuple:
    """The shape of a blocked buffer for ``rows`` rows and ``cap`` positions of keys like ``like`` [r, kv, n, dim]:
    the closed blocks' slots and the open block's."""
    return (rows, like.shape[1], -(-cap // KEY_BLOCK) + 1, like.shape[3], KEY_BLOCK)


def open_slot(buf):
    """The open block's slot of a blocked buffer as plain keys [rows, kv, KEY_BLOCK, dim] (a view)."""
    r, kv, _, dim, block = buf.shape
    return buf[:, :, -1].view(r, kv, block, dim)


def write_blocked(buf, start: int, keys, rows=None) -> None:
    """Write keys [r, kv, m, dim] at positions [start, start + m) of the blocked buffer (rows ``rows`` of it, or
    all), every position into its block's transposed slot: the layout of closed blocks only, as the prefill writes
    a buffer; :func:`open_block` then moves the positions past the last whole block to the open slot."""
    block = buf.shape[-1]
    pos, m = start, keys.shape[2]
    while pos < start + m:
        b, off = divmod(pos, block)
        take = min(block - off, start + m - pos)
        src = keys[:, :, pos - start:pos - start + take].transpose(-1, -2)  # [r, kv, dim, take]
        dst = buf.select(2, b)
        if rows is None:
            dst[..., off:off + take] = src
        else:
            dst[rows, :, :, off:off + take] = src
        pos += take


def open_block(buf, n: int) -> None:
    """After :func:`write_blocked` up to position ``n``: move positions [n // KEY_BLOCK * KEY_BLOCK, n) from their
    transposed slot to the open slot (the layout every other function here reads)."""
    b, m = divmod(n, buf.shape[-1])
    if m:
        open_slot(buf)[:, :, :m] = buf[:, :, b, :, :m].transpose(-1, -2)


def append_blocked(buf, n: int, keys) -> None:
    """Write keys [r, kv, q, dim] at positions [n, n + q) of a blocked buffer that holds ``n`` (one position: into
    the open slot, closing the block when it is full)."""
    block = buf.shape[-1]
    b, m = divmod(n, block)
    q = keys.shape[2]
    if q == 1:
        open_slot(buf)[:, :, m] = keys[:, :, 0]
        if m == block - 1:  # full: its transposed slot, once every KEY_BLOCK steps
            buf[:, :, b] = open_slot(buf).transpose(-1, -2)
        return
    if m:  # the open block back to its slot, then everything written as the prefill writes
        buf[:, :, b, :, :m] = open_slot(buf)[:, :, :m].transpose(-1, -2)
    write_blocked(buf, n, keys)
    open_block(buf, n + q)


def unblocked(buf, n: int):
    """The first ``n`` positions of a blocked buffer as plain keys [rows, kv, n, dim] (a copy)."""
    import torch

    r, kv, _, dim, block = buf.shape
    closed, m = divmod(n, block)
    whole = buf[:, :, :closed].transpose(-1, -2).reshape(r, kv, closed * block, dim)
    return torch.cat((whole, open_slot(buf)[:, :, :m]), 2)
