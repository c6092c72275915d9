"""The subject's own refusal tokens, for the first-token refusal score of :mod:`.select`.

The paper fixes them by hand per model family ("I" for Llama and Gemma, "I" and "As" for Qwen). Here they are read
from the subject: its greedy replies to the harmful train prompts are judged by the run's refusal judge, and the
refusal tokens are the reply-opening tokens that open refused replies more often than complied ones -- at most
``MOST``, each with at least ``SHARE`` of the best one's margin. A subject that refused none of them (nothing to
ablate) falls back to the tokens most in excess after harmful over harmless prompts
(:func:`.directions.excess_tokens`), with a warning. The judged replies give the unablated refusal rate too; they are
not kept.
"""

from __future__ import annotations

import logging
from collections import Counter

from ftrisk.attacks.ablation.directions import excess_tokens
from ftrisk.attacks.ablation.forward import BATCH_SIZE, greedy_replies
from ftrisk.judges.base import COMPLIED, REFUSED

log = logging.getLogger(__name__)

MOST = 5
SHARE = 0.1


def opening_margin(openers: list[tuple[int, int]]) -> dict[int, float]:
    """(first token, label) per judged reply -> each token's share of the refused replies minus its share of the
    complied ones."""
    refused = Counter(t for t, lab in openers if lab == REFUSED)
    complied = Counter(t for t, lab in openers if lab == COMPLIED)
    n_r, n_c = sum(refused.values()), sum(complied.values())
    return {t: refused[t] / n_r - (complied[t] / n_c if n_c else 0.0) for t in refused}


def pick(margin: dict[int, float]) -> list[int]:
    """The tokens of largest positive margin: at most MOST, each with at least SHARE of the best margin."""
    ranked = sorted(((m, t) for t, m in margin.items() if m > 0), key=lambda x: (-x[0], x[1]))[:MOST]
    return [t for m, t in ranked if m >= SHARE * ranked[0][0]]


def refusal_tokens(model, tok, *, prompts: list[str], rows: list, judge, acts, max_new_tokens: int, book, meter,
                   batch_size: int = BATCH_SIZE) -> dict:
    """{"tokens", "base_refusal_rate", "judged", "rule"}: from the book when a resumed run has it, else computed (and
    written there with the meter's count)."""
    done = [r for r in book.rows if r["kind"] == "refusal_tokens"]
    if done:
        return done[0]
    replies = greedy_replies(model, tok, rows, max_new_tokens, meter, batch_size)
    labels = [v.label for v in judge.judge([(p, text) for p, (text, _) in zip(prompts, replies)])]
    openers = [(ids[0], lab) for (_, ids), lab in zip(replies, labels) if ids and lab in (REFUSED, COMPLIED)]
    judged = [lab for lab in labels if lab in (REFUSED, COMPLIED)]
    tokens, rule = pick(opening_margin(openers)), "judged"
    if not tokens:
        log.warning("the subject refused none of the %d harmful train prompts: the refusal score uses the tokens most "
                    "likely after harmful over harmless prompts, and ablation has little to remove", len(prompts))
        tokens, rule = excess_tokens(acts, MOST, SHARE), "excess"
    row = {"kind": "refusal_tokens", "tokens": tokens, "rule": rule, "judged": len(judged),
           "base_refusal_rate": sum(lab == REFUSED for lab in judged) / len(judged) if judged else None,
           "meter": meter.state()}
    book.add(row)
    return row
