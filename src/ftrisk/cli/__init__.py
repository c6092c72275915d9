"""Command line: ``ftrisk run|harden|attack CONFIG [key=value ...]``, ``ftrisk eval refusal|capability``.

Every user error is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ftrisk.errors import FtriskError


def _config_parser(sub, name: str, help_: str, multi_process: bool = False):
    p = sub.add_parser(name, help=help_)
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. attack.lora.r=16")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder left by a different config")
    if multi_process:
        p.add_argument("--accelerate-config", metavar="NAME", default=None,
                       help="train the attack on several processes through accelerate launch: ddp, fsdp, "
                            "deepspeed-zero3 (packaged, after TRL's) or an accelerate YAML file; evaluation runs once")
        p.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="processes for --accelerate-config, one per GPU (default: every visible GPU)")
    return p


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ftrisk", description="How cheaply can a chat model's safety training be fine-tuned away?")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _config_parser(sub, "run", "base eval -> harden -> eval -> attack -> eval -> results.json + report.md", True)
    _config_parser(sub, "harden", "refusal-train the subject (cached)")
    _config_parser(sub, "attack", "LoRA attack on the (hardened) subject", True)
    a = sub.add_parser("accelerate-config", help="path of a packaged accelerate launch config (for accelerate launch "
                                                  "--config_file ... -m ftrisk.cli attack CONFIG)")
    from ftrisk.distributed import CONFIGS

    a.add_argument("name", choices=CONFIGS)
    sub.add_parser("benchmarks", help="list the registered prompt sets")
    sub.add_parser("judges", help="list the registered judges")
    from ftrisk.cli.judge import add_arguments as judge_arguments

    judge_arguments(sub.add_parser("judge", help="judge a JSONL of {id, prompt, completion} with several judges"))
    from ftrisk.cli.plan import add_arguments as plan_arguments

    plan_arguments(sub.add_parser("plan", help="memory, devices, hours and $ of an attack and its evaluations"))
    from ftrisk.report.compare import add_compare_arguments, add_report_arguments

    add_report_arguments(sub.add_parser("report", help="rebuild report.md and report.html of a run from its results.json"))
    add_compare_arguments(sub.add_parser("compare", help="compare finished runs, one row per run; --html overlays curves"))
    b = sub.add_parser("bench", help="speed/memory benchmark: ratios against a baseline measured in the same run")
    b.add_argument("workload", nargs="?", default="generation",
                   choices=["generation", "ceiling", "training", "training-rows"], help="what to time (default: %(default)s)")
    b.add_argument("--model", default=None, help="model spec (default: the embedded model)")
    b.add_argument("--backend", default=None, help="time this generation backend instead of the default (e.g. ctranslate2)")
    b.add_argument("--repeats", type=int, default=None,
                   help="interleaved repeats per side, medians reported (generation/ceiling: 1; training: 3 rounds, "
                        "round r at seed r)")
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
    r.add_argument("--judges", default="refusal-patterns",
                   help="judge specs, comma-separated; the first is the headline (default: %(default)s)")
    r.add_argument("--backend", default="hf", help="generation backend (default: %(default)s)")
    r.add_argument("--dtype", default="float32")
    r.add_argument("--device", default="auto")
    r.add_argument("--system-prompt", default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--overwrite", action="store_true", help="replace completions of another model left in --out")
    c = ev.add_parser("capability", help="MMLU / HellaSwag accuracy through lm-evaluation-harness")
    try:
        from ftrisk.capability.run import add_arguments

        add_arguments(c)
    except ImportError:  # pragma: no cover - capability extra missing
        pass
    return ap


def _run_stage(args) -> int:
    from ftrisk import distributed
    from ftrisk.config import schema as config
    from ftrisk.pipeline import run as pipeline

    if distributed.launched():
        return _attack_process(args)
    cfg = config.load(args.config, args.overrides)
    if getattr(args, "accelerate_config", None):
        # this process checks everything, claims the output folder and hardens; the attack trains on N processes
        # (accelerate launch); then the attack stages are done and evaluation below runs here, once
        argv = ["-v"] * args.verbose + ["attack", args.config, *args.overrides]
        launch = distributed.launch_command(args.accelerate_config, args.num_processes, argv)
        exp = pipeline.Experiment(cfg, overwrite=args.overwrite)
        exp.harden()
        code = distributed.run_launch(*launch)
        if code:
            return code
        args.overwrite = False
    if args.cmd == "run":
        from ftrisk.plan.planner import verdict_line

        results = pipeline.run(cfg, overwrite=args.overwrite,  # the plan's verdict: checked inputs, before any work
                               on_ready=lambda c: print(verdict_line(c), file=sys.stderr, flush=True))
        from ftrisk.report.markdown import cost_lines, refusal_table

        print(results["summary"]["headline"] + "\n")
        print("\n".join(refusal_table(results) + [""] + cost_lines(results)))
        print(f"\nresults: {cfg.out / 'results.json'}\nreport:  {cfg.out / 'report.md'}, {cfg.out / 'report.html'}")
        return 0
    exp = pipeline.Experiment(cfg, overwrite=args.overwrite)
    subject = exp.harden()
    if args.cmd == "harden":
        print(f"hardened model: {subject.path}")
        return 0
    for seed in exp.seeds:
        res = exp.attack(subject, seed)
        where = res.subject.adapter or res.subject.path
        print(f"attack (seed {seed}): {where} ({res.steps} steps, stopped by {res.stopped_by}, "
              f"{res.cost['wall_seconds'] / 60:.1f} min, ${res.cost['usd']:.4f}; "
              f"evaluable points at steps {', '.join(str(p.step) for p in res.points)})")
    return 0


def _attack_process(args) -> int:
    """One of the N processes of ``accelerate launch ... -m ftrisk.cli attack CONFIG``: the attack stage only."""
    from ftrisk import distributed
    from ftrisk.config import schema as config
    from ftrisk.defenses import harden
    from ftrisk.model import loading as models
    from ftrisk.pipeline import run as pipeline

    if args.cmd != "attack":
        raise FtriskError(f"ftrisk {args.cmd} runs in one process, not under accelerate launch: "
                          f"use ftrisk {args.cmd} CONFIG --accelerate-config ddp --num-processes N"
                          + (" (the attack trains on N processes, evaluation runs once)" if args.cmd == "run" else ""))
    distributed.accelerator()  # checks the launch; each process gets its own GPU before a model loads
    cfg = config.load(args.config, args.overrides)
    with distributed.main_process_first():  # rank 0 checks and claims (or empties) the output folder first
        exp = pipeline.Experiment(cfg, overwrite=args.overwrite and distributed.is_main_process())
    subject = exp.subject
    if cfg.harden.enabled:
        key = harden.cache_key(cfg, exp.subject, exp.harden_plan, exp.filter_judge)
        if not (models.cache_dir() / "hardened" / key / ".complete").is_file():
            raise FtriskError("the hardened model is not built yet: run `ftrisk harden CONFIG` first (one process), "
                              "or `ftrisk attack CONFIG --accelerate-config NAME`, which does")
        subject = exp.harden()  # from the cache
    for seed in exp.seeds:
        res = exp.attack(subject, seed)
        if distributed.is_main_process():
            print(f"attack (seed {seed}): {res.subject.adapter or res.subject.path} ({res.steps} steps on "
                  f"{res.cost['devices']} processes, ${res.cost['usd']:.4f})")
    return 0


def _eval_refusal(args) -> int:
    import shutil
    from pathlib import Path

    from ftrisk import keys
    from ftrisk.config import schema as config
    from ftrisk.pipeline import evaluate
    from ftrisk.generation import open_backend
    from ftrisk.io import write_json_atomic
    from ftrisk.judges import split_specs
    from ftrisk.pipeline.run import build_judges
    from ftrisk.provenance import record
    from ftrisk.model.subject import Subject

    if args.limit is not None and args.limit <= 0:
        raise FtriskError(f"--limit must be > 0 (got {args.limit})")
    if args.max_new_tokens <= 0 or args.batch_size <= 0:
        raise FtriskError("--max-new-tokens and --batch-size must be > 0")
    if args.bench:
        refs = [config.BenchmarkRef(n, args.limit) for n in args.bench.split(",") if n]
    else:
        refs = [config.BenchmarkRef(args.prompts, args.limit, args.prompt_column)]
    cfg = config.from_dict({"eval": {"benchmarks": [vars(r) for r in refs], "judges": split_specs(args.judges)},
                            "generation": {"backend": args.backend, "max_new_tokens": args.max_new_tokens,
                                           "batch_size": args.batch_size},
                            "model": {"spec": args.model, "system_prompt": args.system_prompt, "dtype": args.dtype,
                                      "device": args.device}})
    judges = build_judges(cfg)
    benches = [evaluate.select(ref, args.seed) for ref in refs]
    harmful = {name: evaluate.is_harmful(ref) for (name, _), ref in zip(benches, refs)}
    subject = Subject.from_config(cfg.model).with_adapter(args.adapter)
    subject.load_tokenizer()  # no chat template: fail before anything is written
    out = Path(args.out)
    # completions in --out are reused only for the same subject, items and decoding settings
    stop = evaluate.stop_chars(cfg.generation, judges)
    key = evaluate.generation_key(subject, benches, cfg.generation, stop)
    old = keys.stage_state(out)
    if old is not None and old.get("key") != key:
        if not args.overwrite:
            raise FtriskError(f"output folder '{out}' holds completions of another model or settings: "
                              "pass --overwrite to replace them, or choose another --out")
        shutil.rmtree(out)
    if keys.open_stage(out, key) is None:  # (claims the folder)
        backend = open_backend(cfg.generation.backend, subject, cfg.generation)
        evaluate.generate_all(backend, benches, out, cfg.generation, "eval", stop)
        backend.close()
        keys.close_stage(out, key, {"generation": json_or_none(out / "generation.json")})
    for j in judges:
        j.set_cache_dir(out / "judge-cache")
    rows = evaluate.read_completions(benches, out)
    res, agree = evaluate.run_judges(judges, benches, rows, out, harmful, "eval")
    write_json_atomic(out / "results.json", {
        "model": args.model, "adapter": args.adapter, "subject": subject.to_json(out), "benchmarks": res,
        "agreement": agree, "headline_judge": judges[0].name,
        "provenance": record(repr(vars(args)), seed=args.seed, judge=judges[0].name)})
    for name, b in res.items():
        print(f"{name}: refusal {b['refusal_rate']:.3f} {b['ci95']} n={b['n']} ({judges[0].name})")
    print(f"results: {out / 'results.json'}")
    return 0


def json_or_none(path):
    from ftrisk.io import read_json

    return read_json(path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ftrisk import distributed

    quiet = not distributed.is_main_process()  # under accelerate launch rank 0 logs and shows progress
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
    level = logging.ERROR if quiet else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        if args.cmd in ("run", "harden", "attack"):
            return _run_stage(args)
        if args.cmd == "accelerate-config":
            print(distributed.config_path(args.name))
            return 0
        if args.cmd == "benchmarks":
            from ftrisk.prompts import benchmarks

            for n in benchmarks.names():
                print(f"{n:24s} {len(benchmarks.load(n)):4d}  {benchmarks.spec(n)['description']}")
            return 0
        if args.cmd == "judges":
            from ftrisk import registry

            for n in registry.names("judge"):
                cls = registry.lookup("judge", n)
                import textwrap

                doc = textwrap.shorten(" ".join((cls.__doc__ or "").split()), 90, placeholder=" ...")
                print(f"{n:22s} measures {cls.measures:12s} {doc}")
            return 0
        if args.cmd == "judge":
            from ftrisk.cli.judge import main as judge_main

            return judge_main(args)
        if args.cmd == "report":
            from ftrisk.report.compare import report_main

            return report_main(args)
        if args.cmd == "compare":
            from ftrisk.report.compare import compare_main

            return compare_main(args)
        if args.cmd == "plan":
            from ftrisk.cli.plan import main as plan_main

            return plan_main(args)
        if args.cmd == "bench":
            from ftrisk.bench.runner import main as bench_main

            return bench_main(args)
        if args.cmd == "eval" and args.what == "refusal":
            return _eval_refusal(args)
        if args.cmd == "eval" and args.what == "capability":
            from ftrisk.capability.run import main as cap_main

            return cap_main(args)
    except FtriskError as e:
        if not quiet:  # the same line from every process of a launch: rank 0 says it
            print(f"ftrisk: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftrisk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
