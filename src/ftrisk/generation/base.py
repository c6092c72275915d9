"""The generation backend protocol."""

from __future__ import annotations

from typing import Callable, Iterator

from ftrisk import registry
from ftrisk.model.chat import chat_text


class Backend:
    """Greedy decoding of chat prompts for one :class:`ftrisk.model.subject.Subject`.

    ``generate`` yields lists of rows ``{id, completion, prompt_tokens, new_tokens, finished}`` as
    batches finish (so the caller can store them); ``record`` says what was used, written next to
    the completions by the caller.

    An item whose ``extra`` holds ``"prefill"`` (the prefilling attack, :mod:`ftrisk.attacks.prefill`) has its
    assistant turn started by that text (:func:`prompt_text`): ``completion`` is only what the model adds after it,
    and ``prompt_tokens`` counts the prefix.
    """

    name = ""
    supports_prefill = True
    """Whether this backend can start a reply from a prefix (``item.extra["prefill"]``); False: it cannot, and the
    prefilling attack refuses it before any work."""

    def __init__(self, subject, settings):
        self.subject, self.settings = subject, settings

    @classmethod
    def check(cls, subject, settings) -> None:
        """Fail with one line, before any work, when this backend cannot run ``subject`` (device, quantization)."""

    def record(self) -> dict:
        raise NotImplementedError

    def generate(self, items: list, *, max_new_tokens: int, desc: str = "generate",
                 stop: Callable[[str], bool] | None = None) -> Iterator[list[dict]]:
        """``stop``: a row may stop once ``stop(reply so far)`` is true (the caller's rule, e.g. the judges read
        nothing past an opening that is final); such rows carry ``"truncated": true``. Backends that cannot
        stop early raise."""
        raise NotImplementedError

    def hf_model(self):
        """(model, tokenizer) when this backend holds a transformers model (capability reuses it), else None."""
        return None

    def held_bytes(self) -> int:
        """Memory this backend keeps resident between ``generate`` calls (freed by ``close``)."""
        return 0

    def close(self) -> None:
        pass


def prefill_of(item) -> str:
    """The text that starts ``item``'s reply ("" for none): ``extra["prefill"]``, set by
    :func:`ftrisk.attacks.prefill.with_prefix`."""
    return (getattr(item, "extra", None) or {}).get("prefill") or ""  # an item-like without extra: none


def prompt_text(tok, item, system_prompt: str | None = None) -> str:
    """The text a backend tokenizes (``add_special_tokens=False``) for ``item``: the chat template with the
    assistant turn opened, then the item's prefill when it has one, so the model continues the prefix."""
    return chat_text(tok, item.prompt, system_prompt) + prefill_of(item)


def open_backend(name: str, subject, settings, loaded=None) -> Backend:
    """The registered backend ``name`` for ``subject``; ``loaded`` = (model, tok) already in memory (hf only)."""
    cls = registry.lookup("backend", name)
    return cls(subject, settings, loaded=loaded) if loaded is not None else cls(subject, settings)
