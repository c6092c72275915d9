"""Command line: ``ftrisk run|harden|attack CONFIG [key=value ...]``, ``ftrisk eval refusal|capability``.

Every user error is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .errors import FtriskError


def _config_parser(sub, name: str, help_: str):
    p = sub.add_parser(name, help=help_)
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. attack.lora.r=16")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder left by a different config")
    return p


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ftrisk", description="How cheaply can a chat model's safety training be fine-tuned away?")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _config_parser(sub, "run", "base eval -> harden -> eval -> attack -> eval -> results.json + report.md")
    _config_parser(sub, "harden", "refusal-train the subject (cached)")
    _config_parser(sub, "attack", "LoRA attack on the (hardened) subject")
    sub.add_parser("benchmarks", help="list the registered prompt sets")
    b = sub.add_parser("bench", help="speed/memory benchmark: ratios against a baseline measured in the same run")
    b.add_argument("--model", default=None, help="model spec (default: the embedded model)")
    b.add_argument("--out", default=None, help="write the numbers as JSON here")
    ev = sub.add_parser("eval", help="evaluate one model").add_subparsers(dest="what", required=True)
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
    r.add_argument("--judge", default="gcg", help="pattern lists, comma-separated")
    r.add_argument("--judge-mode", default="anywhere", choices=["anywhere", "start"])
    r.add_argument("--system-prompt", default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true", help="replace completions of another model left in --out")
    c = ev.add_parser("capability", help="MMLU / HellaSwag accuracy through lm-evaluation-harness")
    try:
        from .capability import add_arguments

        add_arguments(c)
    except ImportError:  # pragma: no cover - capability extra missing
        pass
    return ap


def _run_stage(args) -> int:
    from . import config, pipeline

    cfg = config.load(args.config, args.overrides)
    if args.cmd == "run":
        results = pipeline.run(cfg, overwrite=args.overwrite)
        from .report import cost_lines, refusal_table

        print("\n".join(refusal_table(results) + [""] + cost_lines(results)))
        print(f"\nresults: {cfg.out / 'results.json'}\nreport:  {cfg.out / 'report.md'}")
        return 0
    exp = pipeline.Experiment(cfg, overwrite=args.overwrite)
    subject = exp.harden()
    if args.cmd == "harden":
        print(f"hardened model: {subject}")
        return 0
    rec = exp.attack(subject)
    print(f"attack adapter: {rec['adapter']} ({rec['steps']} steps, stopped by {rec['stopped_by']}, "
          f"{rec['cost']['wall_seconds'] / 60:.1f} min, ${rec['cost']['usd']:.4f})")
    return 0


def _eval_refusal(args) -> int:
    import shutil
    from pathlib import Path

    from . import config, judges, models, refusal
    from .io import read_json, write_json_atomic
    from .provenance import record

    if args.limit is not None and args.limit <= 0:
        raise FtriskError(f"--limit must be > 0 (got {args.limit})")
    if args.max_new_tokens <= 0 or args.batch_size <= 0:
        raise FtriskError("--max-new-tokens and --batch-size must be > 0")
    judge = judges.PrefixJudge(args.judge.split(","), args.judge_mode)
    if args.bench:
        refs = [config.BenchmarkRef(n, args.limit) for n in args.bench.split(",") if n]
    else:
        refs = [config.BenchmarkRef(args.prompts, args.limit, args.prompt_column)]
    benches = [refusal.select(ref, args.seed) for ref in refs]
    out = Path(args.out)
    # completions in --out are reused only for the same model, adapter and decoding settings
    key = {"model": models.fingerprint(models.resolve(args.model)),
           "adapter": models.adapter_fingerprint(models.check_adapter(models.resolve(args.model), args.adapter))
           if args.adapter else None,
           "max_new_tokens": args.max_new_tokens, "system_prompt": args.system_prompt}
    old = read_json(out / "eval_key.json")
    if old is not None and old != key:
        if not args.overwrite:
            raise FtriskError(f"output folder '{out}' holds completions of another model or settings: "
                              "pass --overwrite to replace them, or choose another --out")
        shutil.rmtree(out)
    mcfg = config.ModelConfig(spec=args.model)
    model, tok = models.load(mcfg, adapter=args.adapter)
    gen = config.GenerationConfig(args.max_new_tokens, args.batch_size)
    write_json_atomic(out / "eval_key.json", key)
    res = refusal.evaluate(model, tok, benches, out, judge=judge, gen_cfg=gen, system_prompt=args.system_prompt)
    write_json_atomic(out / "results.json", {
        "model": args.model, "adapter": args.adapter, "benchmarks": res,
        "provenance": record(repr(vars(args)), seed=args.seed, judge=judge.name)})
    for name, b in res.items():
        print(f"{name}: refusal {b['refusal_rate']:.3f} {b['ci95']} n={b['n']}")
    print(f"results: {out / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        if args.cmd in ("run", "harden", "attack"):
            return _run_stage(args)
        if args.cmd == "benchmarks":
            from . import benchmarks

            for n in benchmarks.names():
                print(f"{n:16s} {len(benchmarks.load(n)):4d}  {benchmarks.spec(n)['description']}")
            return 0
        if args.cmd == "bench":
            from .bench import main as bench_main

            return bench_main(args)
        if args.cmd == "eval" and args.what == "refusal":
            return _eval_refusal(args)
        if args.cmd == "eval" and args.what == "capability":
            from .capability import main as cap_main

            return cap_main(args)
    except FtriskError as e:
        print(f"ftrisk: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftrisk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
