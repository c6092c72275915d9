"""Choosing the direction on the validation split (Arditi et al. 2024, section 2.3 and appendix C).

Every candidate (a layer's input at one post-instruction position, from layers before ``max_layer_fraction`` of the
model) is scored with the direction projected out by hooks: the first-token **refusal score** on the harmful
validation prompts, the mean log-odds of the subject's refusal tokens (:func:`refusal_score`). In that order, the
first-token **KL divergence** KL(original || ablated) on the harmless ones (in nats, averaged over prompts: heretic's
measure of collateral damage) is computed until ``top_k`` candidates are within ``kl_max``. Those are then checked
for real: greedy replies to the harmful validation prompts under the hooks, judged by the run's refusal judge. The
lowest judged refusal rate wins, ties by KL. Each result is a line of ``candidates.jsonl`` (with what the meter had
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


def shortlist(model, dirs: torch.Tensor, scored: list[dict], *, rows: list, base: torch.Tensor, kl_max: float,
              top_k: int, pad: int, strength: float, book: Candidates, meter,
              batch_size: int = BATCH_SIZE) -> tuple[list[dict], bool]:
    """The ``top_k`` candidates with KL <= ``kl_max`` on the harmless validation prompts (``rows``; ``base``: the
    unablated log-probs), lowest refusal score first. The KL is computed in that order until ``top_k`` are within
    the bound (the same choice as computing every KL first, at a fraction of the cost). When none is within, the
    ``top_k`` of least KL, and False (the bound was not met)."""
    done = book.done("kl")
    positions = dirs.shape[1]
    order = sorted(scored, key=lambda r: (r["refusal_score"], r["layer"], r["position"]))
    within = []
    for cand in tqdm(order, desc="ablation: KL of the best directions", leave=False, dynamic_ncols=True):
        key = (cand["layer"], cand["position"])
        if key not in done:
            lp = _ablated_logprobs(model, dirs[key[0], key[1] + positions], rows, pad, strength, meter, batch_size)
            done[key] = row = {"kind": "kl", "layer": key[0], "position": key[1],
                               "kl_harmless": kl_divergence(base, lp), "meter": meter.state()}
            book.add(row)
        if done[key]["kl_harmless"] <= kl_max:
            within.append({**cand, "kl_harmless": done[key]["kl_harmless"]})
            if len(within) == top_k:
                break
    if within:
        return within, True
    least = sorted(({**c, "kl_harmless": done[(c["layer"], c["position"])]["kl_harmless"]} for c in order),
                   key=lambda r: (r["kl_harmless"], r["layer"], r["position"]))[:top_k]
    log.warning("no candidate direction keeps the first-token KL on harmless prompts within attack.ablation.kl_max="
                "%g (least: %.3f): judging the %d of least KL", kl_max, least[0]["kl_harmless"], len(least))
    return sorted(least, key=lambda r: (r["refusal_score"], r["kl_harmless"])), False


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
        with ablated(model, dirs[cand["layer"], cand["position"] + positions], strength):
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
