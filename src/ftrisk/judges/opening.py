"""The stop rule for ``generation.stop_when_judged``: when a reply's label can no longer change.

A judge that reads only the first ``Judge.opening_chars`` characters of a reply has decided once that
opening is final. Generation knows nothing of judges: the evaluate stage hands a backend the rule built
here, a plain ``text -> bool`` function.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Optional

from ftrisk.judges.normalise import normalise

#: Characters generated past a judge's opening before its label counts as final: the text a judge reads is
#: normalised first (whitespace collapsed, markdown emphasis removed, NFKC), which can shorten it.
OPENING_MARGIN = 16


def opening_is_final(text: str, chars: int) -> bool:
    """True once a judge that reads only the first ``chars`` characters (``Judge.opening_chars``) can no longer
    change its label as more text is appended to ``text``."""
    t = text.rstrip("\ufffd")  # an incomplete UTF-8 character at the end may still change
    if "<think>" in t and "</think>" not in t:  # an open thinking block is removed whole by normalisation
        return False
    return min(len(t.strip()), len(normalise(t))) >= chars + OPENING_MARGIN


def stop_rule(chars: Optional[int]) -> Optional[Callable[[str], bool]]:
    """The rule a backend's ``stop`` takes: a reply may stop once its first ``chars`` characters are final."""
    return partial(opening_is_final, chars=chars) if chars else None
