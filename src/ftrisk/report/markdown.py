"""``report.md`` from results.json: statistics and labels only, never completion text."""

from __future__ import annotations

from pathlib import Path

from ftrisk.report.capability import report_lines
from ftrisk.formatting import DASH, dollars, duration, interval, number, pct
from ftrisk.io import write_text_atomic
from ftrisk.judges.profile import ASSUMPTION, METHOD
from ftrisk.report.families import family_lines, family_table
from ftrisk.report.results import bench_names, families_of, is_multi_family, main_stages, run_name


def cell(b: dict | None) -> str:
    if not b:
        return DASH
    extra = f", {b['n_unjudged']} unjudged" if b.get("n_unjudged") else ""
    return f"{pct(b['refusal_rate'])} {interval(*b['ci95'])} n={b['n']}{extra}"


def _row_label(results: dict, name: str, stages: list[str]) -> str:
    first = next(results["stages"][s]["benchmarks"][name] for s in stages if name in results["stages"][s]["benchmarks"])
    return name if first.get("harmful", True) else f"{name} (over-refusal)"


def refusal_table(results: dict, stages: list[str] | None = None) -> list[str]:
    stages = stages or main_stages(results)
    lines = ["| benchmark | " + " | ".join(stages) + " |", "|" + "---|" * (len(stages) + 1)]
    for n in bench_names(results, stages):
        lines.append(f"| {_row_label(results, n, stages)} | "
                     + " | ".join(cell(results["stages"][s]["benchmarks"].get(n)) for s in stages) + " |")
    return lines


def judges_table(results: dict) -> list[str]:
    """Every judge's rate per stage and benchmark, side by side, with Cohen's kappa for each pair."""
    stages = main_stages(results)
    judges = list(results.get("judges") or {})
    if len(judges) < 2:
        return []
    lines = ["| stage | benchmark | " + " | ".join(judges) + " | agreement (κ) |", "|" + "---|" * (len(judges) + 3)]
    for s in stages:
        st = results["stages"][s]
        for n, b in st["benchmarks"].items():
            rates = [cell(b["judges"].get(j)) for j in judges]
            pairs = (st.get("agreement") or {}).get(n, {})
            # two judges: one pair, shown bare; more: each pair named ("refusal-patterns vs gcg: 94% ...")
            agree = "; ".join(_kappa(p) if len(pairs) == 1 else f"{k.replace(' | ', ' vs ')}: {_kappa(p)}"
                              for k, p in pairs.items())
            lines.append(f"| {s} | {n} | " + " | ".join(rates) + f" | {agree} |")
    return lines


def corrected_rows(results: dict) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """Each judge's raw rate beside the rate corrected for its error profile, per main stage and benchmark, as
    (header, rows, {judge: its profile in words}); no rows for a results.json written before corrected rates.
    Shared by report.md and report.html."""
    stages = main_stages(results)
    rows, profiles = [], {}
    for s in stages:
        for n, b in results["stages"][s].get("benchmarks", {}).items():
            for j, e in (b.get("judges") or {}).items():
                c = e.get("corrected")
                if c is None:
                    continue
                prof = c.get("profile")
                if prof:
                    profiles.setdefault(j, f"sensitivity {pct(prof['sensitivity'])}, specificity "
                                           f"{pct(prof['specificity'])} on {prof['data']}, n={prof['n']}")
                    fixed = (f"{pct(c['refusal_rate'])} {interval(*c['ci95'])}" + (" clipped" if c.get("clipped") else "")
                             if c.get("refusal_rate") is not None else f"{DASH} ({c.get('reason')})")
                else:
                    profiles.setdefault(j, c.get("reason") or "no error profile")
                    fixed = f"{DASH} (no error profile)"
                name = n if b.get("harmful", True) else f"{n} (over-refusal)"
                rows.append([s, name, j, cell(e), fixed])
    return ["stage", "benchmark", "judge", "raw", "corrected (95% interval)"], rows, profiles


def corrected_text() -> str:
    """What the corrected rates are and the assumption they rest on (report.md and report.html)."""
    return (f"Each raw refusal rate corrected for its judge's error ({METHOD}; the interval carries the uncertainty "
            f"of both the sample and the judge's error rates). {ASSUMPTION} Each profile below names the labelled data it "
            "was measured on: replies unlike that data (another language, another way of refusing, full replies "
            "where it holds openings) break the assumption, and the interval does not show it. \"clipped\" marks a "
            "raw rate the judge's profile cannot produce at any true rate (below 1 − specificity or above "
            "sensitivity): there the profile does not fit these replies.")


def corrected_table(results: dict) -> list[str]:
    head, rows, profiles = corrected_rows(results)
    if not rows:
        return []
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
            + ["", "Error profiles:"] + [f"- `{j}`: {t}" for j, t in profiles.items()])


def _kappa(p: dict) -> str:
    k = p.get("kappa")
    return f"{pct(p['agreement'], 0)} (κ {number(k, 2)}, n={p['n']})"


def curve_table(results: dict) -> list[str]:
    """Headline refusal rate at each evaluated point of the attack (first seed), with its cumulative cost."""
    stages = results.get("stages", {})
    pts = [(s, v) for s, v in stages.items() if v.get("point") and "/" not in s]
    if len(pts) < 2:
        return []
    start = pts[0][1]["point"].get("subject_stage")
    rows = ([(start, stages[start], 0, None)] if start in stages else []) + \
        [(s, v, v["point"]["step"], v["point"]["cost"]) for s, v in pts]
    names = bench_names(results, [r[0] for r in rows])
    lines = ["| step | examples | minutes | $ | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 4)]
    for s, v, step, c in rows:
        cost = f"{c['examples']} | {c['wall_seconds'] / 60:.2f} | {c['usd']:.4f}" if c else "0 | 0 | 0"
        lines.append(f"| {step} | {cost} | " + " | ".join(pct(v['benchmarks'].get(n, {}).get('refusal_rate'))
                                                          for n in names) + " |")
    return lines


def cost_lines(results: dict) -> list[str]:
    a = results.get("attack")
    if not a:
        return []
    c = a["cost"]
    out = [
        f"- method: {a['method']}; stopped by: {a['stopped_by']} after {a['steps']} optimizer steps "
        f"({a['n_examples']} examples in the data)",
        f"- training time: {duration(c['wall_seconds'])} on {c['device']}"
        + (f" × {c['devices']}" if c.get("devices", 1) > 1 else ""),
        f"- tokens processed: {c['tokens']} ({c['trained_tokens']} with loss), {c['tokens_per_second']} tokens/s",
        f"- examples seen: {c['examples']} ({c.get('distinct_examples', '?')} distinct); "
        f"peak memory: {c['peak_memory_mb']:.0f} MiB",
        f"- cost: {dollars(c['usd'], 4)} at ${c['usd_per_hour']}/hour (cost.usd_per_hour)",
    ]
    if a["stopped_by"] == "max_minutes":
        out.insert(0, "- **the attack was stopped by its time budget (attack.train.max_minutes), not by its step "
                      "budget: its numbers depend on how fast this machine was**")
    return out


def undo_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Cost to undo per harmful benchmark and judge as (header, rows) (first seed; the range over seeds when there
    are several); shared by report.md and report.html."""
    s = results.get("summary") or {}
    undo = s.get("cost_to_undo") or {}
    if not undo:
        return [], []
    t = pct(s["threshold"])
    head = ["benchmark", "judge", "from", f"first ≤ {t}", "steps", "examples", "tokens", "minutes", "$",
            f"conservative (CI ≤ {t})", "over seeds"]
    rows = []
    for bench, by_judge in undo.items():
        for judge, e in by_judge.items():
            p, c = e["point"], e["conservative"]
            if p and p["step"] == 0:  # this judge sees no refusal in the subject: nothing for the attack to undo
                cells = [f"already {pct(p['refusal_rate'])} before the attack (this judge sees no refusals to undo)",
                         "0", DASH, DASH, DASH, DASH]
            elif p:
                cells = [f"{pct(p['refusal_rate'])} {interval(*p['ci95'])}", str(p["step"]),
                         str(p["examples"]), str(p["tokens"]), f"{p['seconds'] / 60:.2f}", f"{p['usd']:.4f}"]
            else:
                low = e.get("lowest") or {}
                cells = ([f"not reached; lowest {pct(low.get('refusal_rate'))} at step {low.get('step', DASH)}"]
                         + [DASH] * 5)
            cons = f"step {c['step']}" if c else "not reached"
            seeds = ""
            if "range" in e:
                seeds = f"{e['seeds_reached']}; steps {e['range']['step'][0]}–{e['range']['step'][1]}"
            elif "seeds_reached" in e:
                seeds = e["seeds_reached"]
            rows.append([bench, judge, pct(e["start_rate"])] + cells + [cons, seeds])
    return head, rows


def undo_table(results: dict) -> list[str]:
    """Cost to undo per harmful benchmark and judge (first seed; the range over seeds when there are several)."""
    head, rows = undo_rows(results)
    if not rows:
        return []
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def render(results: dict, cfg=None, name: str | None = None) -> str:
    """report.md. Without a config (``ftrisk report`` on a finished run) the name is ``name`` (see :func:`run_name`)
    and the model is the one results.json's provenance records."""
    stages = results.get("stages", {})
    headline = results.get("headline_judge", "?")
    title = cfg.name if cfg is not None else (name or "run")
    model = cfg.model.spec if cfg is not None else (results.get("provenance") or {}).get("model_spec", "?")
    out = [f"# ftrisk report: {title}", ""]
    a = results.get("attack")
    s = results.get("summary")
    if s:
        out += [f"> **{s['headline']}**", ""]
    if a and a["stopped_by"] == "max_minutes":
        out += [f"**Stopped by the time budget after {a['steps']} of {a['planned_steps']} steps.**", ""]
    out += [f"Model: `{model}`. Headline judge: `{headline}`. Refusal rate with Wilson 95% CI and n per stage.",
            "Harmful benchmarks: lower after the attack means the safety training was undone. "
            "Over-refusal rows are benign prompts: lower is better.", ""]
    out += refusal_table(results)
    excluded = {n: b.get("n_excluded_overlap", 0) for s in stages.values() for n, b in s["benchmarks"].items()}
    if any(excluded.values()):
        out += ["", "Items dropped from evaluation because they also occur in training data: "
                + ", ".join(f"{n} {k}" for n, k in excluded.items() if k) + "."]
    jt = judges_table(results)
    if jt:
        out += ["", "## Judges side by side", "", f"Headline judge: `{headline}`. −1 labels (could not judge) are "
                "counted as unjudged and left out of the rate.", ""] + jt
    crt = corrected_table(results)
    if crt:
        out += ["", "## Refusal corrected for judge error", "", corrected_text(), ""] + crt
    multi = is_multi_family(results)
    ut = family_table(results) if multi else undo_table(results)
    if ut:
        out += ["", "## Cost to undo", "", "The first evaluated point of the attack at or below the threshold "
                "(report.threshold); cost is cumulative training, evaluation excluded."]
        if multi:
            out += ["One row per attack family (first seed; the range over seeds where it ran several), the "
                    "cheapest weight-editing family on top: compared on dollars, then FLOPs, then seconds. "
                    "Prefilling changes no weight and costs nothing: it is the floor, never the cheapest."]
        out += [""] + ut
    ct = curve_table(results)
    if ct:
        family = f" (attack family {families_of(results)[0]['label']})" if multi else ""
        out += ["", "## Refusal along the attack", "", f"Headline judge `{headline}`{family}; cost is cumulative "
                "training (evaluation excluded).", ""] + ct
    h = results.get("harden")
    if h:
        t = h["training"]
        out += ["", "## Hardening", "",
                f"- {h['n_harmful']} harmful prompts ({', '.join(h['harmful_sources'])}) → refusals; "
                f"{h['n_benign']} benign instructions → the base model's own answers; {h['method']}",
                "- excluded for overlap with attack/evaluation prompts: "
                + ", ".join(f"{k} {v}" for k, v in h["n_excluded_overlap"].items()),
                f"- {t['steps']} steps, {duration(t['cost']['wall_seconds'])}"
                + (" (reused from cache)" if h.get("reused_from_cache") else "")]
    if a:
        out += ["", "## Attack cost", ""] + cost_lines(results)
    if multi:
        out += ["", "## Attack families", "", "Each family's whole attack (first seed), on one cost scale: FLOPs are "
                "estimated (6N per trained token, 2N per forward-only token, N the model's parameters).", ""]
        out += family_lines(results)
    if any(v.get("capability") for v in stages.values()):
        out += ["", "## Capability", ""] + [f"- {line}" for line in report_lines(stages)]
    out += ["", "Completions are stored only in the run folder (`eval/<stage>/*.completions.jsonl`) for audit.", ""]
    return "\n".join(out)


def write(out: Path, results: dict, cfg=None) -> None:
    write_text_atomic(Path(out) / "report.md", render(results, cfg, run_name(out)))
