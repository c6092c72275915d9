"""``lora`` (the paper's attack: a LoRA adapter on the frozen subject) and ``full`` (every weight)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ftrisk import distributed
from ftrisk.attacks.base import Attack, AttackResult, Point
from ftrisk.cost import CostMeter, count_params
from ftrisk.io import write_json_atomic
from ftrisk.model.loading import write_adapter_meta
from ftrisk.training.recipe import finetune

log = logging.getLogger(__name__)


class FinetuneAttack(Attack):
    """A fine-tuning attack on :func:`ftrisk.training.recipe.finetune`: a LoRA adapter when ``lora``, else every
    weight; a point to evaluate at each step of ``eval_at``. A new method subclasses this (or :class:`Attack`) in a
    module of this package and adds one line to the registry (kind ``attack``)."""

    lora = True

    def run(self, subject, examples, out_dir, *, seed, eval_at, usd_per_hour, desc=None):
        model, tok = subject.load()
        meter = CostMeter(device=str(model.device), usd_per_hour=usd_per_hour, params=count_params(model))

        def evaluable(m, folder: Path, state_dict=None):  # a full checkpoint must load as a model folder
            m.save_pretrained(folder, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
            tok.save_pretrained(folder)

        final_dir = out_dir / ("adapter" if self.lora else "model")
        _, summary = finetune(model, tok, examples, self.cfg.lora if self.lora else None, self.cfg.train, out_dir,
                              seed=seed, system_prompt=subject.system_prompt, meter=meter, desc=desc or f"attack (seed {seed})",
                              save_at=eval_at, evaluable=None if self.lora else evaluable, final_dir=final_dir)
        # under accelerate launch every process returns the same result; rank 0 alone writes the files
        main = distributed.is_main_process()
        points = []
        with distributed.main_process_first():  # rank 0 writes the adapters' metadata, the others then read it
            for step in [s for s in eval_at if 0 < s < summary["steps"]]:
                folder = out_dir / f"checkpoint-{step}"
                state = json.loads((folder / "trainer_state.json").read_text())
                points.append(Point(step, state["cost"], self._point_subject(subject, folder, main)))
            final = self._point_subject(subject, final_dir, main)
        points.append(Point(summary["steps"], summary["cost"], final))
        if summary["stopped_by"] in ("max_steps", "max_minutes"):
            log.warning("attack stopped by its budget %s after %d steps", summary["stopped_by"], summary["steps"])
        result = AttackResult(self.name, seed, final, summary["cost"], points, summary["steps"], summary["planned_steps"],
                              summary["stopped_by"], {"n_examples": len(examples),
                                                      "truncated_examples": summary["truncated_examples"],
                                                      "metrics": "metrics.jsonl"})
        if main:
            write_json_atomic(out_dir / "attack.json", result.to_json(out_dir))
        return result

    def _point_subject(self, subject, folder: Path, write: bool = True):
        if self.lora:
            if write:
                write_adapter_meta(folder, subject.spec, subject.path)
            return subject.with_adapter(folder)
        return subject.with_weights(folder)


class LoraAttack(FinetuneAttack):
    """LoRA on every target module of the frozen subject (QLoRA when the subject is loaded in 4/8 bit)."""

    name = "lora"


class FullAttack(FinetuneAttack):
    """Every weight trained (needs unquantized weights; ~16 bytes per parameter with AdamW)."""

    name = "full"
    lora = False
