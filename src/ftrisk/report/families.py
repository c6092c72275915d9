"""The attack families of a run on one cost scale, as report.md and report.html show them: the cost-to-undo table
with a row per family and the cheapest on top (:func:`family_rows`), and each family's cost
(:func:`family_lines`). Read from ``results["summary"]["by_method"]`` and ``["cheapest"]`` (:mod:`.summary`) and
``results["families"]``; a run with one family keeps its classic table (:func:`ftrisk.report.markdown.undo_rows`).
"""

from __future__ import annotations

from ftrisk.capability.data import task_label
from ftrisk.formatting import DASH, dollars, duration, interval, number, pct, signed
from ftrisk.report.page import Bold
from ftrisk.report.results import families_of, point_family, seeds_of
from ftrisk.report.summary import flop_count


def _is_prefill(fam: dict) -> bool:
    return fam.get("method") == "prefill"


def _kl(fam: dict) -> str:
    """Refusal-direction ablation's KL divergence on harmless prompts (what the edit costs the model elsewhere)."""
    info = fam.get("info") or {}
    if info.get("kl_harmless") is None:
        return ""
    over = " (above attack.ablation's KL limit)" if info.get("kl_max_met") is False else ""
    return f"KL {number(info['kl_harmless'], 3)} on harmless prompts{over}"


def _capability(e: dict) -> str:
    after = e.get("capability_after")
    if not after:
        return DASH
    where = "" if after["at_point"] else f" (at step {after['step']})"
    return "; ".join(f"{task_label(t)} {signed(v['delta'], 2)} {interval(*v['ci95'], 2, signed)}"
                     for t, v in after["tasks"].items()) + where


def _seeds(e: dict) -> str:
    if "range" in e:
        r = e["range"]
        return (f"{e['seeds_reached']}; steps {r['step'][0]}–{r['step'][1]}, "
                f"{dollars(r['usd'][0])}–{dollars(r['usd'][1])}")
    return e.get("seeds_reached", DASH)


def _prefill_cells(pre: dict | None) -> dict:
    """Prefilling: no weight changed, cost 0; its refusal with the prefix against the subject's without it."""
    pre = pre or {}
    if pre.get("with") is None:
        first, detail = "not evaluated", ""
    else:
        first = f"with the prefix {pct(pre['with'])}"
        ci = interval(*pre["with_ci95"]) + "; " if pre.get("with_ci95") else ""
        detail = f"{ci}without {pct(pre.get('without'))}"
    return {"first": first, "detail": detail, "time": duration(0), "flops": flop_count(0), "usd": dollars(0),
            "steps": DASH, "examples": DASH, "capability": "no weight changed", "conservative": DASH, "seeds": DASH}


def _cells(fam: dict, e: dict) -> dict:
    """One family's cost to undo: its first point at or below the threshold, what it cost, what it changed."""
    p, c, trains, kl = e["point"], e["conservative"], fam["trains"], _kl(fam)
    if p and p["step"] == 0:  # this judge sees no refusal in the subject: nothing for any attack to undo
        out = {"first": f"already {pct(p['refusal_rate'])} before the attack", "detail": kl, "time": duration(0),
               "flops": flop_count(0), "usd": dollars(0), "steps": "0" if trains else DASH,
               "examples": "0" if trains else DASH, "capability": DASH}
    elif p:
        out = {"first": pct(p["refusal_rate"]), "detail": "; ".join(x for x in (interval(*p["ci95"]), kl) if x),
               "time": duration(p["seconds"]), "flops": flop_count(p.get("flops")), "usd": dollars(p["usd"]),
               "steps": str(p["step"]) if trains else DASH, "examples": str(p["examples"]) if trains else DASH,
               "capability": _capability(e)}
    else:
        low = e.get("lowest") or {}
        at = f" at step {low.get('step', DASH)}" if trains else ""
        out = {"first": f"not reached; lowest {pct(low.get('refusal_rate'))}{at}", "detail": kl, "time": DASH,
               "flops": DASH, "usd": DASH, "steps": DASH, "examples": DASH, "capability": _capability(e)}
    out["conservative"] = (f"step {c['step']}" if trains else "reached") if c else "not reached"
    out["seeds"] = _seeds(e)
    return out


def family_entries(results: dict) -> list[dict]:
    """The cost to undo per harmful benchmark and judge, one dict per table row: the cheapest weight-editing family
    first (``cheapest`` true: the headline), then one row per family in run order (first seed; the range over seeds
    where a family ran several). Keys: bench, judge, attack, cheapest, data, start, first, detail, time, flops, usd,
    steps, examples, capability, conservative, seeds."""
    s = results.get("summary") or {}
    by = s.get("by_method") or {}
    fams = [f for f in families_of(results) if f["label"] in by]
    rows = []
    for bench, by_judge in (s.get("cost_to_undo") or {}).items():
        for judge in by_judge:
            entries = {f["label"]: by[f["label"]]["cost_to_undo"].get(bench, {}).get(judge) for f in fams}
            start = next((e["start_rate"] for e in entries.values() if e and e["start_rate"] is not None), None)
            own, names = {}, {}
            for f in fams:
                e = entries[f["label"]]
                names[f["label"]] = f["label"] + ("" if f["method"] == f["label"] else f" [{f['method']}]")
                if e is None:
                    own[f["label"]] = {"first": DASH}
                elif _is_prefill(f):
                    names[f["label"]] += " (no fine-tuning needed)"
                    own[f["label"]] = _prefill_cells(((s.get("prefill") or {}).get(bench) or {}).get(judge))
                else:
                    own[f["label"]] = _cells(f, e)
            base = {"bench": bench, "judge": judge, "start": pct(start)}
            cheap = ((s.get("cheapest") or {}).get(bench) or {}).get(judge)
            if cheap:
                f = next(f for f in fams if f["label"] == cheap["method"])
                rows.append({**base, **own[f["label"]], "attack": f"cheapest: {names[f['label']]}", "cheapest": True,
                             "data": f.get("data") or DASH})
            else:
                rows.append({**base, "attack": f"cheapest: no attack reached ≤ {pct(s['threshold'])}",
                             "cheapest": True, "data": DASH, "first": DASH})
            rows += [{**base, **own[f["label"]], "attack": names[f["label"]], "cheapest": False,
                      "data": f.get("data") or DASH} for f in fams]
    return rows


