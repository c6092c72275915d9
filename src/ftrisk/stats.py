"""Statistics for rates and paired comparisons (hand-written: a few lines each; scipy only for the exact tail)."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (well-behaved at 0 and n, unlike the Wald interval)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"n": n, "k": k, "rate": (k / n) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b (only first right) and c (only second right)."""
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom  # scipy is slow to import, and only paired capability deltas need it

    return float(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)))


def paired_delta(first: list[bool], second: list[bool], z: float = Z95) -> dict:
    """Difference of two accuracies on the same items (second - first) with Newcombe's (1998, method 10)
    hybrid score interval for paired proportions: Wilson limits of each accuracy combined with the observed
    correlation. Unlike the Wald interval it does not collapse to [0, 0] when no item changed."""
    if len(first) != len(second):
        raise ValueError("paired_delta needs the same items in both lists")
    n = len(first)
    if n == 0:
        return {"n": 0, "delta": None, "ci95": [None, None], "b": 0, "c": 0, "p_mcnemar": 1.0}
    a = sum(1 for x, y in zip(first, second) if x and y)
    b = sum(1 for x, y in zip(first, second) if x and not y)
    c = sum(1 for x, y in zip(first, second) if y and not x)
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    denom = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = (a * d - b * c) / denom if denom else 0.0
    delta = p2 - p1
    lo = delta - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    hi = delta + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return {"n": n, "delta": round(delta, 4), "ci95": [round(max(-1.0, lo), 4), round(min(1.0, hi), 4)],
            "b": b, "c": c, "p_mcnemar": mcnemar(b, c)}
