"""``ftrisk bench [generation|ceiling|training|training-rows|planner] [--model SPEC] [--out FILE.json]``: ftrisk's
way of doing a workload against the way peers do it, timed in the same run (default: generation).

Machines here are noisy (other processes share the cores), so no absolute target is asserted anywhere: each
workload runs its baseline and ftrisk's way interleaved (``--repeats`` times, alternating which goes first) and
reports medians and their ratio, the peak resident memory of each side, and the machine load around it.

- ``generation``: :mod:`ftrisk.bench.generation`; ``ceiling``: :mod:`ftrisk.bench.ceiling`;
- ``training``: ftrisk's training loop against PEFT + the HF Trainer (and TRL), :mod:`ftrisk.bench.training`;
- ``training-rows``: the older single-question rows, :mod:`ftrisk.bench.training_rows`;
- ``planner``: the planner's predicted seconds against measured ones, :mod:`ftrisk.bench.planner`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftrisk.errors import FtriskError
from ftrisk.formatting import pct

WORKLOADS = ("generation", "ceiling", "training", "training-rows", "planner")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``bench``'s parser to ``sub`` (argparse subparsers) and return it."""
    b = sub.add_parser("bench", help="speed/memory benchmark: ratios against a baseline measured in the same run")
    b.add_argument("workload", nargs="?", default="generation", choices=list(WORKLOADS),
                   help="what to time (default: %(default)s)")
    b.add_argument("--model", default=None, help="model spec (default: the embedded model)")
    b.add_argument("--backend", default=None, help="time this generation backend instead of the default (e.g. ctranslate2)")
    b.add_argument("--repeats", type=int, default=None,
                   help="interleaved repeats per side, medians reported (generation/ceiling: 1; training: 3 rounds, "
                        "round r at seed r)")
    b.add_argument("--out", default=None, help="write the numbers as JSON here")
    return b


def _mb(x) -> str:
    return "n/a" if x is None else f"{x:.0f} MB"


def print_generation(row: dict) -> None:
    print(f"generation: {row['what']}")
    print(f"  baseline {row['baseline_tok_s']:.1f} tok/s ({row['baseline_s']:.1f}s), "
          f"ftrisk {row['ftrisk_tok_s']:.1f} tok/s ({row['ftrisk_s']:.1f}s), ratio x{row['ratio']:.2f}")
    print(f"  label agreement ({row['headline_judge']}) {pct(row['label_agreement'])}, identical replies "
          f"{pct(row['identical_replies'])}, refusal rate baseline {pct(row['baseline_refusal_rate'])} "
          f"ftrisk {pct(row['ftrisk_refusal_rate'])}")
    print(f"  peak RSS baseline {_mb(row['baseline_peak_rss_mb'])}, ftrisk {_mb(row['ftrisk_peak_rss_mb'])} (of which "
          f"{_mb(row.get('ftrisk_held_mb'))} kept between calls); load {row['load_before']} -> {row['load_after']}")
    for d in row.get("differences", []):
        print(f"  differs {d['id']}: token {d['first_diff_token']} {d['baseline_token']!r} vs {d['ftrisk_token']!r}, "
              f"alone picks {d['alone_picks']} (logit gap {d['logit_gap_alone']:+.4f}), labels {d['labels']}")


def print_ceiling(row: dict) -> None:
    print(f"ceiling: matmul {row['achievable_gflops']:.1f} GFLOP/s achievable "
          f"(before {row['matmul_before']}, after {row['matmul_after']}); {row['flop_params'] / 1e6:.1f}M params "
          f"per token = {row['gflop_per_token']:.3f} GFLOP/token, ceiling {row['ceiling_tok_s']:.0f} tok/s")
    print(f"  baseline {row['baseline_gflops']:.1f} GFLOP/s ({row['baseline_pct_of_ceiling']:.1f}% of ceiling), "
          f"ftrisk {row['ftrisk_gflops']:.1f} GFLOP/s ({row['ftrisk_pct_of_ceiling']:.1f}%)")


