"""Human-readable tables from results.json: statistics and labels only, never completion text."""

from __future__ import annotations


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def cell(b: dict | None) -> str:
    if not b:
        return "–"
    lo, hi = b["ci95"]
    return f"{_pct(b['refusal_rate'])} [{_pct(lo)}, {_pct(hi)}] n={b['n']}"


def refusal_table(results: dict) -> list[str]:
    stages = list(results.get("stages", {}))
    names: list[str] = []
    for s in stages:
        names += [n for n in results["stages"][s]["benchmarks"] if n not in names]
    head = "| benchmark | " + " | ".join(stages) + " |"
    lines = [head, "|" + "---|" * (len(stages) + 1)]
    for n in names:
        first = next(results["stages"][s]["benchmarks"][n] for s in stages if n in results["stages"][s]["benchmarks"])
        label = n if first.get("harmful", True) else f"{n} (over-refusal)"
        lines.append(f"| {label} | " + " | ".join(cell(results["stages"][s]["benchmarks"].get(n)) for s in stages) + " |")
    return lines


def cost_lines(results: dict) -> list[str]:
    a = results.get("attack")
    if not a:
        return []
    c = a["cost"]
    return [
        f"- stopped by: {a['stopped_by']} after {a['steps']} optimizer steps ({a['n_examples']} examples in the data)",
        f"- wall time: {c['wall_seconds'] / 60:.1f} min on {c['device']}",
        f"- tokens processed: {c['tokens']} ({c['trained_tokens']} with loss), {c['tokens_per_second']} tokens/s",
        f"- examples seen: {c['examples']}; peak memory: {c['peak_memory_mb']:.0f} MiB",
        f"- cost: ${c['usd']:.4f} at ${c['usd_per_hour']}/hour (cost.usd_per_hour)",
    ]


def render(results: dict, cfg) -> str:
    stages = results.get("stages", {})
    judge = next((b["judge"] for s in stages.values() for b in s["benchmarks"].values()), "?")
    out = [f"# ftrisk report: {cfg.name}", "",
           f"Model: `{cfg.model.spec}`. Judge: `{judge}`. Refusal rate with Wilson 95% CI and n per stage.",
           "Harmful benchmarks: lower after the attack means the safety training was undone. "
           "Over-refusal rows are benign prompts: lower is better.", ""]
    out += refusal_table(results)
    excluded = {n: b.get("n_excluded_overlap", 0) for s in stages.values() for n, b in s["benchmarks"].items()}
    if any(excluded.values()):
        out += ["", "Items dropped from evaluation because they also occur in training data: "
                + ", ".join(f"{n} {k}" for n, k in excluded.items() if k) + "."]
    h = results.get("harden")
    if h:
        t = h["training"]
        out += ["", "## Hardening", "",
                f"- {h['n_harmful']} harmful prompts ({', '.join(h['harmful_sources'])}) → refusals; "
                f"{h['n_benign']} benign instructions → the base model's own answers; {h['method']}",
                "- excluded for overlap with attack/evaluation prompts: "
                + ", ".join(f"{k} {v}" for k, v in h["n_excluded_overlap"].items()),
                f"- {t['steps']} steps, {t['cost']['wall_seconds'] / 60:.1f} min"
                + (" (reused from cache)" if h.get("reused_from_cache") else "")]
    if results.get("attack"):
        out += ["", "## Attack cost", ""] + cost_lines(results)
    caps = {s: v["capability"] for s, v in stages.items() if v.get("capability")}
    if caps:
        from .capability import report_lines

        out += ["", "## Capability", ""] + [f"- {line}" for line in report_lines(caps)]
    out += ["", "Completions are stored only in the run folder (`eval/<stage>/*.completions.jsonl`) for audit.", ""]
    return "\n".join(out)
