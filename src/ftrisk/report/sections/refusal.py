"""report.html's refusal sections: refusal by stage with the cost to undo, refusal and over-refusal against attack
cost (plots), and refusal by category."""

from __future__ import annotations

from ftrisk.formatting import DASH
from ftrisk.report.families import family_rows
from ftrisk.report.markdown import corrected_rows, corrected_text, undo_rows
from ftrisk.report.page import bullets, cell, esc, na, table
from ftrisk.report.plots import cost_ticks, curve_plot, judge_series, png
from ftrisk.report.results import (curve, first_seed_stages, harmful_of, is_multi_family, judges_of, main_stages,
                                   primary_label, seeds_of)


def refusal_by_stage(results: dict) -> str:
    stages = main_stages(results)
    harmful = harmful_of(results)
    rows = [[n if h else f"{n} (over-refusal)"]
            + [cell(results["stages"][s].get("benchmarks", {}).get(n)) for s in stages] for n, h in harmful.items()]
    out = [f"<h2 id=glance>Refusal by stage</h2><p>Headline judge <code>{esc(results.get('headline_judge'))}</code>; "
           "rate, Wilson 95% CI and n.</p>", table(["benchmark"] + stages, rows)]
    excluded = {n: b.get("n_excluded_overlap", 0) for st in results.get("stages", {}).values()
                for n, b in (st.get("benchmarks") or {}).items()}
    if any(excluded.values()):
        out.append("<p>Items dropped because they also occur in training data: "
                   + esc(", ".join(f"{n} {k}" for n, k in excluded.items() if k)) + ".</p>")
    head, rows, profiles = corrected_rows(results)
    if rows:
        out += ["<h3 id=corrected>Corrected for judge error</h3><p>" + esc(corrected_text()) + "</p>",
                table(head, rows), "<p>Error profiles:</p>",
                bullets([f"{j}: {t}" for j, t in profiles.items()])]
    multi = is_multi_family(results)
    head, rows = family_rows(results) if multi else undo_rows(results)
    if rows:
        out += ["<h3>Cost to undo</h3><p>First evaluated point at or below the threshold; cost is cumulative "
                "training (evaluation excluded)."
                + (" One row per attack family (first seed; the range over seeds where it ran several), the cheapest "
                   "weight-editing family on top (it is the headline): compared on dollars, then FLOPs, then "
                   "seconds. Prefilling changes no weight and costs nothing: it is the floor, never the cheapest."
                   if multi else "") + "</p>", table(head, rows)]
    return "".join(out)


def refusal_curves(results: dict, harmful: bool) -> str:
    """Refusal (``harmful``) or over-refusal against attack cost: one plot per benchmark, a line per judge."""
    benches = [n for n, h in harmful_of(results).items() if h == harmful]
    s = results.get("summary") or {}
    title = "Refusal against attack cost" if harmful else "Over-refusal (benign prompts) against attack cost"
    out = [f"<h2 id={'curves' if harmful else 'over'}>{esc(title)}</h2>"]
    seeds = seeds_of(results)
    if not benches:
        return out[0] + na("No " + ("harmful" if harmful else "benign (over-refusal)") + " benchmark in this run.")
    if not seeds:
        return out[0] + na("not available: no attack point was evaluated.")
    judges = judges_of(results)
    for bench in benches:
        series = judge_series(results, bench, judges)
        ticks = cost_ticks(curve(results, bench, judges[0], seeds[0]) if judges else [])
        family = f" ({primary_label(results)})" if is_multi_family(results) else ""
        fig = curve_plot(series, title=bench + ("" if harmful else " (over-refusal)") + family,
                         threshold=s.get("threshold") if harmful else None, ticks=ticks,
                         ylabel="refusal rate" if harmful else "over-refusal rate")
        cap = (f"{bench}: {'refusal' if harmful else 'over-refusal'} rate per judge (headline "
               f"{judges[0] if judges else DASH}), 95% CI bands"
               + (f"; {len(seeds)} seeds, time and $ of seed {seeds[0]}" if len(seeds) > 1 else "")
               + (f"; attack family {primary_label(results)} (every family: the plots above)" if family else "")
               + ".")
        out.append(png(fig, f"{title}: {bench}", cap))
    return "".join(out)


def refusal_by_category(results: dict) -> str:
    head = results.get("headline_judge")
    stages = first_seed_stages(results)
    note = ""
    if len(stages) > 5:  # one column per point would run off a laptop screen and the printed page
        stages = main_stages(results)
        note = " Base, the subject before the attack and the final point; every point's categories are in results.json."
    out = [f"<h2 id=categories>Refusal by category</h2><p>Headline judge <code>{esc(head)}</code>; "
           f"stages of seed {esc((seeds_of(results) or [DASH])[0])}.{note}</p>"]
    for bench, harmful in harmful_of(results).items():
        by_stage = {}
        for s in stages:
            b = results["stages"][s].get("benchmarks", {}).get(bench) or {}
            by_stage[s] = ((b.get("judges") or {}).get(head) or b).get("by_category") or {}
        cats: list[str] = []
        for d in by_stage.values():
            cats += [c for c in d if c not in cats]
        title = f"<h3>{esc(bench)}{'' if harmful else ' (over-refusal)'}</h3>"
        if not cats:
            out.append(title + na("not available: no categories recorded."))
            continue
        if cats == ["uncategorized"]:
            out.append(f"<p><b>{esc(bench)}</b>: one category only (the benchmark has no category column): "
                       "see Refusal by stage.</p>")
            continue
        out.append(title)
        out.append(table(["category"] + stages, [[c] + [cell(by_stage[s].get(c)) for s in stages] for c in cats]))
    return "".join(out)
