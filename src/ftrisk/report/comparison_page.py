"""``ftrisk compare --html``: the comparison table, its notes, and every run's refusal curves overlaid (drawn by
the report's plotting code)."""

from __future__ import annotations

from ftrisk.formatting import dollars, duration
from ftrisk.report.comparison import Run
from ftrisk.report.page import bullets, esc, page, table
from ftrisk.report.plots import STYLES, curve_plot, judge_series, png
from ftrisk.report.results import guard, point_family, primary_label


def compare_html(runs: list[Run], head, rows, notes, plan) -> str:
    """The comparison page: the table, the notes, and every run's curves overlaid (the report's plotting code)."""
    parts = ["<h1>ftrisk compare</h1>", f"<p class=meta>{len(runs)} runs: "
             + esc(", ".join(r.name for r in runs)) + "</p>", table(head, rows)]
    if notes:
        parts.append("<h2>Not compared</h2>" + bullets(notes))
    for harmful, names in ((True, plan["harmful"]), (False, plan["benign"])):
        if names:
            what = "Refusal" if harmful else "Over-refusal (benign prompts)"
            parts.append(f"<h2>{what} against attack steps</h2>")
        for bench in names:
            series = []
            for i, r in enumerate(runs):
                if bench in r.harmful:
                    series += guard(r.dir, _run_series, r, bench, plan["judges"][r.name], i)
            title = bench + ("" if harmful else " (over-refusal)")
            fig = curve_plot(series, title=title, threshold=plan["threshold"] if harmful else None,
                             ylabel="refusal rate" if harmful else "over-refusal rate", legend="below")
            parts.append(png(fig, f"Compared runs: {title}", f"{title}: every run's curve with its judge, 95% CI "
                             "bands; each run's final cost in its label."))
    return page("ftrisk compare", "\n".join(parts))


def _run_series(r: Run, bench: str, judge: str | None, i: int) -> list[dict]:
    """One run's curve on ``bench`` (its mean over seeds when there are several); its final cost in the label."""
    series = judge_series(r.results, bench, [judge] if judge else [], label=f"{r.name} · ", color_offset=i)
    primary = primary_label(r.results)  # the curve is the first attack family's: its last point's cost
    last = max((st["point"] for st in r.results["stages"].values()
                if st.get("point") and point_family(r.results, st["point"]) == primary), key=lambda p: p["step"],
               default=None)
    if last and series:
        series[-1]["label"] += (f" ({last['step']} steps = {duration(last['cost'].get('wall_seconds'))}, "
                                f"{dollars(last['cost'].get('usd'))})")
    for s in series:
        s["style"] = STYLES[i % len(STYLES)]
    return series
