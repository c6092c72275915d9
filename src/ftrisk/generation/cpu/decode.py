"""The ``hf`` backend's decode loop: greedy decoding by calling the model's ``forward`` with a KV cache.

Why not ``model.generate``: measured on a 2-core CPU with SmolLM2-135M (``ftrisk bench generation``), most of its
time went to work that a decode loop of its own can skip or share. It differs in these ways, each measured there:

- **finished rows leave the batch**: a row that produced EOS (or whose judge label is final, ``stop``) is
  dropped from the batch and its KV cache rows with it, instead of being decoded on as padding;
- **a prompt prefix common to the batch is computed once** (the chat template's system turn and ``user``
  header: about half of each AdvBench prompt) and its KV cache is shared by every row;
- logits only at the last position, ``torch.inference_mode``, no logits processors or stopping criteria; the LM
  head runs over vocabulary slices keeping only the running maximum (:class:`NextToken`), or, on a CPU with
  native bfloat16 products, is screened in bfloat16 with a proven error bound and computed in float32 only for
  the few candidates the bound leaves (:class:`ScreenedHead`: the same greedy token);
- the KV cache of each layer is one buffer allocated for the whole decode, written in place (transformers'
  ``DynamicLayer`` concatenates the whole cache every step);
- on an x86-64 CPU that is not Intel's the float32 linear layers run through oneDNN with packed weights instead of
  MKL's SGEMM (:mod:`ftrisk.generation.cpu.linear`: MKL takes its AVX2 path there);
- on the CPU a decode step's attention (one query per row) reads the cache once, as ``embedding_bag`` weighted sums,
  instead of the CPU flash-attention kernel, which is written for blocks of queries; for Llama-type models the
  cache keeps keys in transposed blocks for it (:mod:`ftrisk.generation.cpu.attention`);
- for transformers' own Llama classes on the CPU, a decode step runs the decoder's arithmetic itself, in the same
  order, without transformers' per-call machinery (:mod:`ftrisk.generation.cpu.step`: the same bits);
- the packed weights, the head's screen and the KV buffers are kept by the backend from one call to the next,
  checked against a fingerprint of the weights (:class:`KernelCache`);
- prompts are prefilled in groups of at most :data:`PREFILL_ROWS` rows and :data:`PREFILL_TOKENS` padded tokens,
  each padded only to its own longest prompt;
- on the CPU, each step runs on the cores other processes leave free (:class:`CpuShare`): a matrix product split
  over a core that another process keeps busy waits for it at every step.

Greedy tokens equal ``generate``'s for one prompt alone (tested). In a batch, padding and the shared prefix change the
shapes of the matrix products and so the order of float additions: a near-tie between two tokens may then break the
other way (``ftrisk bench generation`` lists every such difference with its logit gap).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Optional

from ftrisk import memory
from ftrisk.tokens import common_prefix
from ftrisk.generation.cpu.linear import cpu_info, linear, onednn_linears, packed_weight
from ftrisk.generation.cpu import attention as _attention
from ftrisk.generation.cpu import step as decode_step
from ftrisk.generation.cpu.attention import (append_blocked, blocked_shape, cpu_decode_attention, keys_blocked, open_block,
                               same_positions, write_blocked)

#: A shared prefix shorter than this is not worth a separate forward pass.
MIN_SHARED_PREFIX = 4


@dataclass
class Decoded:
    ids: list[int]
    """New tokens, EOS excluded."""
    finished: bool
    """Stopped at EOS."""
    truncated: bool = False
    """Stopped early because ``stop`` said so (the rest of the reply would not change its label)."""


def _thread_setter(threads):
    import torch

    def set_threads():
        if threads is not None:
            n = threads()
            if n != torch.get_num_threads():
                torch.set_num_threads(n)
    return set_threads


def _cache_kw(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated)."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


#: At most this many rows per prefill forward pass: each group is padded only to its own longest prompt, and its
#: activations stay small (a 64-row prefill of SmolLM2 allocates 14 MB tensors whose first touch, page by page,
#: cost more than the element-wise work on them: measured 15 ms for a silu that takes 3 ms on a reused buffer).
PREFILL_ROWS = 16
#: Padded tokens per prefill group (a longer prompt goes alone): long prompts padded to the group's longest cost far
#: more than their extra tokens (2026-12-06, Intel host: the demo's 40 HarmBench prompts, 36-1,021 tokens, 15 of
#: them in one group padded to 1,005: prefill 22.3-26.0 s; groups of at most 1,024 padded tokens 6.7-6.9 s, 512
#: 6.6-6.8 s, 2,048 7.7-7.9 s, 4,096 8.8-9.5 s; the 120 short AdvBench prompts 2.5 s either way).
PREFILL_TOKENS = 1024
#: Vocabulary rows per slice of the LM head: the logits of one slice stay in cache and only its maximum is kept.
HEAD_CHUNK = 2048


class NextToken:
    """The greedy next token of every row from one forward pass.

    Fast path (a decoder-only ``...ForCausalLM`` whose logits are ``lm_head(hidden)``, nothing after): the decoder
    body is called, then the LM head slice by slice with a running maximum, so the ``rows x vocabulary`` logits
    are never written out (measured at 64 rows on SmolLM2, with the other layers' weights passing through the cache
    between calls as in a decode step: 34 ms instead of 48 ms; same token ids: each logit is the same dot product,
    and ties keep the lowest id as ``argmax`` does). Any other model: its own
    ``forward`` and ``logits.argmax``."""

    def __init__(self, model):
        self.model = model
        self.body, self.head = fast_parts(model) or (None, None)
        self.kw = _cache_kw(self.body if self.body is not None else model)
        self.screen = screened_head(self.head) if screen_applies(self.head) else None
        self._lean = None  # (cache, whether decode_step applies to it): checked once per cache

    def __call__(self, cache, **inputs):
        if self.body is None:
            return self.model(use_cache=True, logits_to_keep=1, **{self.kw: cache}, **inputs).logits[:, -1].argmax(-1)
        if inputs["input_ids"].shape[1] == 1 and self._lean_for(cache):
            h = decode_step.step(self.body, cache, **inputs)
        else:
            h = self.body(use_cache=True, **{self.kw: cache}, **inputs).last_hidden_state[:, -1]
        if self.screen is not None:
            return self.screen(h)
        w = self.head.weight  # slices measured on the CPU only: on a GPU one product, no extra launches
        return head_argmax(h, w, self.head.bias, HEAD_CHUNK if h.device.type == "cpu" else w.shape[0])

    def _lean_for(self, cache) -> bool:
        """Whether this decode step may take :func:`ftrisk.generation.cpu.step.step` (asked once per cache)."""
        if self._lean is None or self._lean[0] is not cache:
            self._lean = (cache, decode_step.applies(self.model, self.body, cache))
        return self._lean[1]


def fast_parts(model):
    """(decoder body, LM head) when the model's logits are exactly ``lm_head(body(...).last_hidden_state)``; else None
    (an adapter wrapper, a head that is not one linear layer, logits scaled or soft-capped after the head)."""
    import torch

    body = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    c = getattr(model.config, "text_config", None) or model.config
    if (type(model).__name__.endswith("ForCausalLM") and isinstance(body, torch.nn.Module)
            and type(head) is torch.nn.Linear and not getattr(model, "peft_config", None)
            and all(getattr(c, a, None) in (None, 1, 1.0)
                    for a in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"))):
        return body, head
    return None


def head_argmax(h, weight, bias=None, chunk: int = HEAD_CHUNK):
    """``argmax(h @ weight.T + bias)`` per row, computed over vocabulary slices (see :class:`NextToken`)."""
    import torch

    best = idx = None
    for i in range(0, weight.shape[0], chunk):
        logits = torch.nn.functional.linear(h, weight[i:i + chunk], None if bias is None else bias[i:i + chunk])
        m, a = logits.max(-1)
        if best is None:
            best, idx = m, a
        else:
            better = m > best  # strict: on a tie the earlier slice (lower id) stays, as argmax does
            best, idx = torch.where(better, m, best), torch.where(better, a + i, idx)
    return idx


#: bfloat16's unit roundoff (8 significant bits) and float32's.
_U_BF16, _U_F32 = 2.0 ** -8, 2.0 ** -24
#: The screen's error bound is multiplied by this, against rounding in the bound's own arithmetic.
SCREEN_SAFETY = 2.0
#: More candidate vocabulary rows than this (a bound too loose to pay), or none: the float32 slices instead.
SCREEN_MAX_ROWS = 4096


def fast_bf16_cpu() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): without it oneDNN emulates bfloat16
    and the screen would cost more than it saves."""
    flags = cpu_info()[1]
    return "avx512_bf16" in flags or "amx_bf16" in flags


#: Screen the LM head in bfloat16 where it applies (:func:`screen_applies`); False: float32 slices always.
SCREEN_HEAD = True


def screen_applies(head) -> bool:
    """The bfloat16 screen is used for a float32 LM head without bias on a CPU with native bfloat16 products."""
    import torch

    return (SCREEN_HEAD and head is not None and head.bias is None and head.weight.device.type == "cpu"
            and head.weight.dtype == torch.float32 and fast_bf16_cpu())


def screened_head(head) -> "ScreenedHead":
    """``head``'s :class:`ScreenedHead`: within a :func:`kernels` block built once and kept on the module until the
    block ends (building it took 0.13-0.41 s for SmolLM2's head: at every batch it would cost seconds per demo),
    and after it only by a :class:`KernelCache`, which checks the weights' bytes at its next block (a weight
    changed in place through ``.data``, as PEFT's merge does, bumps no version); outside a block, built for the
    caller alone."""
    if head.__dict__.get("_ftrisk_kernels") is None:
        return ScreenedHead(head.weight)
    if head.__dict__.get("_ftrisk_screen") is None:
        head.__dict__["_ftrisk_screen"] = ScreenedHead(head.weight)
    return head.__dict__["_ftrisk_screen"]


@contextlib.contextmanager
def kernels(model, cache: "Optional[KernelCache]" = None):
    """The decode loop's CPU kernels set up on ``model`` for the block (one generation call, all its batches):
    float32 linears through oneDNN with their weights packed once (:mod:`.cpu_linear`), one-query attention as
    weighted sums over the cache (:mod:`.decode_attention`), the LM head's bfloat16 screen built once. The modules
    get their own forwards back at the end, and what was built is dropped, unless ``cache`` (a backend's
    :class:`KernelCache`) keeps it for the next block, after checking that the weights are the ones it was built
    from. Yields ``cache``. A nested block uses (and yields) the enclosing one's. Packing and the screen took 0.24-0.7 s for SmolLM2 (measured
    0.11-0.33 s and 0.13-0.41 s)."""
    parts = fast_parts(model)
    head = parts[1] if parts else None
    marker = head if head is not None else model
    enclosing = marker.__dict__.get("_ftrisk_kernels")
    if enclosing is not None:  # nested: the enclosing block's
        yield enclosing if isinstance(enclosing, KernelCache) else None
        return
    if cache is not None:
        cache.check(model, head)
    marker.__dict__["_ftrisk_kernels"] = cache if cache is not None else True
    if cache is not None and cache.screen is not None and head is not None:
        head.__dict__["_ftrisk_screen"] = cache.screen
    elif cache is not None and cache.fingerprint is not None and head is not None and screen_applies(head):
        screened_head(head)  # now, from the weights the fingerprint was taken of
    try:
        keep = cache.packed if cache is not None and cache.fingerprint is not None else None
        with onednn_linears(model, skip=head, keep=keep), cpu_decode_attention(model):
            yield cache
    finally:
        marker.__dict__.pop("_ftrisk_kernels", None)
        screen = head.__dict__.pop("_ftrisk_screen", None) if head is not None else None
        if cache is not None and cache.fingerprint is not None:
            cache.screen = screen


