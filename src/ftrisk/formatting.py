"""The one set of formatters every report uses: percent, interval, duration, dollars, and plain or signed numbers.

Reports (markdown, HTML, the headline in results.json, comparisons, the planner's line, the bench's
table) print numbers through these functions only, so a number reads the same wherever it appears.
Table columns whose header names the unit ("minutes", "$") print plain fixed-point numbers instead.
"""

from __future__ import annotations

from typing import Callable

#: What a missing value prints as.
DASH = "–"


def pct(x: float | None, digits: int = 1) -> str:
    """A rate in [0, 1] as a percentage: ``pct(0.975) == "97.5%"``."""
    return DASH if x is None else f"{100 * x:.{digits}f}%"


def number(x: float | None, digits: int = 3) -> str:
    """A plain number (an accuracy, a kappa): ``number(0.5123) == "0.512"``."""
    return DASH if x is None else f"{x:.{digits}f}"


def signed(x: float | None, digits: int = 3) -> str:
    """A change, always with its sign: ``signed(0.012) == "+0.012"``, ``signed(-0.01, 2) == "-0.01"``."""
    return DASH if x is None else f"{x:+.{digits}f}"


def interval(lo: float | None, hi: float | None, digits: int = 1, fmt: Callable[..., str] = pct) -> str:
    """A confidence interval, each end formatted by ``fmt`` (a missing end is a dash):
    ``interval(0.9, 0.95) == "[90.0%, 95.0%]"``, ``interval(-0.05, 0.03, 2, signed) == "[-0.05, +0.03]"``."""
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def duration(seconds: float | None) -> str:
    """Seconds below a minute, minutes below an hour, hours above."""
    s = float(seconds or 0)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def dollars(usd: float | None, digits: int | None = None) -> str:
    """Cents below a dollar get a third digit: ``$0.012``, ``$1.20``; ``digits`` fixes the digits (an exact
    account: ``dollars(0.0002, 4) == "$0.0002"``)."""
    u = float(usd or 0)
    if digits is not None:
        return f"${u:.{digits}f}"
    return f"${u:.2f}" if u >= 1 else f"${u:.3f}"
