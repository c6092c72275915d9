"""How two sides' replies to the same prompts differ: the headline judge's labels of each, and for every prompt
whose tokens differ, the first differing token and the logit gap between the two candidates when the prompt is
decoded alone (a near-tie broken by batch numerics)."""

from __future__ import annotations


def label_agreement(ids: list[str], baseline: dict[str, str], ours: dict[str, str], judge) -> dict:
    """Headline-judge labels of both sides' replies: the share of ``ids`` whose labels match, and the labels."""
    pairs_b = [("", baseline[i]) for i in ids]
    pairs_o = [("", ours[i]) for i in ids]
    lb = [v.label for v in judge.judge(pairs_b)]
    lo = [v.label for v in judge.judge(pairs_o)]
    same = sum(a == b for a, b in zip(lb, lo))
    return {"label_agreement": same / len(ids) if ids else 1.0, "labels_differ": [i for i, a, b in zip(ids, lb, lo) if a != b],
            "baseline_labels": dict(zip(ids, lb)), "ftrisk_labels": dict(zip(ids, lo)),
            "baseline_refusal_rate": sum(x == 1 for x in lb) / len(ids) if ids else 0.0,
            "ftrisk_refusal_rate": sum(x == 1 for x in lo) / len(ids) if ids else 0.0}


def first_difference(tok, base_ids: list[int], ours_text: str) -> tuple[int, int | None]:
    """(k, ftrisk's token at k): the first token position where ftrisk's reply leaves the baseline's tokens
    (ftrisk's text re-encoded after the common part; None when it ends there)."""
    k = 0
    while k < len(base_ids) and ours_text.startswith(tok.decode(base_ids[: k + 1], skip_special_tokens=True)):
        k += 1
    rest = ours_text[len(tok.decode(base_ids[:k], skip_special_tokens=True)):]
    nxt = tok(rest, add_special_tokens=False)["input_ids"] if rest else []
    return k, (nxt[0] if nxt else None)


def explain_differences(model, tok, texts: dict[str, str], base_ids: dict[str, list[int]], ours: dict[str, str],
                        labels: dict, limit: int = 200) -> list[dict]:
    """For each prompt whose replies differ: the first differing token, both candidates, and their logits when
    the prompt and the common part are decoded alone (batch 1, no padding): a small gap is a near-tie that batch
    shapes (padding, shared prefix, batch size) broke the other way."""
    import torch

    out = []
    for i, b in base_ids.items():
        if tok.decode(b, skip_special_tokens=True) == ours[i] or len(out) >= limit:
            continue
        k, o_tok = first_difference(tok, b, ours[i])
        ids = tok(texts[i], add_special_tokens=False)["input_ids"] + b[:k]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, -1].float()
        b_tok = b[k] if k < len(b) else tok.eos_token_id  # the baseline stopped here: its choice was EOS
        o_tok = tok.eos_token_id if o_tok is None else o_tok
        row = {"id": i, "first_diff_token": k, "baseline_token": tok.decode([b_tok]), "ftrisk_token": tok.decode([o_tok]),
               "alone_picks": "baseline" if int(logits.argmax()) == b_tok else
               "ftrisk" if int(logits.argmax()) == o_tok else "neither",
               "logit_gap_alone": round(float(logits[b_tok] - logits[o_tok]), 5),
               "labels": [labels["baseline_labels"][i], labels["ftrisk_labels"][i]]}
        out.append(row)
    return out
