"""The plots of report.html and ``ftrisk compare --html``: matplotlib figures, inlined as base64 PNG.

A curve is a list of series (``judge_series``: one per judge, or per seed and their mean) drawn by ``curve_plot``
against attack steps; a run with several attack families also gets ``family_cost_figure``: refusal against dollars
on a log axis, a line per family. ``png`` turns any figure into an ``<figure>`` element. matplotlib is imported where a figure
is drawn: a run that writes no plot never loads it.
"""

from __future__ import annotations

import base64
import io
import math
import statistics

from ftrisk.capability.data import task_label
from ftrisk.formatting import dollars, duration, pct
from ftrisk.report.page import esc
from ftrisk.report.results import curve, families_of, seeds_of

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print by line style
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
STYLES = ["-", "--", "-.", ":"]


def _figure(width: float = 9.3, height: float = 3.7, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="#e5e5e5", lw=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def png(fig, alt: str, caption: str | None = None) -> str:
    """A matplotlib figure as an inline <img> (base64 PNG, no external resource)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img class=plot alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def cost_ticks(points: list[dict], most: int = 9) -> tuple[list[int], list[str]]:
    """x ticks at the evaluated steps: step, then cumulative training time and dollars (thinned to ``most``)."""
    pts = sorted({p["step"]: p for p in points}.values(), key=lambda p: p["step"])
    if len(pts) > most:
        every = math.ceil(len(pts) / most)
        pts = [p for i, p in enumerate(pts) if i % every == 0 or p is pts[-1]]
    # time and dollars under a step only where there is room for them: steps are often log-spaced (0, 2, 5, ...),
    # and labels closer than ~8% of the axis print over each other; the step numbers alone fit closer
    span = max(pts[-1]["step"] - pts[0]["step"], 1) if pts else 1
    full, last = set(), None
    for i, p in enumerate(pts):
        if last is None or p["step"] - last >= 0.08 * span:
            full.add(i)
            last = p["step"]
    if pts and len(pts) - 1 not in full:  # the last point always: it is the whole attack's cost
        full = {i for i in full if pts[-1]["step"] - pts[i]["step"] >= 0.08 * span or i == 0} | {len(pts) - 1}
    labels = [f"{p['step']}\n{duration(p['seconds'])}\n{dollars(p['usd'])}" if i in full else f"{p['step']}"
              for i, p in enumerate(pts)]
    return [p["step"] for p in pts], labels


def curve_plot(series: list[dict], *, title: str, threshold: float | None = None,
               ticks: tuple[list[int], list[str]] | None = None, ylabel: str = "refusal rate", legend: str = "right"):
    """Refusal rate against attack steps. A series: {label, points (results.curve rows), kind: line | seed | mean,
    color, style}; ``line`` and ``seed`` draw their 95% CI band, ``mean`` is the mean over seeds. The legend goes
    right of the axes, or ``below`` them (long labels)."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig, (ax,) = _figure(height=3.7 if legend == "right" else 3.7 + 0.22 * len([s for s in series if s.get("label")]))
    for s in series:
        pts = sorted(s["points"], key=lambda p: p["step"])
        if not pts:
            continue
        x = [p["step"] for p in pts]
        y = [p["refusal_rate"] for p in pts]
        kind, color, style = s.get("kind", "line"), s["color"], s.get("style", "-")
        if kind in ("line", "seed") and all(p.get("ci95") for p in pts):
            ax.fill_between(x, [p["ci95"][0] for p in pts], [p["ci95"][1] for p in pts], color=color,
                            alpha=0.16 if kind == "line" else 0.06, lw=0)
        if kind == "seed":
            ax.plot(x, y, color=color, ls=style, lw=0.9, alpha=0.55, marker="o", ms=2.5, label=s.get("label"))
        else:
            ax.plot(x, y, color=color, ls=style, lw=2.0, marker="o", ms=5, label=s.get("label"))
    if threshold is not None:
        ax.axhline(threshold, color="#B00020", ls=(0, (4, 3)), lw=1.1, label=f"threshold {pct(threshold, 0)}")
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(ylabel)
    if ticks:
        ax.set_xticks(ticks[0], ticks[1], fontsize=8)
        ax.set_xlabel("attack: optimizer steps / training time / $ (cumulative)")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("attack: optimizer steps")
    ax.set_title(title, fontsize=11, loc="left")
    if legend == "right":
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # never over the data
    else:
        fig.legend(fontsize=8, loc="outside lower left", frameon=False)
    return fig


def line_plot(panels: list[tuple[str, list[tuple[str, list[float], list[float]]]]], ylabel: str):
    """Small multiples of plain lines: [(title, [(label, x, y), ...]), ...]."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(width=4.6 * len(panels), height=3.0, ncols=len(panels))
    for ax, (title, lines) in zip(axes, panels):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for i, (label, x, y) in enumerate(lines):
            ax.plot(x, y, color=COLORS[i % len(COLORS)], lw=1.4, marker="o" if len(x) < 30 else None, ms=3, label=label)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        if len(lines) > 1:
            ax.legend(fontsize=8)
    return fig


def capability_plot(stages: dict[str, dict], tasks: list[str], labels: list[str]):
    """Accuracy per stage (x, labelled ``labels``) and task, with 95% CI error bars."""
    fig, (ax,) = _figure(height=3.3)
    names = list(stages)
    for i, task in enumerate(tasks):
        xs, ys, lo, hi = [], [], [], []
        for k, n in enumerate(names):
            r = stages[n]["capability"].get(task)
            if r and r.get("acc") is not None:
                xs.append(k + (i - (len(tasks) - 1) / 2) * 0.14)
                ys.append(r["acc"])
                ci = r.get("ci95") or (r["acc"], r["acc"])
                lo.append(r["acc"] - ci[0])
                hi.append(ci[1] - r["acc"])
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", color=COLORS[i % len(COLORS)], capsize=4, ms=5, lw=1.3,
                    label=task_label(task))
    ax.axhline(0.25, color="#888", ls=":", lw=1, label="chance (4 choices)")
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per stage and attack point, 95% CI", fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def judge_series(results: dict, bench: str, judges: list[str], label: str = "", color_offset: int = 0) -> list[dict]:
    """The curve of every judge: one line with its CI band; with several seeds, thin per-seed lines and the mean."""
    seeds = seeds_of(results)
    out = []
    for i, judge in enumerate(judges):
        color, name = COLORS[(i + color_offset) % len(COLORS)], f"{label}{judge}"
        curves = {s: curve(results, bench, judge, s) for s in seeds}
        if len(seeds) == 1:
            out.append({"label": name, "points": curves[seeds[0]], "kind": "line", "color": color})
            continue
        for k, s in enumerate(seeds):
            out.append({"label": f"{name}: each seed" if k == 0 else None, "points": curves[s], "kind": "seed",
                        "color": color})
        out.append({"label": f"{name}: mean of {len(seeds)} seeds", "points": mean_curve(curves), "kind": "mean",
                    "color": color})
    return out


def mean_curve(curves: dict[int, list[dict]]) -> list[dict]:
    steps = sorted({p["step"] for pts in curves.values() for p in pts})
    return [{"step": s, "refusal_rate": statistics.fmean(p["refusal_rate"] for pts in curves.values() for p in pts
                                                         if p["step"] == s)} for s in steps]


def short_dollars(v: float, _pos=None) -> str:
    """Dollars to two significant digits, trailing zeros dropped ($0.0000056, $0.001, $0.25, $12): a log axis's
    ticks and the amounts around them."""
    if v <= 0:
        return dollars(0, 0)
    text = dollars(v, max(0, 1 - math.floor(math.log10(v))))
    return text.rstrip("0").rstrip(".") if "." in text else text


def point_dollars(results: dict, p: dict) -> float:
    """A curve point's dollars; where results.json rounded them to $0 (4 digits: a small attack may cost less than
    $0.0001) its seconds at its ``usd_per_hour`` and devices, as :mod:`ftrisk.cost` computes them."""
    if p.get("usd"):
        return p["usd"]
    cost = ((results.get("stages", {}).get(p["stage"]) or {}).get("point") or {}).get("cost") or {}
    rate = cost.get("usd_per_hour")
    return p["seconds"] / 3600 * rate * (p.get("devices") or 1) if rate and p.get("seconds") else 0.0


def left_edge(results: dict, bench: str, judge: str) -> float:
    """Where a cost of $0 sits on the log-dollar axis of :func:`family_cost_figure`: a quarter of the smallest
    positive cost among the weight-editing families' points ($0.0001 when none has one)."""
    costs = [point_dollars(results, p) for f in families_of(results) if f.get("method") != "prefill"
             for s in seeds_of(results, f["label"]) for p in curve(results, bench, judge, s, f["label"])
             if p["step"] > 0]
    costs = [c for c in costs if c > 0]
    return min(costs) / 4 if costs else 1e-4


