"""oneDNN's float32 (and bfloat16) linear product with the weight laid out once for it.

Why: torch's float32 ``linear`` on the CPU calls MKL's SGEMM, which takes its AVX2 code path on a CPU that is not
Intel's; oneDNN (also inside torch) uses AVX-512 wherever the CPU has it, and a weight packed once is not laid out
again at every call. Its default math mode is strict (float32 products and float32 accumulation, no bfloat16 or TF32
rounding): only the order of float additions differs from torch's ``linear``. No autograd: for inference only.
"""

from __future__ import annotations

from ftrisk.generation.cpu import hardware
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions


class PackedWeight:
    """A linear layer's weight for oneDNN, laid out once (``pack``) or as it is; :func:`linear` multiplies by it."""

    def __init__(self, weight, pack: bool = True):
        import torch

        self.data = torch.ops.mkldnn._reorder_linear_weight(weight) if pack else weight

    def nbytes(self) -> int:
        """Memory of its own (an unpacked weight is the layer's)."""
        return self.data.numel() * self.data.element_size() if self.data.is_mkldnn else 0


def packed_weight(weight, *, options: DecodeOptions = DEFAULT):
    """``weight`` packed for oneDNN on an x86-64 CPU whose torch has it (unless ``options.onednn_linear`` is False),
    else ``weight`` itself; the same bits out of :func:`linear` either way (``F.linear`` lays the weight out again
    at every call)."""
    if not (options.onednn_linear is not False and weight.device.type == "cpu" and hardware.onednn_available()):
        return weight
    return PackedWeight(weight.detach())


def linear(x, weight, bias=None):
    """``x @ weight.T + bias`` for a weight from :func:`packed_weight` (either kind)."""
    import torch

    if not isinstance(weight, PackedWeight):
        return torch.nn.functional.linear(x, weight, bias)
    y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight.data, bias, "none", [], "")
    return y.view(*x.shape[:-1], y.shape[-1])
