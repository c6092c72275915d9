"""One forward pass of the decode loop, to the greedy next token of every row (:class:`NextToken`)."""

from __future__ import annotations

import inspect

from ftrisk.generation.cpu import step as decode_step
from ftrisk.generation.cpu.head import HEAD_CHUNK, fast_parts, head_argmax, screen_applies, screened_head
from ftrisk.generation.cpu.options import DEFAULT, DecodeOptions


def _cache_kw(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated)."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


class NextToken:
    """The greedy next token of every row from one forward pass.

    Fast path (a decoder-only ``...ForCausalLM`` whose logits are ``lm_head(hidden)``, nothing after,
    :func:`ftrisk.generation.cpu.head.fast_parts`): the decoder body is called (a one-token step through
    :func:`ftrisk.generation.cpu.step.step` where it applies), then the LM head of :mod:`.head`, so the
    ``rows x vocabulary`` logits are never written out. Any other model: its own ``forward`` and ``logits.argmax``."""

    def __init__(self, model, *, options: DecodeOptions = DEFAULT):
        self.model, self.options = model, options
        self.body, self.head = fast_parts(model) or (None, None)
        self.kw = _cache_kw(self.body if self.body is not None else model)
        self.screen = screened_head(self.head, options=options) if screen_applies(self.head, options=options) else None
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
        w = self.head.weight  # slices on the CPU only: on a GPU one product, no extra launches
        return head_argmax(h, w, self.head.bias, HEAD_CHUNK if h.device.type == "cpu" else w.shape[0])

    def _lean_for(self, cache) -> bool:
        """Whether this decode step may take :func:`ftrisk.generation.cpu.step.step` (asked once per cache)."""
        if self._lean is None or self._lean[0] is not cache:
            self._lean = (cache, decode_step.applies(self.model, self.body, cache, options=self.options))
        return self._lean[1]
