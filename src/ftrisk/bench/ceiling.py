"""``ftrisk bench ceiling``: a torch float32 matrix product (achievable GFLOP/s here) and each side of
``generation`` as a share of it, at 2 x (parameters outside the input embedding, plus the LM head) FLOPs per
generated token."""

from __future__ import annotations

import statistics

from ftrisk.bench.generation import bench_generation
from ftrisk.generation.cpu.resources import physical_cores
from ftrisk.plan.devices import measure_cpu_gflops, measure_onednn_gflops


def matmul_gflops() -> dict:
    """Achievable float32 GFLOP/s here: a 1536-square matrix product at one thread and at all physical cores,
    through torch's ``matmul`` (MKL) and through oneDNN with a packed weight where torch has it (the decode loop's
    kernel on a CPU that is not Intel's: there MKL takes its AVX2 path and oneDNN's AVX-512 kernel is faster, so a
    ceiling from ``matmul`` alone would be below what the loop reaches); the best of them is the ceiling (on a
    shared machine one thread is often the faster)."""
    import torch

    before = torch.get_num_threads()
    out = {}
    try:
        for threads in sorted({1, physical_cores()}):
            torch.set_num_threads(threads)
            out[f"threads_{threads}"] = measure_cpu_gflops()
            onednn = measure_onednn_gflops()
            if onednn is not None:
                out[f"onednn_threads_{threads}"] = onednn
    finally:
        torch.set_num_threads(before)
    out["achievable"] = max(out.values())
    return out


def bench_ceiling(generation: dict | None = None, **generation_kwargs) -> dict:
    """The matmul ceiling, measured before and after the generation workload (run here unless given), and each
    side's GFLOP/s as a share of it."""
    mm_before = matmul_gflops()
    gen = generation if generation is not None else bench_generation(**generation_kwargs)
    mm_after = matmul_gflops()
    achievable = statistics.median([mm_before["achievable"], mm_after["achievable"]])
    gflop_per_token = 2 * gen["flop_params"] / 1e9
    b = gen["baseline_tok_s"] * gflop_per_token
    o = gen["ftrisk_tok_s"] * gflop_per_token
    return {"workload": "ceiling",
            "what": "float32 matmul GFLOP/s (1536-square, 1 thread and all cores, before and after) and each generation "
                    "side as a share of it, at 2 x flop_params FLOPs per generated token",
            "matmul_before": mm_before, "matmul_after": mm_after, "achievable_gflops": achievable,
            "flop_params": gen["flop_params"], "gflop_per_token": gflop_per_token,
            "ceiling_tok_s": achievable / gflop_per_token,
            "baseline_tok_s": gen["baseline_tok_s"], "ftrisk_tok_s": gen["ftrisk_tok_s"], "ratio": gen["ratio"],
            "baseline_gflops": b, "ftrisk_gflops": o,
            "baseline_pct_of_ceiling": 100 * b / achievable, "ftrisk_pct_of_ceiling": 100 * o / achievable,
            "peak_rss_mb": gen["peak_rss_mb"], "generation": gen}
