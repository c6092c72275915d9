"""``report.html``: one self-contained page from results.json (inline CSS, plots as inline PNG, no script).

Statistics only: completion files are never opened, and every value is escaped with :func:`html.escape`.
The page opens with the release-risk headline (``results["summary"]``), then refusal against attack cost,
over-refusal, capability, judge agreement, refusal by category, training loss and provenance. The plots are
drawn by :mod:`ftrisk.report.plots` (shared with ``ftrisk compare --html``).
"""

from __future__ import annotations

import html
from pathlib import Path

from ftrisk.report import markdown as md
from ftrisk.io import read_jsonl, write_text_atomic
from ftrisk.report.plots import capability_plot, cost_ticks, curve_plot, judge_series, line_plot, png
from ftrisk.report.summary import curve, seeds_of


CSS = """
:root { --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { font-size: 1.25em; margin: 32px 0 8px; padding-bottom: 4px;
border-bottom: 1px solid var(--line); } h3 { font-size: 1.05em; margin: 20px 0 6px; }
.meta { color: var(--muted); margin: 0 0 16px; overflow-wrap: anywhere; }
.headline { border: 2px solid var(--accent); background: #eef5fc; border-radius: 8px; padding: 14px 18px;
             margin: 12px 0 20px; }
.headline p { margin: 0; font-size: 1.12em; font-weight: 600; }
.headline .sub { margin-top: 6px; font-size: .9em; font-weight: normal; color: var(--muted); }
.warn { border-left: 4px solid #D55E00; background: #fff4ec; padding: 6px 12px; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: .88em; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: var(--soft); font-weight: 600; }
td .ci { color: var(--muted); font-size: .9em; white-space: nowrap; }
figure { margin: 12px 0 20px; } figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .88em; margin-top: 4px; }
.na { color: var(--muted); font-style: italic; }
ul { padding-left: 22px; } li { margin: 2px 0; } code { font-size: .92em; overflow-wrap: anywhere; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: .9em; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; overflow-wrap: anywhere; font-family: ui-monospace, monospace; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { break-after: avoid; } figure, table, .headline { break-inside: avoid; }
  .wrap { overflow: visible; } a { color: inherit; text-decoration: none; }
  table { font-size: 8pt; max-width: 100%; } th, td { padding: 2px 4px; overflow-wrap: anywhere; }
}
"""


def esc(x) -> str:
    return html.escape("–" if x is None else str(x), quote=True)


