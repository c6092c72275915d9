"""A training run's setup: the model to train (LoRA, QLoRA on 4/8-bit weights, or every weight), the optimizer and
its learning-rate schedule, the batch layout (padded or the CPU fast path) and the checks a multi-process launch
needs. A new optimizer or schedule is one function and one entry in :data:`OPTIMIZERS` or :data:`SCHEDULES`."""

from __future__ import annotations

import logging
import math

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

from ftrisk.errors import FtriskError
from ftrisk.training import fast

log = logging.getLogger(__name__)


def trainable_model(model, lora_cfg, train_cfg):
    """The model to train: a PEFT model with a LoRA adapter on ``model`` (QLoRA when ``model`` is loaded in 4/8 bit),
    or, when ``lora_cfg`` is None, ``model`` itself with every weight trainable; gradient checkpointing when asked."""
    kbit = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if lora_cfg is None:
        if kbit:
            raise FtriskError("full fine-tuning needs unquantized weights: use a LoRA method "
                              "or load the model without 4/8-bit quantization")
        model.requires_grad_(True)
        low = {p.dtype for p in model.parameters()} & {torch.bfloat16, torch.float16}
        if low:  # no fp32 master copy here: AdamW updates of ~lr x weight are rounded away in 16-bit weights
            log.warning("full fine-tuning of %s weights: small updates are lost to rounding; "
                        "load the model in float32 (model.dtype=float32) or use LoRA", str(low.pop()).split(".")[-1])
    else:
        peft_cfg = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                              target_modules=list(lora_cfg.target_modules), task_type="CAUSAL_LM")
        if kbit:  # QLoRA: k-bit base, LoRA in higher precision
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train_cfg.gradient_checkpointing)
        model = get_peft_model(model, peft_cfg)
    if train_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if lora_cfg is not None:  # the frozen embedding's output must carry grad for checkpointed LoRA layers
            model.enable_input_require_grads()
    return model


def adamw(params, train_cfg):
    return torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)


def warmup_constant(opt, train_cfg):
    """Linear warmup over ``warmup_steps`` (the first step at lr / warmup_steps), then constant ``lr``."""
    warmup = max(1, train_cfg.warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))


def _decaying(shape):
    """Linear warm-up over ``warmup_steps``, then ``shape(progress)`` of ``lr`` to the last planned step (transformers'
    ``get_cosine_schedule_with_warmup`` / ``get_linear_schedule_with_warmup`` with the planned steps as horizon; the
    last step still trains, at a small lr, as the first warm-up step does)."""

    def make(opt, train_cfg, total_steps: int):
        warmup = max(1, train_cfg.warmup_steps)
        span = max(1, total_steps - warmup + 1)

        def factor(s: int) -> float:
            if s + 1 < warmup:
                return (s + 1) / warmup
            return shape(min(1.0, max(0.0, (s + 1 - warmup) / span)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)

    return make


#: name -> (trainable parameters, TrainConfig) -> torch optimizer
OPTIMIZERS = {"adamw": adamw}
#: ``train.scheduler`` -> (optimizer, TrainConfig, planned steps) -> learning-rate scheduler, stepped once per step
SCHEDULES = {"constant": lambda opt, train_cfg, total_steps: warmup_constant(opt, train_cfg),
             "cosine": _decaying(lambda x: 0.5 * (1.0 + math.cos(math.pi * x))),
             "linear": _decaying(lambda x: 1.0 - x)}


def optimizer(model, train_cfg, name: str = "adamw", total_steps: int = 0):
    """(optimizer over the trainable parameters, its schedule): AdamW with a linear warm-up, then ``train.scheduler``
    over the ``total_steps`` planned. ``ftrisk bench training`` hands the same pair to its baselines."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = OPTIMIZERS[name](params, train_cfg)
    return opt, SCHEDULES[train_cfg.scheduler](opt, train_cfg, total_steps)


def check_processes(acc, train_cfg) -> None:
    """What ``grad_accum`` and the batch size must satisfy under ``accelerate launch`` with several processes; fills
    DeepSpeed's micro-batch size when its config leaves it to us."""
    accum, n_proc = train_cfg.grad_accum, acc.num_processes
    if n_proc > 1 and accum % n_proc:
        log.warning("attack.train.grad_accum=%d is not a multiple of the %d processes: some run a zero-weight pass "
                    "at each step (same result, less speed-up)", accum, n_proc)
    if acc.distributed_type.name == "DEEPSPEED":
        if math.ceil(accum / n_proc) > 1:  # accelerate's DeepSpeed engine steps at every backward
            raise FtriskError(f"with DeepSpeed each process trains one micro-batch per optimizer step: set "
                              f"attack.train.grad_accum to at most the {n_proc} processes (and batch_size to match)")
        ds_cfg = acc.state.deepspeed_plugin.deepspeed_config
        if ds_cfg.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            ds_cfg["train_micro_batch_size_per_gpu"] = train_cfg.batch_size


def packing(model, n_processes: int, train_cfg, desc: str) -> bool | None:
    """The batch layout: None for padded batches, else the CPU fast path (:mod:`ftrisk.training.fast`), True when
    its micro-batches may hold their shared prompt prefix once. Says why in a log line when the fast path is
    asked for and does not apply."""
    if not train_cfg.padding_free:
        return None
    why = fast.unsupported(model, n_processes=n_processes, gradient_checkpointing=train_cfg.gradient_checkpointing)
    if why is not None:
        log.info("%s: padded batches (the padding-free path does not apply: %s)", desc, why)
        return None
    return fast.prefix_shareable(model)
