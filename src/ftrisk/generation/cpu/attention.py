"""Attention of one new token per row (a decode step) on the CPU, reading the KV cache once.

Why: transformers' ``sdpa`` attention calls PyTorch's CPU flash-attention kernel, which is written for blocks of
queries; a decode step has one query per row, and is bound by reading the cache. Here the scores and the values
are ``embedding_bag`` weighted sums (:mod:`.weighted_sums`) over keys kept in transposed blocks (:mod:`.key_blocks`):
the same arithmetic (``softmax(q k^T * scale + mask) v`` in float32), another order of float additions. No library
offers this for the CPU: vLLM and FlashInfer's decode kernels are CUDA only. Everything else (the prefill's many
queries, dropout, soft-capping, sinks, another device) goes to transformers' own ``sdpa`` function unchanged, blocked
keys first laid out plainly again.

transformers calls :func:`decode_attention` through its attention registry, without ftrisk's options: it reads the
running decode call's (:func:`ftrisk.generation.cpu.options.current`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

from ftrisk.generation.cpu import key_blocks, weighted_sums
from ftrisk.generation.cpu import options as decode_options
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions
from ftrisk.generation.cpu.weighted_sums import once, version

#: transformers' attention-implementation name under which :func:`decode_attention` is registered.
ATTENTION = "ftrisk_decode"
#: Cache positions [0, n) that hold the same keys and values in every row (set by the decode loop for its steps,
#: :func:`same_positions`): rows read them, and their masked positions, from the first row, which stays in cache.
_SAME = contextvars.ContextVar("ftrisk_same_positions", default=0)


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
            key = key_blocks.unblocked(key, n)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    opts = decode_options.current()
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # the heads that share a key/value head, as rows
    redirect = _redirect(attention_mask, rows, n) if opts.first_row_reads else None
    if key.dim() == 5:
        scores = weighted_sums.blocked_scores(q, key, n, scale, redirect)
    else:
        # einsum rather than ``matmul(q, key.transpose(-1, -2))``: the same products, laid out for the batched kernel
        scores = torch.einsum("rhgd,rhnd->rhgn", q, key).mul_(scale)  # [rows, kv heads, group, n]
    if attention_mask is not None:
        # adding 0 / -inf (made once per mask, for all layers) rather than ``masked_fill_``, which is slow broadcast
        # over the heads: the same scores
        scores = scores + _additive(attention_mask, scores.dtype)
    out = weighted_sums.weighted_values(scores.softmax(-1), value, redirect, opts.values_bag)  # [rows, kv, group, dim]
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


def _redirect(mask, rows: int, n: int):
    """bool [rows, n]: the positions each row may read from the first row instead of its own, because they hold
    the same keys and values in every row (:func:`same_positions`) or are masked out (their scores get -inf and
    their values weight 0, so any finite row will do); None when there are none. Reading them from one row keeps
    them in the CPU's cache instead of reading every row's copy from memory. Made once per mask (per step)."""
    import torch

    same = _SAME.get()
    if mask is None and not same:
        return None

    def make():
        out = (torch.arange(n) < same)[None, :].expand(rows, n)
        if mask is not None:
            out = out | ~mask[:, 0, -1, :].expand(rows, n)
        return out.contiguous()
    return once("redirect", mask, (rows, n, same, version(mask)), make)


def _additive(mask, dtype):
    """The boolean mask's last query row as 0 (attend) / -inf, made once per mask (per step)."""
    import torch

    def make():
        last = mask[:, :, -1:, :]
        return torch.zeros(last.shape, dtype=dtype, device=mask.device).masked_fill_(~last, float("-inf"))
    return once("additive", mask, (version(mask), dtype), make)


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, decode_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # the same mask as ``sdpa``


def applies(model, *, options: DecodeOptions = DEFAULT) -> bool:
    """A model on the CPU that uses transformers' ``sdpa`` attention, with ``options.decode_attention`` on."""
    p = next(model.parameters(), None)
    return (options.decode_attention and p is not None and p.device.type == "cpu"
            and getattr(model.config, "_attn_implementation", None) == "sdpa")


def keys_blocked(model) -> bool:
    """Whether the decode loop may keep ``model``'s keys blocked: :func:`ftrisk.generation.cpu.key_blocks.blockable`,
    and its attention is :func:`decode_attention` now (within :func:`cpu_decode_attention`)."""
    return key_blocks.blockable(model) and getattr(model.config, "_attn_implementation", None) == ATTENTION


def describe(model, *, options: DecodeOptions = DEFAULT) -> str:
    """For the generation record: how the decode loop's one-query steps attend."""
    if not applies(model, options=options):
        return f"the model's own ({getattr(model.config, '_attn_implementation', None)})"
    blocks = f"; keys in transposed blocks of {key_blocks.KEY_BLOCK}" if key_blocks.blockable(model) else ""
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
def cpu_decode_attention(model, *, options: DecodeOptions = DEFAULT):
    """Within the block, ``model`` attends through :func:`decode_attention` where :func:`applies` (each config that
    said ``sdpa``: a vision tower set to ``eager`` keeps it); each config's own setting again afterwards. Set on
    ``_attn_implementation_internal``: the public setter would copy the value to every sub-config."""
    configs = []
    if applies(model, options=options):
        _register()
        configs = [c for c in _configs(model) if c._attn_implementation_internal == "sdpa"]
        for c in configs:
            c._attn_implementation_internal = ATTENTION
    try:
        yield bool(configs)
    finally:
        for c in configs:
            c._attn_implementation_internal = "sdpa"
