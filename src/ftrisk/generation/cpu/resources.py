"""What one generation batch may take: memory (KV cache and activations against the free memory) and CPU
threads (the cores other processes leave free)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Optional

from ftrisk.generation.cpu import key_blocks


# --------------------------------------------------------------------------- batches sized by memory

def kv_bytes_per_token(model) -> int:
    """Bytes of KV cache one token of one row holds (all layers, keys and values)."""
    c = model.config
    c = getattr(c, "text_config", None) or c
    heads = getattr(c, "num_attention_heads", 1)
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    itemsize = next(model.parameters()).element_size() if model.dtype.is_floating_point else 2
    return 2 * c.num_hidden_layers * kv_heads * head_dim * max(itemsize, 2)


def row_bytes(model, prompt_tokens: int, max_new_tokens: int) -> int:
    """Peak memory one row adds to a batch: its KV cache at full length, the prefill activations of its prompt
    (hidden states and the MLP's intermediate, a few live at once) and one row of float32 logits."""
    c = getattr(model.config, "text_config", None) or model.config
    itemsize = next(model.parameters()).element_size()
    inter = getattr(c, "intermediate_size", 4 * c.hidden_size)
    act = prompt_tokens * (4 * c.hidden_size + 3 * inter) * itemsize
    # blocked keys: up to a block of rounding, the open block's slot and the shared prefix's gap (keys and values)
    blocks = 3 * key_blocks.KEY_BLOCK if key_blocks.blockable(model) and model.device.type == "cpu" else 0
    return kv_bytes_per_token(model) * (prompt_tokens + max_new_tokens + blocks) + act + 4 * c.vocab_size * 2


def memory_budget(device: str, fraction: float = 0.25) -> int:
    """Bytes a generation batch may use: a fraction of what is free now (CUDA: free device memory; CPU:
    MemAvailable), so that other processes on a shared machine keep theirs."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * fraction)
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 * fraction
    except OSError:
        pass
    return 2 << 30  # 2 GiB when the free memory cannot be read


# --------------------------------------------------------------------------- threads

def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads count once)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        return os.cpu_count() or 1
    cores, cpu, core = set(), None, None
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "processor":
                cpu = int(value)
            elif key == "physical id":
                core = (value.strip(),)
            elif key == "core id" and cpu in allowed:
                cores.add((core, value.strip()))
    except OSError:
        pass
    return len(cores) or len(allowed) or 1


class CpuShare:
    """The intra-op thread count for the next forward pass on the CPU: torch's count (at most the physical cores),
    less the cores other processes kept busy since the last call (``/proc/stat`` over this process's CPUs, minus
    this process's own CPU time). A product split over threads waits for its slowest one, so a thread that shares
    a core with another busy process stalls every step. The thread count does not change the numbers computed
    (identical logits at 1 and 2 threads)."""

    def __init__(self, most: Optional[int] = None):
        import torch

        self.most = max(1, min(most or torch.get_num_threads(), physical_cores()))
        try:
            self.cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:
            self.cpus = list(range(os.cpu_count() or 1))
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.current = 1  # until the first measurement: the choice that never stalls
        self.history: list[int] = []
        self._last = self._sample()

    def _sample(self):
        busy = None
        try:
            wanted = {f"cpu{c}" for c in self.cpus}
            busy = 0
            with open("/proc/stat") as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0] in wanted:  # user nice system idle iowait irq softirq steal
                        v = [int(x) for x in parts[1:9]]
                        busy += sum(v) - v[3] - v[4]
        except (OSError, ValueError):
            busy = None
        return time.monotonic(), busy, time.process_time()

    def __call__(self) -> int:
        if self.most == 1:
            return 1
        now = self._sample()
        (t0, b0, p0), (t1, b1, p1) = self._last, now
        if b0 is None or b1 is None:  # no /proc/stat: torch's count
            return self.most
        if t1 - t0 < 0.05:  # too short to tell at the kernel's 10 ms resolution: keep the last choice
            return self.current
        others = max(0.0, (b1 - b0) / self.tick - (p1 - p0)) / (t1 - t0)  # cores that others kept busy
        self._last = now
        self.current = max(1, min(self.most, int(len(self.cpus) - others + 0.3)))
        self.history.append(self.current)
        return self.current


@contextlib.contextmanager
def cpu_threads(threads: Optional[int]):
    """Run the block at ``threads`` intra-op threads (None: leave torch's setting), then restore it."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
