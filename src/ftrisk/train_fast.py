"""The CPU fast path of the training loop (:func:`ftrisk.train.finetune`, ``train.padding_free``): the same loss and
gradients as the padded PEFT path up to float rounding, with less work per step.

Two parts, each measured on the embedded model (README, Speed) and compared with the padded path in the tests:
- **Packed sequences, no padding**: a micro-batch is one row of its examples' real tokens, positions restarting at
  each example, and attention run per example (:func:`packed_attention`, a causal SDPA on each example's slice).
  TRL's ``padding_free`` and transformers' ``DataCollatorWithFlattening`` do this with flash-attention's varlen
  kernel, which exists only on GPUs; with SDPA, transformers turns packed positions into one block-diagonal mask
  over the whole row (8x the attention work for a batch of 8, and no causal fast path), hence this attention
  function, registered in transformers' ``AttentionInterface``.
- **LoRA's update fused into one product**: PEFT computes ``base(x) + lora_B(lora_A(x)) * scaling``, two passes
  over the output (the scaling, the sum) forward and backward; ``addmm(base(x), lora_A(x), B.T, alpha=scaling)``
  is one GEMM that adds in place (:func:`fused_lora_forward`). Plain LoRA on ``nn.Linear`` only (no DoRA, dropout,
  several adapters, merged weights): any other PEFT layer keeps PEFT's forward.
(Measured and not kept: a cross-entropy fused with the vocabulary projection, softmax formed in place as the
gradient: 139 ms against 137 ms for ``F.cross_entropy`` over 150 response tokens, forward and backward.)

Only on the CPU (where it was measured), for one process, fp32 weights, no gradient checkpointing, and models whose
positions come only from ``position_ids`` and whose attention has no sliding window (:data:`PACKABLE`);
everything else trains with padded batches. The schedule of examples is the same either way.
"""

from __future__ import annotations

import contextlib
import functools

from .train import IGNORE

ATTENTION = "ftrisk_packed"
#: Model types whose decoder takes positions only from ``position_ids`` (rotary), calls its attention through
#: transformers' attention interface, and whose logits are exactly ``lm_head(hidden)``.
PACKABLE = ("llama", "mistral", "qwen2", "qwen3")


def unsupported(model, *, n_processes: int, gradient_checkpointing: bool) -> str | None:
    """Why ``model`` cannot train on the fast path (one line), or None when it can."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base.config, "text_config", None) or base.config
    head = base.get_output_embeddings()
    if base.device.type != "cpu":
        return f"the model is on {base.device.type}, the fast path is measured on the CPU only"
    if n_processes > 1:
        return "more than one process"
    if gradient_checkpointing:
        return "gradient checkpointing is on"
    if cfg.model_type not in PACKABLE:
        return f"model type {cfg.model_type!r} is not one of {', '.join(PACKABLE)}"
    if getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True):
        return "the model's attention has a sliding window"
    if getattr(base.config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return f"attention implementation {base.config._attn_implementation!r}"
    if type(head) is not torch.nn.Linear or head.weight.dtype != torch.float32:
        return "the LM head is not one float32 linear layer"
    return None


def pack(encoded: list[dict]):
    """(ids [1, T], positions [1, T], targets [T], lengths): the examples' tokens end to end, each example's positions
    from 0, and each position's target the next token of its own example (IGNORE at each example's last token and
    wherever the label is masked)."""
    import torch

    ids, pos, targets, lengths = [], [], [], []
    for e in encoded:
        n = len(e["input_ids"])
        ids += e["input_ids"]
        pos += range(n)
        targets += e["labels"][1:] + [IGNORE]
        lengths.append(n)
    return torch.tensor([ids]), torch.tensor([pos]), torch.tensor(targets), lengths


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention-function signature on one packed row: causal SDPA within each example's slice of
    ``ftrisk_lengths`` (query [1, heads, T, dim], keys/values with their own head count; returns [1, T, heads, dim])."""
    import torch
    import torch.nn.functional as F

    lengths = kwargs["ftrisk_lengths"]
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    p = dropout if module.training else 0.0
    outs = [F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, scale=scaling, enable_gqa=gqa)
            for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(outs, 2).transpose(1, 2).contiguous(), None


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, packed_attention)  # no mask function: transformers then builds no mask


@contextlib.contextmanager
def _attention(config):
    old = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = old


def packed_loss(model, ids, positions, targets, lengths):
    """Mean cross-entropy over the packed row's response tokens (``targets`` != IGNORE)."""
    import torch.nn.functional as F

    _register()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with _attention(base.config), fused_lora(model):  # the backward pass needs neither
        hidden = base.get_decoder()(input_ids=ids, position_ids=positions, use_cache=False,
                                    ftrisk_lengths=lengths).last_hidden_state[0]
    keep = targets != IGNORE
    return F.cross_entropy(base.get_output_embeddings()(hidden[keep]), targets[keep])


def fused_lora_forward(self, x, *args, **kwargs):
    """A PEFT ``lora.Linear`` forward as one ``addmm`` for the update; PEFT's own forward whenever the layer is not in
    plain one-adapter state at call time (merged, disabled, another adapter, extra arguments)."""
    import torch
    import torch.nn.functional as F

    ads = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(ads) != 1 or ads[0] not in self.lora_A:
        return type(self).forward(self, x, *args, **kwargs)
    a = ads[0]
    base = self.base_layer
    out = F.linear(x, base.weight, base.bias)
    h = F.linear(x, self.lora_A[a].weight)
    n = out.shape[-1]
    return torch.addmm(out.reshape(-1, n), h.reshape(-1, h.shape[-1]), self.lora_B[a].weight.t(),
                       alpha=self.scaling[a]).view(out.shape)


def _fusable(m, lora_linear, torch) -> bool:
    return (type(m) is lora_linear and type(m.base_layer) is torch.nn.Linear and not m.lora_variant
            and all(isinstance(d, torch.nn.Identity) for d in m.lora_dropout.values())
            and all(m.lora_A[a].bias is None and m.lora_B[a].bias is None for a in m.lora_A))


@contextlib.contextmanager
def fused_lora(model):
    """Within: every plain LoRA linear layer of ``model`` runs :func:`fused_lora_forward`; PEFT's forward after."""
    import torch
    from peft.tuners.lora.layer import Linear

    mods = [m for m in model.modules() if _fusable(m, Linear, torch)]
    for m in mods:
        m.forward = fused_lora_forward.__get__(m)
    try:
        yield len(mods)
    finally:
        for m in mods:
            del m.forward
