"""The defense comparison's ``report.md`` and ``report.html``: one plot of the worst-case cost to undo per defense
(log dollars, the seeds' range as error bars) against its capability change from the undefended base, and a
table; the claim's scope in one line."""

from __future__ import annotations

from pathlib import Path

from ftrisk.formatting import DASH, dollars, pct, signed
from ftrisk.io import write_text_atomic
from ftrisk.report.page import esc, page, table
from ftrisk.report.plots import COLORS, png

HEAD = [
    "defense",
    "hardened refusal",
    "worst case $ [seeds]",
    "× refusal-sft [95% CI]",
    "capability Δ vs base",
    "over-refusal Δ vs base",
    "cheapest attack",
]


def rows(res: dict) -> list[list[str]]:
    out = []
    for name, d in res["defenses"].items():
        w = d["worst_case"] or {}
        rng = w.get("usd_range")
        ci = d.get("ratio_ci")
        cap = d.get("capability_delta_vs_base") or {}
        usd = (
            dollars(w.get("usd")) + (f" [{dollars(rng[0])}, {dollars(rng[1])}]" if rng else "")
            if w.get("reached")
            else f"not reached (spent {dollars(w.get('budget_usd'))})"
        )
        out.append(
            [
                name,
                ", ".join(f"{b} {pct(v)}" for b, v in d["hardened_refusal"].items()),
                usd,
                (f"×{d['ratio_to_refusal_sft']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
                if d.get("ratio_to_refusal_sft")
                else DASH,
                f"{cap.get('task', '')} {signed(cap.get('delta'))}" if cap.get("delta") is not None else DASH,
                signed(d.get("over_refusal_delta_vs_base")),
                w.get("label") or DASH,
            ]
        )
    return out


def figure(res: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (name, d) in enumerate(res["defenses"].items()):
        w, cap = d["worst_case"] or {}, (d.get("capability_delta_vs_base") or {}).get("delta")
        if not w.get("reached") or cap is None:
            continue
        lo, hi = w.get("usd_range") or (w["usd"], w["usd"])
        ax.errorbar(
            [cap],
            [w["usd"]],
            yerr=[[w["usd"] - lo], [hi - w["usd"]]],
            fmt="o",
            color=COLORS[i % len(COLORS)],
            capsize=4,
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("capability Δ vs the undefended base")
    ax.set_ylabel("worst-case cost to undo ($, log)")
    ax.grid(True, color="#e5e5e5", lw=0.6)
    ax.legend(fontsize=8)
    return fig


def write(out: Path, res: dict) -> None:
    head = "# Defenses scored in attacker dollars\n\n" + f"Scope: {res['scope']}.\n\n"
    md = (
        head
        + "| "
        + " | ".join(HEAD)
        + " |\n|"
        + "---|" * len(HEAD)
        + "\n"
        + "\n".join("| " + " | ".join(r) + " |" for r in rows(res))
        + "\n"
    )
    write_text_atomic(out / "report.md", md)
    body = (
        f"<h1>Defenses scored in attacker dollars</h1><p>{esc('Scope: ' + res['scope'])}</p>"
        + png(
            figure(res),
            "worst-case cost per defense",
            "Each defense's worst-case cost to undo (seed range as "
            "error bars) against its capability change from the undefended base.",
        )
        + table(HEAD, rows(res), caption="Per defense")
    )
    write_text_atomic(out / "report.html", page("ftrisk defend", body))
