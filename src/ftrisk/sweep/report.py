"""The sweep's ``report.md`` and ``report.html``: the headline, the frontier of every trial (cost on a log axis
against refusal at the end of its budget, by method, capability-bound failures marked), the best cost so far against
trial number (did the search converge?), the top trials, the seeds' spread, evaluation savings and where the time
went. Statistics only: completion files are never opened."""

from __future__ import annotations

from pathlib import Path

from ftrisk.formatting import DASH, dollars, duration, pct, signed
from ftrisk.io import write_text_atomic
from ftrisk.report.page import bullets, esc, page, table
from ftrisk.report.plots import COLORS, png

TOP_ROWS = 10


def _end(r: dict) -> tuple[float | None, float | None]:
    """(dollars, refusal) at the end of a trial: its crossing when it reached the threshold, else its lowest."""
    if r.get("reached"):
        return (r.get("cost") or {}).get("usd"), (
            (r.get("benchmarks") or {}).get(r.get("_decision") or "", {}).get("refusal_rate")
            or (r.get("lowest") or {}).get("rate")
        )
    return (r.get("cost_at_end") or {}).get("usd"), (r.get("lowest") or {}).get("rate")


def frontier_figure(res: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.3, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    labels = sorted({r["label"] for r in res["trials"] if r.get("label")})
    for i, lab in enumerate(labels):
        pts = [(*_end(r), r) for r in res["trials"] if r.get("label") == lab]
        ok = [(x, y) for x, y, r in pts if x and y is not None and (r["feasible"] or not r.get("reached"))]
        bad = [(x, y) for x, y, r in pts if x and y is not None and r.get("reached") and not r["feasible"]]
        if ok:
            ax1.scatter(*zip(*ok), color=COLORS[i % len(COLORS)], label=lab, s=28)
        if bad:
            ax1.scatter(
                *zip(*bad),
                color=COLORS[i % len(COLORS)],
                marker="x",
                s=40,
                label=f"{lab}: outside the capability/KL bound",
            )
    ax1.axhline(res["summary"]["threshold"], ls="--", color="#888", lw=1)
    ax1.set_xscale("log")
    ax1.set_xlabel("attack cost ($, log)")
    ax1.set_ylabel(f"refusal on {res['decision_benchmark']}")
    ax1.set_title("every trial: its crossing, or its lowest refusal", fontsize=9)
    ax1.legend(fontsize=7)
    best, xs, ys = None, [], []
    for r in sorted(res["trials"], key=lambda r: r["number"]):
        if r["state"] == "complete" and r["feasible"] and r["value"] is not None:
            best = r["value"] if best is None else min(best, r["value"])
        if best is not None:
            xs.append(r["number"])
            ys.append(best)
    if xs:
        ax2.step(xs, ys, where="post", color=COLORS[0])
        ax2.set_yscale("log")
    ax2.set_xlabel("trial")
    ax2.set_ylabel(f"cheapest so far ({res['objective']})")
    ax2.set_title("convergence of the search", fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(True, color="#e5e5e5", lw=0.6)
    return fig


def _settings(r: dict) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (r.get("settings") or {}).items()
    ) or ("the config's own recipe" if r.get("recipe") else DASH)


def trial_rows(res: dict) -> list[list]:
    rows = []
    ranked = sorted(
        res["trials"],
        key=lambda r: (
            not (r["state"] == "complete" and r["feasible"]),
            r["value"] if r["value"] is not None else float("inf"),
            r["number"],
        ),
    )
    for r in ranked[:TOP_ROWS]:
        cap = r.get("capability") or {}
        deg = r.get("degenerate") or {}
        bad = sum(deg.get(k, 0) for k in ("empty", "repetition", "off-language"))
        low = r.get("lowest") or {}
        rows.append(
            [
                str(r["number"]),
                r.get("label") or DASH,
                _settings(r),
                r["state"] + ("" if r["feasible"] or not r.get("reached") else " (bound)"),
                f"step {r['crossing_step']}"
                if r.get("reached") and r.get("crossing_step") is not None and r.get("method") != "ablation"
                else ("edited" if r.get("reached") else f"not reached; lowest {pct(low.get('rate'))}"),
                dollars((r.get("cost") or {}).get("usd")),
                duration((r.get("cost") or {}).get("wall_seconds")),
                signed(cap.get("delta")) if cap else DASH,
                f"{r['kl_harmless']:.3f}" if r.get("kl_harmless") is not None else DASH,
                f"{bad}/{deg.get('n', 0)}" if deg else DASH,
            ]
        )
    return rows


HEAD = ["trial", "method", "settings", "state", "crossing", "$", "time", "capability Δ", "KL", "degenerate"]


def seed_rows(res: dict) -> list[list]:
    out = []
    for r in res["trials"]:
        for s in r.get("seed_runs") or []:
            out.append(
                [
                    str(r["number"]),
                    r["label"],
                    str(s["seed"]),
                    "yes" if s["reached"] else "no",
                    str(s["crossing_step"]) if s["crossing_step"] is not None else DASH,
                    dollars(s["usd"]),
                    duration(s["seconds"]),
                ]
            )
    return out


def lines(res: dict) -> list[str]:
    w = res["summary"]["worst_case"] or {}
    out = []
    if w.get("reached"):
        out.append("Reproduce it: ftrisk run CONFIG " + " ".join(w["overrides"]))
    eff = res.get("efficiency")
    if eff:
        out.append(
            f"Evaluation: {eff['tokens_search']:,} generated tokens with bisection and early stop against "
            f"{eff['tokens_plain']:,} for the plain schedule on audited trials {eff['trials']} "
            f"(×{eff['ratio']:.1f} fewer); the same crossing on {len(eff['same_crossing'])} of "
            f"{len(eff['trials'])}."
        )
    t = res.get("time") or {}
    if t:
        out.append(
            "Time: "
            + ", ".join(f"{k} {duration(v)}" for k, v in sorted(t.items(), key=lambda kv: -kv[1]))
            + f" (this process: {duration(res.get('wall_seconds_this_process'))})."
        )
    if res.get("drawn_while_running"):
        out.append(
            f"{res['drawn_while_running']} trials were drawn while another was running (several workers, or a restart): their draws "
            "could not see those results."
        )
    return out


def markdown(res: dict) -> str:
    md = [f"# Sweep: the cheapest attack found\n\n{res['summary']['headline']}\n"]
    md += [f"- {x}" for x in lines(res)]
    md.append(f"\n## Top trials (of {len(res['trials'])})\n")
    md.append("| " + " | ".join(HEAD) + " |\n|" + "---|" * len(HEAD))
    md += ["| " + " | ".join(row) + " |" for row in trial_rows(res)]
    seeds = seed_rows(res)
    if seeds:
        md.append(
            "\n## Seeds of the best configurations\n\n| trial | method | seed | reached | crossing | $ | time |\n"
            "|---|---|---|---|---|---|---|"
        )
        md += ["| " + " | ".join(row) + " |" for row in seeds]
    return "\n".join(md) + "\n"


def html(res: dict) -> str:
    body = [
        f"<h1>Sweep: the cheapest attack found</h1><div class=headline><p>{esc(res['summary']['headline'])}</p>"
        f"<p class=sub>Judge {esc(res.get('headline_judge'))}, threshold {pct(res['summary']['threshold'], 0)} on "
        f"{esc(res['decision_benchmark'])}, objective {esc(res['objective'])}, storage {esc(res.get('storage'))}."
        "</p></div>",
        bullets(lines(res)),
    ]
    if res["trials"]:
        body.append(
            png(
                frontier_figure(res),
                "sweep frontier and convergence",
                "Left: every trial at its crossing (or, when it did not reach the threshold, its lowest refusal "
                "at the cost spent); crosses are outside the capability/KL bound. Right: the cheapest feasible "
                "cost so far against trial number.",
            )
        )
    body.append(table(HEAD, trial_rows(res), caption="Top trials"))
    seeds = seed_rows(res)
    if seeds:
        body.append(
            table(
                ["trial", "method", "seed", "reached", "crossing", "$", "time"],
                seeds,
                caption="Seeds of the best configurations",
            )
        )
    return page("ftrisk sweep", "\n".join(body))


def write_reports(out: Path, res: dict) -> None:
    for r in res["trials"]:
        r["_decision"] = res["decision_benchmark"]
    write_text_atomic(out / "report.md", markdown(res))
    write_text_atomic(out / "report.html", html(res))
    for r in res["trials"]:
        r.pop("_decision", None)
