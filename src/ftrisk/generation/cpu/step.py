"""A decode step of ftrisk's own for Llama models on the CPU: the decoder's arithmetic for one new token per row, in
transformers' order, without its per-call machinery.

Why: at one token per row a decode step is ~30 layers x ~40 small operations, and transformers adds to each layer
its decorators (keyword deprecation, output capture, gradient-checkpointing call), the attention-interface lookup,
and to each step a 4-d mask built from the 2-d one. Here the same operations run on the same modules' weights:
RMSNorm as ``weight * (x * rsqrt(mean(x^2) + eps))``, rotary as ``q * cos + rotate_half(q) * sin`` (the half
rotation's sign carried by ``sin``), the cache's ``update``, :func:`ftrisk.generation.cpu.attention.decode_attention`
(looked up as transformers does), the gated MLP, residual sums (``a + b`` and ``b + a`` are the same float; in place
where the other operand is a fresh result). The result is the same bits as the model's own forward (tested, tokens
and hidden states). Used only where nothing else could differ (:func:`applies`); everything else takes the model's
forward.
"""

from __future__ import annotations

from ftrisk.generation.cpu import linear
from ftrisk.generation.cpu.attention import ATTENTION
from ftrisk.generation.cpu.kv_layer import growing_layer
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions


def _linear(m, x):
    """``m(x)`` without the module call: its instance forward where one was set (the linear swap), else ``F.linear``."""
    import torch

    f = m.__dict__.get("forward")
    return f(x) if f is not None else torch.nn.functional.linear(x, m.weight, m.bias)


def _rms_norm(m, x):
    """transformers' ``LlamaRMSNorm.forward`` for a float32 input (its ``.to`` calls are then no-ops)."""
    import torch

    return m.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + m.variance_epsilon))


def _hooked(model) -> bool:
    import torch.nn.modules.module as mm

    if any(getattr(mm, g, None) for g in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                          "_global_forward_hooks_always_called")):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def applies(model, body, cache, *, options: DecodeOptions = DEFAULT) -> bool:
    """With ``options.lean_step``: a ``LlamaForCausalLM`` whose modules are exactly transformers' Llama classes and
    ``nn.Linear``, every parameter float32 on the CPU, no module in training, no hooks and no forward set on an
    instance (they would not run here; ftrisk's linear swap, oneDNN or MKL, is called as set), the decode loop's own
    cache layers (:func:`ftrisk.generation.cpu.kv_layer.growing_layer`) and attention
    (:mod:`ftrisk.generation.cpu.attention`)."""
    import torch
    from transformers.models.llama import modeling_llama as ml

    if not options.lean_step or type(model) is not ml.LlamaForCausalLM or any(m.training for m in model.modules()):
        return False
    params = list(model.parameters())
    if not params or any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return False
    c = body.config
    if (getattr(c, "_attn_implementation", None) != ATTENTION or getattr(c, "pretraining_tp", 1) != 1
            or getattr(cache, "offloading", False)):
        return False
    layers = list(body.layers[: c.num_hidden_layers])
    if (type(body) is not ml.LlamaModel or type(body.norm) is not ml.LlamaRMSNorm
            or type(body.rotary_emb) is not ml.LlamaRotaryEmbedding or len(cache.layers) != len(layers)
            or not all(type(layer) is growing_layer() for layer in cache.layers)):
        return False
    for layer in layers:
        attn, mlp = layer.self_attn, layer.mlp
        if (type(layer) is not ml.LlamaDecoderLayer or type(attn) is not ml.LlamaAttention
                or type(mlp) is not ml.LlamaMLP
                or type(layer.input_layernorm) is not ml.LlamaRMSNorm
                or type(layer.post_attention_layernorm) is not ml.LlamaRMSNorm
                or not all(type(m) is torch.nn.Linear for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj,
                                                                mlp.gate_proj, mlp.up_proj, mlp.down_proj))):
            return False
    # a forward set on an instance (accelerate's hooks do that) would not run here; ftrisk's linear swap runs as set
    if any("forward" in m.__dict__ and not linear.is_swapped(m) for m in model.modules()):
        return False
    return not _hooked(model)


def step(body, cache, input_ids, attention_mask, position_ids):
    """The last hidden state [rows, hidden] after one new token per row (``input_ids`` [rows, 1]); ``attention_mask``
    [rows, positions] over the cache and the new token (1: attend), as the model's forward would take it."""
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    rows = input_ids.shape[0]
    attend = ALL_ATTENTION_FUNCTIONS[body.config._attn_implementation]  # decode_attention, as transformers looks it up
    h = body.embed_tokens(input_ids)  # [rows, 1, hidden]
    cos, sin = body.rotary_emb(h, position_ids=position_ids)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    # rotate_half(x) * sin = cat(-x2, x1) * sin = roll(x) * cat(-sin1, sin2): the same products (a sign moves from one
    # factor to the other exactly), one roll instead of a negation and a concatenation per tensor
    half = sin.shape[-1] // 2
    sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
    # transformers' sdpa mask for one query at the last position: the padding mask alone (every key is at or before it)
    mask = attention_mask.bool()[:, None, None, :]
    for i, layer in enumerate(body.layers[: body.config.num_hidden_layers]):
        attn, mlp = layer.self_attn, layer.mlp
        x = _rms_norm(layer.input_layernorm, h)
        shape = (rows, 1, -1, attn.head_dim)
        q = _linear(attn.q_proj, x).view(shape).transpose(1, 2)
        k = _linear(attn.k_proj, x).view(shape).transpose(1, 2)
        v = _linear(attn.v_proj, x).view(shape).transpose(1, 2)
        q = (q * cos) + (q.roll(half, -1) * sin)
        k = (k * cos) + (k.roll(half, -1) * sin)
        k, v = cache.layers[i].update(k, v)
        out, _ = attend(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling)
        h = _linear(attn.o_proj, out.reshape(rows, 1, -1).contiguous()).add_(h)
        x = _rms_norm(layer.post_attention_layernorm, h)
        h = _linear(mlp.down_proj, mlp.act_fn(_linear(mlp.gate_proj, x)).mul_(_linear(mlp.up_proj, x))).add_(h)
    return _rms_norm(body.norm, h)[:, -1]
