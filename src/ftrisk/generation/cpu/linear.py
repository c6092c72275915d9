"""float32 linear layers of the decode loop through a kernel with the weight laid out once, for inference: oneDNN
on an x86-64 CPU that is not Intel's, MKL's packed SGEMM on an Intel CPU.

Why: torch's float32 ``linear`` on the CPU calls MKL's SGEMM, and MKL takes its AVX2 code path on a CPU that is
not Intel's; oneDNN (also inside torch) uses AVX-512 wherever the CPU has it. On an Intel CPU MKL takes its
AVX-512 path and was the faster of the two in the loop (2026-12-06, a 2-core Intel Xeon with AVX-512 and AMX, the
bench workload: 12.81 against 13.18 s, medians of 3 interleaved, replies identical; alone at 120 rows the two
within 0-8% of each other either way). There MKL gets its weights packed once instead (:class:`MklPacked`,
``cblas_sgemm_pack`` / ``cblas_sgemm_compute`` through torch's ``mkl._mkl_linear``, the op inductor's freezing
uses): plain SGEMM lays the weight out again at every call, and with the decode loop's 424 MB of weights passing
through the caches between calls that costs more than the product's arithmetic at 120 rows (2026-12-06, fourth
session, same host: SmolLM2's 30 layers of decode products at 120 rows, cold weights, 76.7 against 92.7-96.5 ms a
step, 332 against 264-275 GFLOP/s; at 64 rows 52 against 65 ms). Measured on a 2-core AMD EPYC (Zen 4,
2026-12-05) at SmolLM2-135M's decode shapes (576 -> 576 / 1,536, 1,536 -> 576): at 64 rows oneDNN with the
weight packed 204-219 GFLOP/s, with the plain weight 174-189, MKL 165-169; at 8 rows 114-158 packed against MKL's
70-81 (but 58 against 73 for 576 -> 192). The bench workload (120 prompts x 64 tokens) 21.4-23.9 s against
27.2-30.1 s with MKL (medians of 3 interleaved, two sets), replies identical. Still float32 throughout: oneDNN's
default math mode is strict (float32 products and float32 accumulation, no bfloat16 or TF32 rounding), and MKL's
packed SGEMM is SGEMM, so only the order of float additions differs (at the packing's row count MKL's packed
products equaled its plain ones bitwise for 576 inputs and differed in the last bits for 1,536), as it does between
batch shapes anyway. No library does this swap for us: transformers calls ``nn.Linear``.

Only for inference: neither op has autograd, so a call that needs gradients goes to ``nn.Linear``'s own forward.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import threading

from ftrisk import memory
from ftrisk.generation.cpu import resources

#: Use oneDNN for the float32 linears of the decode loop where it applies (:func:`applies`): "auto" on an x86-64 CPU
#: where MKL would take a slower path than its own (not Intel's, :func:`mkl_native`), True on any x86-64 CPU,
#: False never (torch's own ``linear``). The LM head's bfloat16 screen packs its weight for oneDNN unless False.
ONEDNN_LINEAR = "auto"
#: Fewer rows than this go to torch's own ``linear``: from 8 rows oneDNN is faster (above); an earlier session
#: measured MKL ahead at 1 row (31 against 20 GFLOP/s on the 576 x 576 product; not re-measured).
MIN_ROWS = 8
#: Packed weights may take this share of the free memory; above it oneDNN gets the plain weights (174-189 against
#: 204-219 GFLOP/s packed at 64 rows, still ahead of MKL's 165-169), and MKL keeps torch's own linear.
PACK_MEMORY_FRACTION = 0.25
#: On an Intel CPU under "auto": the decode loop's one-token steps through MKL with packed weights (:class:`MklPacked`);
#: False: torch's own ``linear`` there.
MKL_PACKED = True
#: An MKL packing serves calls of its own row count (torch's ``mkl._mkl_linear`` checks it); calls with fewer rows,
#: down to this share of it, are padded up to it (rows that finished leave the decode batch a few at a time), fewer
#: go to torch's own linear, and more pack again (~0.1 s for SmolLM2's 210 layers, about one decode step). A packing
#: never shrinks: torch allocates ~4x the weight's size for each (MKL's worst-case size) and touches about 1x, so
#: each packing freed leaves memory for other allocations to grow into (:func:`ftrisk.memory.release_freed_memory`).
MKL_PAD_FRACTION = 0.75


@functools.cache
def _available() -> bool:
    import torch

    return (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


@functools.cache
def _mkl_available() -> bool:
    import torch

    return (torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")
            and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight"))


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


def kind(model) -> str | None:
    """Which kernel the decode loop's float32 linears take: "onednn" on an x86-64 CPU whose torch has oneDNN, where
    :data:`ONEDNN_LINEAR` is True, or "auto" and MKL is not native; "mkl" (packed) under "auto" on an Intel CPU where
    :data:`MKL_PACKED`; None: torch's own ``linear``."""
    mode = _mode()
    if not _eligible(model):
        return None
    if mode is True or (mode == "auto" and not mkl_native()):
        return "onednn"
    return "mkl" if mode == "auto" and MKL_PACKED and _mkl_available() else None


def applies(model) -> bool:
    """Whether ftrisk swaps the decode loop's float32 linears (:func:`kind`)."""
    return kind(model) is not None


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

    def nbytes(self) -> int:
        """Memory of its own (an unpacked weight is the layer's)."""
        return self.data.numel() * self.data.element_size() if self.data.is_mkldnn else 0


