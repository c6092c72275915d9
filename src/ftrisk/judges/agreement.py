"""How well a judge agrees with gold labels, or with another judge (pure functions, no heavy imports).

Labels are in the refusal view: 1 refused (the positive class), 0 complied, -1 could not judge.
Proportions come with a Wilson 95% interval (:func:`ftrisk.stats.wilson`), rounded as
:func:`ftrisk.stats.rate` rounds them. Cohen's kappa comes with the large-sample interval of Fleiss, Cohen and
Everitt (1969): kappa ± 1.96 standard errors, clipped to [-1, 1]; its standard error is 0 when the two sides agree
on every item, so a perfect kappa's interval is the point (read n beside it). F1 has none.

Cohen's kappa is ``None`` when it is undefined: no items, or expected agreement 1 (both sides gave
every item the same single label, so observed agreement is 1 too and nothing is left beyond chance).
We do not report 1.0 there: a judge that says "refused" to everything on an all-refusal set has shown
no skill, and 1.0 would read as perfect chance-corrected agreement.
"""

from __future__ import annotations

import math

from ftrisk.stats import Z95, wilson


def wilson_ci(k: int, n: int) -> list[float] | None:
    """The Wilson 95% interval of k in n, rounded to 4 places; ``None`` for n = 0."""
    if n == 0:
        return None
    lo, hi = wilson(k, n)
    return [round(lo, 4), round(hi, 4)]



def _ratio(k: int, n: int) -> float | None:
    return k / n if n else None


def _counts(a: list[int], b: list[int]) -> tuple[int, int, int, int]:
    """(both 1, a 1 and b 0, a 0 and b 1, both 0)."""
    n11 = sum(1 for x, y in zip(a, b) if x == 1 and y == 1)
    n10 = sum(1 for x, y in zip(a, b) if x == 1 and y == 0)
    n01 = sum(1 for x, y in zip(a, b) if x == 0 and y == 1)
    n00 = sum(1 for x, y in zip(a, b) if x == 0 and y == 0)
    return n11, n10, n01, n00


def kappa(n11: int, n10: int, n01: int, n00: int) -> float | None:
    """Cohen's kappa of a 2x2 table; ``None`` when undefined (no items, or expected agreement 1)."""
    n = n11 + n10 + n01 + n00
    if n == 0:
        return None
    observed = (n11 + n00) / n
    expected = ((n11 + n10) * (n11 + n01) + (n01 + n00) * (n10 + n00)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def kappa_ci(n11: int, n10: int, n01: int, n00: int) -> list[float] | None:
    """95% interval of Cohen's kappa of a 2x2 table from the Fleiss-Cohen-Everitt (1969) large-sample variance
    (hand-written: a few lines, and no statistics package ships it for a plain table); ``None`` where kappa is."""
    k = kappa(n11, n10, n01, n00)
    if k is None:
        return None
    n = n11 + n10 + n01 + n00
    p = [[n11 / n, n10 / n], [n01 / n, n00 / n]]  # p[i][j]: first side says i, second says j (index 0 = refused)
    row = [p[0][0] + p[0][1], p[1][0] + p[1][1]]
    col = [p[0][0] + p[1][0], p[0][1] + p[1][1]]
    po, pe = p[0][0] + p[1][1], row[0] * col[0] + row[1] * col[1]
    diag = sum(p[i][i] * ((1 - pe) - (col[i] + row[i]) * (1 - po)) ** 2 for i in (0, 1))
    off = (1 - po) ** 2 * sum(p[i][j] * (col[i] + row[j]) ** 2 for i in (0, 1) for j in (0, 1) if i != j)
    var = max(0.0, diag + off - (po * pe - 2 * pe + po) ** 2) / (n * (1 - pe) ** 4)
    half = Z95 * math.sqrt(var)
    return [round(max(-1.0, k - half), 4), round(min(1.0, k + half), 4)]


def _check(name: str, labels: list[int], allowed: tuple[int, ...]) -> None:
    bad = [x for x in labels if x not in allowed]
    if bad:
        raise ValueError(f"{name} labels must be in {allowed} (got {bad[0]!r})")


def against_labels(pred: list[int], gold: list[int]) -> dict:
    """A judge's labels ``pred`` against gold labels (0/1). Items the judge could not judge (-1) are
    counted in ``n_unjudged`` and left out of every other metric."""
    if len(pred) != len(gold):
        raise ValueError(f"pred and gold differ in length ({len(pred)} vs {len(gold)})")
    _check("pred", pred, (1, 0, -1))
    _check("gold", gold, (1, 0))
    pairs = [(p, g) for p, g in zip(pred, gold) if p != -1]
    tp, fp, fn, tn = _counts([p for p, _ in pairs], [g for _, g in pairs])
    n = len(pairs)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)  # = 2PR / (P + R); 0 when tp = 0, None with no positives at all
    return {
        "n": len(pred), "n_unjudged": len(pred) - n, "n_judged": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "accuracy": _ratio(tp + tn, n), "accuracy_ci95": wilson_ci(tp + tn, n),
        "precision": precision, "precision_ci95": wilson_ci(tp, tp + fp),
        "recall": recall, "recall_ci95": wilson_ci(tp, tp + fn),
        "f1": f1, "kappa": kappa(tp, fp, fn, tn), "kappa_ci95": kappa_ci(tp, fp, fn, tn),
    }


def pairwise(a: list[int], b: list[int]) -> dict:
    """Agreement of two judges on the same items; only items both judged (neither -1) count."""
    if len(a) != len(b):
        raise ValueError(f"the two label lists differ in length ({len(a)} vs {len(b)})")
    _check("first judge's", a, (1, 0, -1))
    _check("second judge's", b, (1, 0, -1))
    pairs = [(x, y) for x, y in zip(a, b) if x != -1 and y != -1]
    n11, n10, n01, n00 = _counts([x for x, _ in pairs], [y for _, y in pairs])
    n = len(pairs)
    return {
        "n": n, "n_unjudged": len(a) - n,
        "agreement": _ratio(n11 + n00, n), "agreement_ci95": wilson_ci(n11 + n00, n),
        "kappa": kappa(n11, n10, n01, n00), "kappa_ci95": kappa_ci(n11, n10, n01, n00),
        "table": {"both_refused": n11, "only_first_refused": n10, "only_second_refused": n01, "both_complied": n00},
    }
