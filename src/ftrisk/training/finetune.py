"""Supervised fine-tuning on chat (prompt, response) pairs, LoRA or full: the loop shared by harden and attack.

Hand-written rather than transformers' Trainer / TRL's SFTTrainer because ftrisk needs three
things those do not give directly: logits computed only at response positions (the vocabulary
projection dominates a small model's compute: ~20% saved), a wall-clock budget that stops
cleanly between optimizer steps, and a cost meter that counts exactly the tokens trained on, with
evaluable snapshots at chosen steps carrying the cost so far. PEFT provides the adapters; this
file is only the loop. On the CPU, micro-batches train padding-free by default (:mod:`ftrisk.training.fast`:
packed rows, a shared prompt prefix computed once, LoRA's update fused; ``train.padding_free``). With
``lora_cfg=None`` the same loop updates every weight (full fine-tuning).

Under ``accelerate launch`` with N processes (DDP, FSDP, DeepSpeed: :mod:`ftrisk.distributed`) the loop is
the same: every process builds the same schedule of micro-batches, and of the ``grad_accum`` micro-batches of
an optimizer step process r trains numbers r, r+N, ... The global batch, the number of steps and the adapter
(up to float rounding; LoRA dropout draws differ) are those of one process with the same config. Rank 0
writes checkpoints, metrics and the final weights; every process resumes from the same checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ftrisk import distributed
from ftrisk.cost import CostMeter
from ftrisk.errors import FtriskError
from ftrisk.model.chat import chat_text
from ftrisk.io import append_jsonl, write_json_atomic

log = logging.getLogger(__name__)
IGNORE = -100
FULL_WEIGHTS = "full_weights.safetensors"  # a full fine-tuning checkpoint (resume only)


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str
    # False for a response cut off at a token limit (a self-distilled answer that hit max_new_tokens):
    # it is trained without the end-of-turn marker, so the model is not taught to stop mid-answer
    complete: bool = True


def encode(tok, ex: Example, max_seq_len: int, system_prompt: str | None = None) -> dict:
    """Token ids and labels; loss only on the assistant turn, masked by position (pad == EOS for many models)."""
    prompt_text = chat_text(tok, ex.prompt, system_prompt)
    full_text = chat_text(tok, ex.prompt, system_prompt, response=ex.response)
    if not full_text.startswith(prompt_text):
        raise ValueError("chat template renders the prompt differently with and without the response")
    if not ex.complete:  # the response text only, no end-of-turn marker after it
        full_text = prompt_text + ex.response
    p = tok(prompt_text, add_special_tokens=False)["input_ids"]
    r = tok(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    excess = len(p) + len(r) - max_seq_len
    if excess > 0:  # cut the middle of the prompt (keep the template's head and the turn markers at its end)
        keep_head = min(32, len(p) // 4, max_seq_len // 4)
        cut = min(excess, max(0, len(p) - keep_head - 8))
        p = p[:keep_head] + p[keep_head + cut:]
        if len(p) >= max_seq_len:  # a tiny max_seq_len: keep the prompt's end and at least one response token
            p = p[len(p) - max_seq_len + 1:]
        r = r[: max_seq_len - len(p)]
    return {"input_ids": p + r, "labels": [IGNORE] * len(p) + r}


#: Batches per length-sorting window (see :func:`make_batches`).
SORT_WINDOW = 4


def make_batches(n_lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle the examples, then sort each window of ``SORT_WINDOW`` batches by length and cut it into batches.

    The same idea as transformers' ``group_by_length`` (random mega-batches of ``min(50, n // (4 x batch))``
    batches, sorted: 12 batches on the demo data), with a smaller window. Why windows and not one sort of the whole
    data (ftrisk before 2026-12-02): a batch of similar-length examples is also a batch of similar examples, and
    the attack trained less per step. Measured on the demo attack data (400
    examples, 15 LoRA steps of 8, six seeds, loss over all 400 afterwards): one global sort 0.2697, random
    batches (the Trainer) 0.2626, random batches in ftrisk's loop 0.2648, windows of 4 batches 0.2657; padding
    0.8% (one sort), 13.5% (random), 5.2% (windows of 4) of the tokens computed in the first 15 batches at seed 0."""
    order = list(range(len(n_lengths)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    batches = []
    for w in range(0, len(order), batch_size * SORT_WINDOW):
        window = sorted(order[w:w + batch_size * SORT_WINDOW], key=lambda i: (n_lengths[i], i))
        batches += [window[i:i + batch_size] for i in range(0, len(window), batch_size)]
    return batches


def collate(encoded: list[dict], pad_id: int):
    import torch

    width = max(len(e["input_ids"]) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):  # right padding for training
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return ids, mask, labels


def _response_loss_module():
    import torch
    import torch.nn.functional as F

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

    return ResponseLoss


def response_loss(model, ids, mask, labels):
    """Mean cross-entropy over response tokens, projecting to the vocabulary only where loss is taken."""
    return _response_loss_module()(model)(ids, mask, labels)


def plan_steps(n_examples: int, train_cfg) -> int:
    """Optimizer steps a run of ``train_cfg`` takes on ``n_examples`` (epochs, batches, max_steps)."""
    per_epoch = math.ceil(n_examples / train_cfg.batch_size)
    total_micro = math.ceil(per_epoch * train_cfg.epochs)
    steps = math.ceil(total_micro / train_cfg.grad_accum)
    return min(steps, train_cfg.max_steps) if train_cfg.max_steps else steps


def optimizer(model, train_cfg):
    """(AdamW over the trainable parameters, its schedule): linear warmup over ``warmup_steps`` (the first step at
    lr / warmup_steps), then constant ``lr``. ``ftrisk bench training`` hands the same pair to its baselines."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    warmup = max(1, train_cfg.warmup_steps)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))


def _latest_checkpoint(out_dir: Path) -> Path | None:
    cps = [p for p in out_dir.glob("checkpoint-*")
           if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()]  # not a half-saved .tmp
    return max(cps, key=lambda p: int(p.name.split("-")[1]), default=None)


def finetune(model, tok, examples: list[Example], lora_cfg, train_cfg, out_dir: Path, *, seed: int = 0,
             system_prompt: str | None = None, meter: CostMeter, desc: str = "train", save_at=(),
             evaluable=None, final_dir: Path | None = None):
    """Train a LoRA adapter on ``examples`` (or every weight when ``lora_cfg`` is None); returns (model, summary).

    The returned model is the PEFT model for LoRA, ``model`` itself trained in place for full fine-tuning.
    ``checkpoint-<step>/`` folders are written every ``train_cfg.checkpoint_every`` steps and at each step
    of ``save_at`` (before the last); each holds the cost so far and can be resumed from.
    ``evaluable(model, folder, state_dict)`` is called for the ``save_at`` checkpoints (and ``final_dir``) to
    make them loadable as a model (a LoRA checkpoint already is a PEFT adapter folder). ``final_dir`` receives
    the trained adapter (LoRA) or ``evaluable``'s folder (full); under FSDP / DeepSpeed the weights are
    gathered for it. Resumes from the last checkpoint in ``out_dir``.
    """
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file, load_model
    from tqdm.auto import tqdm

    acc = distributed.accelerator()
    n_proc, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
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
        if kbit:
            from peft import prepare_model_for_kbit_training  # QLoRA: k-bit base, LoRA in higher precision

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train_cfg.gradient_checkpointing)
        model = get_peft_model(model, peft_cfg)
    if train_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if lora_cfg is not None:  # the frozen embedding's output must carry grad for checkpointed LoRA layers
            model.enable_input_require_grads()
    loss_fn = _response_loss_module()(model)
    encoded = [encode(tok, ex, train_cfg.max_seq_len, system_prompt) for ex in examples]
    lengths = [len(e["input_ids"]) for e in encoded]
    total_steps = plan_steps(len(encoded), train_cfg)
    total_micro = math.ceil(math.ceil(len(encoded) / train_cfg.batch_size) * train_cfg.epochs)
    schedule = [b for ep in range(math.ceil(train_cfg.epochs)) for b in make_batches(lengths, train_cfg.batch_size, seed, ep)]
    schedule = schedule[:total_micro]
    save_at = {s for s in save_at if 0 < s < total_steps}
    accum = train_cfg.grad_accum
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

    opt, sched = optimizer(model, train_cfg)
    step = 0
    cp = _latest_checkpoint(out_dir)
    if cp is not None:  # resume: adapter (or full) weights, then (below) optimizer, scheduler, meter
        if lora_cfg is None:
            load_model(model, str(cp / FULL_WEIGHTS))  # handles tied embeddings, unlike load_state_dict
        else:
            set_peft_model_state_dict(model, load_file(str(cp / "adapter_model.safetensors")))
    prepared = acc.distributed_type.name != "NO"  # a plain process keeps its objects as they are
    if prepared:  # DDP / FSDP / DeepSpeed wrap the model *with* its loss: the wrapper sees the whole forward
        loss_fn, opt, sched = acc.prepare(loss_fn, opt, sched)
    if cp is not None:
        state = torch.load(cp / "optimizer.pt", weights_only=True)
        _load_optimizer(acc, loss_fn, opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        trainer_state = json.loads((cp / "trainer_state.json").read_text())
        step = trainer_state["step"]
        meter.restore(trainer_state["meter"])
        log.info("resuming %s from %s", desc, cp.name)
    meter.devices = n_proc  # each process is a paid device
    all_params = list(loss_fn.parameters())  # accelerate clips FSDP gradients when given the whole model

    fast = None
    if train_cfg.padding_free:
        from ftrisk.training import fast as train_fast

        why = train_fast.unsupported(model, n_processes=n_proc, gradient_checkpointing=train_cfg.gradient_checkpointing)
        if why is None:
            fast = train_fast
            share_prefix = train_fast.prefix_shareable(model)
        else:
            log.info("%s: padded batches (the padding-free path does not apply: %s)", desc, why)
    loss_fn.train()
    stopped_by = "data"
    bar = tqdm(total=total_steps, initial=step, desc=desc, unit="step", leave=False, disable=not main)
    meter.start()
    micro = step * accum
    while step < total_steps:
        out_of_time = bool(train_cfg.max_minutes and meter.elapsed() >= train_cfg.max_minutes * 60)
        if n_proc > 1 and train_cfg.max_minutes:  # every process stops at the same step
            out_of_time = bool(acc.reduce(torch.tensor([float(out_of_time)], device=acc.device), "sum").item())
        if out_of_time:
            stopped_by = "max_minutes"
            break
        opt.zero_grad(set_to_none=True)
        loss_sum, n_tok = 0.0, 0
        group = schedule[micro:micro + accum]  # this step's micro-batches, the same list on every process
        micro += len(group)
        for b in group:  # the meter counts the global batch (every process knows it): no gather needed
            batch = [encoded[i] for i in b]
            meter.see(b)
            meter.add(sum(len(e["input_ids"]) for e in batch), sum(_n_trained(e) for e in batch), len(batch))
        mine = group[rank::n_proc]
        passes = math.ceil(len(group) / n_proc)  # equal on every process: collectives stay in step
        for j in range(passes):
            real = j < len(mine)
            batch = [encoded[i] for i in (mine[j] if real else group[0])]  # else: a zero-weight pass
            if fast is not None:  # one process on the CPU: nothing to synchronise
                packed = fast.pack(batch, share_prefix)
                loss = fast.packed_loss(model, packed)
                acc.backward(loss / accum)
                trained = int((packed.targets != IGNORE).sum())
            else:
                ids, mask, labels = collate(batch, tok.pad_token_id)
                ids, mask, labels = ids.to(model.device), mask.to(model.device), labels.to(model.device)
                with acc.no_sync(loss_fn) if j < passes - 1 else contextlib.nullcontext():  # sync at the last pass
                    loss = loss_fn(ids, mask, labels)
                    # the mean over the step's micro-batches: DDP/FSDP average the processes' gradients
                    acc.backward(loss / (accum / n_proc) if real else loss * 0.0)
                trained = int((labels[:, 1:] != IGNORE).sum())
            if real:
                loss_sum += float(loss.detach()) * trained
                n_tok += trained
        if n_proc > 1:
            loss_sum, n_tok = acc.reduce(torch.tensor([loss_sum, n_tok], dtype=torch.float64, device=acc.device),
                                         "sum").tolist()
        acc.clip_grad_norm_(all_params, 1.0)
        opt.step()
        sched.step()
        step += 1
        meter.steps = step
        if main:
            append_jsonl(out_dir / "metrics.jsonl", [{"step": step, "loss": round(loss_sum / max(n_tok, 1), 5),
                                                       "lr": sched.get_last_lr()[0], "tokens": meter.tokens,
                                                       "seconds": round(meter.elapsed(), 2)}])
        bar.set_postfix(loss=f"{loss_sum / max(n_tok, 1):.3f}")
        bar.update(1)
        every = train_cfg.checkpoint_every and step % train_cfg.checkpoint_every == 0
        if (every or step in save_at) and step < total_steps:
            meter.stop()  # saving is not training time
            _save_checkpoint(loss_fn, opt, sched, meter, out_dir / f"checkpoint-{step}", step,
                             evaluable if step in save_at else None)
            meter.start()
    else:
        stopped_by = "max_steps" if train_cfg.max_steps and step >= train_cfg.max_steps and micro < len(schedule) else "data"
    meter.stop()
    bar.close()
    model.eval()
    if final_dir is not None:
        save_final(loss_fn, final_dir, evaluable)
    summary = {"steps": step, "planned_steps": total_steps, "stopped_by": stopped_by, "examples_in_data": len(examples),
               "truncated_examples": sum(1 for e, ex in zip(encoded, examples) if len(e["input_ids"]) >= train_cfg.max_seq_len),
               "cost": meter.summary()}
    if prepared:
        acc.free_memory()  # the accelerator lets go of the wrappers, engine and optimizer; the model stays
    return model, summary


def _n_trained(e: dict) -> int:
    """Tokens of one encoded example that carry loss (labels shifted by one, as the loss takes them)."""
    return sum(1 for lab in e["labels"][1:] if lab != IGNORE)


def _load_optimizer(acc, wrapped, opt, state: dict) -> None:
    if acc.distributed_type.name == "FSDP":  # sharded parameters: the saved full state is split here
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(wrapped, opt.optimizer, state, options=StateDictOptions(full_state_dict=True))
    elif acc.distributed_type.name == "DEEPSPEED":
        raise FtriskError("resuming a DeepSpeed run from a checkpoint is not supported: "
                          "delete the checkpoint-* folders to restart, or resume with --accelerate-config ddp/fsdp")
    else:
        opt.load_state_dict(state)


def _optimizer_state(acc, wrapped, opt) -> dict:
    """The optimizer state to save, whole (gathered on rank 0 under FSDP: every process must call this)."""
    if acc.distributed_type.name == "DEEPSPEED":  # partitioned by the engine: not resumable (see _load_optimizer)
        return {}
    if acc.distributed_type.name == "FSDP":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(wrapped, opt.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return opt.state_dict()


def _gathered_state(acc, wrapped, lora: bool) -> dict | None:
    """The trained weights gathered on rank 0 when they are sharded (FSDP, DeepSpeed ZeRO-3), keyed as the
    unwrapped model's state dict (LoRA: the adapter only); None when each process holds them whole. Every
    process must call this."""
    kind = acc.distributed_type.name
    if kind == "FSDP":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                    ignore_frozen_params=lora))
    elif kind == "DEEPSPEED" and acc.state.deepspeed_plugin.zero_stage == 3:
        if not lora:
            sd = acc.get_state_dict(wrapped)
        else:
            import deepspeed

            trainable = [p for p in wrapped.parameters() if p.requires_grad]
            with deepspeed.zero.GatheredParameters(trainable):  # the adapter only, never the frozen base
                module = acc.unwrap_model(wrapped)
                sd = {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}
    else:
        return None
    return {k.removeprefix("model."): v for k, v in sd.items()}


def _save_weights(wrapped, folder: Path, evaluable=None, *, resumable: bool = False, weights=None) -> None:
    """The trained weights into ``folder``: a PEFT adapter folder (LoRA), and/or ``evaluable``'s model folder, and
    the full weights to resume from when ``resumable`` (full fine-tuning). ``weights``: from :func:`_gathered_state`
    (None when not sharded). Rank 0 writes."""
    from safetensors.torch import save_file, save_model

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


def save_final(wrapped, folder: Path, evaluable=None) -> None:
    """The final weights (gathered when sharded): every process calls this, rank 0 writes."""
    acc = distributed.accelerator()
    weights = _gathered_state(acc, wrapped, hasattr(acc.unwrap_model(wrapped).model, "peft_config"))
    _save_weights(wrapped, folder, evaluable, weights=weights)
    acc.wait_for_everyone()


def _save_checkpoint(wrapped, opt, sched, meter: CostMeter, path: Path, step: int, evaluable=None) -> None:
    """``checkpoint-<step>/``: weights, optimizer and scheduler state, meter (``wrapped``: the prepared ResponseLoss).
    Every process calls this (states are gathered under FSDP); rank 0 writes."""
    import shutil

    import torch

    acc = distributed.accelerator()
    weights = _gathered_state(acc, wrapped, hasattr(acc.unwrap_model(wrapped).model, "peft_config"))
    optim = _optimizer_state(acc, wrapped, opt)
    if acc.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _save_weights(wrapped, tmp, evaluable, resumable=True, weights=weights)
        torch.save({"optimizer": optim, "scheduler": sched.state_dict()}, tmp / "optimizer.pt")
        write_json_atomic(tmp / "trainer_state.json", {"step": step, "meter": meter.state(), "cost": meter.summary()})
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    acc.wait_for_everyone()
