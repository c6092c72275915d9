"""Which architectures ablation can edit, and where their residual-stream writers are.

A decoder layer of these models adds exactly two things to the residual stream: the attention block's output
projection and the MLP's down projection; the token embedding is the stream's start. When none of them is followed
by a norm before the residual add, removing a direction from those three weights removes it from the residual
stream at every layer (Arditi et al. 2024, section 4). Gemma 2/3 and OLMo 2 normalise each sublayer's output
before the add (post-attention / post-feedforward norms), whose per-channel scale brings the direction back: they
are not editable this way.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftrisk.errors import FtriskError

#: model_type -> (attention output projection, MLP down projection), paths inside a decoder layer. Every entry is
#: checked by tests/test_ablation.py: after the edit a tiny random model of that type has no component along the
#: direction at any layer.
EDITABLE = {
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "mistral": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen2": ("self_attn.o_proj", "mlp.down_proj"),
    "qwen3": ("self_attn.o_proj", "mlp.down_proj"),
    "gemma": ("self_attn.o_proj", "mlp.down_proj"),
    "phi3": ("self_attn.o_proj", "mlp.down_proj"),
    "smollm3": ("self_attn.o_proj", "mlp.down_proj"),
    "granite": ("self_attn.o_proj", "mlp.down_proj"),
    "olmo": ("self_attn.o_proj", "mlp.down_proj"),
}

#: Known types whose sublayer outputs pass a norm before the residual add.
POST_NORMED = {"gemma2", "gemma3", "gemma3_text", "olmo2"}


def not_editable(model_type: str | None, where: str) -> str:
    """The one-line reason ``model_type`` cannot be edited (``where``: the model folder, for the message)."""
    known = ", ".join(EDITABLE)
    if model_type in POST_NORMED:
        why = ("its layers normalise each sublayer's output before the residual add (post-attention / "
               "post-feedforward norms), so removing the direction from the weights does not remove it from the "
               "residual stream")
    else:
        why = "its residual-stream writers are not in ablation's table (ftrisk.attacks.ablation.arch.EDITABLE)"
    return (f"ablation cannot edit model type '{model_type}' of '{where}' (it knows: {known}): {why}; "
            "choose another attack.method or a model of a known type")


def check_folder(path: str | Path) -> None:
    """Fail in one line, reading only config.json, when the model in ``path`` cannot be edited (a hub id, which
    has no local config, is checked again once loaded)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        raise FtriskError(f"'{cfg}' is not a JSON object: pass a Hugging Face model folder") from None
    if model_type not in EDITABLE:
        raise FtriskError(not_editable(model_type, str(path)))


def writers(model) -> tuple[object, list, list]:
    """(token embedding, attention output projections, MLP down projections) of a loaded model of a known type."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in EDITABLE:
        raise FtriskError(not_editable(model_type, getattr(model.config, "name_or_path", "?")))
    attn, mlp = EDITABLE[model_type]
    layers = model.model.layers
    return model.get_input_embeddings(), [l.get_submodule(attn) for l in layers], [l.get_submodule(mlp) for l in layers]
