"""The generation backend protocol."""

from __future__ import annotations

from typing import Callable, Iterator

from ftrisk import registry


class Backend:
    """Greedy decoding of chat prompts for one :class:`ftrisk.model.subject.Subject`.

    ``generate`` yields lists of rows ``{id, completion, prompt_tokens, new_tokens, finished}`` as
    batches finish (so the caller can store them); ``record`` says what was used, written next to
    the completions by the caller.
    """

    name = ""

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


def open_backend(name: str, subject, settings, loaded=None) -> Backend:
    """The registered backend ``name`` for ``subject``; ``loaded`` = (model, tok) already in memory (hf only)."""
    cls = registry.lookup("backend", name)
    return cls(subject, settings, loaded=loaded) if loaded is not None else cls(subject, settings)
