"""HTML building blocks: escaping, number formatting, tables, figures, sections and the page.

Everything the page needs is inline (one ``<style>`` block, images as ``data:`` URIs): the file can be
mailed, attached to a ticket or opened offline and looks the same.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CSS = """
:root { --ink: #1f2933; --muted: #62707f; --line: #e3e8ee; --accent: #2f6fde; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #16213a; color: #fff; padding: 22px 40px 18px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; letter-spacing: .2px; }
header h1 .brand { color: #8fb4ff; }
header .where { color: #b9c4d6; font-size: 13px; margin-top: 2px; word-break: break-all; }
header .summary { margin-top: 12px; font-size: 16px; }
header .summary b { color: #ffd479; font-weight: 600; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 40px; display: flex; flex-wrap: wrap; gap: 6px; }
nav a { color: var(--accent); text-decoration: none; font-size: 13px; padding: 2px 10px;
        border: 1px solid var(--line); border-radius: 12px; }
nav a:hover { background: var(--bg); }
main { max-width: 1120px; margin: 0 auto; padding: 18px 40px 40px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 22px;
          margin: 18px 0; }
section { scroll-margin-top: 64px; }  /* headings stay clear of the sticky nav after a jump */
section h2 { margin: 0 0 10px; font-size: 17px; font-weight: 600; }
p.note { color: var(--muted); margin: 6px 0 10px; }
p.warn { color: #9a4b00; background: #fff4e5; padding: 6px 10px; border-radius: 4px; }
code { background: var(--bg); padding: 1px 5px; border-radius: 3px; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.top td { background: #eef5ff; font-weight: 600; }
.scroll { overflow-x: auto; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 4px 0 12px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
img.thumb { width: 64px; height: auto; image-rendering: pixelated; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; margin-top: 2px; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 10px 0 30px; }
"""


@dataclass
class Section:
    """One block of the page, addressable as ``#id``."""

    id: str
    title: str
    body: str  # HTML, already escaped


def esc(value: Any) -> str:
    """Text -> HTML-safe text (quotes included, so it is safe inside attributes too)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ints with thousands separators, floats to ``digits``; blanks as "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Iterable[int] = (),
    highlight_first: bool = False,
    raw: Iterable[int] = (),
) -> str:
    """An HTML table; cells are escaped unless their column index is in ``raw`` (pre-built HTML)."""
    num, keep = set(numeric), set(raw)
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in num else f"<th>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    lines = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            text = cell if i in keep else esc(fmt(cell))
            cells.append(f'<td class="num">{text}</td>' if i in num else f"<td>{text}</td>")
        top = ' class="top"' if highlight_first and r == 0 else ""
        lines.append(f"<tr{top}>{''.join(cells)}</tr>")
    body = "".join(lines)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column list of name / value (values escaped; empty ones left out)."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, "", [], {}))
    return f'<dl class="facts">{items}</dl>'


def figure(uri: str, alt: str, caption: str = "") -> str:
    """An inline image (``uri`` is a ``data:image/png;base64,...`` URI) with an optional caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{esc(uri)}" alt="{esc(alt)}">{cap}</figure>'


def note(text: str, warn: bool = False) -> str:
    return f'<p class="{"warn" if warn else "note"}">{esc(text)}</p>'


def page(title: str, where: str, summary: str, sections: list[Section], footer: str) -> str:
    """The whole document. ``summary`` is HTML (built from escaped parts); the rest is escaped here."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>' for s in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1><span class="brand">polyfuse</span> report</h1>
<div class="where">{esc(where)}</div>
<div class="summary" id="summary">{summary}</div>
</header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>{esc(footer)}</footer>
</body>
</html>
"""
