"""The decode loop's KV cache layer: keys and values in one buffer allocated for the whole decode, written in place
(transformers' ``DynamicLayer`` concatenates the whole cache at every step instead), keys plain or in the blocked
layout of :mod:`.key_blocks`; finished rows leave it by moving the kept rows up within the buffers.
"""

from __future__ import annotations

import functools

from ftrisk.generation.cpu.key_blocks import append_blocked, open_block


@functools.cache
def growing_layer():
    """The class of the decode loop's cache layer, a :class:`transformers.DynamicLayer` (made at the first call:
    transformers loads only when a decode runs)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, kbuf, vbuf, n: int):
            """``kbuf`` holds positions [0, n): plain, or blocked as the prefill writes them (``write_blocked``:
            the positions past the last whole block then move to the open slot)."""
            super().__init__()
            self.kbuf, self.vbuf, self.n = kbuf, vbuf, n
            self.blocked = kbuf.dim() == 5  # keys in the blocked layout
            if self.blocked:
                open_block(kbuf, n)
            self.device, self.is_initialized = kbuf.device, True
            self._views()

        def _views(self):
            self.keys = self.kbuf if self.blocked else self.kbuf[:, :, :self.n]
            self.values = self.vbuf[:, :, :self.n]

        def update(self, key_states, value_states, *args, **kwargs):
            q = key_states.shape[-2]
            if self.n + q > self.vbuf.shape[2]:
                raise RuntimeError(f"decode cache full ({self.vbuf.shape[2]} positions)")
            if self.blocked:
                append_blocked(self.kbuf, self.n, key_states)
            else:
                self.kbuf[:, :, self.n:self.n + q] = key_states
            self.vbuf[:, :, self.n:self.n + q] = value_states
            self.n += q
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.n

        def batch_select_indices(self, indices):
            keep = indices.tolist()
            if all(a < b for a, b in zip(keep, keep[1:])):
                # the decode loop's case (rows leaving, the rest in order): the kept rows move up within the
                # buffers, row by row (a row only moves to a lower, already vacated place), instead of a gather
                # into new buffers, whose pages the kernel would have to fault in and zero again
                for buf in (self.kbuf, self.vbuf):
                    for j, i in enumerate(keep):
                        if i != j:
                            buf[j].copy_(buf[i])
                self.kbuf, self.vbuf = self.kbuf[:len(keep)], self.vbuf[:len(keep)]
            else:
                self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
            self._views()

    return GrowingLayer


def plain_layers(cache) -> bool:
    """Whether every layer of a transformers cache is a plain ``DynamicLayer`` (no sliding window or other kind)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)
