"""``hf``: batched greedy decoding of a transformers model (always available, CPU or CUDA).

Prompts are length-sorted (longest first) and cut into batches of at most ``batch_size`` prompts,
``max_batch_tokens`` padded tokens and a share of the free memory; each batch is decoded by
:func:`ftrisk.generation.cpu.loop.greedy` (finished rows leave the batch, the common prompt prefix is computed
once); on the CPU each step runs on the cores that other processes leave free (:class:`resources.CpuShare`).
The CPU kernels it uses are set by :class:`ftrisk.generation.cpu.options.DecodeOptions` (``options=``), recorded
in the generation record.
"""

from __future__ import annotations

import dataclasses

from ftrisk.generation.base import Backend, prompt_text
from ftrisk.generation.cpu import attention, linear, resources
from ftrisk.generation.cpu.caches import KernelCache, kernels
from ftrisk.generation.cpu.head import fast_parts, screen_applies
from ftrisk.generation.cpu.loop import greedy
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions
from ftrisk.model.chat import template_sha256


def generate_texts(model, tok, texts: list[str], max_new_tokens: int, *, stop=None, share_prefix: bool = True,
                   options: DecodeOptions | None = None) -> list[tuple[str, int, bool]]:
    """Greedy-decode one batch; returns (completion, new token count, stopped at EOS) per text. ``stop``:
    a row also stops once ``stop(reply so far)`` is true (the caller's rule: :mod:`ftrisk.judges.opening`);
    ``options``: the CPU kernels the decode loop uses (None: the enclosing :func:`kernels` block's, or the
    defaults)."""
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    row_stop = None
    if stop:
        def row_stop(_row, ids):
            return stop(tok.decode(ids, skip_special_tokens=True))
    threads = resources.CpuShare() if model.device.type == "cpu" else None  # CPU only: thread count per step
    with resources.cpu_threads(None):  # torch's own count again afterwards
        outs = greedy(model, rows, max_new_tokens=max_new_tokens, eos_id=tok.eos_token_id,
                      pad_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                      stop=row_stop, share_prefix=share_prefix, threads=threads, options=options)
    return [(tok.decode(o.ids, skip_special_tokens=True), len(o.ids), o.finished) for o in outs]


def token_batches(items: list, lengths: list[int], batch_size: int, max_tokens: int | None,
                  budget: int | None = None, bytes_of_row=None) -> list[list]:
    """Cut length-sorted items into batches of at most ``batch_size`` items, ``max_tokens`` padded tokens and
    ``budget`` bytes (``bytes_of_row(width)`` per row), so a few long prompts (HarmBench contexts) run in small
    batches instead of padding a large one."""
    batches, cur, widest = [], [], 0
    for it, n in zip(items, lengths):
        w = max(widest, n)
        if cur and (len(cur) >= batch_size or (max_tokens and w * (len(cur) + 1) > max_tokens)
                    or (budget and bytes_of_row and bytes_of_row(w) * (len(cur) + 1) > budget)):
            batches.append(cur)
            cur, w = [], n
        cur.append(it)
        widest = w
    if cur:
        batches.append(cur)
    return batches


class HFBackend(Backend):
    name = "hf"

    def __init__(self, subject, settings, loaded=None, options: DecodeOptions | None = None):
        """``options``: the CPU decode kernels to use (None: :data:`ftrisk.generation.cpu.options.DEFAULT`)."""
        super().__init__(subject, settings)
        self._loaded = loaded
        self.options = options if options is not None else DEFAULT
        # packed weights, the head's screen and the KV buffers, kept from one generate call to the next (checked
        # against the weights at each) and freed by close
        self._kept = KernelCache()

    def hf_model(self):
        if self._loaded is None:
            self._loaded = self.subject.load()
        return self._loaded

    def record(self) -> dict:
        model, tok = self.hf_model()
        s = self.settings
        o = self.options
        parts = fast_parts(model)
        head = ("bfloat16 screen, float32 logits of the candidates (exact greedy token)"
                if parts and screen_applies(parts[1], options=o) else "float32" if parts else "the model's own logits")
        linears = linear.describe(model, parts[1] if parts else None, self._kept.packed, options=o)
        return {"lm_head": head, "linear_kernel": linears,
                "decode_attention": attention.describe(model, options=o), "decode_options": dataclasses.asdict(o),
                "backend": self.name, "decoding": "greedy", "do_sample": False, "max_new_tokens": s.max_new_tokens,
                "batch_size": s.batch_size, "max_batch_tokens": s.max_batch_tokens, "padding_side": "left",
                "decode_loop": "ftrisk greedy: finished rows leave the batch, common prompt prefix computed once",
                "memory_fraction": MEMORY_FRACTION, "cpu_threads": "per step: physical cores less those other processes keep busy",
                "stop_when_judged": bool(getattr(s, "stop_when_judged", False)),
                "system_prompt": self.subject.system_prompt, "chat_template_sha256": template_sha256(tok)}

    def generate(self, items, *, max_new_tokens, desc="generate", stop=None):
        """Rows as batches finish. ``stop``: rows stop once ``stop(reply so far)`` is true
        (``generation.stop_when_judged`` with a judge that reads only the opening); such rows say ``truncated``."""
        model, tok = self.hf_model()
        system = self.subject.system_prompt
        texts = {it.id: prompt_text(tok, it, system) for it in items}  # a prefill opens the reply: not in the completion
        lengths = {i: len(tok(t, add_special_tokens=False)["input_ids"]) for i, t in texts.items()}
        todo = sorted(items, key=lambda it: -lengths[it.id])  # length-sorted: little padding; longest first
        widths = [lengths[it.id] + max_new_tokens for it in todo]
        # the KV buffers this backend keeps between calls count as free: the next batch reuses them
        budget = resources.memory_budget(str(model.device), MEMORY_FRACTION) + int(self._kept.kv.nbytes() * MEMORY_FRACTION)
        batches = token_batches(todo, widths, self.settings.batch_size, self.settings.max_batch_tokens,
                                budget, lambda w: resources.row_bytes(model, w - max_new_tokens, max_new_tokens))
        # weights packed and the head's screen built once (kept across calls); the decode loop within runs under
        # this block's options
        with kernels(model, self._kept, options=self.options):
            for batch in batches:
                batch_texts = [texts[it.id] for it in batch]
                outs = (generate_texts(model, tok, batch_texts, max_new_tokens, stop=stop) if stop
                        else generate_texts(model, tok, batch_texts, max_new_tokens))
                rows = []
                for it, (c, n, f) in zip(batch, outs):
                    row = {"id": it.id, "completion": c, "prompt_tokens": lengths[it.id], "new_tokens": n,
                           "finished": f}
                    if stop and not f and n < max_new_tokens:
                        row["truncated"] = True
                    rows.append(row)
                yield rows

    def held_bytes(self) -> int:
        return self._kept.held_bytes()

    def close(self) -> None:
        self._kept.clear()
        self._loaded = None


#: Share of the free memory (CPU: MemAvailable; CUDA: free device memory) one generation batch may take.
MEMORY_FRACTION = 0.25
