"""Cost meter: wall time, device, tokens, FLOPs, steps, examples, peak memory and dollars (litgpt-style report).

Every attack family records its cost on one scale (device seconds, estimated FLOPs, dollars at
``cost.usd_per_hour``), so LoRA, full fine-tuning, refusal-direction ablation and prefilling compare.
FLOPs are the usual estimate (Kaplan et al. 2020): ``6 * N * tokens`` for training (forward and
backward), ``2 * N * tokens`` for forward-only work, with ``N`` the model's parameters (each stored
tensor once, so tied embeddings count once). For LoRA ``N`` is the *whole* model, not the adapter: the
forward and backward passes still run through every frozen weight (the frozen weights need no weight
gradients, so 6N is an upper estimate, about 4N is the floor); padding tokens are not counted.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from dataclasses import dataclass, field


def device_name(device: str) -> str:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"cpu: {cpu} ({torch.get_num_threads()} threads)"


def peak_memory_mb(device: str) -> float:
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kb / (2**20 if sys.platform == "darwin" else 2**10)


def count_params(model) -> int:
    """N of the FLOPs estimate: every parameter tensor once (tied weights once; a PEFT model's frozen base included,
    its adapter too, which is negligible)."""
    seen, n = set(), 0
    for p in model.parameters():  # parameters() yields a shared (tied) tensor once
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def zero_cost(usd_per_hour: float, device: str = "cpu") -> dict:
    """The cost of an attack that runs nothing before evaluation (prefilling): every count 0."""
    return {"wall_seconds": 0.0, "device": device_name(device), "devices": 1, "tokens": 0, "trained_tokens": 0,
            "tokens_per_second": None, "params": None, "flops": 0.0, "steps": 0, "examples": 0,
            "distinct_examples": 0, "peak_memory_mb": None, "usd_per_hour": usd_per_hour, "usd": 0.0}


@dataclass
class CostMeter:
    """Accumulates what a training run consumed. ``seconds`` counts only time between start() and stop()."""

    device: str = "cpu"
    usd_per_hour: float = 2.0  # per device
    devices: int = 1  # processes (GPUs) training together: each is paid for
    seconds: float = 0.0
    tokens: int = 0  # every non-padding token the model processed
    trained_tokens: int = 0  # tokens that carried loss (assistant tokens)
    steps: int = 0
    examples: int = 0  # examples seen, repeats counted
    seen: set = field(default_factory=set, repr=False)  # indices of the distinct examples seen
    params: int = 0  # N of the FLOPs estimate: the model's parameters (0: unknown, no FLOPs)
    flops_per_token: int = 6  # 6 for training (forward + backward), 2 for forward-only work
    forward_tokens: int = 0  # tokens of forward-only work (2N FLOPs each): a direction search, a validation pass
    _t0: float | None = field(default=None, repr=False)
    _peak_reset: bool = field(default=False, repr=False)

    def start(self) -> None:
        if not self._peak_reset and str(self.device).startswith("cuda"):
            import torch

            # the GPU peak counts from this run's first step (the loaded model included), not from whatever
            # ran earlier in the process; on CPU the peak resident memory is the process's, and says so
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        self._peak_reset = True
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self._t0 is not None:
            self.seconds += time.perf_counter() - self._t0
            self._t0 = None

    def elapsed(self) -> float:
        return self.seconds + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def add(self, tokens: int, trained_tokens: int, examples: int) -> None:
        self.tokens += tokens
        self.trained_tokens += trained_tokens
        self.examples += examples

    def see(self, indices) -> None:
        self.seen.update(int(i) for i in indices)

    def summary(self) -> dict:
        s = self.elapsed()
        return {
            "wall_seconds": round(s, 2),
            "device": device_name(self.device),
            "devices": self.devices,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "forward_tokens": self.forward_tokens,
            "tokens_per_second": round((self.tokens + self.forward_tokens) / s, 1) if s else None,
            "params": self.params or None,
            "flops": self.flops(),
            "steps": self.steps,
            "examples": self.examples,
            "distinct_examples": len(self.seen),
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "usd_per_hour": self.usd_per_hour,
            "usd": round(s / 3600 * self.usd_per_hour * self.devices, 4),
        }

    def flops(self) -> float | None:
        """Estimated floating-point operations so far (None when the model size is unknown)."""
        if not self.params:
            return None
        return float(self.flops_per_token * self.params * self.tokens + 2 * self.params * self.forward_tokens)

    def add_forward(self, tokens: int) -> None:
        """Forward-only tokens (2N FLOPs each): what a direction search or a validation pass reads."""
        self.forward_tokens += tokens

    def state(self) -> dict:
        out = {k: getattr(self, k) for k in ("tokens", "trained_tokens", "steps", "examples", "forward_tokens")}
        return {"seconds": self.elapsed(), **out, "seen": sorted(self.seen)}  # a running meter's time included

    def restore(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, set(v) if k == "seen" else v)
