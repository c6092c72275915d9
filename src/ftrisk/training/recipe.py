"""Supervised fine-tuning on chat (prompt, response) pairs, LoRA or full: the recipe shared by harden and attack.

:func:`finetune` reads top to bottom as the recipe: set up (the model to train, data, optimizer and schedule:
:mod:`.setup`, :mod:`.data`), resume from the last checkpoint (:mod:`.checkpoint`), fit (:mod:`.loop`), save.

Hand-written rather than transformers' Trainer / TRL's SFTTrainer because ftrisk needs three things those do not
give directly: logits computed only at response positions (:mod:`.loss`), a wall-clock budget that stops cleanly
between optimizer steps, and a cost meter that counts exactly the tokens trained on, with evaluable snapshots at
chosen steps carrying the cost so far. PEFT provides the adapters. On the CPU, micro-batches train padding-free by
default (:mod:`.fast`: packed rows, a shared prompt prefix computed once, LoRA's update fused;
``train.padding_free``). With ``lora_cfg=None`` the same loop updates every weight (full fine-tuning).

Under ``accelerate launch`` with N processes (DDP, FSDP, DeepSpeed: :mod:`ftrisk.distributed`) the recipe is the
same: the global batch, the number of steps and the adapter (up to float rounding; LoRA dropout draws differ) are
those of one process with the same config. Rank 0 writes checkpoints, metrics and the final weights; every process
resumes from the same checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ftrisk import distributed
from ftrisk.cost import CostMeter
from ftrisk.training import checkpoint, data, loop, setup
from ftrisk.training.data import Example
from ftrisk.training.loss import ResponseLoss

log = logging.getLogger(__name__)


def finetune(model, tok, examples: list[Example], lora_cfg, train_cfg, out_dir: Path, *, seed: int = 0,
             system_prompt: str | None = None, meter: CostMeter, desc: str = "train", save_at=(),
             evaluable=None, final_dir: Path | None = None, on_save=None):
    """Train a LoRA adapter on ``examples`` (or every weight when ``lora_cfg`` is None); returns (model, summary).

    The returned model is the PEFT model for LoRA, ``model`` itself trained in place for full fine-tuning.
    ``checkpoint-<step>/`` folders are written every ``train_cfg.checkpoint_every`` steps and at each step
    of ``save_at`` (before the last); each holds the cost so far and can be resumed from.
    ``evaluable(model, folder, state_dict)`` is called for the ``save_at`` checkpoints (and ``final_dir``) to
    make them loadable as a model (a LoRA checkpoint already is a PEFT adapter folder). ``final_dir`` receives
    the trained adapter (LoRA) or ``evaluable``'s folder (full); under FSDP / DeepSpeed the weights are
    gathered for it. Resumes from the last checkpoint in ``out_dir``. ``on_save(step, folder)``: called after each
    ``save_at`` checkpoint; True stops training there (:func:`ftrisk.training.loop.fit`).
    """
    acc = distributed.accelerator()
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # the LoRA weights' initial draw, then dropout's
    model = setup.trainable_model(model, lora_cfg, train_cfg)
    loss_fn = ResponseLoss(model)
    encoded = [data.encode(tok, ex, train_cfg.max_seq_len, system_prompt) for ex in examples]
    schedule = data.schedule([len(e["input_ids"]) for e in encoded], train_cfg, seed)
    total_steps = data.plan_steps(len(encoded), train_cfg)
    setup.check_processes(acc, train_cfg)
    opt, sched = setup.optimizer(model, train_cfg, total_steps=total_steps)

    cp = checkpoint.latest(out_dir)
    if cp is not None:  # resume: adapter (or full) weights now, optimizer, scheduler and meter once prepared
        checkpoint.load_weights(model, cp, lora=lora_cfg is not None)
    prepared = acc.distributed_type.name != "NO"  # a plain process keeps its objects as they are
    if prepared:  # DDP / FSDP / DeepSpeed wrap the model *with* its loss: the wrapper sees the whole forward
        loss_fn, opt, sched = acc.prepare(loss_fn, opt, sched)
    step = 0
    if cp is not None:
        step = checkpoint.restore(acc, loss_fn, opt, sched, meter, cp)
        log.info("resuming %s from %s", desc, cp.name)
    meter.devices = acc.num_processes  # each process is a paid device

    run = loop.Run(acc, model, loss_fn, opt, sched, encoded, schedule, total_steps, tok.pad_token_id,
                   setup.packing(model, acc.num_processes, train_cfg, desc))
    step, stopped_by = loop.fit(run, train_cfg, meter, out_dir, step, evaluable=evaluable, desc=desc,
                                save_at={s for s in save_at if 0 < s < total_steps}, on_save=on_save)
    model.eval()
    if final_dir is not None:
        checkpoint.save_final(loss_fn, final_dir, evaluable)
    truncated = sum(1 for e in encoded if len(e["input_ids"]) >= train_cfg.max_seq_len)
    summary = {"steps": step, "planned_steps": total_steps, "stopped_by": stopped_by, "examples_in_data": len(examples),
               "truncated_examples": truncated, "cost": meter.summary()}
    if prepared:
        acc.free_memory()  # the accelerator lets go of the wrappers, engine and optimizer; the model stays
    return model, summary
