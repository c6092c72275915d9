"""A decode step's two attention products as ``embedding_bag`` weighted sums (FBGEMM's kernel on x86), which read
each key and value row once: the scores over blocked keys (:mod:`.key_blocks`) and the values weighted by their
probabilities. A decode step is bound by reading the cache, and batched products (``einsum`` / ``matmul``, MKL's
small-matrix path) read it well below memory speed. Same sums as the products, another order of additions.
"""

from __future__ import annotations

import functools
import weakref

from ftrisk.generation.cpu.key_blocks import open_slot

_made: dict = {}  # what -> (weak reference to the object it was made for, or None; its key; what was made)


def once(what: str, obj, key: tuple, make):
    """``make()`` once per object and key: a decode step passes the same mask (and so the same derived tensors) to
    every layer. ``obj`` is held by a weak reference, so a later object never meets another's result; None: the
    key alone decides."""
    hit = _made.get(what)
    if hit is not None and hit[1] == key and (hit[0] is None if obj is None else hit[0] is not None and hit[0]() is obj):
        return hit[2]
    out = make()
    _made[what] = (None if obj is None else weakref.ref(obj), key, out)
    return out


def version(t):
    """A tensor's version counter, None for an inference tensor (it keeps none)."""
    return None if t is None or t.is_inference() else t._version


def _buffer_rows(t):
    """``t`` [rows, kv heads, n, dim] as the view ``buf[:, :, :n]`` of a contiguous buffer [rows, kv heads, cap, dim]
    (the decode loop's preallocated cache, or any contiguous tensor: cap = n): (that buffer as [rows * kv heads * cap,
    dim], cap); None when ``t`` is laid out otherwise."""
    rows, kv_heads, n, dim = t.shape
    if t.stride(3) != 1 or t.stride(2) != dim or t.stride(1) % dim:
        return None
    cap = t.stride(1) // dim
    if cap < n or t.stride(0) != kv_heads * cap * dim or (t.storage_offset() + rows * kv_heads * cap * dim) * t.element_size() > t.untyped_storage().nbytes():
        return None
    return t.as_strided((rows * kv_heads * cap, dim), (dim, 1)), cap


@functools.lru_cache(maxsize=4)
def _bag_layout(bags_per_row: int, group: int, n: int, cap: int):
    """embedding_bag's indices and offsets for ``bags_per_row`` (row, kv head) pairs of ``group`` bags each, bag (b, g)
    summing rows b * cap + [0, n) of the table."""
    import torch

    idx = (torch.arange(bags_per_row, dtype=torch.int32)[:, None, None] * cap
           + torch.arange(n, dtype=torch.int32)[None, None, :]).expand(bags_per_row, group, n).reshape(-1)
    return idx, torch.arange(bags_per_row * group, dtype=torch.int32) * n


def weighted_values(p, value, redirect=None, bag: bool = True):
    """``matmul(p, value)`` for probabilities p [rows, kv heads, group, n] and values [rows, kv heads, n, dim]. For
    float32 values laid out as a buffer's rows (:func:`_buffer_rows`), with ``bag``, through ``embedding_bag``'s
    weighted sum, which reads each value row once; else the batched product. ``redirect`` [rows, n]: positions read
    from the first row (:func:`ftrisk.generation.cpu.attention.decode_attention`)."""
    import torch
    import torch.nn.functional as F

    rows, kv_heads, group, n = p.shape
    laid = _buffer_rows(value) if bag and value.dtype == torch.float32 and p.dtype == value.dtype else None
    if laid is None:
        return torch.matmul(p, value)
    table, cap = laid
    idx, off = _bag_layout(rows * kv_heads, group, n, cap)
    if redirect is not None:  # bag (row r, head h) reads position l of head h in row 0: index h * cap + l
        def make():
            first = torch.arange(kv_heads, dtype=torch.int32)[:, None] * cap + torch.arange(n, dtype=torch.int32)
            return torch.where(redirect[:, None, None, :], first[None, :, None, :],
                               idx.view(rows, kv_heads, group, n)).reshape(-1)
        idx = once("values", redirect, (rows, kv_heads, group, n, cap), make)
    out = F.embedding_bag(idx, table, off, mode="sum", per_sample_weights=p.reshape(-1))
    return out.view(rows, kv_heads, group, value.shape[-1])


@functools.lru_cache(maxsize=4)
def _score_layout(bags: int, group: int, used: int, blocks: int, dim: int):
    """embedding_bag's indices and offsets: bag (b, g, block j) sums rows b * blocks * dim + j * dim + [0, dim)."""
    import torch

    base = torch.arange(bags, dtype=torch.int32)[:, None, None] * (blocks * dim) \
        + torch.arange(used, dtype=torch.int32)[None, :, None] * dim
    idx = (base + torch.arange(dim, dtype=torch.int32)[None, None, :])[:, None].expand(bags, group, used, dim)
    return idx.reshape(-1), torch.arange(bags * group * used, dtype=torch.int32) * dim


def blocked_scores(q, buf, n: int, scale: float = 1.0, redirect=None):
    """``(q * scale) @ keys.T`` over the first ``n`` positions: q [rows, kv heads, group, dim], ``buf`` blocked keys;
    returns [rows, kv heads, group, n]: the closed blocks' scores as weighted sums, the open block's by ``einsum``.
    ``redirect`` [rows, n]: positions that may be read from the first row; a closed block is read there when all of
    its are."""
    import torch
    import torch.nn.functional as F

    rows, kv_heads, group, dim = q.shape
    blocks, block = buf.shape[2], buf.shape[4]
    used, m = divmod(n, block)
    qs = q * scale
    tail = torch.einsum("rhgd,rhmd->rhgm", qs, open_slot(buf)[:, :, :m]) if m else None
    if not used:
        return tail
    idx, off = _score_layout(rows * kv_heads, group, used, blocks, dim)
    if redirect is not None:
        def make():
            whole = redirect[:, :used * block].reshape(rows, used, block).all(dim=2)  # [rows, closed blocks]
            first = idx.view(rows, kv_heads, group, used, dim)[0]  # row 0's indices, [kv heads, group, used, dim]
            return torch.where(whole[:, None, None, :, None], first[None],
                               idx.view(rows, kv_heads, group, used, dim)).reshape(-1)
        idx = once("scores", redirect, (rows, kv_heads, group, used, blocks, dim, block), make)
    weights = qs[:, :, :, None].expand(rows, kv_heads, group, used, dim).reshape(-1)
    table = buf.view(rows * kv_heads * blocks * dim, block)
    out = F.embedding_bag(idx, table, off, mode="sum", per_sample_weights=weights).view(rows, kv_heads, group,
                                                                                       used * block)
    return out if tail is None else torch.cat((out, tail), dim=-1)
