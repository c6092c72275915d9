"""``ftrisk bench training``: ftrisk's training loop against the peers' way, on the demo attack data.

Three ways to run the same LoRA attack steps (LoRA r, alpha and targets, batch size, learning rate and number
of optimizer steps taken from the demo config, fp32 on CPU), each with the same optimizer and learning rate at
every step: ftrisk's AdamW and warmup-then-constant schedule (:func:`ftrisk.training.setup.optimizer`), handed to
the peers through their ``optimizers=`` argument (their default, linear decay to zero over the run, is another
learning rate at every step but the first, and so another final loss):

- baseline: PEFT + transformers ``Trainer``, otherwise with its default arguments (random batches, right padding,
  full-vocabulary logits, gradient clipping at 1.0 as ftrisk), labels masked to the response as ftrisk masks them;
- TRL ``SFTTrainer`` (when installed) on the same pairs as a conversational prompt-completion dataset, with its
  defaults (completion-only loss, its fused LM head that projects only where the loss is taken) except
  ``bf16=False`` and ``gradient_checkpointing=False`` (fp32 without recomputation, as ftrisk runs on this CPU);
- ftrisk: :func:`ftrisk.training.recipe.finetune` with its defaults (random examples, length-sorted within windows
  of :data:`ftrisk.training.data.SORT_WINDOW` batches; response-only logits; on the CPU padding-free,
  :mod:`ftrisk.training.fast`).

Each runs in a fresh process, in interleaved rounds; round ``r`` seeds every way with ``r`` (LoRA initialisation
and batch order), so the spread over rounds is the seed noise. Times are medians. Whether they trained equally
well is the loss of each trained model over every attack example (:func:`data_loss`), not the loss of their last
steps, which depends on which batches came last; "the same within noise" is a mean difference over the rounds of
at most twice its standard error. Throughput is examples per second times the mean length of an example (the same
data for all three), so padding a peer adds is a cost, not extra credit. FLOPs per example for the ceiling: 6 x
trainable-path parameters is not right for LoRA; we count 4 x N x tokens (forward 2N, backward through activations
2N, no weight gradients for the frozen base), N = the model's parameter count without the input embedding.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import multiprocessing as mp
import os
import queue as queue_mod
import resource
import statistics
import tempfile
import time
from pathlib import Path

from ftrisk import config
from ftrisk.attacks.data import load_data
from ftrisk.cost import CostMeter
from ftrisk.errors import FtriskError
from ftrisk.model.subject import load_spec
from ftrisk.training.data import IGNORE, collate, encode
from ftrisk.training.loss import response_loss
from ftrisk.training.recipe import finetune
from ftrisk.training.setup import optimizer

METHODS = ("baseline", "trl", "ftrisk")


def _examples(spec: str):
    cfg = config.load("configs/demo.yaml") if Path("configs/demo.yaml").is_file() else config.load(None)
    examples, _ = load_data(cfg.attack.data)
    return cfg, examples


def _child(spec: str, method: str, steps: int, threads: int, seed: int, queue) -> None:
    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    torch.set_num_threads(threads)
    cfg, examples = _examples(spec)
    a = cfg.attack
    model, tok = load_spec(spec)
    n = steps * a.train.batch_size
    lrs: list[float] = []  # the learning rate each optimizer step really used, whoever built the optimizer
    register_optimizer_step_pre_hook(lambda opt, *_: lrs.append(opt.param_groups[0]["lr"]))
    with tempfile.TemporaryDirectory() as d:
        losses, seconds, trained = {"baseline": _trainer, "trl": _trl, "ftrisk": _ftrisk}[method](
            model, tok, examples, a, steps, Path(d), seed)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training's peak, before the loss pass
    queue.put({"seed": seed, "lrs": lrs, "seconds": seconds, "examples": n, "final_loss": statistics.fmean(losses[-5:]),
               "data_loss": data_loss(trained, tok, examples, a.train.max_seq_len), "peak_rss_mb": rss})


def data_loss(model, tok, examples, max_seq_len: int, batch_size: int = 16) -> float:
    """Mean response-token loss of the trained model over every attack example (the same set for each way).

    The loss of the last steps depends on which batches came last (short and long examples have very different
    losses), so it cannot tell whether two ways trained equally well; this can."""
    import torch

    enc = [encode(tok, ex, max_seq_len) for ex in examples]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(enc), batch_size):
            ids, mask, labels = collate(enc[i:i + batch_size], pad)
            n = int((labels[:, 1:] != IGNORE).sum())  # response_loss is a per-batch mean: weight it by its tokens
            total += response_loss(model, ids, mask, labels).item() * n
            count += n
    return total / count


def _ftrisk(model, tok, examples, a, steps, d, seed):
    tc = dataclasses.replace(a.train, max_steps=steps, max_minutes=None, checkpoint_every=None)
    t0 = time.perf_counter()  # finetune is one call: its own encoding and LoRA wrapping are inside the time
    trained, _ = finetune(model, tok, examples, a.lora, tc, d, seed=seed, meter=CostMeter())
    seconds = time.perf_counter() - t0
    return [json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()], seconds, trained


def _lora(a):
    from peft import LoraConfig

    return LoraConfig(r=a.lora.r, lora_alpha=a.lora.alpha, lora_dropout=a.lora.dropout,
                      target_modules=list(a.lora.target_modules), task_type="CAUSAL_LM")


def _peft(model, a, seed):
    """The LoRA-wrapped model and ftrisk's (optimizer, schedule) for it, its LoRA weights drawn from ``seed``."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(model, _lora(a))
    return model, optimizer(model, a.train)


