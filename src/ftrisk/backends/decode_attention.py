"""Attention of one new token per row (a decode step) on the CPU as two batched matrix products.

Why: transformers' ``sdpa`` attention calls PyTorch's CPU flash-attention kernel, which is written for blocks of
queries; a decode step has one query per row (transformers packs a grouped-query model's heads into a few query
rows per key/value head, ``pack_gqa``). Measured on the 2-core AMD EPYC at the bench workload's shapes (64 rows, 9
query heads on 3 key/value heads, 150 keys, head size 64): the flash kernel 1.26-1.54 ms a layer, the two products
and a softmax 0.61-0.66 ms; the flash kernel was 19% of the decode loop's time (4.2 of 21.7 s profiled on the
bench workload). Same arithmetic (``softmax(q k^T * scale + mask) v`` in float32), another order of float additions
(max difference 5e-7 on random inputs of those shapes). No library offers this for the CPU: vLLM and FlashInfer's
decode kernels are CUDA only. Everything else (the prefill's many queries, dropout, soft-capping, sinks, another
device) goes to transformers' own ``sdpa`` function unchanged.
"""

from __future__ import annotations

import contextlib
import functools

#: transformers' attention-implementation name under which :func:`decode_attention` is registered.
ATTENTION = "ftrisk_decode"
#: Use :func:`decode_attention` where it applies (:func:`applies`); False: transformers' ``sdpa`` always.
DECODE_ATTENTION = True


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention-function signature: query [rows, heads, q, dim], keys/values [rows, kv heads, n,
    dim] with their own head count, a boolean mask [rows, 1, q, n] (True: attend) or None; returns [rows, q, heads,
    dim]. One query per row on the CPU without extras: two products; anything else: transformers' ``sdpa``."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    extras = any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "s_aux", "sinks"))
    if (query.shape[2] != 1 or query.device.type != "cpu" or extras or (dropout and module.training)
            or (attention_mask is not None and attention_mask.dtype != torch.bool)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # the heads that share a key/value head, as rows
    # einsum rather than ``matmul(q, key.transpose(-1, -2))``: the same products, laid out for the batched kernel
    # (measured 0.18 against 0.27 ms at 64 rows and 100 keys)
    scores = torch.einsum("rhgd,rhnd->rhgn", q, key).mul_(scale)  # [rows, kv heads, group, n]
    if attention_mask is not None:
        scores.masked_fill_(~attention_mask[:, :, -1:, :], float("-inf"))
    out = torch.matmul(scores.softmax(-1), value)  # [rows, kv heads, group, value dim]
    return out.reshape(rows, 1, heads, value.shape[-1]), None


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
