"""Layer 4b of the report: the blocks as one self-contained HTML page (``report.html``).

Images are inlined as base64 PNG, the CSS is inlined (with print rules), and
there is no script and no external URL: the page works offline and prints
cleanly.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .assemble import build_blocks
from .blocks import Bullets, CodeBlock, Contents, FigureRow, Heading, Inline, Para, Span, Table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --accent:#1f77b4; --bg:#ffffff;
        --zebra:#f9fafb; --warn:#b45309; --warnbg:#fffbeb; --ok:#047857; --okbg:#ecfdf5;
        --bad:#b91c1c; --badbg:#fef2f2; }
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; color: var(--fg); background: var(--bg);
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 .25rem; line-height: 1.2; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 .75rem; padding-bottom: .3rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.12rem; margin: 1.8rem 0 .5rem; }
p { margin: .6rem 0; }
p.meta { color: var(--muted); margin-top: 0; }
code { font: .88em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: #f3f4f6; padding: .05em .3em; border-radius: 4px; word-break: break-all; }
nav.toc { background: var(--zebra); border: 1px solid var(--line); border-radius: 8px;
          padding: .6rem 1rem; margin: 1.2rem 0; font-size: .93rem; }
nav.toc ol { margin: .2rem 0; padding-left: 1.4rem; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
.callout { border-left: 4px solid var(--accent); background: #eff6ff; padding: .55rem .9rem;
           border-radius: 0 6px 6px 0; }
.callout.warn { border-color: var(--warn); background: var(--warnbg); }
.callout.pass { border-color: var(--ok); background: var(--okbg); }
.callout.fail { border-color: var(--bad); background: var(--badbg); }
.table-wrap { overflow-x: auto; margin: .9rem 0 1.2rem; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; min-width: 50%; }
caption { caption-side: top; text-align: left; color: var(--muted); font-size: .88rem; padding-bottom: .35rem; }
th, td { padding: .38rem .45rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; border-bottom: 2px solid #d1d5db; text-align: left; }
tbody tr:nth-child(even) { background: var(--zebra); }
tbody tr.hl { background: #fff7e6; }
td.r, th.r { text-align: right; white-space: nowrap; }
th.r { white-space: normal; }
td.l, th.l { text-align: left; }
figure { margin: 1rem 0 1.4rem; }
figure img { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .35rem; }
.figrow { display: grid; grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap: 1rem; }
.figrow.single figure { max-width: 44rem; }
.figrow.single.wide figure { max-width: none; }
.figrow.pair { grid-template-columns: 1fr 1fr; }
.figrow.half { grid-template-columns: 1fr 1fr; }
.figrow.half figure { grid-column: 1; }
.figrow.pair figure, .figrow.half figure { margin: .6rem 0 .8rem; }
td code, .nowrap { white-space: nowrap; word-break: normal; }
td code { font-size: .8em; }
.aside { display: block; font-size: .78em; color: var(--muted); }
.missing { color: var(--bad); font-style: italic; }
ul { padding-left: 1.3rem; }
li { margin: .3rem 0; }
pre { background: #f3f4f6; padding: .6rem .8rem; border-radius: 6px; overflow-x: auto; }
pre code { background: none; padding: 0; word-break: normal; white-space: pre; }
@page { size: A4; margin: 12mm 12mm 14mm; }
@media print {
  body { font-size: 10pt; line-height: 1.4; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  h2 { margin: 1.2rem 0 .5rem; font-size: 1.25rem; }
  h3 { margin: 1rem 0 .4rem; }
  /* A figure never leaves its caption, a table its rows, on another page. */
  figure, figure img, figcaption, table, .callout { break-inside: avoid; page-break-inside: avoid; }
  .figrow { break-inside: avoid; page-break-inside: avoid; gap: .8rem; }
  h2, h3, caption { break-after: avoid; page-break-after: avoid; }
  .table-wrap { overflow: visible; margin: .5rem 0 .7rem; }
  th, td { padding: .22rem .5rem; }
  table { font-size: 9pt; }
  figure { margin: .5rem 0 .7rem; }
  figcaption { font-size: 8.5pt; line-height: 1.3; }
  .figrow.single.wide figure { max-width: none; }
  .figrow.single:not(.wide):not(.half) figure { max-width: 75%; }
  /* Compact: two figures to a row at most 2.45 in high, a full-width figure at most 3.4 in. */
  .figrow.pair img, .figrow.half img { max-height: 2.45in; width: auto; max-width: 100%; margin: 0 auto; }
  .figrow.wide img { max-height: 3.4in; width: auto; max-width: 100%; margin: 0 auto; }
  img { max-height: 9in; }
  a { color: inherit; text-decoration: none; }
}
"""