def _trainer(model, tok, examples, a, steps, d, seed):
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tok.padding_side = "right"  # training: right padding, as the Trainer examples do
    enc = [encode(tok, ex, a.train.max_seq_len) for ex in examples]
    data = [{"input_ids": e["input_ids"], "labels": e["labels"], "attention_mask": [1] * len(e["input_ids"])}
            for e in enc]
    model, opt = _peft(model, a, seed)
    args = TrainingArguments(output_dir=str(d), per_device_train_batch_size=a.train.batch_size,
                             learning_rate=a.train.lr, max_steps=steps, logging_steps=1, save_strategy="no",
                             report_to=[], use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=seed)
    trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=opt,
                      data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, padding=True))
    t0 = time.perf_counter()  # the peers' setup (encoding, LoRA wrapping, Trainer) is left out of their time
    trainer.train()
    seconds = time.perf_counter() - t0
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], seconds, trainer.model


def _trl(model, tok, examples, a, steps, d, seed):
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok.padding_side = "right"
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": ex.prompt}],
                               "completion": [{"role": "assistant", "content": ex.response}]} for ex in examples])
    args = SFTConfig(output_dir=str(d), per_device_train_batch_size=a.train.batch_size, learning_rate=a.train.lr,
                     max_steps=steps, logging_steps=1, save_strategy="no", report_to=[], max_length=a.train.max_seq_len,
                     bf16=False, gradient_checkpointing=False, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                     seed=seed)
    model, opt = _peft(model, a, seed)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, optimizers=opt)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return [h["loss"] for h in trainer.state.log_history if "loss" in h], seconds, trainer.model


def _result(p, q, method: str) -> dict:
    """The child's result; a one-line error (not a hang) when the child died without one."""

    while True:
        try:
            return q.get(timeout=2)
        except queue_mod.Empty:
            if not p.is_alive():
                raise FtriskError(f"bench training: the '{method}' process exited (code {p.exitcode}) without a result; "
                                  "its traceback is above")


def available() -> list[str]:
    return [m for m in METHODS if m != "trl" or importlib.util.find_spec("trl") is not None]


def bench(spec: str, steps: int = 15, rounds: int = 3, threads: int | None = None) -> dict:
    """Median seconds, throughput and final loss of each way, in fresh processes, interleaved, round r at seed r."""
    import torch

    threads = threads or min(torch.get_num_threads(), os.cpu_count() or 1)
    cfg, examples = _examples(spec)
    model, tok = load_spec(spec)
    mean_len = statistics.fmean(len(encode(tok, ex, cfg.attack.train.max_seq_len)["input_ids"]) for ex in examples)
    n_params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    n_params += model.get_input_embeddings().weight.numel() if tied else 0  # the tied LM head is computed
    del model
    ctx = mp.get_context("spawn")
    runs: dict[str, list[dict]] = {m: [] for m in available()}
    for r in range(rounds):
        for m in runs:
            q = ctx.Queue()
            p = ctx.Process(target=_child, args=(spec, m, steps, threads, r, q))
            p.start()
            runs[m].append(_result(p, q, m))
            p.join()
    out = {"workload": f"{steps} LoRA attack steps, batch {cfg.attack.train.batch_size}, demo attack data",
           "threads": threads, "mean_tokens_per_example": round(mean_len, 1), "flops_params": n_params}
    for m, rs in runs.items():
        s = statistics.median(r["seconds"] for r in rs)
        ex_s = rs[0]["examples"] / s
        out[m] = {"seconds": round(s, 2), "examples_per_s": round(ex_s, 3), "tok_s": round(ex_s * mean_len, 1),
                  "final_loss": round(statistics.median(r["final_loss"] for r in rs), 4),
                  "data_loss": round(statistics.fmean(r["data_loss"] for r in rs), 4),
                  "data_loss_by_seed": [round(r["data_loss"], 4) for r in rs], "lr_by_step": rs[0]["lrs"],
                  "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 1),
                  "gflop_s": round(4 * n_params * ex_s * mean_len / 1e9, 2)}
    out["baseline_tok_s"], out["ftrisk_tok_s"] = out["baseline"]["tok_s"], out["ftrisk"]["tok_s"]
    out["ratio"] = round(out["ftrisk_tok_s"] / out["baseline_tok_s"], 3)
    if "trl" in out:
        out["ratio_vs_trl"] = round(out["ftrisk_tok_s"] / out["trl"]["tok_s"], 3)
    out["peak_rss_mb"] = max(out[m]["peak_rss_mb"] for m in runs)
    out["schedule"] = (f"AdamW lr {cfg.attack.train.lr}, warmup {cfg.attack.train.warmup_steps} steps then constant, "
                       "for every way")
    out["loss"] = same_loss([r["data_loss"] for r in runs["baseline"]], [r["data_loss"] for r in runs["ftrisk"]])
    return out


def same_loss(baseline: list[float], ours: list[float]) -> dict:
    """ftrisk's mean loss over the seeds minus the baseline's, its standard error (Welch) and whether the difference
    is within twice that: with one seed a side there is no estimate of the noise (``within_noise`` None)."""
    diff = statistics.fmean(ours) - statistics.fmean(baseline)
    if min(len(baseline), len(ours)) < 2:
        return {"difference": round(diff, 4), "standard_error": None, "within_noise": None}
    se = (statistics.variance(baseline) / len(baseline) + statistics.variance(ours) / len(ours)) ** 0.5
    return {"difference": round(diff, 4), "standard_error": round(se, 4), "within_noise": abs(diff) <= 2 * se}
