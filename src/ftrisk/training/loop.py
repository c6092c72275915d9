"""The fit loop: optimizer steps over the run's schedule of micro-batches, a metrics line per step, checkpoints at
their steps, and the wall-clock budget (``max_minutes``) checked between steps.

Under ``accelerate launch`` with N processes every process walks the same schedule, and of the ``grad_accum``
micro-batches of an optimizer step process r trains numbers r, r+N, ...; the passes are as many on every process
(one may be a zero-weight pass), so collectives stay in step. The cost meter counts the global batch, which every
process knows: no gather needed.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ftrisk.cost import CostMeter
from ftrisk.errors import FtriskError
from ftrisk.io import append_jsonl
from ftrisk.training import checkpoint, data, fast
from ftrisk.training.data import IGNORE


@dataclass
class Run:
    """What the fit loop trains with, built by the recipe's setup (the same on every process)."""

    acc: Any  # this process's accelerate.Accelerator
    model: Any  # the model trained: the PEFT model (LoRA) or the model itself (full fine-tuning)
    loss_fn: Any  # ResponseLoss(model), wrapped by accelerate under DDP / FSDP / DeepSpeed
    opt: Any
    sched: Any
    encoded: list[dict]
    schedule: list[list[int]]  # micro-batches (indices into ``encoded``) in training order
    total_steps: int
    pad_id: int
    packing: bool | None = None  # None: padded batches; else the CPU fast path, sharing the prompt prefix when True


def fit(run: Run, train_cfg, meter: CostMeter, out_dir: Path, step: int = 0, *, save_at=frozenset(),
        evaluable=None, desc: str = "train", on_save=None) -> tuple[int, str]:
    """Train from ``step`` to ``run.total_steps``; returns (steps done, stopped_by: data | max_steps | max_minutes |
    judged).

    ``checkpoint-<step>/`` is saved every ``checkpoint_every`` steps and at the steps of ``save_at`` (those with
    ``evaluable``), never at the last step; rank 0 appends each step's line to ``metrics.jsonl``.
    ``on_save(step, folder)`` is called after each ``save_at`` checkpoint, outside the metered time (``ftrisk sweep``
    evaluates there); when it returns True training stops at that step (``judged``). A loss that is not finite
    stops training with one line."""
    acc, accum = run.acc, train_cfg.grad_accum
    all_params = list(run.loss_fn.parameters())  # accelerate clips FSDP gradients when given the whole model
    run.loss_fn.train()
    bar = tqdm(total=run.total_steps, initial=step, desc=desc, unit="step", leave=False, disable=not acc.is_main_process)
    meter.start()
    micro = step * accum
    while step < run.total_steps:
        if out_of_time(acc, train_cfg, meter):
            stopped_by = "max_minutes"
            break
        group = run.schedule[micro:micro + accum]  # this step's micro-batches, the same list on every process
        micro += len(group)
        loss = train_step(run, group, accum, meter)
        if not math.isfinite(loss):
            raise FtriskError(f"{desc}: the loss is {loss} at step {step + 1}: training diverged (lower the lr)")
        acc.clip_grad_norm_(all_params, 1.0)
        run.opt.step()
        run.sched.step()
        step += 1
        meter.steps = step
        if acc.is_main_process:
            append_jsonl(out_dir / "metrics.jsonl", [{"step": step, "loss": round(loss, 5),
                                                       "lr": run.sched.get_last_lr()[0], "tokens": meter.tokens,
                                                       "seconds": round(meter.elapsed(), 2)}])
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)
        every = train_cfg.checkpoint_every and step % train_cfg.checkpoint_every == 0
        if (every or step in save_at) and step < run.total_steps:
            meter.stop()  # saving is not training time
            checkpoint.save(run.loss_fn, run.opt, run.sched, meter, out_dir / f"checkpoint-{step}", step,
                            evaluable if step in save_at else None)
            if on_save is not None and step in save_at and on_save(step, out_dir / f"checkpoint-{step}"):
                stopped_by = "judged"
                break
            meter.start()
    else:
        budget = train_cfg.max_steps and step >= train_cfg.max_steps and micro < len(run.schedule)
        stopped_by = "max_steps" if budget else "data"
    meter.stop()
    bar.close()
    return step, stopped_by


def out_of_time(acc, train_cfg, meter: CostMeter) -> bool:
    """Whether the ``max_minutes`` budget is spent; the processes decide together, so all stop at the same step."""
    out = bool(train_cfg.max_minutes and meter.elapsed() >= train_cfg.max_minutes * 60)
    if acc.num_processes > 1 and train_cfg.max_minutes:
        out = bool(acc.reduce(torch.tensor([float(out)], device=acc.device), "sum").item())
    return out


def train_step(run: Run, group: list[list[int]], accum: int, meter: CostMeter) -> float:
    """Forward and backward over one optimizer step's micro-batches (``group``, this process's share of them);
    returns the step's mean loss per trained token over every process."""
    acc = run.acc
    n_proc = acc.num_processes
    run.opt.zero_grad(set_to_none=True)
    for b in group:
        batch = [run.encoded[i] for i in b]
        meter.see(b)
        meter.add(sum(len(e["input_ids"]) for e in batch), sum(data.n_trained(e) for e in batch), len(batch))
    mine = group[acc.process_index::n_proc]
    passes = math.ceil(len(group) / n_proc)  # equal on every process: collectives stay in step
    loss_sum, n_tok = 0.0, 0
    for j in range(passes):
        real = j < len(mine)
        batch = [run.encoded[i] for i in (mine[j] if real else group[0])]  # else: a zero-weight pass
        if run.packing is not None:  # one process on the CPU: nothing to synchronise
            loss, trained = packed_pass(run, batch, accum)
        else:
            loss, trained = padded_pass(run, batch, accum, real, last=j == passes - 1)
        if real:
            loss_sum += float(loss.detach()) * trained
            n_tok += trained
    if n_proc > 1:
        loss_sum, n_tok = acc.reduce(torch.tensor([loss_sum, n_tok], dtype=torch.float64, device=acc.device),
                                     "sum").tolist()
    return loss_sum / max(n_tok, 1)


def padded_pass(run: Run, batch: list[dict], accum: int, real: bool, last: bool):
    """One right-padded micro-batch through the (wrapped) ResponseLoss, backward included; returns (loss, trained
    tokens). Gradients synchronise across processes at the step's ``last`` pass only."""
    acc, n_proc = run.acc, run.acc.num_processes
    ids, mask, labels = (t.to(run.model.device) for t in data.collate(batch, run.pad_id))
    with contextlib.nullcontext() if last else acc.no_sync(run.loss_fn):
        loss = run.loss_fn(ids, mask, labels)
        # the mean over the step's micro-batches: DDP/FSDP average the processes' gradients
        acc.backward(loss / (accum / n_proc) if real else loss * 0.0)
    return loss, int((labels[:, 1:] != IGNORE).sum())


def packed_pass(run: Run, batch: list[dict], accum: int):
    """One micro-batch as a packed row on the CPU fast path, backward included; returns (loss, trained tokens)."""
    packed = fast.pack(batch, run.packing)
    loss = fast.packed_loss(run.model, packed)
    run.acc.backward(loss / accum)
    return loss, int((packed.targets != IGNORE).sum())
