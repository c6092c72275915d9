"""Bytes autograd keeps for the attack's backward, per token.

Counted in transformers' Llama layer with peft LoRA and SDPA with torch.autograd.graph.saved_tensors_hooks (the
tests re-count it): both RMSNorm inputs in fp32 (8h); q, k, v (repeated to every head in a padded batch), the
attention output (e*h each); SwiGLU's gate, silu, up (3e*i); each adapter's input in fp32 (shared when e=4) and r
fp32; the padding mask (e*s). No s^2 term (SDPA keeps no attention matrix). Korthikanti et al. (2022)'s
s*b*h*(34 + 5*a*s/h), redone for this code, is ~67*s*b*h for Llama-2-7B in bf16. Gradient checkpointing keeps each
layer's input (e*h per token) + one recomputed layer. k-bit: fp32 activations (the upcast embeddings and norms make
the residual stream fp32) + bitsandbytes' bf16 copy of each linear layer's input.
"""

from __future__ import annotations

from ftrisk.plan.shape import TARGETS, Shape


def layer_activation_bytes(s: Shape, e: int, r: int, seq: int, targets=TARGETS, kbit: bool = False) -> float:
    """Bytes autograd keeps per token in one decoder layer (module docstring)."""
    h, i = s.hidden, s.intermediate
    # norms' fp32 inputs; q, k, v, output (k, v repeated to every head: a padded batch makes transformers call
    # repeat_kv rather than SDPA's own GQA) and the logsumexp; SwiGLU; the padding mask
    b = 2 * (4 * h + 4) + 4 * e * s.heads * s.head_dim + 4 * s.heads + 3 * e * i + e * seq
    if e == 4:  # the adapters read the fp32 tensors themselves; o_proj's input is the attention output above
        source = {"q_proj": ("x1", h), "k_proj": ("x1", h), "v_proj": ("x1", h), "o_proj": ("attn", 0),
                  "gate_proj": ("x2", h), "up_proj": ("x2", h), "down_proj": ("act", i)}
        b += 4 * sum(size for _, size in {source[t] for t in targets})
    else:  # peft casts each adapter's input to fp32 separately
        b += 4 * sum(s.module_dims()[t][0] for t in targets)
    if kbit:  # bitsandbytes' k-bit matmul keeps its own bf16 copy of each linear layer's input
        b += 2 * sum(i for i, _ in s.module_dims().values())
    return b + 4 * r * len(targets)


def activation_bytes(s: Shape, e: int, r: int, seq: int, targets=TARGETS, checkpointing: bool = False,
                     kbit: bool = False) -> float:
    """Bytes autograd keeps per token in the whole decoder, at the peak of the backward."""
    layer = layer_activation_bytes(s, e, r, seq, targets, kbit)
    if checkpointing:  # each layer's input, one layer recomputed at a time, the final norm's fp32 input
        return s.layers * e * s.hidden + layer + 4 * s.hidden + 4
    return s.layers * layer  # the final norm's input stands in for the first norm's (the embedding needs no grad)
