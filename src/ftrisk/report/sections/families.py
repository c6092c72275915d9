"""report.html's section for a run with several attack families: refusal against cost in dollars on a log axis, one
plot per harmful benchmark (headline judge), a line per family. A run with one family has no such section."""

from __future__ import annotations

from ftrisk.report.page import esc
from ftrisk.report.plots import family_cost_figure, left_edge, png, short_dollars
from ftrisk.report.results import families_of, harmful_of, is_multi_family, judges_of

TITLE = "Refusal against cost, every attack family"


def family_curves(results: dict) -> str:
    """The section's HTML: empty for a run with one attack family (its plots are the classic ones)."""
    if not is_multi_family(results):
        return ""
    s = results.get("summary") or {}
    judges = judges_of(results)
    benches = [n for n, h in harmful_of(results).items() if h]
    if not judges or not benches:
        return ""
    judge = judges[0]
    names = ", ".join(f["label"] for f in families_of(results))
    out = [f"<h2 id=families>{esc(TITLE)}</h2><p>Attack families: {esc(names)}. Cost is what each attack ran "
           "(training, a direction search), evaluation excluded, in dollars at cost.usd_per_hour.</p>"]
    for bench in benches:
        fig = family_cost_figure(results, bench, judge, s.get("threshold"))
        cap = (f"{bench}: refusal rate ({judge}) against attack cost in dollars, log scale; one line per attack "
               "family (first seed bold, other seeds thin), its last point's time beside it. A log axis has no $0: "
               f"the model before the attack is drawn at the left edge ({short_dollars(left_edge(results, bench, judge))}"
               "), joined to each family's first point by a dotted segment. Prefilling changes no weight and costs "
               "$0: a horizontal line. Dashed: the threshold.")
        out.append(png(fig, f"{TITLE}: {bench}", cap))
    return "".join(out)