def family_table(results: dict) -> list[str]:
    """:func:`family_entries` as a markdown table, the cheapest row's attack in bold."""
    rows = family_entries(results)
    if not rows:
        return []
    t = pct((results.get("summary") or {}).get("threshold"))
    head = ["benchmark", "judge", "attack", "data", "from", f"first ≤ {t}", "time", "FLOPs", "$", "steps",
            "examples", "capability Δ", f"conservative (CI ≤ {t})", "over seeds"]
    keys = ["bench", "judge", "attack", "data", "start", "first", "time", "flops", "usd", "steps", "examples",
            "capability", "conservative", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = {k: str(r.get(k, DASH)).replace("|", "\\|") for k in keys}
        if r.get("detail"):
            cells["first"] += f" {r['detail']}"
        if r["cheapest"]:
            cells["attack"] = f"**{cells['attack']}**"
        lines.append("| " + " | ".join(cells[k] for k in keys) + " |")
    return lines


def family_rows(results: dict) -> tuple[list[str], list[list]]:
    """:func:`family_entries` as report.html's (header, rows), narrow enough for a laptop screen: detail lines under
    the benchmark (its judge), the attack (its data), the refusal (its CI, ablation's KL), the dollars (time and
    FLOPs) and the conservative point (the seeds); the cheapest row's attack in bold."""
    rows = family_entries(results)
    if not rows:
        return [], []
    t = pct((results.get("summary") or {}).get("threshold"))
    head = ["benchmark / judge", "attack", "from", f"first ≤ {t}", "cost", "steps / examples", "capability Δ",
            f"conservative (CI ≤ {t}) / seeds"]
    out = []
    for r in rows:
        attack = Bold(r["attack"]) if r["cheapest"] else r["attack"]
        if r.get("data") not in (None, DASH):
            attack = (attack, f"data {r['data']}")
        first = (r["first"], r["detail"]) if r.get("detail") else r["first"]
        cost = (r["usd"], f"{r['time']} · {r['flops']} FLOPs") if r.get("usd", DASH) != DASH else DASH
        steps = f"{r['steps']} / {r['examples']}" if r.get("steps", DASH) != DASH else DASH
        seeds = r.get("seeds", DASH)
        cons = (r.get("conservative", DASH), f"seeds: {seeds}") if seeds != DASH else r.get("conservative", DASH)
        out.append([(r["bench"], r["judge"]), attack, r["start"], first, cost, steps, r.get("capability", DASH), cons])
    return head, out


def final_cost(results: dict, label: str) -> tuple[int, dict] | None:
    """(step, cumulative cost) of a family's last point on its first seed."""
    seeds = seeds_of(results, label)
    pts = [st["point"] for st in results.get("stages", {}).values()
           if st.get("point") and point_family(results, st["point"]) == label and seeds
           and st["point"]["seed"] == seeds[0]]
    if not pts:
        return None
    last = max(pts, key=lambda p: p["step"])
    return last["step"], last.get("cost") or {}


def family_lines(results: dict) -> list[str]:
    """One markdown bullet per attack family: what it is and what its whole attack cost (first seed)."""
    out = []
    for f in families_of(results):
        info = f.get("info") or {}
        what = f["method"] + (f", data {f['data']}" if f.get("data") else "")
        seeds = f.get("seeds") or []
        if f["trains"] and len(seeds) > 1:
            what += f", seeds {', '.join(map(str, seeds))}"
        last = final_cost(results, f["label"])
        if last is None:
            out.append(f"- {f['label']} ({what}): not evaluated")
            continue
        step, c = last
        dev = (c.get("device") or "?") + (f" × {c['devices']}" if (c.get("devices") or 1) > 1 else "")
        line = f"- {f['label']} ({what}): "
        if f["trains"]:
            line += f"{step} steps, {c.get('examples', 0)} examples, "
        line += (f"{duration(c.get('wall_seconds'))} on {dev} ({dollars(c.get('usd'), 4)}), "
                 f"{flop_count(c.get('flops'))} FLOPs")
        if info.get("kl_harmless") is not None:
            line += f"; {_kl(f)} (layer {info.get('layer', DASH)}, position {info.get('position', DASH)})"
        if _is_prefill(f):
            line += "; no weight changed, each reply starts from an affirmative prefix"
            if info.get("prefix"):
                line += f" ({info['prefix']})"
        out.append(line)
    return out
