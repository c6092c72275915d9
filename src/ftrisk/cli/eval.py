"""``ftrisk eval refusal|capability``: evaluate one model (+ adapter) outside a run.

``refusal`` is the pipeline's evaluate stage (:func:`ftrisk.pipeline.evaluate.generate_stage` and
:func:`~ftrisk.pipeline.evaluate.judge_stage`) on one subject, into ``--out``; ``capability`` is
:mod:`ftrisk.cli.capability`.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ftrisk import config, keys, logs
from ftrisk.cli import capability
from ftrisk.errors import FtriskError
from ftrisk.io import write_json_atomic
from ftrisk.judges import split_specs
from ftrisk.model.loading import NoChatTemplateError
from ftrisk.model.subject import Subject
from ftrisk.provenance import record


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="evaluate one model")
    ev = p.add_subparsers(dest="what", required=True)
    r = ev.add_parser("refusal", help="refusal rates of one model (+ adapter)")
    r.add_argument("--model", required=True, help="HF dir, .gguf file or embedded:smollm2-135m-instruct")
    r.add_argument("--adapter", default=None, help="PEFT adapter directory")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--bench", help="registry names, comma-separated")
    g.add_argument("--prompts", help="CSV / JSONL / JSON prompt file")
    r.add_argument("--prompt-column", default=None)
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--max-new-tokens", type=int, default=64)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--judges", default="refusal-patterns",
                   help="judge specs, comma-separated; the first is the headline (default: %(default)s)")
    r.add_argument("--backend", default="hf", help="generation backend (default: %(default)s)")
    r.add_argument("--dtype", default="float32")
    r.add_argument("--device", default="auto")
    r.add_argument("--system-prompt", default=None)
    r.add_argument("--chat-template", default=None, metavar="TEMPLATE",
                   help="Jinja chat template to use when the tokenizer has none (as model.chat_template in a config)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true", help="replace completions of another model left in --out")
    c = ev.add_parser("capability", help="MMLU / HellaSwag accuracy through lm-evaluation-harness")
    capability.add_arguments(c)
    return p


def main(args: argparse.Namespace) -> int:
    if args.what == "capability":
        return capability.main(args)
    return refusal(args)


def refusal(args: argparse.Namespace) -> int:
    """Refusal rates of one subject: every input checked first, then the evaluate stage into ``--out``."""
    from ftrisk.pipeline import evaluate  # the pipeline loads when a command runs, not for --help

    if args.limit is not None and args.limit <= 0:
        raise FtriskError(f"--limit must be > 0 (got {args.limit})")
    if args.max_new_tokens <= 0 or args.batch_size <= 0:
        raise FtriskError("--max-new-tokens and --batch-size must be > 0")
    if args.bench:
        refs = [config.BenchmarkRef(n, args.limit) for n in args.bench.split(",") if n]
    else:
        refs = [config.BenchmarkRef(args.prompts, args.limit, args.prompt_column)]
    benches = [evaluate.select(ref, args.seed) for ref in refs]  # an unknown name or a bad file: said first
    cfg = config.from_dict({"eval": {"benchmarks": [vars(r) for r in refs], "judges": split_specs(args.judges)},
                            "generation": {"backend": args.backend, "max_new_tokens": args.max_new_tokens,
                                           "batch_size": args.batch_size},
                            "model": {"spec": args.model, "system_prompt": args.system_prompt, "dtype": args.dtype,
                                      "device": args.device, "chat_template": args.chat_template}})
    judges = evaluate.build_judges(cfg)
    harmful = {name: evaluate.is_harmful(ref) for (name, _), ref in zip(benches, refs)}
    subject = Subject.from_config(cfg.model).with_adapter(args.adapter)
    try:
        subject.load_tokenizer()  # no chat template: fail before anything is written
    except NoChatTemplateError as e:
        raise NoChatTemplateError(e.path, "pass --chat-template") from None
    out = Path(args.out)
    # completions in --out are reused only for the same subject, items and decoding settings
    old = keys.stage_state(out)
    if old is not None and old.get("key") != evaluate.stage_key(subject, benches, cfg.generation, judges):
        if not args.overwrite:
            raise FtriskError(f"output folder '{out}' holds completions of another model or settings: "
                              "pass --overwrite to replace them, or choose another --out")
        shutil.rmtree(out)
    try:
        _, backend = evaluate.generate_stage(out, subject, benches, cfg.generation, judges, "eval")
    finally:
        if out.is_dir():  # not when a failed first try left nothing
            logs.log_to(out)
    if backend is not None:
        backend.close()
    for j in judges:
        j.set_cache_dir(out / "judge-cache")
    res, agree = evaluate.judge_stage(out, judges, benches, harmful, "eval")
    write_json_atomic(out / "results.json", {
        "model": args.model, "adapter": args.adapter, "subject": subject.to_json(out), "benchmarks": res,
        "agreement": agree, "headline_judge": judges[0].name,
        "provenance": record(repr(vars(args)), seed=args.seed, judge=judges[0].name)})
    for name, b in res.items():
        print(f"{name}: refusal {b['refusal_rate']:.3f} {b['ci95']} n={b['n']} ({judges[0].name})")
    print(f"results: {out / 'results.json'}")
    return 0
