"""report.html's Provenance section: what produced the run (code revision, config, model, judges, seeds, attack,
decoding, benchmarks, platform and package versions), as a key-value list."""

from __future__ import annotations

from ftrisk.report.page import esc
from ftrisk.report.results import families_of, is_multi_family, seeds_of


def provenance_section(results: dict) -> str:
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
    if is_multi_family(results):
        rows.append(("attack families", "; ".join(
            f"{f['label']} ({f['method']}" + (f", data {f['data']}" if f.get("data") else "") + ")"
            for f in families_of(results))))
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
