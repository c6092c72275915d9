"""Attention of one new token per row (a decode step) on the CPU, reading the KV cache once.

Why: transformers' ``sdpa`` attention calls PyTorch's CPU flash-attention kernel, which is written for blocks of
queries; a decode step has one query per row (transformers packs a grouped-query model's heads into a few query
rows per key/value head, ``pack_gqa``). The step is bound by reading the cache: at the bench workload's 120 rows
and ~120 positions each layer reads ~22 MB of float32 keys and values. Two batched products (``einsum`` /
``matmul``; MKL's small-matrix path) reached about 12 GB/s of it; as ``embedding_bag`` weighted sums (FBGEMM's
kernel on x86) the scores and the values each read at about 20-24 GB/s, near a plain read (24 GB/s), 2026-12-06 on
the 2-core AMD EPYC (Zen 4). Scores: keys kept in transposed blocks (the blocked layout below), each block's scores
one weighted sum of ``dim`` rows; values: each position's value row weighted by its probability. In the loop
(``ftrisk bench``'s workload, 1,890 layer steps): the values 0.46 ms a call against ~0.77 for ``matmul`` (a sampling profile); the
scores 0.55 ms a call. Earlier (2026-12-05) the two products replaced the flash kernel (1.26-1.54 against
0.61-0.66 ms at 64 rows and 150 keys). Same arithmetic (``softmax(q k^T * scale + mask) v`` in float32), another
order of float additions. No library offers this for the CPU: vLLM and FlashInfer's decode kernels are CUDA only.
Everything else (the prefill's many queries, dropout, soft-capping, sinks, another device) goes to transformers' own
``sdpa`` function unchanged, blocked keys first laid out plainly again.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import weakref

#: transformers' attention-implementation name under which :func:`decode_attention` is registered.
ATTENTION = "ftrisk_decode"
#: Use :func:`decode_attention` where it applies (:func:`applies`); False: transformers' ``sdpa`` always.
DECODE_ATTENTION = True
#: The values product through ``embedding_bag`` (:func:`weighted_values`); False: ``matmul``.
VALUES_BAG = True
#: Positions per block of the decode loop's blocked key layout (:func:`blocked_scores`); 0: keys kept plain.
KEY_BLOCK = 32
#: Read the positions every row holds alike, and masked ones, from the first row (:func:`_redirect`).
FIRST_ROW_READS = True
#: Cache positions [0, n) that hold the same keys and values in every row (set by the decode loop for its steps,
#: :func:`same_positions`): rows read them, and their masked positions, from the first row, which stays in cache.
_SAME = contextvars.ContextVar("ftrisk_same_positions", default=0)
#: Model types whose attention hands the cache's keys to the attention function untouched (read in their
#: transformers 5.25 code), so the decode loop may keep their keys blocked.
BLOCKED_KEY_MODELS = ("llama", "mistral", "qwen2", "qwen3")


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention-function signature: query [rows, heads, q, dim], keys/values [rows, kv heads, n,
    dim] with their own head count (keys may instead be in the blocked layout: 5-d, the decode loop's cache), a
    boolean mask [rows, 1, q, n] (True: attend) or None; returns [rows, q, heads, dim]. One query per row on the CPU
    without extras: weighted sums; anything else: transformers' ``sdpa``."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    n = value.shape[2]
    extras = any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "s_aux", "sinks"))
    if (query.shape[2] != 1 or query.device.type != "cpu" or extras or (dropout and module.training)
            or (attention_mask is not None and attention_mask.dtype != torch.bool)):
        if key.dim() == 5:
            key = unblocked(key, n)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # the heads that share a key/value head, as rows
    redirect = _redirect(attention_mask, rows, n)
    if key.dim() == 5:
        scores = blocked_scores(q, key, n, scale, redirect)
    else:
        # einsum rather than ``matmul(q, key.transpose(-1, -2))``: the same products, laid out for the batched kernel
        # (measured 0.18 against 0.27 ms at 64 rows and 100 keys)
        scores = torch.einsum("rhgd,rhnd->rhgn", q, key).mul_(scale)  # [rows, kv heads, group, n]
    if attention_mask is not None:
        # adding 0 / -inf (made once per mask, for all layers) rather than ``masked_fill_``: the same scores, 0.02
        # against 0.14 ms at 120 rows, 9 heads and 123 positions (masked_fill_ broadcast over the heads is slow)
        scores = scores + _additive(attention_mask, scores.dtype)
    out = weighted_values(scores.softmax(-1), value, redirect)  # [rows, kv heads, group, value dim]
    return out.reshape(rows, 1, heads, value.shape[-1]), None


@contextlib.contextmanager
def same_positions(n: int):
    """Within the block the caller promises that cache positions [0, n) hold the same keys and values in every row
    (the decode loop's shared prompt prefix, and its gap up to a block edge, which is masked)."""
    token = _SAME.set(n)
    try:
        yield
    finally:
        _SAME.reset(token)


_made: dict = {}  # what -> (weak reference to the object it was made for, or None; its key; what was made)


def _once(what: str, obj, key: tuple, make):
    """``make()`` once per object and key: a decode step passes the same mask (and so the same derived tensors) to
    every layer. ``obj`` is held by a weak reference, so a later object never meets another's result; None: the
    key alone decides."""
    hit = _made.get(what)
    if hit is not None and hit[1] == key and (hit[0] is None if obj is None else hit[0] is not None and hit[0]() is obj):
        return hit[2]
    out = make()
    _made[what] = (None if obj is None else weakref.ref(obj), key, out)
    return out


def _version(t):
    """A tensor's version counter, None for an inference tensor (it keeps none)."""
    return None if t is None or t.is_inference() else t._version


def _redirect(mask, rows: int, n: int):
    """bool [rows, n]: the positions each row may read from the first row instead of its own, because they hold
    the same keys and values in every row (:func:`same_positions`) or are masked out (their scores get -inf and
    their values weight 0, so any finite row will do); None when there are none. Reading them from one row keeps
    them in the CPU's cache instead of reading every row's copy from memory. Made once per mask (per step)."""
    import torch

    same = _SAME.get()
    if not FIRST_ROW_READS or (mask is None and not same):
        return None

    def make():
        out = (torch.arange(n) < same)[None, :].expand(rows, n)
        if mask is not None:
            out = out | ~mask[:, 0, -1, :].expand(rows, n)
        return out.contiguous()
    return _once("redirect", mask, (rows, n, same, _version(mask)), make)


def _additive(mask, dtype):
    """The boolean mask's last query row as 0 (attend) / -inf, made once per mask (per step)."""
    import torch

    def make():
        last = mask[:, :, -1:, :]
        return torch.zeros(last.shape, dtype=dtype, device=mask.device).masked_fill_(~last, float("-inf"))
    return _once("additive", mask, (_version(mask), dtype), make)


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


def weighted_values(p, value, redirect=None):
    """``matmul(p, value)`` for probabilities p [rows, kv heads, group, n] and values [rows, kv heads, n, dim]. For
    float32 values laid out as a buffer's rows (:func:`_buffer_rows`) through ``embedding_bag``'s weighted sum
    (FBGEMM's kernel on x86), which reads each value row once: 0.49 against 0.90 ms for the batched product (MKL's
    small-matrix path) at 120 rows, 3 key/value heads of 3 query heads, 110 positions, head size 64, the values read
    from memory as in the loop. Same sums, another order of additions. ``redirect`` [rows, n]: positions read from
    the first row (:func:`_redirect`)."""
    import torch
    import torch.nn.functional as F

    rows, kv_heads, group, n = p.shape
    laid = _buffer_rows(value) if VALUES_BAG and value.dtype == torch.float32 and p.dtype == value.dtype else None
    if laid is None:
        return torch.matmul(p, value)
    table, cap = laid
    idx, off = _bag_layout(rows * kv_heads, group, n, cap)
    if redirect is not None:  # bag (row r, head h) reads position l of head h in row 0: index h * cap + l
        def make():
            first = torch.arange(kv_heads, dtype=torch.int32)[:, None] * cap + torch.arange(n, dtype=torch.int32)
            return torch.where(redirect[:, None, None, :], first[None, :, None, :],
                               idx.view(rows, kv_heads, group, n)).reshape(-1)
        idx = _once("values", redirect, (rows, kv_heads, group, n, cap), make)
    out = F.embedding_bag(idx, table, off, mode="sum", per_sample_weights=p.reshape(-1))
    return out.view(rows, kv_heads, group, value.shape[-1])


# --------------------------------------------------------------------------- the blocked key layout
# Keys [rows, kv heads, positions, dim] kept as [rows, kv heads, blocks + 1, dim, KEY_BLOCK]: each closed block's
# keys transposed, so a query's scores over a block are one weighted sum of ``dim`` rows of KEY_BLOCK floats, which
# ``embedding_bag`` computes reading each key once (FBGEMM on x86). Measured on the 2-core AMD EPYC, the keys read
# from memory as in the loop, 120 rows, 3 key/value heads of 3 query heads, head size 64: 0.43 / 0.49 / 0.49 ms
# against 0.59 / 0.79-0.94 / 0.90 ms for the batched product at 70 / 110 / 150 positions (blocks of 16: slower;
# the transposed keys without blocks, rows of the whole capacity: 0.58-0.73 ms). The last slot is the open block:
# the positions past the last whole block, [n // KEY_BLOCK * KEY_BLOCK, n), in plain layout [KEY_BLOCK, dim] (the
# slot holds dim x KEY_BLOCK floats either way), scored by ``einsum``; a decode step writes its key there (one
# contiguous row per row and head), and a full open block is closed, transposed into its slot, once every
# KEY_BLOCK steps. Writing each step's key into its transposed block instead stored 64 floats into 64 cache lines
# a row and head: 0.28 ms a layer-step in the loop at 120 rows (2026-12-06, Intel host), 0.53 s of the bench
# workload. The decode loop's cache (``decode.GrowingLayer``) keeps keys this way when :func:`keys_blocked` says
# so and hands the 5-d buffer to the attention function, which is this module's then.

def _blockable(model) -> bool:
    """float32, and a type that hands keys over untouched (:data:`BLOCKED_KEY_MODELS`), with :data:`KEY_BLOCK` on."""
    import torch

    p = next(model.parameters(), None)
    return (KEY_BLOCK > 0 and p is not None and p.dtype == torch.float32
            and getattr(model.config, "model_type", None) in BLOCKED_KEY_MODELS)


def keys_blocked(model) -> bool:
    """Whether the decode loop may keep ``model``'s keys blocked: :func:`_blockable`, and its attention is
    :func:`decode_attention` now (within :func:`cpu_decode_attention`)."""
    return _blockable(model) and getattr(model.config, "_attn_implementation", None) == ATTENTION


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
    ``redirect`` [rows, n]: positions that may be read from the first row (:func:`_redirect`); a closed block is
    read there when all of its are."""
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
        idx = _once("scores", redirect, (rows, kv_heads, group, used, blocks, dim, block), make)
    weights = qs[:, :, :, None].expand(rows, kv_heads, group, used, dim).reshape(-1)
    table = buf.view(rows * kv_heads * blocks * dim, block)
    out = F.embedding_bag(idx, table, off, mode="sum", per_sample_weights=weights).view(rows, kv_heads, group,
                                                                                       used * block)
    return out if tail is None else torch.cat((out, tail), dim=-1)


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # the same mask as ``sdpa``


def applies(model) -> bool:
    """A model on the CPU that uses transformers' ``sdpa`` attention, with :data:`DECODE_ATTENTION` on."""
    p = next(model.parameters(), None)
    return (DECODE_ATTENTION and p is not None and p.device.type == "cpu"
            and getattr(model.config, "_attn_implementation", None) == "sdpa")


def describe(model) -> str:
    """For the generation record: how the decode loop's one-query steps attend."""
    if not applies(model):
        return f"the model's own ({getattr(model.config, '_attn_implementation', None)})"
    blocks = f"; keys in transposed blocks of {KEY_BLOCK}" if _blockable(model) else ""
    return f"weighted sums over the KV cache (ftrisk{blocks})"


def _configs(model) -> list:
    """The model's config and every config below it (its layers' and the sub-configs a multimodal config holds)."""
    out, todo = {}, [getattr(m, "config", None) for m in model.modules()]
    while todo:
        c = todo.pop()
        if c is None or id(c) in out or not hasattr(c, "_attn_implementation_internal"):
            continue
        out[id(c)] = c
        todo.extend(getattr(c, k, None) for k in getattr(c, "sub_configs", {}) or {})
    return list(out.values())


@contextlib.contextmanager
def cpu_decode_attention(model):
    """Within the block, ``model`` attends through :func:`decode_attention` where :func:`applies` (each config that
    said ``sdpa``: a vision tower set to ``eager`` keeps it); each config's own setting again afterwards. Set on
    ``_attn_implementation_internal``: the public setter would copy the value to every sub-config."""
    configs = []
    if applies(model):
        _register()
        configs = [c for c in _configs(model) if c._attn_implementation_internal == "sdpa"]
        for c in configs:
            c._attn_implementation_internal = ATTENTION
    try:
        yield bool(configs)
    finally:
        for c in configs:
            c._attn_implementation_internal = "sdpa"