def pct(x, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def duration(seconds) -> str:
    s = float(seconds or 0)
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def dollars(usd) -> str:
    u = float(usd or 0)
    return f"${u:.2f}" if u >= 1 else f"${u:.3f}"


def cell(b: dict | None):
    """A rate cell: (rate, "[lo, hi] n=…") or "–"."""
    if not b or b.get("refusal_rate") is None:
        return "–"
    lo, hi = b.get("ci95") or (None, None)
    unjudged = f", {b['n_unjudged']} unjudged" if b.get("n_unjudged") else ""
    return (pct(b["refusal_rate"]), f"[{pct(lo)}, {pct(hi)}] n={b.get('n', '?')}{unjudged}")


def table(head: list[str], rows: list[list], caption: str | None = None) -> str:
    """An HTML table; a cell is text, or (main, detail) shown as two lines. Everything is escaped."""
    def td(c) -> str:
        if isinstance(c, tuple):
            return f"<td>{esc(c[0])}<br><span class=ci>{esc(c[1])}</span></td>"
        return f"<td>{esc(c)}</td>"

    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    body = "".join("<tr>" + "".join(td(c) for c in r) + "</tr>" for r in rows)
    return (f'<div class=wrap><table>{cap}<thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def na(text: str) -> str:
    return f"<p class=na>{esc(text)}</p>"


# --------------------------------------------------------------------------- data


def harmful_of(results: dict) -> dict[str, bool]:
    """Every benchmark of the run (stage order) and whether it is harmful (else: over-refusal, benign)."""
    out: dict[str, bool] = {}
    for st in results.get("stages", {}).values():
        for name, b in (st.get("benchmarks") or {}).items():
            out.setdefault(name, bool(b.get("harmful", True)))
    return out


def judges_of(results: dict) -> list[str]:
    judges = list(results.get("judges") or {})
    head = results.get("headline_judge")
    return ([head] if head in judges else []) + [j for j in judges if j != head] or ([head] if head else [])


def first_seed_stages(results: dict) -> list[str]:
    """Stages of the first seed in run order (other seeds' stages are named ``seed-N/...``)."""
    return [s for s in results.get("stages", {}) if "/" not in s]


# --------------------------------------------------------------------------- sections


def _headline(results: dict) -> str:
    s = results.get("summary")
    if not s:
        return ("<div class=headline><p>The run has not finished: results.json has no summary, so there is no cost "
                "to undo yet.</p></div>")
    sub = (f"Threshold {pct(s.get('threshold'), 0)} on {s.get('headline_benchmark') or '–'}, judge "
           f"{s.get('headline_judge') or '–'}, seeds {', '.join(map(str, s.get('seeds') or [])) or '–'}.")
    return f"<div class=headline><p>{esc(s.get('headline'))}</p><p class=sub>{esc(sub)}</p></div>"


def _how_to_read(results: dict) -> str:
    t = pct((results.get("summary") or {}).get("threshold"), 0)
    items = [
        "Refusal plots: the x axis is the attack's optimizer steps (0 is the model before the attack); under each "
        "evaluated step are the cumulative training time and dollars. Lines are judges, bands their Wilson 95% "
        f"confidence intervals. The dashed line is the threshold ({t}): the cost to undo is the first evaluated "
        "point at or below it.",
        "Harmful benchmarks: lower after the attack means the safety training was undone. Over-refusal benchmarks are "
        "benign prompts: refusing them is a cost of safety training, lower is better.",
        "Capability: accuracy with 95% CIs; the paired Δ is against the stage the attack started from. A Δ whose CI "
        "contains 0 is no evidence of a change.",
        "Every number has its n. Small n gives wide intervals: read the interval, not the point.",
        "Judges: pattern and classifier judges can disagree; the agreement table says how much (Cohen's κ corrects "
        "for chance).",
        "Completions are not in this report (statistics only); they stay in the run folder "
        "(eval/<stage>/*.completions.jsonl) for audit.",
    ]
    return "<h2 id=how>How to read this</h2><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def _glance(results: dict) -> str:
    stages = md.main_stages(results)
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
    head, rows = md.undo_rows(results)
    if rows:
        out += ["<h3>Cost to undo</h3><p>First evaluated point at or below the threshold; cost is cumulative "
                "training (evaluation excluded).</p>", table(head, rows)]
    return "".join(out)


def _curves(results: dict, harmful: bool) -> str:
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
        fig = curve_plot(series, title=bench + ("" if harmful else " (over-refusal)"),
                         threshold=s.get("threshold") if harmful else None, ticks=ticks,
                         ylabel="refusal rate" if harmful else "over-refusal rate")
        cap = (f"{bench}: {'refusal' if harmful else 'over-refusal'} rate per judge (headline "
               f"{judges[0] if judges else '–'}), 95% CI bands"
               + (f"; {len(seeds)} seeds, time and $ of seed {seeds[0]}" if len(seeds) > 1 else "") + ".")
        out.append(png(fig, f"{title}: {bench}", cap))
    return "".join(out)


def _capability(results: dict) -> str:
    stages = {n: st for n, st in results.get("stages", {}).items() if st.get("capability")}
    out = ["<h2 id=capability>Capability</h2>"]
    if not stages:
        return out[0] + na("not available: capability was not measured (capability.enabled=false).")
    tasks: list[str] = []
    for st in stages.values():
        tasks += [t for t in st["capability"] if t not in tasks]
    from ftrisk.capability.run import _label

    names = list(stages)
    fig = capability_plot(stages, tasks, [_stage_label(n, stages[n]) for n in names])
    out.append(png(fig, "Capability per stage", "Accuracy per stage and attack point with 95% CIs (error bars)."))
    head, rows = ["stage"], [[n] for n in names]
    for task in tasks:
        first = next(st["capability"][task] for st in stages.values() if task in st["capability"])
        setting = f"{first.get('num_fewshot', '?')}-shot {first.get('metric', '')}"
        head += [f"{_label(task)} {setting}", f"{_label(task)} paired Δ"]
        for row, n in zip(rows, names):
            r = stages[n]["capability"].get(task) or {}
            d = (stages[n].get("capability_delta") or {}).get(task) or {}
            ci = r.get("ci95")
            row.append("–" if r.get("acc") is None else
                       (f"{r['acc']:.3f}", f"[{ci[0]:.3f}, {ci[1]:.3f}] n={r.get('n')}") if ci else f"{r['acc']:.3f}")
            if d.get("delta") is not None:
                p = d.get("p_mcnemar", float("nan"))
                row.append((f"{d['delta']:+.3f} vs {stages[n]['capability_delta']['vs']}",
                            f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] McNemar p={p:.3g}"))
            else:
                row.append(f"no paired Δ ({d['error']})" if d.get("error") else "–")
    out.append(table(head, rows))
    return "".join(out)


def _stage_label(name: str, st: dict) -> str:
    step = (st.get("point") or {}).get("step")
    return name if step is None or name.endswith(f"step-{step}") else f"{name}\nstep {step}"


def _agreement(results: dict) -> str:
    judges = judges_of(results)
    out = [f"<h2 id=judges>Judge agreement</h2><p>Headline judge: <code>{esc(results.get('headline_judge'))}</code>. "
           f"Judges: {esc(', '.join(judges))}. Per stage and pair: share of items both judges labelled alike (95% CI), "
           "Cohen's κ (– when undefined: both gave every item one label) and n, the items both could judge.</p>"]
    benches = list(harmful_of(results))
    rows = []
    for name, st in results.get("stages", {}).items():
        agree = st.get("agreement") or {}
        pairs = _union_keys(agree.get(b) or {} for b in benches)
        for pair in pairs:
            row = [name, pair]
            for b in benches:
                p = (agree.get(b) or {}).get(pair)
                if not p or p.get("agreement") is None:
                    row.append("–")
                    continue
                ci, k = p.get("agreement_ci95") or [None, None], p.get("kappa")
                row.append((pct(p["agreement"]), f"κ {'–' if k is None else f'{k:.2f}'} n={p.get('n')} "
                                                 f"[{pct(ci[0], 0)}, {pct(ci[1], 0)}]"))
            rows.append(row)
    if not rows:
        return out[0] + na(f"One judge ({', '.join(judges) or '–'}): no agreement to show. "
                           "Add another with eval.judges=[...].")
    out.append(table(["stage", "judges"] + benches, rows))
    return "".join(out)


def _union_keys(dicts) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out += [k for k in d if k not in out]
    return out


def _categories(results: dict) -> str:
    head = results.get("headline_judge")
    stages = first_seed_stages(results)
    note = ""
    if len(stages) > 5:  # one column per point would run off a laptop screen and the printed page
        stages = md.main_stages(results)
        note = " Base, the subject before the attack and the final point; every point's categories are in results.json."
    out = [f"<h2 id=categories>Refusal by category</h2><p>Headline judge <code>{esc(head)}</code>; "
           f"stages of seed {esc((seeds_of(results) or ['–'])[0])}.{note}</p>"]
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


def loss_series(path: Path) -> tuple[list[float], list[float]] | None:
    rows = {r["step"]: r["loss"] for r in read_jsonl(path) if isinstance(r, dict) and "step" in r and "loss" in r}
    return (sorted(rows), [rows[k] for k in sorted(rows)]) if rows else None


def _training(results: dict, run_dir: Path) -> str:
    out = ["<h2 id=training>Hardening and attack training</h2>"]
    h = results.get("harden")
    panels, missing = [], []
    if h:
        t = h.get("training") or {}
        cost = t.get("cost") or {}
        sources = ", ".join(h.get("harmful_sources") or [])
        items = [f"{h.get('n_harmful', '?')} harmful prompts ({sources}) → refusals; {h.get('n_benign', '?')} benign "
                 f"instructions → the base model's own answers; {h.get('method', '?')}",
                 "excluded for overlap with attack/evaluation prompts: "
                 + (", ".join(f"{k} {v}" for k, v in (h.get("n_excluded_overlap") or {}).items()) or "none"),
                 f"{t.get('steps', '?')} steps, {duration(cost.get('wall_seconds'))} on {cost.get('device', '?')}"
                 + (" (reused from cache)" if h.get("reused_from_cache") else "")]
        out.append("<h3>Hardening</h3><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
        model = Path(str(h.get("model") or ""))  # the hardened model folder keeps its training metrics
        loss = loss_series((model if model.is_absolute() else run_dir / model) / "metrics.jsonl") if h.get("model") \
            else None
        if loss:
            panels.append(("hardening loss", [("hardening", *loss)]))
        else:
            missing.append("hardening loss: not available (its metrics.jsonl is not in the hardened model folder)")
    else:
        out.append(na("No hardening in this run (harden.enabled=false, or the run stopped before it)."))
    attack = []
    for d in sorted(Path(run_dir).glob("attack/seed-*"), key=lambda p: (len(p.name), p.name)):
        loss = loss_series(d / "metrics.jsonl")
        if loss:
            attack.append((d.name, *loss))
    if attack:
        panels.append(("attack loss", attack))
    else:
        missing.append("attack loss: not available (no attack/seed-*/metrics.jsonl in the run folder)")
    if panels:
        out.append(png(line_plot(panels, "training loss (assistant tokens)"), "Training loss",
                       "Training loss per optimizer step (mean over the step's assistant tokens)."))
    out += [na(m) for m in missing]
    if results.get("attack"):
        out.append("<h3>Attack cost</h3><ul>" + "".join(f"<li>{esc(line[2:].replace('**', ''))}</li>"
                                                        for line in md.cost_lines(results)) + "</ul>")
    return "".join(out)


def _provenance(results: dict) -> str:
    p = results.get("provenance") or {}
    v = p.get("versions") or {}
    first = next(iter(results.get("stages", {}).values()), {})
    gen = first.get("generation") or {}
    subj = p.get("subject") or {}
    attack = results.get("attack") or {}
    judges = results.get("judges") or {}
    rows = [("created", p.get("created")), ("git revision", p.get("git_revision")),
            ("config sha256", p.get("config_sha256")), ("model", p.get("model_spec")),
            ("model fingerprint (sha256)", p.get("model_fingerprint")),
            ("dtype / device / quantization", " / ".join(str(subj.get(k) or "none")
                                                          for k in ("dtype", "device", "quantize"))),
            ("chat template", subj.get("chat_template")), ("system prompt", subj.get("system_prompt")),
            ("headline judge", results.get("headline_judge") or p.get("judge")),
            ("judges", "; ".join(f"{n} (measures {j.get('measures')}; {_flat(j.get('identity'))})"
                                 for n, j in judges.items())),
            ("run seed", p.get("seed")), ("attack seeds", ", ".join(map(str, seeds_of(results))) or None),
            ("attack", f"{attack.get('method')}, {attack.get('steps')} of {attack.get('planned_steps')} steps, "
                       f"data {attack.get('data')}, evaluated at {attack.get('eval_at')}" if attack else None),
            ("decoding", f"{gen.get('decoding')}, {gen.get('max_new_tokens')} new tokens, backend {gen.get('backend')}"
             if gen else None)]
    rows += [(f"benchmark {n}", f"n={b.get('n')}, {'harmful' if b.get('harmful') else 'benign'}, {b.get('license')}")
             for n, b in (p.get("benchmarks") or {}).items()]
    rows += [("platform", v.get("platform")),
             ("versions", ", ".join(f"{k} {val}" for k, val in v.items() if k != "platform"))]
    return "<h2 id=provenance>Provenance</h2><dl class=kv>" + "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(val)}</dd>" for k, val in rows) + "</dl>"


def _flat(obj, prefix: str = "") -> str:
    """A judge identity (nested mapping) as ``key=value`` pairs."""
    if not isinstance(obj, dict):
        return str(obj)
    return ", ".join(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}={v}" for k, v in obj.items())


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def render_html(results: dict, run_dir: Path) -> str:
    """report.html of one run: statistics from results.json plus the training-loss files; never completion text."""
    run_dir = Path(run_dir)
    name = md.run_name(run_dir)
    prov = results.get("provenance") or {}
    a = results.get("attack") or {}
    meta = (f"Model <code>{esc(prov.get('model_spec'))}</code> · attack {esc(a.get('method'))}, "
            f"{esc(a.get('steps'))} steps · headline judge <code>{esc(results.get('headline_judge'))}</code>")
    parts = [f"<h1>ftrisk report: {esc(name)}</h1><p class=meta>{meta}</p>", _headline(results)]
    if a.get("stopped_by") == "max_minutes":
        parts.append(f"<p class=warn>Stopped by the time budget after {esc(a.get('steps'))} of "
                     f"{esc(a.get('planned_steps'))} steps: the cost depends on how fast this machine was.</p>")
    parts += [_how_to_read(results), _glance(results), _curves(results, True), _curves(results, False),
              _capability(results), _agreement(results), _categories(results), _training(results, run_dir),
              _provenance(results)]
    return page(f"ftrisk report: {name}", "\n".join(parts))


def write_reports(run_dir: str | Path, results: dict, cfg=None) -> tuple[Path, Path]:
    """report.md and report.html of a run, each written atomically; ``cfg`` may be None (``ftrisk report``)."""
    run_dir = Path(run_dir)
    text_md = md.render(results, cfg, md.run_name(run_dir))
    text_html = render_html(results, run_dir)
    return (write_text_atomic(run_dir / "report.md", text_md), write_text_atomic(run_dir / "report.html", text_html))
