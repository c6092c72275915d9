"""The chat template, applied the same way for generation and training."""

from __future__ import annotations

import hashlib


def chat_text(tok, prompt: str, system_prompt: str | None = None, response: str | None = None) -> str:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    if response is None:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    messages.append({"role": "assistant", "content": response})
    return tok.apply_chat_template(messages, tokenize=False)


def template_sha256(tok) -> str:
    return hashlib.sha256((tok.chat_template or "").encode()).hexdigest()
