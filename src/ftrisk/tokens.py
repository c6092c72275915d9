"""Token-sequence helpers shared by generation and training."""

from __future__ import annotations


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the longest token prefix of every row, leaving each row at least one token of its own."""
    if not rows:
        return 0
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for i in range(max(n, 0)):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return max(n, 0)
