"""report.html's Judge agreement section: per stage, benchmark and pair of judges, how often they agree."""

from __future__ import annotations

from ftrisk.formatting import DASH, interval, number, pct
from ftrisk.report.page import esc, na, table
from ftrisk.report.results import harmful_of, judges_of, ordered_union


def judge_agreement(results: dict) -> str:
    judges = judges_of(results)
    out = [f"<h2 id=judges>Judge agreement</h2><p>Headline judge: <code>{esc(results.get('headline_judge'))}</code>. "
           f"Judges: {esc(', '.join(judges))}. Per stage and pair: share of items both judges labelled alike (95% CI), "
           "Cohen's κ (– when undefined: both gave every item one label) and n, the items both could judge.</p>"]
    benches = list(harmful_of(results))
    rows = []
    for name, st in results.get("stages", {}).items():
        agree = st.get("agreement") or {}
        for pair in ordered_union(agree.get(b) or {} for b in benches):
            row = [name, pair]
            for b in benches:
                p = (agree.get(b) or {}).get(pair)
                if not p or p.get("agreement") is None:
                    row.append(DASH)
                    continue
                ci, k = p.get("agreement_ci95") or [None, None], p.get("kappa")
                row.append((pct(p["agreement"]), f"κ {number(k, 2)} n={p.get('n')} {interval(ci[0], ci[1], 0)}"))
            rows.append(row)
    if not rows:
        return out[0] + na(f"One judge ({', '.join(judges) or DASH}): no agreement to show. "
                           "Add another with eval.judges=[...].")
    out.append(table(["stage", "judges"] + benches, rows))
    return "".join(out)
