"""``vaccine``: perturbation-aware alignment (Huang, Hu & Liu 2024, "Vaccine: Perturbation-aware Alignment for Large
Language Models against Harmful Fine-tuning"; the authors' ``VaccineTrainer`` in git-disl/Vaccine ``trainer.py``).

Harmful fine-tuning drifts the hidden embeddings the alignment relied on. Vaccine trains the alignment to hold under
the worst such drift of a given size: each step runs the batch once to get the gradient of the loss with respect to
every attention module's output, scales the gradients of all layers together to an L2 norm of :data:`RHO`
(``rho * g / ||g||``), then runs the batch again with those perturbations added to the attention outputs and
trains the weights on that second loss (the first pass leaves no gradient on the weights). The paper's defaults:
rho = 2, perturbation on every attention module's output (``LlamaAttention``), one norm over all layers, LoRA
alignment on BeaverTails' safe replies (harmful prompts, safe answers; no harmful completion).

Here the data is refusal-sft's (refusals to harmful prompts, self-distilled benign anchors) and the training
settings are ``harden.lora`` / ``harden.train``, shared by every recipe, so a comparison isolates the perturbation;
the paper's own optimizer (LoRA r 8, alpha 4, lr 1e-3, 50 epochs, batch 5, cosine) is not applied. A step costs two
forward and backward passes; the cost meter counts one (``passes_per_step`` in the record says so). One process,
padded batches (the CPU fast path computes its loss elsewhere), no gradient checkpointing (its re-computation would
lose the first pass's activations).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ftrisk import distributed
from ftrisk.cost import CostMeter, count_params
from ftrisk.defenses.refusal_sft import RefusalSFT
from ftrisk.errors import FtriskError
from ftrisk.model.loading import write_adapter_meta
from ftrisk.training import checkpoint, data, loop, setup
from ftrisk.training.loss import ResponseLoss

#: The perturbation's L2 norm over every layer's attention output (the authors' ``--rho``, 2 in their scripts).
RHO = 2.0


def attention_modules(model) -> list:
    """Each decoder layer's attention module, whose output Vaccine perturbs (the authors take ``LlamaAttention``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [layer.self_attn for layer in base.get_decoder().layers]


def _first(out):
    return out[0] if isinstance(out, tuple) else out


class VaccineLoss(ResponseLoss):
    """The response loss of the batch with every attention output moved by Vaccine's perturbation."""

    def __init__(self, model, rho: float = RHO):
        super().__init__(model)
        self.rho = rho

    def forward(self, ids, mask, labels):
        modules = attention_modules(self.model)
        outputs: dict = {}

        def keep(module, args, out):
            outputs[module] = _first(out)

        loss = self._with_hooks(modules, keep, ids, mask, labels)
        wrt = [m for m in modules if m in outputs and outputs[m].requires_grad]
        grads = torch.autograd.grad(loss, [outputs[m] for m in wrt], allow_unused=True)  # no weight gradient
        pairs = [(m, g) for m, g in zip(wrt, grads) if g is not None]
        if not pairs:
            return super().forward(ids, mask, labels)
        norm = torch.norm(torch.stack([g.norm(p=2) for _, g in pairs]), p=2)
        shift = {m: (self.rho * g / (norm + 1e-7)).detach() for m, g in pairs}

        def perturb(module, args, out):
            if isinstance(out, tuple):
                return (out[0] + shift[module], *out[1:])
            return out + shift[module]

        return self._with_hooks(list(shift), perturb, ids, mask, labels)

    def _with_hooks(self, modules, hook, ids, mask, labels):
        handles = [m.register_forward_hook(hook) for m in modules]
        try:
            return super().forward(ids, mask, labels)
        finally:
            for h in handles:
                h.remove()


@dataclass
class Trained:
    """What the hardening stage reads of a training run."""

    subject: object
    steps: int
    planned_steps: int
    stopped_by: str
    cost: dict


class VaccineTrainer:
    """``harden.method`` (lora or full) with :class:`VaccineLoss`: :func:`ftrisk.training.recipe.finetune`'s set-up for
    one process and the shared fit loop (:func:`ftrisk.training.loop.fit`: metrics, checkpoints, budgets, resume)."""

    name = "vaccine"

    def __init__(self, harden_cfg, rho: float = RHO):
        self.cfg, self.rho, self.lora = harden_cfg, rho, harden_cfg.method == "lora"

    def run(self, subject, examples, out_dir: Path, *, seed: int, eval_at=(), usd_per_hour: float,
            desc: str = "harden") -> Trained:
        train_cfg = self.cfg.train
        acc = distributed.accelerator()
        if acc.num_processes > 1:
            raise FtriskError("harden.recipe=vaccine trains in one process: "
                              "run ftrisk harden without accelerate launch")
        if train_cfg.gradient_checkpointing:
            raise FtriskError("harden.recipe=vaccine needs harden.train.gradient_checkpointing=false (re-computed "
                              "activations would not carry the first pass's perturbation)")
        model, tok = subject.load()
        meter = CostMeter(device=str(model.device), usd_per_hour=usd_per_hour, params=count_params(model))
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)  # the LoRA weights' initial draw, then dropout's (as finetune)
        model = setup.trainable_model(model, self.cfg.lora if self.lora else None, train_cfg)
        loss_fn = VaccineLoss(model, self.rho)
        encoded = [data.encode(tok, ex, train_cfg.max_seq_len, subject.system_prompt) for ex in examples]
        schedule = data.schedule([len(e["input_ids"]) for e in encoded], train_cfg, seed)
        total = data.plan_steps(len(encoded), train_cfg)
        opt, sched = setup.optimizer(model, train_cfg, total_steps=total)
        step, cp = 0, checkpoint.latest(out_dir)
        if cp is not None:
            checkpoint.load_weights(model, cp, lora=self.lora)
            step = checkpoint.restore(acc, loss_fn, opt, sched, meter, cp)
        meter.devices = 1
        run = loop.Run(acc, model, loss_fn, opt, sched, encoded, schedule, total, tok.pad_token_id, packing=None)
        step, stopped_by = loop.fit(run, train_cfg, meter, out_dir, step, desc=desc)
        model.eval()

        def evaluable(m, folder: Path, state_dict=None):  # full fine-tuning: a model folder
            m.save_pretrained(folder, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
            tok.save_pretrained(folder)

        final = out_dir / ("adapter" if self.lora else "model")
        checkpoint.save_final(loss_fn, final, None if self.lora else evaluable)
        if self.lora:
            write_adapter_meta(final, subject.spec, subject.path)
        trained = subject.with_adapter(final) if self.lora else subject.with_weights(final)
        return Trained(trained, step, total, stopped_by, meter.summary())


class Vaccine(RefusalSFT):
    """refusal-sft's data, trained with Vaccine's perturbation-aware loss."""

    name = "vaccine"

    def identity(self) -> dict:
        return {"name": self.name, "rho": RHO, "perturbed": "attention outputs, one norm over all layers"}

    def trainer(self, harden_cfg):
        return VaccineTrainer(harden_cfg)

    def record(self, data_plan: dict) -> dict:
        return {"recipe_settings": {"rho": RHO, "perturbed": "attention outputs"}, "passes_per_step": 2}
