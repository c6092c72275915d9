"""MKL's SGEMM with the weight packed once (``cblas_sgemm_pack`` / ``cblas_sgemm_compute`` through torch's
``mkl._mkl_linear``, the op inductor's freezing uses), for the decode steps on an Intel CPU.

Why: on an Intel CPU MKL takes its own AVX-512 path, but plain SGEMM lays the weight out again at every call; with
the decode loop's weights passing through the caches between calls that costs more than the product's arithmetic
at a hundred rows. Packed SGEMM is SGEMM: only the order of float additions may differ from torch's ``linear``.
No autograd: for inference only.
"""

from __future__ import annotations

import functools
import threading

#: An MKL packing serves calls of its own row count (torch's ``mkl._mkl_linear`` checks it); calls with fewer rows,
#: down to this share of it, are padded up to it (rows that finished leave the decode batch a few at a time), fewer
#: go to torch's own linear, and more pack again (about one decode step's time for all of a small model's layers).
#: A packing never shrinks: torch allocates ~4x the weight's size for each (MKL's worst-case size) and touches about
#: 1x, so each packing freed leaves memory for other allocations to grow into
#: (:func:`ftrisk.memory.release_freed_memory`).
MKL_PAD_FRACTION = 0.75


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
