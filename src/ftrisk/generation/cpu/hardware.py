"""What this CPU and this torch offer the decode kernels: the CPU's vendor and flags, native bfloat16 products,
and torch's oneDNN and MKL linear ops."""

from __future__ import annotations

import functools
import platform


@functools.cache
def cpu_info() -> tuple[str, frozenset]:
    """(vendor, flags) of this CPU from ``/proc/cpuinfo``; ("", empty) where it cannot be read."""
    vendor, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if vendor and flags:
                    break
    except OSError:
        pass
    return vendor, flags


def mkl_native() -> bool:
    """True on an Intel CPU, where MKL's SGEMM takes its own fastest code path (AVX-512 where there is one)."""
    return cpu_info()[0] == "GenuineIntel"


def fast_bf16_cpu() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): without it oneDNN emulates bfloat16
    and the LM head's bfloat16 screen would cost more than it saves."""
    flags = cpu_info()[1]
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def onednn_available() -> bool:
    """An x86-64 CPU and a torch with oneDNN's linear ops (the packed-weight reorder and the product)."""
    import torch

    return (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


@functools.cache
def mkl_available() -> bool:
    """A torch with MKL's packed-SGEMM linear ops (the ones inductor's freezing uses)."""
    import torch

    return (torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
            and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight"))
