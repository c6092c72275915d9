"""``ftrisk eval capability``: MMLU / HellaSwag accuracy of one model (+ adapter) through lm-evaluation-harness.

The eval command's module adds these flags with :func:`add_arguments` and runs :func:`main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ftrisk.capability import data
from ftrisk.capability.harness import evaluate
from ftrisk.capability.data import task_label
from ftrisk.report.capability import accuracy
from ftrisk.config.schema import CapabilityConfig, ModelConfig
from ftrisk.formatting import duration
from ftrisk.model import loading as models
from ftrisk.model.subject import Subject


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = CapabilityConfig()
    parser.add_argument("--model", default=models.DEFAULT_SPEC, help="model spec: HF dir, .gguf or embedded:NAME")
    parser.add_argument("--adapter", default=None, help="PEFT adapter directory trained on --model")
    parser.add_argument("--tasks", default=",".join(d.tasks),
                        help="comma-separated: mmlu, hellaswag, mmlu_<subject> (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=d.limit,
                        help="items per task (seeded; stratified by subject for MMLU); default: the full set")
    parser.add_argument("--num-fewshot", type=int, default=d.num_fewshot,
                        help="MMLU few-shot examples from its dev split, 0-5 (HellaSwag is 0-shot) (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="lm-eval batch size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="item-selection seed (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (default: %(default)s)")
    parser.add_argument("--quantize", default=None, choices=["4bit", "8bit"], help="k-bit loading (CUDA, bitsandbytes)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    parser.add_argument("--out", required=True, type=Path, help="output folder (capability.json, item ids, lm-eval logs)")


def main(args: argparse.Namespace) -> int:
    cfg = CapabilityConfig(enabled=True, tasks=data.parse_tasks(args.tasks), limit=args.limit,
                           num_fewshot=args.num_fewshot, batch_size=args.batch_size)
    mcfg = ModelConfig(spec=args.model, dtype=args.dtype, device=args.device, quantize=args.quantize,
                       trust_remote_code=args.trust_remote_code)
    subject = Subject.from_config(mcfg).with_adapter(args.adapter)
    res = evaluate(subject, cfg, args.out, seed=args.seed)
    for task, r in res.items():
        print(f"{task_label(task)} {r['num_fewshot']}-shot {r['metric']}: {accuracy(r)} n={r['n']} "
              f"({duration(r['seconds'])}, {r['items_per_s']:.2f} items/s)")
    print(f"wrote {Path(args.out) / 'capability.json'}")
    return 0
