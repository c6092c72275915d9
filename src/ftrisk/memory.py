"""Memory the process holds but no longer uses, given back to the system."""

from __future__ import annotations


def release_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; nothing elsewhere).

    Why: glibc keeps freed heap memory resident for later allocations, and a run's stages allocate in different
    patterns (lm-eval's full logits, training's activations, the decode loop's packed weights and KV buffers), so
    what one stage freed stays resident beside what the next one touches. Called when packed weights are dropped:
    torch allocates ~4x the weight's size for each MKL packing and touches ~1x, and once freed those chunks go to
    other allocations, which touch the rest; and by ``ftrisk run`` at each stage's start."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
        if trim is not None:
            trim(0)