#: Bytes per CRC-32 of :func:`weights_fingerprint` (chunks share out over threads).
FINGERPRINT_CHUNK = 16 << 20


def weights_fingerprint(model, only: Optional[set] = None) -> Optional[bytes]:
    """A digest of every parameter (or of the weights of the modules in ``only``): its name, place in memory, shape,
    strides and dtype, and a CRC-32 of each 16 MB of their bytes (zlib; 540 MB in 0.13-0.24 s on one thread); None for
    parameters off the CPU or that torch cannot show as bytes. An in-place change through ``.data`` (PEFT's merge)
    keeps the place and bumps no version, but changes the bytes. (``torch.hash_tensor``, an xor of elements, was
    faster but blind to a sign flip of an even number of elements per row.)"""
    import hashlib
    import zlib
    from concurrent.futures import ThreadPoolExecutor

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
    # a CRC-32 per chunk on two threads (zlib releases the GIL): 0.15 against 0.24 s for 513 MB, 2026-12-06 (Intel)
    with ThreadPoolExecutor(2) as pool:
        for crc in pool.map(zlib.crc32, chunks):
            d.update(crc.to_bytes(4, "little"))
    return d.digest()


class KVPool:
    """The decode loop's KV buffers on the CPU, kept from one batch and call to the next (:class:`KernelCache`):
    one flat storage per slot (layer, keys or values), as large as the largest buffer it held, handed out zeroed.
    Fresh buffers have their pages faulted in and zeroed by the kernel: 0.22-0.65 s for 60 buffers of 120 x 3 x 152 x
    64 floats (840 MB, about the bench's) against 0.035 s to zero kept ones (2026-12-06, 2-core Zen 4)."""

    def __init__(self):
        self.flats: dict = {}
        self.busy = False  # one decode at a time (a backend is used from one thread); no lock

    def zeros(self, slot, shape: tuple, like):
        """A zeroed tensor of ``shape``, ``like``'s dtype and device, on slot ``slot``'s storage. Within
        ``torch.inference_mode`` only, as the decode loop runs (the storage is an inference tensor)."""
        import math

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
    built at each: packing ~0.2 s, the screen ~0.16-0.2 s and fresh KV buffers 0.22-0.65 s of a call's ~18 s on the
    bench workload (2026-12-06, 2-core Zen 4), as an engine (vLLM, CTranslate2) sets up once.

    Every block starts by checking :func:`weights_fingerprint` of the weights it builds from (all the linears'
    where they are packed, for oneDNN or MKL, ~0.13-0.15 s; the head's alone where only the screen is built):
    whatever was built from other weights is dropped (a weight changed in place through ``.data`` bumps no version
    and keeps its place, so nothing cheaper could tell). Where there is no fingerprint, nothing is kept but the KV
    buffers. ``clear`` frees it all (the backend's ``close``)."""

    def __init__(self):
        self.fingerprint: Optional[bytes] = None
        self.packed: dict = {}
        self.screen = None
        self.kv = KVPool()

    def check(self, model, head=None) -> None:
        """Drop what was built unless ``model``'s weights are the ones it was built from."""
        from ftrisk.generation.cpu.linear import _layers, applies

        built_from = set(_layers(model, skip=head)) if applies(model) else set()
        if head is not None and screen_applies(head):
            built_from.add(head)
        fp = weights_fingerprint(model, built_from) if built_from else None
        if fp is None or fp != self.fingerprint:
            self._drop_packed()
            self.screen = None
        self.fingerprint = fp

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
        self.fingerprint, self.screen = None, None
        self.kv.flats.clear()
        self._drop_packed()


class ScreenedHead:
    """The exact float32 greedy token of ``h @ weight.T``, found by screening the vocabulary in bfloat16.

    Why: at 64 rows the float32 LM head of SmolLM2 (49,152 x 576) takes ~34 ms a step in slices, most of it
    streaming 113 MB of weights; in bfloat16 (half the bytes, native products on AVX512-BF16) ~8 ms. Not an
    approximation: the bfloat16 logits ``a_j`` differ from the float32 ones ``l_j`` by at most

        |l_j - a_j| <= E + u' |a_j|,   E = |h - h16| max|w_j| + |h16| (max|w_j - w16_j| + d u32 max|w16_j|)

    (Cauchy-Schwarz on ``h.w - h16.w16 = (h - h16).w + h16.(w - w16)``, float32 accumulation over d products; the
    bfloat16 rounding of the output, ``u' = u16 / (1 - u16)``). With ``top = max(a)`` and ``M = E + u' |top|``
    (times :data:`SCREEN_SAFETY`), the greedy token ``j*`` has ``a_j* >= T = min(top - 2M, (top - 2M) / (1 - u'))``:
    its ``l_j*`` is at least the float32 logit of the bfloat16 maximum, so ``a_j* >= top - 2E - u'|top| - u'|a_j*|``;
    if ``a_j* >= 0`` then ``|a_j*| <= top`` (the first term of the min), else solving for ``a_j*`` gives the second.
    Only the candidates at or above ``T`` get float32 logits, and the largest wins (the lowest id on a tie, as
    ``argmax``). The float32 logits' own summation error (at most ``d u32 |h| max|w_j|``, which ``E`` exceeds) is
    covered by the safety factor. Which candidates there are changes only the work, not the token: each candidate's
    float32 logit is the same dot product as in the full head (up to the order of float additions, as with
    :func:`head_argmax`'s slices). (Until 2026-12-06 the output term used ``max |a_j|`` over the row, one more pass
    over the logits: 0.86 ms of ``amin`` a step at 120 rows, and a wider margin where the most negative logit
    outweighs the top one.)"""

    def __init__(self, weight):
        import torch

        w = weight.detach()
        self.weight, self.w16 = w, packed_weight(w.to(torch.bfloat16))
        w16 = w.to(torch.bfloat16).float()
        self.w_norm = float(w.norm(dim=1).max())
        self.dw_norm = float((w - w16).norm(dim=1).max())
        d = w.shape[1]
        self.acc = d * _U_F32 / (1 - d * _U_F32) * float(w16.norm(dim=1).max())
        self.fallbacks = 0

    def candidates(self, h):
        """(bfloat16 logits, per-row candidate mask, per-row ``M``, safety factor included: the bound on ``|l_j -
        a_j|`` for every ``j`` with ``|a_j| <= |top|``).

        The logits stay in bfloat16 (each converts to float32 exactly): a float32 copy of the ``rows x vocabulary``
        logits, and ``abs`` over it, took longer than the bfloat16 product itself (measured at 64 rows on SmolLM2:
        7.5 ms against 0.65 ms for ``amax`` and ``amin`` in bfloat16). The threshold is compared in bfloat16 too,
        rounded to nearest, which admits the same bfloat16 logits as the float32 threshold or more, never fewer
        (rounded up, no bfloat16 lies between the two; rounded down, more pass): a bfloat16 tensor compared with a
        float32 one is first copied whole to float32 (2026-12-06, Intel Xeon with AMX, 120 rows: the call took
        13.8 ms against 9.1 ms, and in the decode loop the 23.6 MB copy's fresh pages cost up to 35 ms a step)."""
        import torch

        h16 = h.to(torch.bfloat16)
        a = linear(h16, self.w16)
        hf = h16.float()
        nh, dh = hf.norm(dim=1), (h - hf).norm(dim=1)
        top = a.amax(dim=1).float()
        u = _U_BF16 / (1 - _U_BF16)
        margin = SCREEN_SAFETY * (dh * self.w_norm + nh * (self.dw_norm + self.acc) + u * top.abs())
        x = top - 2 * margin
        threshold = torch.minimum(x, x / (1 - u))
        return a, a >= threshold.to(torch.bfloat16)[:, None], margin

    def __call__(self, h):
        import torch

        _, cand, _ = self.candidates(h)
        # a column is a candidate if it is one for any row: amax over the rows of the mask's bytes (measured 0.06 ms
        # against 0.74 ms for ``any(dim=0)`` on a 64 x 49,152 mask)
        cols = cand.view(torch.uint8).amax(dim=0).nonzero().squeeze(1)
        if not 0 < cols.numel() <= SCREEN_MAX_ROWS:  # none: a NaN in h (argmax of the float32 logits decides)
            self.fallbacks += 1
            return head_argmax(h, self.weight)
        # one product over every row's candidates: a column that is a candidate only for other rows cannot win a row
        # (by the bound its float32 logit is below that row's maximum), so no per-row mask is needed
        # index_select copies whole rows (measured 0.07 against 0.55 ms for ``weight[cols]`` at 1,500 rows)
        return cols[torch.nn.functional.linear(h, torch.index_select(self.weight, 0, cols)).argmax(dim=1)]


@functools.cache
def _growing_layer():
    """A transformers cache layer whose keys and values live in one buffer allocated for the whole decode:
    :class:`transformers.DynamicLayer` concatenates the whole cache at every step instead (measured: ``cat`` was
    30% of a 64-row decode step's time on SmolLM2)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, kbuf, vbuf, n: int):
            """``kbuf`` holds positions [0, n): plain, or blocked as the prefill writes them (``write_blocked``:
            the positions past the last whole block then move to the open slot)."""
            super().__init__()
            self.kbuf, self.vbuf, self.n = kbuf, vbuf, n
            self.blocked = kbuf.dim() == 5  # keys in decode_attention's blocked layout
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


def _plain_layers(cache) -> bool:
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def left_padded_mask(own_lengths: list[int], shared: int, width: int):
    """The attention mask of the layout ``[shared prefix | padding | row's own tokens]``, ``shared + width`` wide."""
    import torch

    mask = torch.zeros((len(own_lengths), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for i, n in enumerate(own_lengths):
        mask[i, shared + width - n:] = 1
    return mask


def prefill_groups(lengths: list[int], cpu: bool = True) -> list[list[int]]:
    """Indices of ``lengths`` (sorted longest first) in prefill groups: on the CPU at most :data:`PREFILL_ROWS` rows
    and :data:`PREFILL_TOKENS` padded tokens each (always at least one row); elsewhere one group."""
    if not cpu:  # measured on the CPU only: a GPU prefills one batch
        return [list(range(len(lengths)))] if lengths else []
    groups: list[list[int]] = []
    for i in range(len(lengths)):
        g = groups[-1] if groups else None
        if g is None or len(g) >= PREFILL_ROWS or lengths[g[0]] * (len(g) + 1) > PREFILL_TOKENS:
            groups.append([i])
        else:
            g.append(i)
    return groups


def _prefill(model, step: NextToken, rows, shared: int, width: int, capacity: int, pad_id: int, set_threads,
             blocked: bool = False, pool: Optional[KVPool] = None):
    """Prefill every row; returns (cache holding ``shared + width`` positions per row in the left-padded layout
    ``[shared prefix | padding | row's own tokens]``, first greedy token per row).

    With plain cache layers the rows are prefilled in groups (:func:`prefill_groups`, in length order), each group
    padded to its own longest row, on top of the shared prefix computed once; the groups' keys and values are then
    placed in one preallocated buffer per layer (padding positions zero and masked), keys in decode_attention's
    blocked layout when ``blocked``, on ``pool``'s storage when given. Otherwise: one padded batch."""
    import torch
    from transformers import DynamicCache

    dev = model.device
    n = len(rows)
    tails = [r[shared:] for r in rows]
    prefix = DynamicCache(config=model.config)
    if shared:  # the common prefix once
        set_threads()
        step(prefix, input_ids=torch.tensor([rows[0][:shared]], device=dev),
             position_ids=torch.arange(shared, device=dev)[None])

    def run(idx, w, cache):
        ids = torch.full((len(idx), w), pad_id, dtype=torch.long)
        for j, i in enumerate(idx):  # left padding, between the shared prefix and each row's own tokens
            ids[j, w - len(tails[i]):] = torch.tensor(tails[i])
        mask = left_padded_mask([len(tails[i]) for i in idx], shared, w)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        set_threads()
        return step(cache, input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev))

    def copy_of_prefix(rows_in_group):
        if not shared:
            return DynamicCache(config=model.config)
        return DynamicCache(ddp_cache_data=[(k.expand(rows_in_group, -1, -1, -1), v.expand(rows_in_group, -1, -1, -1))
                                            for k, v, *_ in prefix], config=model.config)

    if not _plain_layers(prefix):  # sliding-window or other special layers: one padded batch, transformers' cache
        cache = copy_of_prefix(n)
        return cache, run(list(range(n)), width, cache)
    order = sorted(range(n), key=lambda i: -len(tails[i]))
    first = torch.empty(n, dtype=torch.long, device=dev)
    bufs = None
    for idx in prefill_groups([len(tails[i]) for i in order], dev.type == "cpu"):
        idx = [order[j] for j in idx]
        w = len(tails[idx[0]])
        cache = copy_of_prefix(len(idx))
        first[idx] = run(idx, w, cache)
        rows_t = torch.tensor(idx, device=dev)
        if bufs is None:
            def zeros(slot, shape, like):
                return pool.zeros(slot, shape, like) if pool is not None else like.new_zeros(shape)
            bufs = [(zeros((i, "k"), blocked_shape(k, n, capacity) if blocked else (n, k.shape[1], capacity, k.shape[3]), k),
                     zeros((i, "v"), (n, v.shape[1], capacity, v.shape[3]), v)) for i, (k, v, *_) in enumerate(cache)]
        for (kb, vb), (k, v, *_) in zip(bufs, cache):  # [prefix | zeros | own tokens], right-aligned at shared + width
            if blocked:
                write_blocked(kb, 0, k[:, :, :shared], rows_t)
                write_blocked(kb, shared + width - w, k[:, :, shared:], rows_t)
            else:
                kb[rows_t, :, :shared] = k[:, :, :shared]
                kb[rows_t, :, shared + width - w:shared + width] = k[:, :, shared:]
            vb[rows_t, :, :shared] = v[:, :, :shared]
            vb[rows_t, :, shared + width - w:shared + width] = v[:, :, shared:]
        del cache
    Growing = _growing_layer()
    out = DynamicCache(config=model.config)
    out.layers = [Growing(kb, vb, shared + width) for kb, vb in bufs]
    return out, first


def greedy(model, rows: list[list[int]], *, max_new_tokens: int, eos_id: int, pad_id: int,
           stop: Optional[Callable[[int, list[int]], bool]] = None, share_prefix: bool = True,
           threads: Optional[Callable[[], int]] = None) -> list[Decoded]:
    """Greedy-decode one batch of token-id prompts. ``stop(row, new_ids)`` -> True ends that row early
    (marked ``truncated``); ``threads()`` -> the intra-op thread count for the next forward pass (CPU)."""
    import torch

    dev = model.device
    n = len(rows)
    out = [Decoded([], False) for _ in rows]
    if n == 0 or max_new_tokens <= 0:
        return out
    shared = common_prefix(rows) if share_prefix and n > 1 else 0
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    width = max(len(r) for r in rows) - shared
    set_threads = _thread_setter(threads)
    with torch.inference_mode(), kernels(model) as kept, contextlib.ExitStack() as within:
        pool = within.enter_context(kept.kv.lease()) if kept is not None and dev.type == "cpu" else None
        blocked = keys_blocked(model)
        # with blocked keys, a masked gap after the shared prefix up to a block edge: then the prefix's key blocks are
        # the same in every row, and the decode attention reads them (and masked positions) from the first row only
        gap = -shared % _attention.KEY_BLOCK if shared and blocked else 0
        width += gap
        step = NextToken(model)
        cache, nxt = _prefill(model, step, rows, shared, width, shared + width + max_new_tokens, pad_id, set_threads,
                              blocked, pool)
        if shared and getattr(cache.layers[0], "blocked", False):
            within.enter_context(same_positions(shared + gap))
        mask = left_padded_mask([len(r) - shared for r in rows], shared, width)
        pos = mask.sum(-1, keepdim=True) - 1
        mask, pos = mask.to(dev), pos.to(dev)
        alive = list(range(n))  # batch row -> prompt index
        for step_no in range(max_new_tokens):
            keep = []
            for j, tok in enumerate(nxt.tolist()):
                r = alive[j]
                if tok == eos_id:
                    out[r].finished = True
                    continue
                out[r].ids.append(tok)
                if stop is not None and step_no < max_new_tokens - 1 and stop(r, out[r].ids):
                    out[r].truncated = True
                    continue
                keep.append(j)
            if not keep or step_no == max_new_tokens - 1:
                break
            if len(keep) < len(alive):  # finished rows leave the batch, and their cache rows with them
                k = torch.tensor(keep, device=dev)
                cache.batch_select_indices(k)
                mask, pos, nxt = mask[k], pos[k], nxt[k]
                alive = [alive[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            pos = pos + 1
            set_threads()
            nxt = step(cache, input_ids=nxt[:, None], attention_mask=mask, position_ids=pos)
    return out
