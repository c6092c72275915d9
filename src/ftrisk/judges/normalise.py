"""A reply as the refusal-patterns judge reads it: normalised text (:func:`normalise`) split into sentences
(:func:`sentences`). The stop rule of generation (:mod:`ftrisk.judges.opening`) measures the same normalised text."""

from __future__ import annotations

import re
import unicodedata

from ftrisk.judges.patterns_data import (BARE_IM, CAN_NOT, NO_APOSTROPHE, QUOTE_TABLE, REPEATED_WORD, STAGE,
                                         TRADITIONAL_TO_SIMPLIFIED)

_SENTENCE = re.compile(r"[^\n.!?;。।]+[.!?;。।]*")


def normalise(text: str) -> str:
    """ASCII quotes, NFKC, case-fold, markdown emphasis and ``<think>`` blocks removed, whitespace collapsed
    (line breaks kept as single newlines: they end sentences); a role-play stage direction that opens a line put on a
    line of its own, an in-character quotation filling the rest of that line unquoted (``STAGE``); small-model noise
    repaired (repeated words, "can not", "dont", "im sorry")."""
    t = re.sub(r"(?s)<think>.*?</think>", " ", text or "")
    t = unicodedata.normalize("NFKC", t.translate(QUOTE_TABLE)).translate(QUOTE_TABLE).casefold()
    t = t.translate(TRADITIONAL_TO_SIMPLIFIED)
    if "*" in t:
        t = STAGE.sub(lambda m: m.group(1) + "\n" + (m.group(2) or ""), t)
    t = re.sub(r"\*+|__+|~~", "", t)
    t = re.sub(r"(?m)^[ \t]*(?:#+|>+)[ \t]*", "", t)
    t = re.sub(r"[^\S\n]+", " ", t)
    return re.sub(r" ?\n\s*", "\n", _repair(t)).strip()


def _repair(t: str) -> str:
    """Small-model noise: a word repeated at once, "can not", contractions without their apostrophe."""
    words = t.split(" ")
    if any(a == b for a, b in zip(words, words[1:])):
        t = REPEATED_WORD.sub(r"\1", t)
    if "can not" in t:
        t = CAN_NOT.sub("cannot", t)
    if "im " in t:
        t = BARE_IM.sub("i'm", t)
    return NO_APOSTROPHE.sub(r"\1n't", t) if "nt" in t else t


def sentences(t: str) -> list[tuple[int, str]]:
    """(offset, sentence) pairs: split at . ! ? ; 。 । and line breaks."""
    out = []
    for m in _SENTENCE.finditer(t):
        s = m.group(0)
        stripped = s.lstrip()
        if stripped.strip(" .!?;。।"):
            out.append((m.start() + len(s) - len(stripped), stripped))
    return out
