"""report.html's Hardening and attack training section: what hardening trained on, the training-loss plots read
from the run folder's metrics.jsonl files, and the attack's cost."""

from __future__ import annotations

from pathlib import Path

from ftrisk.formatting import duration
from ftrisk.io import read_jsonl
from ftrisk.report.families import family_lines
from ftrisk.report.markdown import cost_lines
from ftrisk.report.page import bullets, na
from ftrisk.report.plots import line_plot, png
from ftrisk.report.results import is_multi_family


def loss_series(path: Path) -> tuple[list[float], list[float]] | None:
    rows = {r["step"]: r["loss"] for r in read_jsonl(path) if isinstance(r, dict) and "step" in r and "loss" in r}
    return (sorted(rows), [rows[k] for k in sorted(rows)]) if rows else None


def attack_losses(run_dir: Path) -> list[tuple[str, list[float], list[float]]]:
    """Every attack's training loss in the run folder as (name, steps, losses): the first attack family's seeds
    (``attack/seed-S``, named ``seed-S``), then every other family's (``attack/<label>/seed-S``, named
    ``<label>/seed-S``)."""
    first = sorted(run_dir.glob("attack/seed-*"), key=lambda p: (len(p.name), p.name))
    others = sorted((d for d in run_dir.glob("attack/*/seed-*") if not d.parent.name.startswith("seed-")),
                    key=lambda p: (p.parent.name, len(p.name), p.name))
    out = []
    for d in first + others:
        loss = loss_series(d / "metrics.jsonl")
        if loss:
            out.append((d.name if d.parent.name == "attack" else f"{d.parent.name}/{d.name}", *loss))
    return out


def training_section(results: dict, run_dir: Path) -> str:
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
        out.append("<h3>Hardening</h3>" + bullets(items))
        model = Path(str(h.get("model") or ""))  # the hardened model folder keeps its training metrics
        loss = loss_series((model if model.is_absolute() else run_dir / model) / "metrics.jsonl") if h.get("model") \
            else None
        if loss:
            panels.append(("hardening loss", [("hardening", *loss)]))
        else:
            missing.append("hardening loss: not available (its metrics.jsonl is not in the hardened model folder)")
    else:
        out.append(na("No hardening in this run (harden.enabled=false, or the run stopped before it)."))
    attack = attack_losses(Path(run_dir))
    if attack:
        panels.append(("attack loss", attack))
    else:
        missing.append("attack loss: not available (no attack/seed-*/metrics.jsonl in the run folder)")
    if panels:
        out.append(png(line_plot(panels, "training loss (assistant tokens)"), "Training loss",
                       "Training loss per optimizer step (mean over the step's assistant tokens)."))
    out += [na(m) for m in missing]
    if results.get("attack"):
        out.append("<h3>Attack cost</h3>" + bullets([line[2:].replace("**", "") for line in cost_lines(results)]))
    if is_multi_family(results):
        out.append("<h3>Attack families</h3><p>Each family's whole attack (first seed) on one cost scale; FLOPs are "
                   "estimated (6N per trained token, 2N per forward-only token, N the model's parameters).</p>"
                   + bullets([line[2:] for line in family_lines(results)]))
    return "".join(out)