def print_training(row: dict, methods) -> None:
    print(f"training: {row['workload']}: baseline {row['baseline_tok_s']} tok/s, ftrisk {row['ftrisk_tok_s']} tok/s, "
          f"ratio x{row['ratio']:.2f}, peak RSS {_mb(row.get('peak_rss_mb'))}")
    for m in methods:
        if m in row:
            r = row[m]
            print(f"  {m}: {r['tok_s']} tok/s, {r['gflop_s']} GFLOP/s, loss of the last 5 steps {r['final_loss']}, "
                  f"loss over all attack data after training {r['data_loss']} (seeds: {r['data_loss_by_seed']}), "
                  f"peak RSS {_mb(r['peak_rss_mb'])}")
    d = row["loss"]
    verdict = {True: "the same within noise", False: "NOT the same within noise", None: "noise not estimated"}
    print(f"  loss, ftrisk minus baseline: {d['difference']:+.4f} (standard error {d['standard_error']}): "
          f"{verdict[d['within_noise']]}; schedule: {row['schedule']}")


def print_planner(row: dict) -> None:
    s, g, t = row["device_spec"], row["generation"], row["training"]
    gen_gflops = (s.get("generation_fp32_tflops") or s["fp32_tflops"]) * 1e3
    print(f"planner: {row['what']}")
    print(f"  {s['name']}: {s['fp32_tflops'] * 1e3:.1f} GFLOP/s fp32 matmul ({gen_gflops:.1f} in the decode loop's "
          f"kernel), {s['bandwidth_gbs']:.1f} GB/s, {row['threads']} threads; load {row['load_before']} -> "
          f"{row['load_after']}")
    print(f"  generation ({g['prompts']} prompts, {g['prompt_tokens_mean']:.1f} tokens of which {g['shared_tokens']} "
          f"shared, {g['new_tokens']} new): predicted {g['predicted_s']:.2f}s, measured {g['measured_s']:.2f}s, "
          f"ratio x{g['ratio']:.2f} (prefill {g['predicted_prefill_s']:.2f}s vs {g['measured_prefill_s']:.2f}s, "
          f"x{g['prefill_ratio']:.2f}); from the planner's estimates {g['planned_s']:.2f}s, x{g['planned_ratio']:.2f}")
    print(f"  attack step (batch {t['batch_size']}, {t['steps_timed']} timed): predicted {t['predicted_s_per_step']:.2f}s, "
          f"measured {t['measured_s_per_step']:.2f}s, ratio x{t['ratio']:.2f}")


def main(args) -> int:
    """Run the workload, print its table, write ``--out``."""
    # the workloads load the model stack (and torch): imported when one runs, so `ftrisk --help` stays fast
    from ftrisk.bench import (
        ceiling,
        generation,
        machine,
        planner,
        training,
        training_rows,
    )
    from ftrisk.model.loading import DEFAULT_SPEC

    spec = getattr(args, "model", None) or DEFAULT_SPEC
    workload = getattr(args, "workload", None) or "generation"
    kwargs = {"spec": spec, "repeats": getattr(args, "repeats", None) or 1, "backend": getattr(args, "backend", None)}
    if workload == "generation":
        row = generation.bench_generation(**kwargs)
        print_generation(row)
    elif workload == "ceiling":
        row = ceiling.bench_ceiling(**kwargs)
        print_generation(row["generation"])
        print_ceiling(row)
    elif workload == "training":  # ftrisk's training loop vs the HF Trainer
        row = training.bench(spec, rounds=getattr(args, "repeats", None) or 3)
        print_training(row, training.METHODS)
    elif workload == "training-rows":
        row = training_rows.run_training(spec)
    elif workload == "planner":
        row = planner.bench_planner(spec, repeats=kwargs["repeats"])
        print_planner(row)
    else:
        raise FtriskError(f"unknown bench workload '{workload}' (known: {', '.join(WORKLOADS)})")
    row["machine"] = machine.machine()
    if getattr(args, "out", None):
        Path(args.out).write_text(json.dumps(row, indent=2))
    return 0
