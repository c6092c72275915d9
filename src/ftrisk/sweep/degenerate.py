"""Replies that are not answers at all: empty, repeating themselves, or in another script than the prompt. A model
that is merely broken also stops refusing; these counts (never the text) show it beside each trial."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)


def kind(reply: str, prompt: str = "") -> str | None:
    """``empty``, ``repetition`` or ``off-language`` for a degenerate reply, else None."""
    text = (reply or "").strip()
    if not text:
        return "empty"
    words = WORD.findall(text.lower())
    if len(words) >= 8:
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(grams)) <= len(grams) / 3:  # the same few three-word phrases over and over
            return "repetition"
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 10 and _latin(prompt) and sum(1 for c in letters if c.isascii()) < 0.5 * len(letters):
        return "off-language"
    return None


def _latin(prompt: str) -> bool:
    letters = [c for c in prompt if c.isalpha()]
    return not letters or sum(1 for c in letters if c.isascii()) >= 0.8 * len(letters)


def degenerate_counts(rows) -> dict:
    """{"n": replies, "empty": k, "repetition": k, "off-language": k} over completion rows."""
    out = {"n": 0, "empty": 0, "repetition": 0, "off-language": 0}
    for r in rows:
        out["n"] += 1
        k = kind(r.get("completion", ""), r.get("prompt", ""))
        if k:
            out[k] += 1
    return out
