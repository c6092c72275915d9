"""The decode loop's float32 linear layers swapped, for one block, onto a kernel with the weight laid out once:
oneDNN (:mod:`.onednn`) on an x86-64 CPU that is not Intel's, MKL's packed SGEMM (:mod:`.mkl`) on an Intel one.

No library does this swap for us: transformers calls ``nn.Linear``. A call that needs gradients, a prefill on
MKL, or too few rows goes to ``nn.Linear``'s own forward.
"""

from __future__ import annotations

import contextlib

from ftrisk import memory
from ftrisk.generation.cpu import hardware, onednn, resources
from ftrisk.generation.cpu.mkl import MklPacked
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions

#: Fewer rows than this go to torch's own ``linear``: from 8 rows oneDNN is the faster.
MIN_ROWS = 8
#: Packed weights may take this share of the free memory; above it oneDNN gets the plain weights (still ahead of
#: MKL's AVX2 path), and MKL keeps torch's own linear.
PACK_MEMORY_FRACTION = 0.25
#: Set in a swapped layer's ``__dict__`` (with its ``forward``): the weight its forward multiplies by.
SWAP_MARK = "_ftrisk_onednn"


def layers(model, skip=None) -> list:
    """The float32 CPU ``nn.Linear`` layers oneDNN takes: all but ``skip`` and those narrower than 16, and none that
    already has a forward of its own on the instance (a hook that accelerate put there, or an enclosing block's)."""
    import torch

    return [m for m in model.modules()
            if type(m) is torch.nn.Linear and m is not skip and m.weight.dtype == torch.float32
            and m.weight.device.type == "cpu" and min(m.in_features, m.out_features) >= 16 and "forward" not in m.__dict__]


def kind(model, *, options: DecodeOptions = DEFAULT) -> str | None:
    """Which kernel the decode loop's float32 linears take: "onednn" on an x86-64 CPU whose torch has oneDNN, where
    ``options.onednn_linear`` is True, or "auto" and MKL is not native; "mkl" (packed) under "auto" on an Intel CPU
    where ``options.mkl_packed``; None: torch's own ``linear``."""
    mode = options.onednn_linear
    if not _eligible(model):
        return None
    if mode is True or (mode == "auto" and not hardware.mkl_native()):
        return "onednn"
    return "mkl" if mode == "auto" and options.mkl_packed and hardware.mkl_available() else None


def applies(model, *, options: DecodeOptions = DEFAULT) -> bool:
    """Whether ftrisk swaps the decode loop's float32 linears (:func:`kind`)."""
    return kind(model, options=options) is not None


def is_swapped(m) -> bool:
    """Whether ``m``'s forward on the instance is this module's swap (not a hook of someone else's)."""
    return SWAP_MARK in m.__dict__


def _eligible(model) -> bool:
    import torch

    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu" and p.dtype == torch.float32 and hardware.onednn_available()


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
        return onednn.linear(x, weight, bias)
    return forward


@contextlib.contextmanager
def onednn_linears(model, skip=None, keep: dict | None = None, *, options: DecodeOptions = DEFAULT):
    """Within the block, ``model``'s float32 ``nn.Linear`` layers (all but ``skip``: the LM head the decode loop
    computes itself) run through oneDNN where :func:`kind` says so, their weights packed on entry, or through MKL
    with weights packed at the first decode step (:class:`MklPacked`); torch's own forward again afterwards. The
    packed copies are dropped with the block, unless the caller passes ``keep`` (a dict, layer -> packed weight, of
    :class:`ftrisk.generation.cpu.caches.KernelCache`, which checks at every block that the weights did not change:
    a weight changed in place through ``.data``, as PEFT's merge does, leaves no version bump): packed weights found
    there are used, new ones put there. A nested block finds the layers taken and does nothing. Yields the number of
    layers taken."""
    how = kind(model, options=options)
    taken = layers(model, skip) if how else []
    if taken:
        todo = [m for m in taken if keep is None or m not in keep]
        pack = _packing_fits(todo)
        if how == "mkl" and not pack:  # MKL without packing is torch's own linear
            taken = []
        for m in taken:
            w = keep.get(m) if keep is not None else None
            if w is None:
                w = MklPacked(m.weight.detach()) if how == "mkl" else onednn.PackedWeight(m.weight.detach(), pack)
                if keep is not None:
                    keep[m] = w
            m.__dict__[SWAP_MARK] = w
            m.forward = _forward(m, w)
    try:
        yield len(taken)
    finally:
        for m in taken:
            m.__dict__.pop("forward", None)
            m.__dict__.pop(SWAP_MARK, None)
        if how == "mkl" and taken and keep is None:  # the packings go with the block
            memory.release_freed_memory()


def _packing_fits(todo) -> bool:
    """Whether packed copies of ``todo``'s weights fit in :data:`PACK_MEMORY_FRACTION` of the free memory."""
    return not todo or sum(m.weight.numel() * 4 for m in todo) <= resources.memory_budget("cpu", PACK_MEMORY_FRACTION)


def describe(model, skip=None, keep: dict | None = None, *, options: DecodeOptions = DEFAULT) -> str:
    """For the generation record: which kernel the decode loop's float32 linears (all but ``skip``; packings already
    in ``keep`` count as made) use, as :func:`onednn_linears` would decide now (it asks the free memory again)."""
    how = kind(model, options=options)
    taken = layers(model, skip)
    kept = [keep[m] for m in taken if keep is not None and m in keep]
    fits = how is None or (_packing_fits([m for m in taken if keep is None or m not in keep])
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
        why = (" on an Intel CPU: MKL" if options.onednn_linear == "auto" and hardware.mkl_native() and _eligible(model)
               else "")
        return f"torch (nn.Linear{why})"
    return f"oneDNN (float32, strict math; fewer than {MIN_ROWS} rows: torch's)"