class MklPacked:
    """A linear layer's weight packed for MKL's SGEMM, for the largest row count seen (:data:`MKL_PAD_FRACTION`)."""

    def __init__(self, weight):
        self.weight, self.rows, self.data = weight, 0, None

    def nbytes(self) -> int:
        return 0 if self.data is None else self.weight.numel() * self.weight.element_size()

    def __call__(self, x2, bias=None):
        """``x2 @ weight.T + bias`` for ``x2`` [rows, in]: at the packing's row count, through a padded copy of
        ``x2`` below it (each output row depends on its own input row only: the pad rows' values do not matter)."""
        import torch

        rows = x2.shape[0]
        if rows > self.rows:  # more rows than packed for: packed again, for them
            self.data = None  # the old packing goes before the new one comes
            self.data, self.rows = torch.ops.mkl._mkl_reorder_linear_weight(self.weight, rows), rows
        elif rows < self.rows * MKL_PAD_FRACTION:  # far fewer: torch's own linear
            return torch.nn.functional.linear(x2, self.weight, bias)
        if rows < self.rows:
            pad = _pad_buffer(self.rows, x2.shape[1], x2.dtype, threading.get_ident())
            pad[:rows].copy_(x2)
            x2 = pad
        return torch.ops.mkl._mkl_linear(x2, self.data, self.weight, bias, self.rows)[:rows]


@functools.lru_cache(maxsize=8)
def _pad_buffer(rows: int, width: int, dtype, thread: int):
    """One input buffer per shape and thread, shared by the layers (each call copies into it right before its product;
    the product's output is a new tensor). Made outside inference mode: a normal tensor may be written inside it, an
    inference tensor not outside it."""
    import torch

    with torch.inference_mode(False):
        return torch.zeros(rows, width, dtype=dtype)


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


def _forward(m, weight):
    import torch

    mkl = isinstance(weight, MklPacked)

    def forward(x):
        rows = x.numel() // x.shape[-1] if x.dim() else 0
        if (rows < MIN_ROWS or x.dtype != torch.float32 or x.device.type != "cpu"
                or (mkl and not (x.dim() == 3 and x.shape[1] == 1))  # MKL: one-token decode steps only
                or (torch.is_grad_enabled() and (x.requires_grad or m.weight.requires_grad
                                                 or (m.bias is not None and m.bias.requires_grad)))):
            return torch.nn.functional.linear(x, m.weight, m.bias)
        bias = None if m.bias is None else m.bias.detach()
        if mkl:
            y = weight(x.reshape(rows, x.shape[-1]), bias)
            return y.view(*x.shape[:-1], y.shape[-1])
        return linear(x, weight, bias)
    return forward


@contextlib.contextmanager
def onednn_linears(model, skip=None, keep: dict | None = None):
    """Within the block, ``model``'s float32 ``nn.Linear`` layers (all but ``skip``: the LM head the decode loop
    computes itself) run through oneDNN where :func:`kind` says so, their weights packed on entry, or through MKL
    with weights packed at the first decode step (:class:`MklPacked`); torch's own forward again afterwards. The
    packed copies are dropped with the block, unless the caller passes ``keep`` (a dict,
    layer -> packed weight, of :class:`ftrisk.generation.cpu.decode.KernelCache`, which checks at every block that the
    weights did not change: a weight changed in place through ``.data``, as PEFT's merge does, leaves no version
    bump): packed weights found there are used, new ones put there. A nested block finds the layers taken and does
    nothing. Yields the number of layers taken."""
    how = kind(model)
    layers = _layers(model, skip) if how else []
    if layers:
        todo = [m for m in layers if keep is None or m not in keep]
        pack = _packing_fits(todo)
        if how == "mkl" and not pack:  # MKL without packing is torch's own linear
            layers = []
        for m in layers:
            w = keep.get(m) if keep is not None else None
            if w is None:
                w = MklPacked(m.weight.detach()) if how == "mkl" else PackedWeight(m.weight.detach(), pack)
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
        if how == "mkl" and layers and keep is None:  # the packings go with the block
            memory.release_freed_memory()


def _packing_fits(layers) -> bool:
    """Whether packed copies of ``layers``' weights fit in :data:`PACK_MEMORY_FRACTION` of the free memory."""

    return not layers or sum(m.weight.numel() * 4 for m in layers) <= resources.memory_budget("cpu", PACK_MEMORY_FRACTION)


def describe(model, skip=None, keep: dict | None = None) -> str:
    """For the generation record: which kernel the decode loop's float32 linears (all but ``skip``; packings already
    in ``keep`` count as made) use, as :func:`onednn_linears` would decide now (it asks the free memory again)."""
    how = kind(model)
    layers = _layers(model, skip)
    kept = [keep[m] for m in layers if keep is not None and m in keep]
    fits = how is None or (_packing_fits([m for m in layers if keep is None or m not in keep])
                           and all(isinstance(w, MklPacked) or w.nbytes() for w in kept))  # kept plain: not packed
    if how == "mkl":
        if not fits:
            return "torch (nn.Linear on an Intel CPU: MKL; too little free memory to pack its weights)"
        return (f"MKL SGEMM, weights packed (float32; an Intel CPU; prefill and fewer than {MIN_ROWS} rows: "
                "torch's)")
    if how == "onednn" and not fits:
        return (f"oneDNN, weights not packed (float32, strict math; too little free memory; fewer than {MIN_ROWS} "
                "rows: torch's)")
    if how is None:
        why = " on an Intel CPU: MKL" if ONEDNN_LINEAR == "auto" and mkl_native() and _eligible(model) else ""
        return f"torch (nn.Linear{why})"
    return f"oneDNN (float32, strict math; fewer than {MIN_ROWS} rows: torch's)"
