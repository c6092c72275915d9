"""What a bench number was measured on and with: wall time, peak resident memory (Linux /proc), the machine
(CPU, cores, versions, date) and its load."""

from __future__ import annotations

import os
import platform
import time
from datetime import date
from pathlib import Path

from ftrisk.generation.cpu.resources import physical_cores


def time_calls(fn, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset the peak resident memory (VmHWM) to the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float | None:
    """The peak resident memory in MB; None off Linux."""
    try:
        return status_kb("VmHWM") / 1024
    except (OSError, KeyError):
        return None


def extra_peak_mb(fn):
    """Run ``fn``; returns (its result, the peak resident memory it added in MB). Linux only."""
    before = status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    result = fn()
    return result, (status_kb("VmHWM") - before) / 1024


def timed_side(fn) -> tuple[object, float, float | None]:
    """(result, seconds, peak RSS MB during fn or None)."""
    reset = reset_peak()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    return result, seconds, (peak_mb() if reset else None)


def machine() -> dict:
    """What the numbers were measured on: CPU model and cores, versions, date, load."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"date": date.today().isoformat(), "cpu": cpu, "physical_cores": physical_cores(),
           "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
           "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import ctranslate2

        out["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        pass
    return out


def load() -> list[float] | None:
    """The load averages (1, 5, 15 min); None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def largest(xs):
    """The largest of the values that are not None; None if there is none."""
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None
