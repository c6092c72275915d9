"""float32 linear layers through oneDNN on an x86-64 CPU that is not Intel's, for inference (the decode loop).

Why: torch's float32 ``linear`` on the CPU calls MKL's SGEMM, and MKL takes its AVX2 code path on a CPU that is
not Intel's; oneDNN (also inside torch) uses AVX-512 wherever the CPU has it. On an Intel CPU MKL takes its
AVX-512 path and was the faster of the two in the loop (2026-12-06, a 2-core Intel Xeon with AVX-512 and AMX, the
bench workload: 12.81 against 13.18 s, medians of 3 interleaved, replies identical; alone at 120 rows the two
within 0-8% of each other either way), so there torch's own ``linear`` stays (:func:`mkl_native`). Measured on a 2-core AMD EPYC (Zen 4,
2026-12-05) at SmolLM2-135M's decode shapes (576 -> 576 / 1,536, 1,536 -> 576): at 64 rows oneDNN with the
weight packed 204-219 GFLOP/s, with the plain weight 174-189, MKL 165-169; at 8 rows 114-158 packed against MKL's
70-81 (but 58 against 73 for 576 -> 192). The bench workload (120 prompts x 64 tokens) 21.4-23.9 s against
27.2-30.1 s with MKL (medians of 3 interleaved, two sets), replies identical. Still float32 throughout: oneDNN's
default math mode is strict (float32 products and float32 accumulation, no bfloat16 or TF32 rounding), so only
the order of float additions differs, as it does between batch shapes anyway. No library does this swap for us:
transformers calls ``nn.Linear``, and inductor's packed float32 path calls MKL again (``mkl._mkl_linear``).

Only for inference: oneDNN's op has no autograd, so a call that needs gradients goes to ``nn.Linear``'s own forward.
"""

from __future__ import annotations

import contextlib
import functools
import platform

#: Use oneDNN for the float32 linears of the decode loop where it applies (:func:`applies`): "auto" on an x86-64 CPU
#: where MKL would take a slower path than its own (not Intel's, :func:`mkl_native`), True on any x86-64 CPU,
#: False never (torch's own ``linear``). The LM head's bfloat16 screen packs its weight for oneDNN unless False.
ONEDNN_LINEAR = "auto"
#: Fewer rows than this go to torch's own ``linear``: from 8 rows oneDNN is faster (above); an earlier session
#: measured MKL ahead at 1 row (31 against 20 GFLOP/s on the 576 x 576 product; not re-measured).
MIN_ROWS = 8
#: Packed weights may take this share of the free memory; above it oneDNN gets the plain weights (174-189 against
#: 204-219 GFLOP/s packed at 64 rows, still ahead of MKL's 165-169).
PACK_MEMORY_FRACTION = 0.25


@functools.cache
def _available() -> bool:
    import torch

    return (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


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


def _layers(model, skip=None) -> list:
    """The float32 CPU ``nn.Linear`` layers oneDNN takes: all but ``skip`` and those narrower than 16, and none that
    already has a forward of its own on the instance (a hook that accelerate put there, or an enclosing block's)."""
    import torch

    return [m for m in model.modules()
            if type(m) is torch.nn.Linear and m is not skip and m.weight.dtype == torch.float32
            and m.weight.device.type == "cpu" and min(m.in_features, m.out_features) >= 16 and "forward" not in m.__dict__]


def applies(model) -> bool:
    """float32 linear layers on an x86-64 CPU whose torch has oneDNN, and :data:`ONEDNN_LINEAR` True, or "auto" on a
    CPU where MKL is not native."""
    mode = _mode()
    return (mode is True or (mode == "auto" and not mkl_native())) and _eligible(model)


def _mode():
    if ONEDNN_LINEAR not in (True, False, "auto"):
        raise ValueError(f"cpu_linear.ONEDNN_LINEAR is {ONEDNN_LINEAR!r}: set True, False or 'auto'")
    return ONEDNN_LINEAR


def _eligible(model) -> bool:
    import torch

    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu" and p.dtype == torch.float32 and _available()


class PackedWeight:
    """A linear layer's weight for oneDNN, laid out once (``pack``) or as it is; :func:`linear` multiplies by it."""

    def __init__(self, weight, pack: bool = True):
        import torch

        self.data = torch.ops.mkldnn._reorder_linear_weight(weight) if pack else weight


def packed_weight(weight):
    """``weight`` packed for oneDNN on an x86-64 CPU whose torch has it, else ``weight`` itself. Measured for the
    screened LM head (SmolLM2's 49,152 x 576 in bfloat16): 2.4 instead of 5.1 ms at 8 rows, 9.2 instead of 11.9 ms
    at 64 (``F.linear`` lays the weight out again at every call); the same bits out."""
    if not (_mode() is not False and weight.device.type == "cpu" and _available()):
        return weight
    return PackedWeight(weight.detach())


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` for a weight from :func:`packed_weight` (either kind)."""
    import torch

    if not isinstance(weight, PackedWeight):
        return torch.nn.functional.linear(x, weight, bias)
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight.data, bias, "none", [], "")
    return y.view(*x.shape[:-1], y.shape[-1])


def _forward(m, weight: PackedWeight):
    import torch

    def forward(x):
        rows = x.numel() // x.shape[-1] if x.dim() else 0
        if (rows < MIN_ROWS or x.dtype != torch.float32 or x.device.type != "cpu"
                or (torch.is_grad_enabled() and (x.requires_grad or m.weight.requires_grad
                                                 or (m.bias is not None and m.bias.requires_grad)))):
            return torch.nn.functional.linear(x, m.weight, m.bias)
        return linear(x, weight, None if m.bias is None else m.bias.detach())
    return forward


@contextlib.contextmanager
def onednn_linears(model, skip=None, keep: dict | None = None):
    """Within the block, ``model``'s float32 ``nn.Linear`` layers (all but ``skip``: the LM head the decode loop
    computes itself) run through oneDNN where :func:`applies`, their weights packed on entry; torch's own forward
    again afterwards. The packed copies are dropped with the block, unless the caller passes ``keep`` (a dict,
    layer -> packed weight, of :class:`ftrisk.backends.decode.KernelCache`, which checks at every block that the
    weights did not change: a weight changed in place through ``.data``, as PEFT's merge does, leaves no version
    bump): packed weights found there are used, new ones put there. A nested block finds the layers taken and does
    nothing. Yields the number of layers taken."""
    layers = _layers(model, skip) if applies(model) else []
    if layers:
        from .decode import memory_budget

        todo = [m for m in layers if keep is None or m not in keep]
        pack = not todo or sum(m.weight.numel() * 4 for m in todo) <= memory_budget("cpu", PACK_MEMORY_FRACTION)
        for m in layers:
            w = keep.get(m) if keep is not None else None
            if w is None:
                w = PackedWeight(m.weight.detach(), pack)
                if keep is not None:
                    keep[m] = w
            m.__dict__["_ftrisk_onednn"] = w
            m.forward = _forward(m, w)
    try:
        yield len(layers)
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_ftrisk_onednn", None)


def describe(model) -> str:
    """For the generation record: which kernel the decode loop's float32 linears use."""
    if not applies(model):
        why = " on an Intel CPU: MKL" if ONEDNN_LINEAR == "auto" and mkl_native() and _eligible(model) else ""
        return f"torch (nn.Linear{why})"
    return f"oneDNN (float32, strict math; fewer than {MIN_ROWS} rows: torch's)"
