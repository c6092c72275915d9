"""Cost meter: wall time, device, tokens, steps, examples, peak memory and dollars (litgpt-style report)."""

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
            "tokens_per_second": round(self.tokens / s, 1) if s else None,
            "steps": self.steps,
            "examples": self.examples,
            "distinct_examples": len(self.seen),
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "usd_per_hour": self.usd_per_hour,
            "usd": round(s / 3600 * self.usd_per_hour * self.devices, 4),
        }

    def state(self) -> dict:
        out = {k: getattr(self, k) for k in ("seconds", "tokens", "trained_tokens", "steps", "examples")}
        return {**out, "seen": sorted(self.seen)}

    def restore(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, set(v) if k == "seen" else v)
