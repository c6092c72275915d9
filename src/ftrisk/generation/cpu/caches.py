"""What the decode loop builds once and keeps: the :func:`kernels` context that sets the CPU kernels up on a model
for one block, and the :class:`KernelCache` a backend keeps from one generation call to the next (packed weights,
the head's bfloat16 screen, the KV buffers of :class:`KVPool`), checked against a fingerprint of the weights' bytes
(:func:`weights_fingerprint`), as an engine (vLLM, CTranslate2) sets up once.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from ftrisk import memory
from ftrisk.generation.cpu import linear
from ftrisk.generation.cpu import options as decode_options
from ftrisk.generation.cpu.attention import cpu_decode_attention
from ftrisk.generation.cpu.head import BLOCK_MARK, SCREEN_MARK, fast_parts, screen_applies, screened_head
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions

#: Bytes per CRC-32 of :func:`weights_fingerprint` (chunks share out over threads).
FINGERPRINT_CHUNK = 16 << 20


def weights_fingerprint(model, only: Optional[set] = None) -> Optional[bytes]:
    """A digest of every parameter (or of the weights of the modules in ``only``): its name, place in memory, shape,
    strides and dtype, and a CRC-32 of each 16 MB of their bytes (zlib, on two threads: it releases the GIL); None
    for parameters off the CPU or that torch cannot show as bytes. An in-place change through ``.data`` (PEFT's
    merge) keeps the place and bumps no version, but changes the bytes. (``torch.hash_tensor``, an xor of elements,
    would be faster but blind to a sign flip of an even number of elements per row.)"""
    import torch

    if only is None:
        params = list(model.named_parameters())
    else:
        params = [(f"{name}.weight", m.weight) for name, m in model.named_modules() if m in only]
    d, chunks = hashlib.blake2b(digest_size=16), []
    try:
        for name, p in params:
            t = p.detach()
            if t.device.type != "cpu":
                return None
            d.update(f"{name}|{t.data_ptr()}|{tuple(t.shape)}|{t.stride()}|{t.dtype}".encode())
            b = t.contiguous().reshape(-1).view(torch.uint8).numpy()
            chunks += [b[i:i + FINGERPRINT_CHUNK] for i in range(0, len(b), FINGERPRINT_CHUNK)]
    except Exception:  # a tensor that cannot be read as bytes (a subclass, meta): nothing kept, as without torch
        return None
    with ThreadPoolExecutor(2) as pool:
        for crc in pool.map(zlib.crc32, chunks):
            d.update(crc.to_bytes(4, "little"))
    return d.digest()


class KVPool:
    """The decode loop's KV buffers on the CPU, kept from one batch and call to the next (:class:`KernelCache`):
    one flat storage per slot (layer, keys or values), as large as the largest buffer it held, handed out zeroed.
    Fresh buffers would have their pages faulted in and zeroed by the kernel, at every batch; kept ones are only
    zeroed."""

    def __init__(self):
        self.flats: dict = {}
        self.busy = False  # one decode at a time (a backend is used from one thread); no lock

    def zeros(self, slot, shape: tuple, like):
        """A zeroed tensor of ``shape``, ``like``'s dtype and device, on slot ``slot``'s storage. Within
        ``torch.inference_mode`` only, as the decode loop runs (the storage is an inference tensor)."""
        n = math.prod(shape)
        f = self.flats.get(slot)
        if f is None or f.numel() < n or f.dtype != like.dtype or f.device != like.device:
            self.flats.pop(slot, None)  # the old storage goes before the larger one comes
            f = self.flats[slot] = like.new_empty(n)
        return f[:n].view(shape).zero_()

    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self.flats.values())

    @contextlib.contextmanager
    def lease(self):
        """The pool for one decode, or None while another holds it (that one gets fresh buffers)."""
        if self.busy:
            yield None
            return
        self.busy = True
        try:
            yield self
        finally:
            self.busy = False


class KernelCache:
    """What :func:`kernels` builds from a model's weights (the packed linears, the head's bfloat16 screen) and the
    decode loop's KV buffers (:class:`KVPool`), kept by a backend from one generation call to the next instead of
    built at each.

    Every block starts by checking :func:`weights_fingerprint` of the weights it builds from (all the linears'
    where they are packed, for oneDNN or MKL; the head's alone where only the screen is built) and the options it
    was built under: whatever was built from other weights or options is dropped (a weight changed in place through
    ``.data`` bumps no version and keeps its place, so nothing cheaper could tell). Where there is no fingerprint,
    nothing is kept but the KV buffers. ``clear`` frees it all (the backend's ``close``)."""

    def __init__(self):
        self.fingerprint: Optional[bytes] = None
        self.options: Optional[DecodeOptions] = None
        self.packed: dict = {}
        self.screen = None
        self.kv = KVPool()

    def check(self, model, head=None, *, options: DecodeOptions = DEFAULT) -> None:
        """Drop what was built unless ``model``'s weights, and ``options``, are the ones it was built from."""
        built_from = set(linear.layers(model, skip=head)) if linear.applies(model, options=options) else set()
        if head is not None and screen_applies(head, options=options):
            built_from.add(head)
        fp = weights_fingerprint(model, built_from) if built_from else None
        if fp is None or fp != self.fingerprint or options != self.options:
            self._drop_packed()
            self.screen = None
        self.fingerprint, self.options = fp, options

    def _drop_packed(self) -> None:
        if self.packed:
            self.packed.clear()
            memory.release_freed_memory()

    def held_bytes(self) -> int:
        """Memory held between calls (a new call reuses it)."""
        packed = sum(w.nbytes() for w in self.packed.values())
        screen = 0 if self.screen is None else self.screen.weight.numel() * 2
        return packed + screen + self.kv.nbytes()

    def clear(self) -> None:
        self.fingerprint, self.options, self.screen = None, None, None
        self.kv.flats.clear()
        self._drop_packed()


@contextlib.contextmanager
def kernels(model, cache: Optional[KernelCache] = None, *, options: Optional[DecodeOptions] = None):
    """The decode loop's CPU kernels set up on ``model`` for the block (one generation call, all its batches) as
    ``options`` say (None: the running ones, :func:`ftrisk.generation.cpu.options.current`): float32 linears through oneDNN or MKL with their weights packed once (:mod:`.linear`),
    one-query attention as weighted sums over the cache (:mod:`.attention`, which reads ``options`` as the running
    ones within the block), the LM head's bfloat16 screen built once (:mod:`.head`). The modules get their own
    forwards back at the end, and what was built is dropped, unless ``cache`` (a backend's :class:`KernelCache`)
    keeps it for the next block, after checking that the weights are the ones it was built from. Yields ``cache``.
    A nested block uses (and yields) the enclosing one's, set up as that one's options said."""
    options = options if options is not None else decode_options.current()
    parts = fast_parts(model)
    head = parts[1] if parts else None
    marker = head if head is not None else model
    enclosing = marker.__dict__.get(BLOCK_MARK)
    if enclosing is not None:  # nested: the enclosing block's
        yield enclosing if isinstance(enclosing, KernelCache) else None
        return
    if cache is not None:
        cache.check(model, head, options=options)
    marker.__dict__[BLOCK_MARK] = cache if cache is not None else True
    if cache is not None and cache.screen is not None and head is not None:
        head.__dict__[SCREEN_MARK] = cache.screen
    elif (cache is not None and cache.fingerprint is not None and head is not None
          and screen_applies(head, options=options)):
        screened_head(head, options=options)  # now, from the weights the fingerprint was taken of
    try:
        keep = cache.packed if cache is not None and cache.fingerprint is not None else None
        with (linear.onednn_linears(model, skip=head, keep=keep, options=options),
              cpu_decode_attention(model, options=options), decode_options.use(options)):
            yield cache
    finally:
        marker.__dict__.pop(BLOCK_MARK, None)
        screen = head.__dict__.pop(SCREEN_MARK, None) if head is not None else None
        if cache is not None and cache.fingerprint is not None:
            cache.screen = screen
