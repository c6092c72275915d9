"""The CPU decode path's switches as one typed, frozen object (:class:`DecodeOptions`).

It is passed in (``HFBackend(..., options=)``, :func:`ftrisk.generation.cpu.loop.greedy`,
:func:`ftrisk.generation.cpu.caches.kernels`) and written to the generation record. The one kernel that
transformers calls without it, the decode attention, reads the running call's options from a context variable
that the loop sets (:func:`use`, :func:`current`). Each default is the fast path; switched off, the plain path
it replaces runs instead, with the same greedy tokens.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class DecodeOptions:
    screen_head: bool = True
    """Screen the LM head in bfloat16 where it applies (:func:`ftrisk.generation.cpu.head.screen_applies`);
    False: the float32 head in vocabulary slices always."""
    lean_step: bool = True
    """Run a decode step through ftrisk's own Llama step where it applies (:func:`ftrisk.generation.cpu.step.applies`);
    False: the model's own forward always."""
    decode_attention: bool = True
    """One-query attention as weighted sums over the KV cache where it applies
    (:func:`ftrisk.generation.cpu.attention.applies`); False: transformers' ``sdpa`` always."""
    values_bag: bool = True
    """The attention's values product through ``embedding_bag`` (:func:`ftrisk.generation.cpu.weighted_sums.
    weighted_values`); False: ``matmul``."""
    first_row_reads: bool = True
    """Read the cache positions every row holds alike, and masked ones, from the first row
    (:func:`ftrisk.generation.cpu.attention.decode_attention`); False: each row reads its own."""
    onednn_linear: Union[bool, str] = "auto"
    """The float32 linears' kernel (:func:`ftrisk.generation.cpu.linear.kind`): "auto" takes oneDNN on an x86-64 CPU
    where MKL would take a slower path than its own (not Intel's) and MKL's packed SGEMM on an Intel one (see
    ``mkl_packed``); True: oneDNN on any x86-64 CPU; False: torch's own ``linear`` (and the LM head's bfloat16
    screen keeps its weight unpacked)."""
    mkl_packed: bool = True
    """Under ``onednn_linear="auto"`` on an Intel CPU: the one-token decode steps through MKL with packed weights
    (:class:`ftrisk.generation.cpu.mkl.MklPacked`); False: torch's own ``linear`` there."""

    def __post_init__(self):
        if self.onednn_linear not in (True, False, "auto"):
            raise ValueError(f"DecodeOptions.onednn_linear is {self.onednn_linear!r}: set True, False or 'auto'")


#: The options of a caller that passes none.
DEFAULT = DecodeOptions()

#: The options of the decode call running in this context, for kernels that transformers calls without them.
_RUNNING = contextvars.ContextVar("ftrisk_decode_options", default=DEFAULT)


def current() -> DecodeOptions:
    """The options of the decode call running now (:data:`DEFAULT` outside one)."""
    return _RUNNING.get()


@contextlib.contextmanager
def use(options: DecodeOptions):
    """Within the block, :func:`current` is ``options``."""
    token = _RUNNING.set(options)
    try:
        yield options
    finally:
        _RUNNING.reset(token)
