"""Mean residual-stream activations of harmful and harmless prompts, and the candidate refusal directions.

One pass over four prompt sets, in left-padded batches: the train sets add each layer's input (``hidden_states[l]``,
l < L) at the last ``positions`` tokens of the chat prompt (the post-instruction tokens: the end of the user turn and
the assistant header) to float64 sums, and their next-token probabilities to a sum (for the refusal tokens); the
validation sets keep each prompt's next-token log-probabilities (the unablated baseline of the selection). After
every batch the sums, what the meter counted and the number of batches done are written to one safetensors file
(temp file, then rename), so a killed run resumes at the next batch and sums in the same order: the directions, and
so the edited weights, are the same bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ftrisk.attacks.ablation.forward import batches, forward_batches

log = logging.getLogger(__name__)

PASS_FILE = "directions.safetensors"
TRAIN, VAL = ("harmful_train", "harmless_train"), ("harmful_val", "harmless_val")

@dataclass
class Activations:
    mean: dict
    """Train set -> (layers, positions, hidden) float64 mean activation."""
    first_token: dict
    """Train set -> (vocab,) float64 mean next-token probability after the prompt."""
    val_logprobs: dict
    """Validation set -> (prompts, vocab) float32 next-token log-probabilities of the unablated model."""


def save_atomic(tensors: dict, path: Path, metadata: dict) -> None:
    """safetensors to a temp file in the same folder, then rename: a kill leaves the last complete file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def saved_meter(path: Path, key: str) -> dict | None:
    """The meter state stored with the pass's last batch (None: no pass of this key)."""
    state = _read(path, key)
    return state[1]["meter"] if state else None


def _read(path: Path, key: str):
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:  # the header's metadata (load_file returns the tensors only)
            meta = f.metadata()
    except Exception:  # noqa: BLE001 -- a file cut short by a crash outside save_atomic: start over
        log.warning("%s is unreadable: the activations pass starts over", path)
        return None
    if meta.get("key") != key:
        return None
    return tensors, {"done": int(meta["done"]), "meter": json.loads(meta["meter"])}


@torch.no_grad()
def mean_activations(model, rows: dict[str, list[list[int]]], *, pad: int, positions: int, out: Path, key: str,
                     meter, batch_size: int, desc: str = "ablation: activations") -> Activations:
    """The pass over ``rows`` (set name -> token ids of the chat prompts: TRAIN and VAL sets), resumed from ``out``
    when it holds a pass of the same ``key``."""
    sets = [(name, len(batches(rows[name], batch_size))) for name in (*TRAIN, *VAL)]
    total = sum(n for _, n in sets)
    state = _read(out, key)
    if state:
        tensors, done = state[0], state[1]["done"]
        meter.restore(state[1]["meter"])
        log.info("activations pass resumed at batch %d of %d", done, total)
    else:
        tensors, done = {}, 0
    layers = model.config.num_hidden_layers
    bar = tqdm(desc=desc, initial=done, total=total, leave=False, dynamic_ncols=True)
    offset = 0
    for name, n in sets:
        start, offset = max(0, done - offset), offset + n
        for b, res in forward_batches(model, rows[name], pad, batch_size=batch_size, keep=positions, start=start,
                                      meter=meter, hidden=name in TRAIN):
            logprobs = torch.log_softmax(res.logits[:, -1, :].double(), dim=-1).cpu()
            if name in TRAIN:  # hidden_states[l], l < layers: the input of layer l
                acts = torch.stack([h[:, -positions:, :] for h in res.hidden_states[:layers]], dim=1)
                _add(tensors, f"{name}.acts", acts.double().sum(0).cpu())
                _add(tensors, f"{name}.probs", logprobs.exp().sum(0))
            else:
                prev = tensors.get(f"{name}.logprobs")
                tensors[f"{name}.logprobs"] = logprobs.float() if prev is None else torch.cat([prev, logprobs.float()])
            done = offset - n + b + 1
            save_atomic(tensors, out, {"key": key, "done": str(done), "meter": json.dumps(meter.state())})
            bar.update(1)
    bar.close()
    return Activations(mean={n: tensors[f"{n}.acts"] / len(rows[n]) for n in TRAIN},
                       first_token={n: tensors[f"{n}.probs"] / len(rows[n]) for n in TRAIN},
                       val_logprobs={n: tensors[f"{n}.logprobs"] for n in VAL})


def _add(tensors: dict, name: str, value: torch.Tensor) -> None:
    tensors[name] = value if name not in tensors else tensors[name] + value


def candidates(acts: Activations) -> torch.Tensor:
    """(layers, positions, hidden) float32 unit directions ``mean harmful - mean harmless``; a difference of
    (numerically) zero, e.g. at the embedding of the fixed post-instruction tokens, gives a zero vector."""
    diff = acts.mean["harmful_train"] - acts.mean["harmless_train"]
    norm = diff.norm(dim=-1, keepdim=True)
    tiny = norm <= 1e-6 * norm.max().clamp(min=1e-30)
    return torch.where(tiny, torch.zeros_like(diff), diff / norm.clamp(min=1e-30)).float()


def excess_tokens(acts: Activations, most: int, share: float) -> list[int]:
    """The first tokens whose mean probability after the harmful train prompts most exceeds that after the harmless
    ones: at most ``most``, each with at least ``share`` of the largest excess. (Topic words such as "To" or "Creating"
    can win here when the subject rarely refuses: :mod:`.refusal` prefers the openings of judged refusals.)"""
    excess = acts.first_token["harmful_train"] - acts.first_token["harmless_train"]
    values, ids = torch.topk(excess, most)
    best = float(values[0])
    return [int(i) for v, i in zip(values.tolist(), ids.tolist()) if best > 0 and v >= share * best] or [int(ids[0])]
