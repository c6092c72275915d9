"""The building blocks of ftrisk's HTML pages (report.html, ``ftrisk compare --html``): the style sheet, escaping,
tables whose cells may carry a detail line, and the page around them. Every value is escaped with
:func:`html.escape`; nothing here runs a script or loads a resource."""

from __future__ import annotations

import html

from ftrisk.formatting import DASH, interval, pct

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


class Bold(str):
    """A table cell to stress (the cheapest attack family's row): bold in HTML, ``**…**`` in markdown."""


def esc(x) -> str:
    return html.escape(DASH if x is None else str(x), quote=True)


def cell(b: dict | None):
    """A rate cell: (rate, "[lo, hi] n=…") or "–"."""
    if not b or b.get("refusal_rate") is None:
        return DASH
    lo, hi = b.get("ci95") or (None, None)
    unjudged = f", {b['n_unjudged']} unjudged" if b.get("n_unjudged") else ""
    return (pct(b["refusal_rate"]), f"{interval(lo, hi)} n={b.get('n', '?')}{unjudged}")


def table(head: list[str], rows: list[list], caption: str | None = None) -> str:
    """An HTML table; a cell is text, :class:`Bold` text, or (main, detail) shown as two lines (main may be Bold).
    Everything is escaped."""
    def td(c) -> str:
        if isinstance(c, tuple):
            return f"<td>{main(c[0])}<br><span class=ci>{esc(c[1])}</span></td>"
        return f"<td>{main(c)}</td>"

    def main(c) -> str:
        return f"<b>{esc(c)}</b>" if isinstance(c, Bold) else esc(c)

    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    body = "".join("<tr>" + "".join(td(c) for c in r) + "</tr>" for r in rows)
    return (f'<div class=wrap><table>{cap}<thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def na(text: str) -> str:
    """A "not available" note."""
    return f"<p class=na>{esc(text)}</p>"


def bullets(items: list[str]) -> str:
    """An escaped bullet list."""
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
