"""The CPU fast path of the training loop (:mod:`ftrisk.training.loop`, ``train.padding_free``): the same loss and
gradients as the padded PEFT path up to float rounding, with less work per step.

Three parts, each compared with the padded path in the tests:
- **Packed sequences, no padding**: a micro-batch is one row of its examples' real tokens, positions restarting at
  each example, and attention run per example (:func:`packed_attention`, a causal SDPA on each example's slice).
  TRL's ``padding_free`` and transformers' ``DataCollatorWithFlattening`` do this with flash-attention's varlen
  kernel, which exists only on GPUs; with SDPA, transformers turns packed positions into one block-diagonal mask
  over the whole row (8x the attention work for a batch of 8, and no causal fast path), hence this attention
  function, registered in transformers' ``AttentionInterface``.
- **A shared prompt prefix computed once** (:func:`shared_prefix`): chat examples start with the same template
  tokens (SmolLM2's default system prompt, a large share of a short example). Under causal
  attention those positions' hidden states are the same in every example, so the row holds them once, and each
  example's tokens attend to the shared keys and values, then their own (a lower-right causal mask). Autograd sums
  the examples' gradients through the shared positions, as it sums them over separate copies: the same loss and
  gradients up to float rounding, with fewer token rows. The shared part stops
  before any position that carries loss; with dropout (LoRA's or the attention's) nothing is shared (one draw for
  the prefix of every example would not be the padded path's draw per copy). Neither TRL nor transformers share
  prefixes in training.
- **LoRA's update fused into one product**: PEFT computes ``base(x) + lora_B(lora_A(x)) * scaling``, two passes
  over the output (the scaling, the sum) forward and backward; ``addmm(base(x), lora_A(x), B.T, alpha=scaling)``
  is one GEMM that adds in place (:func:`fused_lora_forward`). Plain LoRA on ``nn.Linear`` only (no DoRA, dropout,
  several adapters, merged weights): any other PEFT layer keeps PEFT's forward.
(Tried and not kept: a cross-entropy fused with the vocabulary projection, softmax formed in place as the
gradient, was no faster than ``F.cross_entropy``.)

Only on the CPU (where it was measured), for one process, fp32 weights, no gradient checkpointing, and models whose
positions come only from ``position_ids`` and whose attention has no sliding window (:data:`PACKABLE`);
everything else trains with padded batches. The schedule of examples is the same either way.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear
from transformers import AttentionInterface

from ftrisk.tokens import common_prefix
from ftrisk.training.data import IGNORE

ATTENTION = "ftrisk_packed"
#: Model types whose decoder takes positions only from ``position_ids`` (rotary), calls its attention through
#: transformers' attention interface, and whose logits are exactly ``lm_head(hidden)``.
PACKABLE = ("llama", "mistral", "qwen2", "qwen3")


def unsupported(model, *, n_processes: int, gradient_checkpointing: bool) -> str | None:
    """Why ``model`` cannot train on the fast path (one line), or None when it can."""
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


def shared_prefix(encoded: list[dict]) -> int:
    """How many leading tokens the examples of a micro-batch share and compute once: their longest common prefix of
    ids (:func:`ftrisk.tokens.common_prefix`: each example keeps a token of its own), short of each
    example's first position that carries loss (the shared positions learn nothing: labels[t + 1] is position t's
    target). 0 for one example."""

    if len(encoded) < 2:
        return 0
    limit = common_prefix([e["input_ids"] for e in encoded])
    for e in encoded:
        first = next((i for i, lab in enumerate(e["labels"]) if lab != IGNORE), len(e["labels"]))
        limit = min(limit, first - 1)
    return max(limit, 0)


def prefix_shareable(model) -> bool:
    """Whether the shared prefix gives the padded path's loss and gradients: not with dropout in the LoRA layers or
    the attention (the prefix would get one dropout draw for all its examples instead of one per copy)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base.config, "text_config", None) or base.config
    if float(getattr(cfg, "attention_dropout", 0.0) or 0.0) > 0:
        return False
    return not any(isinstance(d, torch.nn.Dropout) and d.p > 0
                   for m in model.modules() for d in getattr(m, "lora_dropout", {}).values())


@dataclass(frozen=True)
class Packed:
    """One micro-batch as a row: ``ids`` and ``positions`` [1, T], ``targets`` [T] (IGNORE where no loss), the first
    ``prefix`` positions shared by every example, then each example's own tokens, ``lengths`` of them."""

    ids: object
    positions: object
    targets: object
    lengths: list[int]
    prefix: int = 0


