"""``--slot K/N``: this worker's share of the machine when N workers run on it. Training and generation do not adapt
to a busy core (a process that expects two cores and gets one can run many times slower, not twice), so each
worker pins itself to its own cores (``os.sched_setaffinity``), sets torch's threads to their number, and sees only
its own GPUs (``CUDA_VISIBLE_DEVICES``, set before CUDA starts)."""

from __future__ import annotations

import os

from ftrisk.errors import FtriskError


def parse(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), 1 <= K <= N; one line otherwise."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise FtriskError(f"--slot '{text}': expected K/N, e.g. 1/2 for the first of two workers") from None
    if not 1 <= k <= n:
        raise FtriskError(f"--slot '{text}': K must be between 1 and N")
    return k, n


def share(items: list, k: int, n: int) -> list:
    """The K-th of N contiguous, near-equal parts of ``items`` (never empty while len(items) >= n)."""
    lo, hi = (k - 1) * len(items) // n, k * len(items) // n
    return items[lo:hi] or items[(k - 1) % len(items) : (k - 1) % len(items) + 1]


def take(text: str) -> dict:
    """Apply slot ``text`` to this process (before torch or CUDA start work); returns what it took."""
    k, n = parse(text)
    took = {"slot": f"{k}/{n}"}
    if hasattr(os, "sched_setaffinity"):
        cores = share(sorted(os.sched_getaffinity(0)), k, n)
        os.sched_setaffinity(0, cores)
        took["cores"] = cores
        import torch  # noqa: PLC0415 -- after the affinity is set

        torch.set_num_threads(len(cores))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [g for g in visible.split(",") if g] if visible else _gpu_ids()
    if gpus:
        mine = share(gpus, k, n)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
        took["gpus"] = mine
    return took


def _gpu_ids() -> list[str]:
    try:
        import torch  # noqa: PLC0415

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # noqa: BLE001 -- no CUDA runtime: no GPUs to share
        return []
