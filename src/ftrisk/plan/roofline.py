"""The seconds of one forward or backward pass: max(FLOPs / (peak * MFU), bytes moved / bandwidth) (roofline),
and at least the host's ``dispatch_ms`` per layer pass (gpus.yaml; a GPU overlaps it with its kernels: max; a CPU
runs it in line: added).

MFU: 40% training, 50% prefill and decode, or the device's own (cpu: calibrated, gpus.yaml), or the job's.
"""

from __future__ import annotations

from ftrisk.plan.job import Job
from ftrisk.plan.shape import DTYPES, Shape, param_counts

#: Default utilisation of the peak FLOP/s: training passes, and generation's and lm-eval's forward passes.
MFU = {"train": 0.40, "prefill": 0.50}


def mfu(job: Job, spec: dict, kind: str) -> float:
    """The utilisation a ``kind`` pass reaches: the job's, else the device's (gpus.yaml), else :data:`MFU`."""
    return (job.mfu_train if kind == "train" else job.mfu_prefill) or (spec.get("mfu") or {}).get(kind) or MFU[kind]


def peak_flops(spec: dict, job: Job, generation: bool = False) -> float:
    """FLOP/s of the device's products: bf16 tensor cores for a 16-bit or k-bit model where it has them, else fp32;
    ``generation``: the kernel the decode loop's linear layers take where the spec measured it (cpu)."""
    if (job.dtype != "float32" or job.kbit) and spec.get("bf16_tflops"):
        return spec["bf16_tflops"] * 1e12
    return ((generation and spec.get("generation_fp32_tflops")) or spec["fp32_tflops"]) * 1e12


def seconds(flops: float, nbytes: float, layer_passes: int, spec: dict, job: Job, kind: str,
            generation: bool = False) -> float:
    """One roofline step: max(compute, memory traffic), with the host's dispatch time (max on a GPU, + on a CPU)."""
    busy = max(flops / (peak_flops(spec, job, generation) * mfu(job, spec, kind)),
               nbytes / (spec["bandwidth_gbs"] * 1e9))
    dispatch = layer_passes * spec["dispatch_ms"] / 1e3
    return busy + dispatch if spec["name"] == "cpu" else max(busy, dispatch)


def forward_flops(s: Shape, tokens: float, context: float, vocab_positions: float) -> float:
    """2*N per token, causal attention 2*L*context*h per token (``context``: twice the mean positions a token
    attends to), the vocabulary 2*h*V per projected position."""
    per_token = 2 * param_counts(s)["body"] + 2 * s.layers * context * s.hidden
    return tokens * per_token + vocab_positions * 2 * s.hidden * s.vocab


def pass_bytes(s: Shape, job: Job) -> float:
    """Weight bytes one forward pass reads: the decoder and the LM head (the input embedding's rows are only
    gathered). k-bit: the quantized linear layers, each dequantized into a bf16 copy (written and read), the rest
    16-bit."""
    p = param_counts(s)
    rest = p["norms"] + s.vocab * s.hidden
    if job.kbit:
        return p["linear"] * (job.kbit + 4) + rest * 2
    return (p["linear"] + rest) * DTYPES[job.dtype]
