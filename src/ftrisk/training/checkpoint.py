"""Checkpoints and the final weights of a training run.

``checkpoint-<step>/`` holds the trained weights (a PEFT adapter folder for LoRA; ``full_weights.safetensors`` for
full fine-tuning, plus the ``evaluable`` model folder at the steps to evaluate), ``optimizer.pt`` (optimizer and
scheduler state) and ``trainer_state.json`` (step, cost meter, cost so far), written last: a folder without it is
half-saved and is not resumed from. Every process calls the save functions (sharded states are gathered); rank 0
writes. ``wrapped`` is the ResponseLoss as accelerate prepared it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file, load_model, save_file, save_model

from ftrisk import distributed
from ftrisk.cost import CostMeter
from ftrisk.io import write_json_atomic
from ftrisk.training import sharded

FULL_WEIGHTS = "full_weights.safetensors"  # a full fine-tuning checkpoint (resume only)


def latest(out_dir: Path) -> Path | None:
    """The last complete ``checkpoint-<step>/`` in ``out_dir``, or None."""
    cps = [p for p in out_dir.glob("checkpoint-*")
           if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()]  # not a half-saved .tmp
    return max(cps, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_weights(model, cp: Path, lora: bool) -> None:
    """The checkpoint's adapter (LoRA) or full weights into ``model``, before accelerate prepares it."""
    if lora:
        set_peft_model_state_dict(model, load_file(str(cp / "adapter_model.safetensors")))
    else:
        load_model(model, str(cp / FULL_WEIGHTS))  # handles tied embeddings, unlike load_state_dict


def restore(acc, wrapped, opt, sched, meter: CostMeter, cp: Path) -> int:
    """The checkpoint's optimizer, scheduler and meter state, after accelerate prepared them; returns its step."""
    state = torch.load(cp / "optimizer.pt", weights_only=True)
    sharded.load_optimizer(acc, wrapped, opt, state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    trainer_state = json.loads((cp / "trainer_state.json").read_text())
    meter.restore(trainer_state["meter"])
    return trainer_state["step"]


def save(wrapped, opt, sched, meter: CostMeter, path: Path, step: int, evaluable=None) -> None:
    """``checkpoint-<step>/`` at ``path``: weights, optimizer and scheduler state, meter; built in ``path.tmp`` and
    renamed, so a crash leaves either the whole folder or none."""
    acc = distributed.accelerator()
    weights = sharded.gathered_state(acc, wrapped, hasattr(acc.unwrap_model(wrapped).model, "peft_config"))
    optim = sharded.optimizer_state(acc, wrapped, opt)
    if acc.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _write_weights(wrapped, tmp, evaluable, resumable=True, weights=weights)
        torch.save({"optimizer": optim, "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
        write_json_atomic(tmp / "trainer_state.json", {"step": step, "meter": meter.state(), "cost": meter.summary()})
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    acc.wait_for_everyone()


def save_final(wrapped, folder: Path, evaluable=None) -> None:
    """The final weights into ``folder`` (gathered when sharded): the adapter (LoRA) and/or ``evaluable``'s folder."""
    acc = distributed.accelerator()
    weights = sharded.gathered_state(acc, wrapped, hasattr(acc.unwrap_model(wrapped).model, "peft_config"))
    _write_weights(wrapped, folder, evaluable, weights=weights)
    acc.wait_for_everyone()


def _write_weights(wrapped, folder: Path, evaluable=None, *, resumable: bool = False, weights=None) -> None:
    """The trained weights into ``folder``: a PEFT adapter folder (LoRA), and/or ``evaluable``'s model folder, and
    the full weights to resume from when ``resumable`` (full fine-tuning). ``weights``: from
    :func:`ftrisk.training.sharded.gathered_state` (None when not sharded). Rank 0 writes."""
    acc = distributed.accelerator()
    if not acc.is_main_process:
        return
    model = acc.unwrap_model(wrapped).model
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder, safe_serialization=True, **({"state_dict": weights} if weights else {}))
    elif resumable and weights is None:
        save_model(model, str(folder / FULL_WEIGHTS))
    elif resumable:  # gathered copies: leave out the second name of a tied weight, as save_model does
        tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
        save_file({k: v.contiguous() for k, v in weights.items() if k not in tied}, str(folder / FULL_WEIGHTS))
    if evaluable is not None:
        evaluable(model, folder, weights)