def family_cost_figure(results: dict, bench: str, judge: str, threshold: float | None = None):
    """Refusal rate against attack cost in dollars (:func:`point_dollars`) on a log x axis, one line per attack
    family (its first seed bold, other seeds thin). A log axis has no 0: the model before the attack ($0) sits at
    :func:`left_edge`, each line starting there with a dotted step; prefilling (no fine-tuning, $0) is a
    horizontal line; the threshold is dashed."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    fig, (ax,) = _figure(height=3.9)
    ax.set_xscale("log")
    edge = left_edge(results, bench, judge)
    start, right = None, edge
    for i, fam in enumerate(families_of(results)):
        label, color = fam["label"], COLORS[i % len(COLORS)]
        for k, seed in enumerate(seeds_of(results, label)):
            pts = curve(results, bench, judge, seed, label)
            if start is None and pts and pts[0]["step"] == 0:
                start = pts[0]["refusal_rate"]
            later = [p for p in pts if p["step"] > 0]
            if not later:
                continue
            if fam.get("method") == "prefill":
                if k == 0:
                    ax.axhline(later[-1]["refusal_rate"], color=color, ls=":", lw=1.6,
                               label=f"{label} (no fine-tuning, $0): {pct(later[-1]['refusal_rate'], 0)}")
                continue
            x = [edge] + [max(point_dollars(results, p), edge) for p in later]
            y = [pts[0]["refusal_rate"] if pts[0]["step"] == 0 else later[0]["refusal_rate"]] + \
                [p["refusal_rate"] for p in later]
            right = max(right, *x)
            marker = "o" if fam["trains"] else "D"
            # the step from the left edge is not to scale (it stands for $0): dotted
            ax.plot(x[:2], y[:2], color=color, lw=1.0 if k == 0 else 0.7, ls=":", alpha=1 if k == 0 else 0.55)
            x, y = x[1:], y[1:]
            if k == 0:
                ax.plot(x, y, color=color, lw=2.0, marker=marker, ms=5 if fam["trains"] else 7,
                        label=label + ("" if fam["trains"] else " (no training)"))
                ax.annotate(duration(later[-1]["seconds"]), (x[-1], y[-1]), textcoords="offset points",
                            xytext=(4, 6), fontsize=7, color=color)
            else:
                ax.plot(x, y, color=color, lw=0.9, alpha=0.55, marker=marker, ms=2.5,
                        label=f"{label}: other seeds" if k == 1 else None)
    if start is not None:
        ax.plot([edge], [start], ls="none", marker="s", ms=7, color="#555555",
                label=f"before the attack: {pct(start, 0)} ($0, at the left edge)")
    if threshold is not None:
        ax.axhline(threshold, color="#B00020", ls=(0, (4, 3)), lw=1.1, label=f"threshold {pct(threshold, 0)}")
    ax.set_xlim(edge / 2, right * 3)
    ax.xaxis.set_major_formatter(FuncFormatter(short_dollars))
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("refusal rate")
    ax.set_xlabel("attack cost, $ (cumulative, log scale); time of each family's last point beside it")
    ax.set_title(f"{bench}: every attack family on one cost scale ({judge})", fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig
