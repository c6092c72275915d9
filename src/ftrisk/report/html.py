"""``report.html``: one self-contained page from results.json (inline CSS, plots as inline PNG, no script).

Statistics only: completion files are never opened, and every value is escaped with :func:`html.escape`.
The page opens with the release-risk headline (``results["summary"]``), then (several attack families) every
family against cost on one log-dollar axis, refusal against attack cost,
over-refusal, capability, judge agreement, refusal by category, training loss and provenance: one module of
:mod:`ftrisk.report.sections` each. The plots are drawn by :mod:`ftrisk.report.plots` (shared with
``ftrisk compare --html``), the page's pieces come from :mod:`ftrisk.report.page`.
"""

from __future__ import annotations

from pathlib import Path

from ftrisk.formatting import DASH, pct
from ftrisk.io import write_text_atomic
from ftrisk.report import markdown as md
from ftrisk.report.page import bullets, esc, page
from ftrisk.report.results import families_of, is_multi_family, run_name
from ftrisk.report.sections.capability import capability_section
from ftrisk.report.sections.families import family_curves
from ftrisk.report.sections.judges import judge_agreement
from ftrisk.report.sections.provenance import provenance_section
from ftrisk.report.sections.refusal import refusal_by_category, refusal_by_stage, refusal_curves
from ftrisk.report.sections.training import training_section


def _headline(results: dict) -> str:
    s = results.get("summary")
    if not s:
        return ("<div class=headline><p>The run has not finished: results.json has no summary, so there is no cost "
                "to undo yet.</p></div>")
    sub = (f"Threshold {pct(s.get('threshold'), 0)} on {s.get('headline_benchmark') or DASH}, judge "
           f"{s.get('headline_judge') or DASH}, seeds {', '.join(map(str, s.get('seeds') or [])) or DASH}.")
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
    if is_multi_family(results):
        items.insert(0, "Attack families: the run attacked one subject with several methods, each on one cost scale "
                        "(seconds, estimated FLOPs, dollars). The cheapest weight-editing family that reached the "
                        "threshold is the headline; prefilling changes no weight and costs nothing, so it is the "
                        "floor, reported beside it. Its cost plots have a log dollar axis; the step plots below "
                        f"are the first family's ({families_of(results)[0]['label']}).")
    return "<h2 id=how>How to read this</h2>" + bullets(items)


def render_html(results: dict, run_dir: Path) -> str:
    """report.html of one run: statistics from results.json plus the training-loss files; never completion text."""
    run_dir = Path(run_dir)
    name = run_name(run_dir)
    prov = results.get("provenance") or {}
    a = results.get("attack") or {}
    attack = f"attack {esc(a.get('method'))}, {esc(a.get('steps'))} steps"
    if is_multi_family(results):
        attack = "attacks " + ", ".join(esc(f["label"]) + (f" ({esc(a.get('steps'))} steps)" if i == 0 else "")
                                        for i, f in enumerate(families_of(results)))
    meta = (f"Model <code>{esc(prov.get('model_spec'))}</code> · {attack} · headline judge "
            f"<code>{esc(results.get('headline_judge'))}</code>")
    parts = [f"<h1>ftrisk report: {esc(name)}</h1><p class=meta>{meta}</p>", _headline(results)]
    if a.get("stopped_by") == "max_minutes":
        parts.append(f"<p class=warn>Stopped by the time budget after {esc(a.get('steps'))} of "
                     f"{esc(a.get('planned_steps'))} steps: the cost depends on how fast this machine was.</p>")
    parts += [_how_to_read(results), refusal_by_stage(results), family_curves(results), refusal_curves(results, True),
              refusal_curves(results, False), capability_section(results), judge_agreement(results),
              refusal_by_category(results), training_section(results, run_dir), provenance_section(results)]
    return page(f"ftrisk report: {name}", "\n".join(p for p in parts if p))  # a section a run lacks: no line


def write_reports(run_dir: str | Path, results: dict, cfg=None) -> tuple[Path, Path]:
    """report.md and report.html of a run, each written atomically; ``cfg`` may be None (``ftrisk report``)."""
    run_dir = Path(run_dir)
    text_md = md.render(results, cfg, run_name(run_dir))
    text_html = render_html(results, run_dir)
    return (write_text_atomic(run_dir / "report.md", text_md), write_text_atomic(run_dir / "report.html", text_html))
