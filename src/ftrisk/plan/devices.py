"""The devices a plan runs on: gpus.yaml's entries, and this machine's CPU and CUDA device, measured."""

from __future__ import annotations

import os
import time
from importlib import resources

import yaml

from ftrisk.errors import FtriskError
from ftrisk.generation.cpu import hardware, onednn
from ftrisk.plan.shape import GIB


def load_gpus() -> dict[str, dict]:
    return yaml.safe_load(resources.files("ftrisk").joinpath("data", "gpus.yaml").read_text(encoding="utf-8"))


def median_rate(work: float, fn, bursts: int = 5, seconds: float = 0.1) -> float:
    """work / second of ``fn``: the median of short bursts (robust to a busy machine)."""
    rates = []
    for _ in range(bursts):
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            fn()
            k += 1
        rates.append(work * k / (time.perf_counter() - t0))
    return sorted(rates)[bursts // 2]


def measure_cpu_gflops(n: int = 1536) -> float:
    """fp32 matmul GFLOP/s at torch's current thread count (torch's ``matmul``: MKL's SGEMM)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return median_rate(2 * n**3 / 1e9, lambda: a @ b)


def measure_onednn_gflops(n: int = 1536) -> float | None:
    """fp32 GFLOP/s of the same product through oneDNN with the weight packed (the kernel the decode loop's linear
    layers take on an x86-64 CPU that is not Intel's), at torch's current thread count; None where torch has no
    oneDNN linear."""
    import torch

    if not hardware.onednn_available():
        return None
    a, w = torch.randn(n, n), onednn.packed_weight(torch.randn(n, n))
    return median_rate(2 * n**3 / 1e9, lambda: onednn.linear(a, w))


def measure_cpu_bandwidth(mib: int = 128) -> float:
    """Memory bandwidth in GB/s: a tensor copy (read + write)."""
    import torch

    x = torch.empty(mib * 2**18)
    y = torch.empty_like(x)
    return median_rate(2 * mib * 2**20 / 1e9, lambda: y.copy_(x))


def device_spec(name: str) -> dict:
    """A gpus.yaml entry; ``cpu`` is measured on this machine: memory, fp32 FLOP/s of torch's matmul (training,
    lm-eval) and of the faster of the two kernels the decode loop picks between (MKL, oneDNN packed), bandwidth."""
    gpus = load_gpus()
    if name not in gpus:
        raise FtriskError(f"unknown --gpu '{name}' (known: {', '.join(gpus)})")
    spec = dict(gpus[name], name=name)
    if name == "cpu":
        matmul = measure_cpu_gflops()
        spec.update(memory_gib=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
                    fp32_tflops=matmul / 1e3, generation_fp32_tflops=max(matmul, measure_onednn_gflops() or 0) / 1e3,
                    bandwidth_gbs=measure_cpu_bandwidth())
    return spec


def cuda_spec(device: str) -> dict:
    """The gpus.yaml entry matching the CUDA device's name (unknown: a100-80gb speeds), with its real memory."""
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    key = next((k for k, pat in (("h200", "H200"), ("h100-80gb", "H100"), ("a100-80gb", "A100"), ("l40s", "L40S"),
                                 ("rtx4090", "4090")) if pat in props.name.upper()), "a100-80gb")
    return dict(device_spec(key), memory_gib=props.total_memory / GIB)


def local_device(device: str) -> str:
    """A config's model.device as a gpus.yaml key: cpu, or "cuda" (auto: cuda when available)."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu" if device == "cpu" else "cuda"