def pack(encoded: list[dict], share_prefix: bool = True) -> Packed:
    """The examples' tokens end to end (after their :func:`shared_prefix`, held once, when ``share_prefix``), each
    example's positions counted from its start, and each position's target the next token of its own example
    (IGNORE at each example's last token, wherever the label is masked, and over the shared prefix)."""
    p = shared_prefix(encoded) if share_prefix else 0
    first = encoded[0]["input_ids"][:p]
    ids, pos, targets, lengths = list(first), list(range(p)), [IGNORE] * p, []
    for e in encoded:
        n = len(e["input_ids"])
        ids += e["input_ids"][p:]
        pos += range(p, n)
        targets += e["labels"][p + 1:] + [IGNORE]
        lengths.append(n - p)
    return Packed(torch.tensor([ids]), torch.tensor([pos]), torch.tensor(targets), lengths, p)


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention-function signature on one packed row: causal SDPA over the shared prefix
    (``ftrisk_prefix`` positions, possibly 0), then over each example's slice of ``ftrisk_lengths`` with the prefix's
    keys and values before its own (query [1, heads, T, dim], keys/values with their own head count; returns
    [1, T, heads, dim])."""
    prefix, lengths = kwargs.get("ftrisk_prefix", 0), kwargs["ftrisk_lengths"]
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    p = dropout if module.training else 0.0
    sizes = [prefix, *lengths] if prefix else lengths
    qs, ks, vs = query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2)

    def attend(i, before=0):  # causal over slice i, after the ``before`` shared positions
        k, v, mask = ks[i], vs[i], None
        if before:  # is_causal aligns top-left: with more keys than queries, a mask
            k, v, mask = torch.cat([ks[0], k], 2), torch.cat([vs[0], v], 2), _after_prefix(qs[i].shape[2], before)
        return F.scaled_dot_product_attention(qs[i], k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None,
                                              scale=scaling, enable_gqa=gqa)

    outs = [attend(i, prefix if i else 0) for i in range(len(sizes))]  # slice 0 is the shared one when there is one
    return torch.cat(outs, 2).transpose(1, 2).contiguous(), None


@functools.lru_cache(maxsize=256)
def _after_prefix(n: int, prefix: int):  # kept across calls: made outside inference mode, whatever the caller's
    """[n, prefix + n] bool: query i (position prefix + i) sees keys 0..prefix + i (causal aligned bottom-right; a
    boolean mask ran faster on the CPU than torch's ``causal_lower_right`` bias)."""
    with torch.inference_mode(False):
        return torch.ones(n, prefix + n, dtype=torch.bool).tril(prefix)


@functools.cache
def _register() -> None:
    AttentionInterface.register(ATTENTION, packed_attention)  # no mask function: transformers then builds no mask


@contextlib.contextmanager
def _attention(config):
    old = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = old


def packed_loss(model, packed: Packed):
    """Mean cross-entropy over the packed row's response tokens (``targets`` != IGNORE)."""
    _register()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with _attention(base.config), fused_lora(model):  # the backward pass needs neither
        hidden = base.get_decoder()(input_ids=packed.ids, position_ids=packed.positions, use_cache=False,
                                    ftrisk_lengths=packed.lengths, ftrisk_prefix=packed.prefix).last_hidden_state[0]
    keep = packed.targets != IGNORE
    return F.cross_entropy(base.get_output_embeddings()(hidden[keep]), packed.targets[keep])


def fused_lora_forward(self, x, *args, **kwargs):
    """A PEFT ``lora.Linear`` forward as one ``addmm`` for the update; PEFT's own forward whenever the layer is not in
    plain one-adapter state at call time (merged, disabled, another adapter, extra arguments)."""
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


def _fusable(m) -> bool:
    return (type(m) is LoraLinear and type(m.base_layer) is torch.nn.Linear and not m.lora_variant
            and all(isinstance(d, torch.nn.Identity) for d in m.lora_dropout.values())
            and all(m.lora_A[a].bias is None and m.lora_B[a].bias is None for a in m.lora_A))


@contextlib.contextmanager
def fused_lora(model):
    """Within: every plain LoRA linear layer of ``model`` runs :func:`fused_lora_forward`; PEFT's forward after."""
    mods = [m for m in model.modules() if _fusable(m)]
    for m in mods:
        m.forward = fused_lora_forward.__get__(m)
    try:
        yield len(mods)
    finally:
        for m in mods:
            del m.forward
