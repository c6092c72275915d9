"""The training loss: mean cross-entropy over the response tokens, with the vocabulary projection computed only
where loss is taken (it dominates a small model's compute)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ftrisk.training.data import IGNORE


class ResponseLoss(torch.nn.Module):
    """The model plus its loss as one module, so a DDP/FSDP wrapper around it sees the whole forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._no_split_modules = getattr(base, "_no_split_modules", None)  # FSDP wraps each decoder layer

    def forward(self, ids, mask, labels):
        m = self.model
        base = m.get_base_model() if hasattr(m, "get_base_model") else m
        hidden = base.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])  # vocabulary only where loss is taken
        return F.cross_entropy(logits.float(), target[keep])


def response_loss(model, ids, mask, labels):
    """Mean cross-entropy over response tokens, projecting to the vocabulary only where loss is taken."""
    return ResponseLoss(model)(ids, mask, labels)