def _h(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _html_inline(x: Inline) -> str:
    if isinstance(x, str):
        return _h(x)
    if isinstance(x, Span):
        t = _h(x.text)
        if x.code:
            t = f"<code>{t}</code>"
        if x.nowrap:
            t = f'<span class="nowrap">{t}</span>'
        if x.italic:
            t = f"<em>{t}</em>"
        if x.aside:
            t = f'<span class="aside">{t.strip()}</span>'
        return f"<strong>{t}</strong>" if x.bold else t
    return "".join(_html_inline(p) for p in x)


def _data_uri(figure_dir: Path, rel: str) -> str | None:
    """The PNG at ``figure_dir/rel`` as a data URI; None if missing, outside, or not a PNG."""
    base = Path(figure_dir).resolve()
    p = (base / rel).resolve()
    try:
        p.relative_to(base)
    except ValueError:
        return None
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if not data.startswith(PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _html_para(b: Para) -> str:
    cls = {
        "warn": "callout warn",
        "fail": "callout fail",
        "pass": "callout pass",
        "note": "callout",
        "meta": "meta",
    }.get(b.kind, "")
    attr = f' class="{cls}"' if cls else ""
    lead = "<strong>Warning:</strong> " if b.kind == "warn" else ""
    return f"<p{attr}>{lead}{_html_inline(b.content)}</p>"


def _html_table(b: Table) -> str:
    align = b.align or "l" + "r" * (len(b.header) - 1)
    out = ['<div class="table-wrap"><table>']
    if b.caption:
        out.append(f"<caption>{_h(b.caption)}</caption>")
    out.append(
        "<thead><tr>"
        + "".join(f'<th class="{a}" scope="col">{_html_inline(h)}</th>' for h, a in zip(b.header, align))
        + "</tr></thead>"
    )
    out.append("<tbody>")
    for i, r in enumerate(b.rows):
        cls = ' class="hl"' if i in b.highlight else ""
        out.append(
            f"<tr{cls}>" + "".join(f'<td class="{a}">{_html_inline(c)}</td>' for c, a in zip(r, align)) + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _html_figures(b: FigureRow, figure_dir: Path) -> str:
    items = []
    for f in b.figures:
        uri = _data_uri(figure_dir, f.path)
        if uri is None:
            items.append(
                f'<figure><p class="missing">Figure not available: {_h(f.path)}</p>'
                f"<figcaption>{_h(f.caption)}</figcaption></figure>"
            )
        else:
            items.append(
                f'<figure><img src="{uri}" alt="{_h(f.alt)}"><figcaption>{_h(f.caption)}</figcaption></figure>'
            )
    cls = (
        "figrow"
        + (" wide" if b.wide else "")
        + (" single" if len(items) == 1 else "")
        + (" half" if b.half and len(items) == 1 else "")
        + (" pair" if len(items) == 2 else "")
    )
    return f'<div class="{cls}">' + "\n".join(items) + "</div>"


def _html_contents(b: Contents) -> str:
    """The table of contents; the run entries (anchors ``run-*``) nest under the entry before them."""
    lis = []
    for anchor, text in b.entries:
        sub = anchor.startswith("run-")
        lis.append((sub, f'<li><a href="#{_h(anchor)}">{_h(text)}</a></li>'))
    out, in_sub = ['<nav class="toc" aria-label="Contents"><strong>Contents</strong><ol>'], False
    for sub, li in lis:
        if sub and not in_sub:
            out[-1] = out[-1].removesuffix("</li>")
            out.append("<ol>")
            in_sub = True
        elif not sub and in_sub:
            out.append("</ol></li>")
            in_sub = False
        out.append(li)
    if in_sub:
        out.append("</ol></li>")
    out.append("</ol></nav>")
    return "\n".join(out)


def _html_block(b, figure_dir: Path) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{_h(b.anchor)}">{_h(b.text)}</h{b.level}>'
    if isinstance(b, Para):
        return _html_para(b)
    if isinstance(b, Bullets):
        tag = "ol" if b.ordered else "ul"
        return f"<{tag}>\n" + "\n".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + f"\n</{tag}>"
    if isinstance(b, CodeBlock):
        return f"<pre><code>{_h(b.text)}</code></pre>"
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, FigureRow):
        return _html_figures(b, figure_dir)
    if isinstance(b, Contents):
        return _html_contents(b)
    raise TypeError(f"unknown block {b!r}")


def render_html(doc: Mapping[str, Any], figure_dir: Path) -> str:
    """The report as one self-contained HTML page.

    ``figure_dir`` is the folder the doc's figure paths are relative to (the
    reports folder). Each PNG is inlined as a ``data:image/png;base64,`` URI;
    a missing or non-PNG file shows as a visible placeholder. No script, no
    external URL: the page works offline and prints cleanly.
    """
    blocks = build_blocks(doc)
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    body = "\n".join(_html_block(b, Path(figure_dir)) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n</main>\n</body>\n</html>\n"
    )
