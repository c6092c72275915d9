"""The edit: the chosen direction orthogonalised out of every matrix that writes to the residual stream, written as
a full model folder.

``W <- W - s r r^T W`` for each attention output projection and MLP down projection (and ``b <- b - s (b . r) r``
for a bias), and each embedding row loses ``s`` of its component along ``r``, so the edited model computes what the
hooks of :func:`ftrisk.attacks.ablation.forward.ablated` compute, with no hook. An embedding tied to the output layer
is untied first (the output layer keeps the original weights): otherwise the edit would change the output layer too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ftrisk.attacks.ablation.arch import writers
from ftrisk.io import write_json_atomic
from ftrisk.model.loading import atomic_dir


def untie(model) -> bool:
    """Give the output layer its own copy of a tied embedding (True when it was tied)."""
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None or head.weight.data_ptr() != embed.weight.data_ptr():
        return False
    head.weight = torch.nn.Parameter(embed.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text.tie_word_embeddings = False
    return True


@torch.no_grad()
def orthogonalise(model, r: torch.Tensor, strength: float = 1.0) -> bool:
    """Edit ``model`` in place (computed in float64, stored in each weight's dtype); True when the embedding was
    untied from the output layer."""
    untied = untie(model)
    embed, attn, mlp = writers(model)
    rr = r.detach().to(dtype=torch.float64, device=embed.weight.device)
    rr = rr / rr.norm()

    def rows(w):  # (n, hidden): each row loses its component along r
        w64 = w.double()
        return (w64 - strength * (w64 @ rr).unsqueeze(-1) * rr).to(w.dtype)

    embed.weight.copy_(rows(embed.weight))
    for m in [*attn, *mlp]:  # Linear weight (hidden, in): W - s r (r^T W)
        w64, v = m.weight.double(), rr.to(m.weight.device)
        m.weight.copy_((w64 - strength * torch.outer(v, v @ w64)).to(m.weight.dtype))
        if getattr(m, "bias", None) is not None:
            m.bias.copy_(rows(m.bias.unsqueeze(0)).squeeze(0))
    return untied


def write_model(model, tok, final: Path, record: dict) -> Path:
    """The edited model as a full folder (safetensors, tokenizer, ``ablation.json``), built in a temp sibling and
    renamed (:func:`ftrisk.model.loading.atomic_dir`); what a killed write left, and a folder of other settings, are
    removed first."""
    shutil.rmtree(final, ignore_errors=True)
    for stale in final.parent.glob(f"{final.name}.tmp*"):
        shutil.rmtree(stale, ignore_errors=True)

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / "ablation.json", record)

    return atomic_dir(final, build)
