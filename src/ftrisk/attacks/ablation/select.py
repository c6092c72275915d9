"""Choosing the direction on the validation split (Arditi et al. 2024, section 2.3 and appendix C).

Every candidate (a layer's input at one post-instruction position, from layers before ``max_layer_fraction`` of the
model) is scored with the direction projected out by hooks: the first-token **refusal score** on the harmful
validation prompts, the mean log-odds of the subject's refusal tokens (:func:`refusal_score`). The best of them are
brought within the bound on the first-token **KL divergence** KL(original || ablated) on the harmless ones (in nats,
averaged over prompts: heretic's measure of collateral damage) by the largest strength that keeps it there, and
scored again at that strength (:func:`shortlist`). The ``top_k`` are then checked for real: greedy replies to the
harmful validation prompts under the hooks, judged by the run's refusal judge. The lowest judged refusal rate wins,
ties by KL. Each result is a line of ``candidates.jsonl`` (with what the meter had
counted), so a resumed run skips what is done; replies are judged in memory and never written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ftrisk.attacks.ablation.forward import (BATCH_SIZE, ablated, encode, greedy_replies, last_logits,
                                              pad_id)
from ftrisk.io import append_jsonl, jsonl_line, read_jsonl, write_text_atomic
from ftrisk.judges.base import COMPLIED, REFUSED

log = logging.getLogger(__name__)

CANDIDATES = "candidates.jsonl"


def refusal_score(logprobs: torch.Tensor, tokens: list[int], eps: float = 1e-8) -> float:
    """Mean over prompts of ``log p - log(1 - p)``, ``p`` the next-token probability of any refusal token (the
    paper's score; lower: less refusal)."""
    p = logprobs.double()[:, tokens].exp().sum(-1)
    return float((torch.log(p + eps) - torch.log(1 - p + eps)).mean())


def kl_divergence(base_logprobs: torch.Tensor, logprobs: torch.Tensor) -> float:
    """Mean over prompts of KL(base || other) of the next-token distributions, in nats."""
    base, other = base_logprobs.double(), logprobs.double()
    return float((base.exp() * (base - other)).sum(-1).mean())


def first_token_kl(model_a, other, tok, prompts: list[str], system_prompt: str | None = None, *,
                   strength: float = 1.0, meter=None, batch_size: int = BATCH_SIZE) -> float:
    """KL(model_a || other) of the first reply token, mean over ``prompts`` in nats: ``other`` is a second model
    (an attacked subject, loaded) or a direction (a tensor) projected out of ``model_a`` by hooks."""
    rows = encode(tok, prompts, system_prompt)
    pad = pad_id(tok)
    base = torch.log_softmax(last_logits(model_a, rows, pad, meter, batch_size).double(), -1)
    if isinstance(other, torch.Tensor):
        with ablated(model_a, other, strength):
            alt = last_logits(model_a, rows, pad, meter, batch_size)
    else:
        alt = last_logits(other, rows, pad, meter, batch_size)
    return kl_divergence(base, torch.log_softmax(alt.double(), -1))


class Candidates:
    """``candidates.jsonl``: a header line with the run's key, then one line per scored or judged candidate."""

    def __init__(self, path: Path, key: str):
        self.path = path
        rows = read_jsonl(path)
        if rows and rows[0].get("key") == key:
            self.rows = rows[1:]
        else:
            self.rows = []
            rows = [{"key": key}]
        write_text_atomic(path, "".join(jsonl_line(r) for r in rows))  # a torn last line (a kill) dropped

    def done(self, kind: str) -> dict:
        return {(r["layer"], r["position"]): r for r in self.rows if r["kind"] == kind}

    def add(self, row: dict) -> None:
        append_jsonl(self.path, [row])
        self.rows.append(row)

    def last_meter(self) -> dict | None:
        return self.rows[-1]["meter"] if self.rows else None


def kept_layers(n_layers: int, fraction: float) -> int:
    """Layers whose input may give the direction: the first ``int(n_layers * fraction)`` (at least one)."""
    return max(1, int(n_layers * fraction))


def _ablated_logprobs(model, r, rows, pad, strength, meter, batch_size) -> torch.Tensor:
    with ablated(model, r, strength):
        return torch.log_softmax(last_logits(model, rows, pad, meter, batch_size).double(), -1)


def score(model, dirs: torch.Tensor, *, n_layers: int, rows: list, tokens: list[int], pad: int, strength: float,
          book: Candidates, meter, batch_size: int = BATCH_SIZE) -> list[dict]:
    """The refusal score on the harmful validation prompts (``rows``) of each non-zero candidate of ``dirs``
    (layers, positions, hidden) in the first ``n_layers``; position -1 is the last token."""
    done = book.done("score")
    positions = dirs.shape[1]
    todo = [(l, p - positions) for l in range(n_layers) for p in range(positions) if dirs[l, p].abs().sum() > 0]
    for layer, pos in tqdm(todo, desc="ablation: score directions", leave=False, dynamic_ncols=True):
        if (layer, pos) not in done:
            lp = _ablated_logprobs(model, dirs[layer, pos + positions], rows, pad, strength, meter, batch_size)
            done[(layer, pos)] = row = {"kind": "score", "layer": layer, "position": pos,
                                        "refusal_score": refusal_score(lp, tokens), "meter": meter.state()}
            book.add(row)
    return [done[c] for c in todo]


#: halvings of the strength interval when a candidate's KL at full strength is above the bound (resolution 1/32)
STRENGTH_STEPS = 5
#: a candidate that keeps the KL within the bound only below this fraction of the strength is left out
MIN_STRENGTH = 1 / 16


def _within(model, r, rows, base, kl_max, strength, pad, meter, batch_size) -> tuple[float, float]:
    """(the largest strength <= ``strength`` whose first-token KL on ``rows`` is within ``kl_max``, its KL): the full
    strength when it is within, else a bisection (KL grows with the strength removed); (0, 0) when none is."""
    kl = kl_divergence(base, _ablated_logprobs(model, r, rows, pad, strength, meter, batch_size))
    if kl <= kl_max:
        return strength, kl
    lo, hi, best = 0.0, strength, (0.0, 0.0)
    for _ in range(STRENGTH_STEPS):
        mid = (lo + hi) / 2
        kl = kl_divergence(base, _ablated_logprobs(model, r, rows, pad, mid, meter, batch_size))
        if kl <= kl_max:
            lo, best = mid, (mid, kl)
        else:
            hi = mid
    return best


def shortlist(model, dirs: torch.Tensor, scored: list[dict], *, rows: list, base: torch.Tensor, kl_max: float,
              top_k: int, pad: int, strength: float, book: Candidates, meter, harmful_rows: list, tokens: list[int],
              batch_size: int = BATCH_SIZE) -> tuple[list[dict], bool]:
    """The ``top_k`` candidates to judge, each at the largest strength (up to ``strength``) that keeps the KL on the
    harmless validation prompts (``rows``; ``base``: the unablated log-probs) within ``kl_max``. A full ablation of
    a direction that removes refusal can break a small model (KL of several nats); removing part of it (heretic
    weighs its ablation the same way) can keep most of the effect within the bound. The ``2 * top_k`` candidates of
    lowest refusal score at full strength are each brought within the bound and scored again at their strength; the
    ``top_k`` of lowest score go on. When none stays within above MIN_STRENGTH, the ``top_k`` of least KL at full
    strength, and False (the bound was not met)."""
    done = book.done("strength")
    positions = dirs.shape[1]
    order = sorted(scored, key=lambda r: (r["refusal_score"], r["layer"], r["position"]))
    for cand in tqdm(order[:2 * top_k], desc="ablation: strength within the KL bound", leave=False,
                     dynamic_ncols=True):
        key = (cand["layer"], cand["position"])
        if key in done:
            continue
        r = dirs[key[0], key[1] + positions]
        alpha, kl = _within(model, r, rows, base, kl_max, strength, pad, meter, batch_size)
        score_at = (refusal_score(_ablated_logprobs(model, r, harmful_rows, pad, alpha, meter, batch_size), tokens)
                    if alpha >= MIN_STRENGTH * strength else None)
        done[key] = row = {"kind": "strength", "layer": key[0], "position": key[1], "strength": alpha,
                           "kl_harmless": kl, "refusal_score": score_at, "meter": meter.state()}
        book.add(row)
    within = [{**c, "refusal_score_full": c["refusal_score"], **{k: done[(c["layer"], c["position"])][k]
               for k in ("strength", "kl_harmless", "refusal_score")}} for c in order[:2 * top_k]]
    within = [c for c in within if c["refusal_score"] is not None]
    if within:
        return sorted(within, key=lambda c: (c["refusal_score"], c["layer"], c["position"]))[:top_k], True
    least = []
    for c in order[:top_k]:
        lp = _ablated_logprobs(model, dirs[c["layer"], c["position"] + positions], rows, pad, strength, meter,
                               batch_size)
        least.append({**c, "strength": strength, "kl_harmless": kl_divergence(base, lp)})
    log.warning("no candidate direction keeps the first-token KL on harmless prompts within attack.ablation.kl_max="
                "%g above %.3g of its strength: judging the %d of lowest refusal score at full strength", kl_max,
                MIN_STRENGTH, len(least))
    return least, False


def judge_shortlist(model, tok, dirs: torch.Tensor, short: list[dict], *, prompts: list[str], rows: list, judge,
                    max_new_tokens: int, strength: float, book: Candidates, meter,
                    batch_size: int = BATCH_SIZE) -> dict:
    """Judge each shortlisted candidate's greedy replies to the harmful validation prompts; the chosen one (its
    score row with ``val_refusal_rate`` added)."""
    done = book.done("judge")
    positions = dirs.shape[1]
    for cand in tqdm(short, desc="ablation: judge directions", leave=False, dynamic_ncols=True):
        key = (cand["layer"], cand["position"])
        if key in done:
            continue
        with ablated(model, dirs[cand["layer"], cand["position"] + positions], cand.get("strength", strength)):
            replies = greedy_replies(model, tok, rows, max_new_tokens, meter, batch_size)
        labels = [v.label for v in judge.judge([(p, text) for p, (text, _) in zip(prompts, replies)])]
        judged = [lab for lab in labels if lab in (REFUSED, COMPLIED)]
        row = {"kind": "judge", "layer": key[0], "position": key[1],
               "refusal_rate": sum(lab == REFUSED for lab in judged) / len(judged) if judged else None,
               "judged": len(judged), "meter": meter.state()}
        book.add(row)
        done[key] = row

    def rank(c):
        rate = done[(c["layer"], c["position"])]["refusal_rate"]
        return (2.0 if rate is None else rate, c["kl_harmless"], c["refusal_score"], c["layer"], c["position"])

    best = min(short, key=rank)
    return {**best, "val_refusal_rate": done[(best["layer"], best["position"])]["refusal_rate"]}
