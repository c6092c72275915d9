"""The one set of formatters every report uses: percent, interval, duration, dollars.

Reports (markdown, HTML, the headline in results.json, comparisons, the planner's line, the bench's
table) print numbers through these functions only, so a number reads the same wherever it appears.
"""

from __future__ import annotations

#: What a missing value prints as.
DASH = "–"


def pct(x: float | None, digits: int = 1) -> str:
    """A rate in [0, 1] as a percentage: ``pct(0.975) == "97.5%"``."""
    return DASH if x is None else f"{100 * x:.{digits}f}%"


def interval(lo: float | None, hi: float | None, digits: int = 1) -> str:
    """A confidence interval of rates in [0, 1]: ``interval(0.9, 0.95) == "[90.0, 95.0]%"``."""
    if lo is None or hi is None:
        return DASH
    return f"[{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]%"


def duration(seconds: float | None) -> str:
    """Seconds below a minute, minutes below an hour, hours above."""
    s = float(seconds or 0)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def dollars(usd: float | None) -> str:
    """Cents below a dollar get a third digit: ``$0.012``, ``$1.20``."""
    u = float(usd or 0)
    return f"${u:.2f}" if u >= 1 else f"${u:.3f}"
