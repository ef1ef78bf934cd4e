"""Layer 4c of the report: the blocks as a Typst document (``report.typ``) for an A4 PDF.

Every piece of text from the document reaches Typst as a string literal
(``#"…"``, ``#strong("…")``, ``#raw("…")``) in which only ``\\`` and ``"`` are
escaped: markup, code and math characters inside it are never interpreted,
so a class name, a setting or the author's discussion such as
``#read("/etc/passwd")`` is printed as written. Images are read relative to
the reports folder, which is Typst's root: nothing outside it can be read.
Figures are numbered by Typst, in the same order as in the other formats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .assemble import build_blocks
from .blocks import Bullets, CodeBlock, Contents, FigureRow, Heading, Inline, Para, Span, Table

PREAMBLE = """#set document(title: {title})
#set page(paper: "a4", margin: (x: 15mm, top: 15mm, bottom: 17mm), numbering: "1 / 1")
#set text(size: 9pt, lang: "en")
#set par(justify: false, leading: 0.55em, spacing: 0.8em)
#set heading(numbering: none)
#show heading.where(level: 1): set text(size: 15pt)
#show heading.where(level: 2): set text(size: 12pt)
#show heading.where(level: 3): set text(size: 10pt)
#show table: set text(size: 7pt)
#show figure.caption: set text(size: 7.5pt)
#show figure: set block(spacing: 0.8em)
#set table(stroke: (x, y) => if y == 0 {{ (bottom: 0.7pt) }} else {{ (bottom: 0.3pt + luma(200)) }}, inset: 3pt)
"""

# The study's cost function, typeset as math below the set-up table.
COST_FUNCTION = (
    '$ J(W, b) = 1/n sum_(i=1)^n -log p_(y_i, i) + lambda norm(W)_F^2, quad bold(p)_i = "softmax"(W bold(x)_i + b) $'
)
COST_WORDS = (
    "Cost minimised by mini-batch gradient descent (cross-entropy plus λ times the squared Frobenius "
    "norm of W; b is not regularised):"
)


def typst_string(text: Any) -> str:
    """``text`` as a Typst string literal: nothing in it is ever evaluated."""
    s = str(text)
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        s = s.replace(a, b)
    return f'"{s}"'


def _inline(x: Inline) -> str:
    """Markup that shows ``x``: each piece a ``#``-expression, so pieces can follow one another."""
    if isinstance(x, str):
        return f"#{typst_string(x)}" if x else ""
    if isinstance(x, Span) and x.aside:
        return f"#linebreak()#text(size: 0.85em, fill: luma(90), {typst_string(x.text.strip())})"
    if isinstance(x, Span):
        t = f"raw({typst_string(x.text)})" if x.code else typst_string(x.text)
        if x.italic:
            t = f"emph({t})"
        if x.bold:
            t = f"strong({t})"
        return f"#{t}"
    return "".join(_inline(p) for p in x)


_FIGURE_NUMBER = re.compile(r"^Figure \d+: ")


def _figure(f, width: str) -> str:
    caption = _FIGURE_NUMBER.sub("", f.caption)  # Typst numbers its figures itself, in the same order
    return (
        f"figure(image({typst_string(f.path)}, width: {width}, alt: {typst_string(f.alt)}), "
        f"caption: [{_inline(caption)}])"
    )


def _table(b: Table) -> str:
    align = b.align or "l" + "r" * (len(b.header) - 1)
    cols = ", ".join("right" if a == "r" else "left" for a in align)
    cells = ", ".join(f"[{_inline(h)}]" for h in b.header)
    out = []
    if b.caption:
        out.append(f'#block(breakable: false, below: 0.3em)[#text(size: 7.5pt, style: "italic")[{_inline(b.caption)}]]')
    body = ",\n  ".join(", ".join(f"[{_inline(c)}]" for c in row) for row in b.rows)
    rows = f"{body}{',' if body else ''}"
    out.append(f"#table(columns: {len(b.header)}, align: ({cols},),\n  table.header({cells}),\n  {rows}\n)")
    return "\n".join(out)


def _block(b) -> str:
    if isinstance(b, Heading):
        return f"{'=' * b.level} {_inline(b.text)}"
    if isinstance(b, Para):
        text = _inline(b.content)
        if b.kind in ("warn", "fail"):
            return f'#block(fill: rgb("#fffbeb"), inset: 5pt, width: 100%)[*Warning:* {text}]'
        if b.kind in ("note", "pass"):
            return f"#block(fill: luma(245), inset: 5pt, width: 100%)[{text}]"
        if b.kind == "meta":
            return f"#text(fill: luma(100))[{text}]"
        return text
    if isinstance(b, Bullets):
        mark = "+" if b.ordered else "-"
        return "\n".join(f"{mark} {_inline(i)}" for i in b.items)
    if isinstance(b, CodeBlock):
        return f"#raw(block: true, {typst_string(b.text)})"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, FigureRow):
        if len(b.figures) == 1:
            width = "100%" if b.wide else "55%" if not b.half else "50%"
            return f"#{_figure(b.figures[0], width)}"
        figures = ", ".join(_figure(f, "100%") for f in b.figures)
        return f"#grid(columns: {len(b.figures)}, column-gutter: 8pt, {figures})"
    if isinstance(b, Contents):
        return ""
    raise TypeError(f"unknown block {b!r}")


def render_typst(doc: Mapping[str, Any]) -> str:
    """The report as Typst source (A4); image paths relative to the reports folder, Typst's root."""
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    parts = [PREAMBLE.format(title=typst_string(title))]
    for b in build_blocks(doc):
        parts.append(_block(b))
        if isinstance(b, Heading) and b.anchor == "setup":
            parts += [_inline(COST_WORDS), COST_FUNCTION]
    return "\n\n".join(p for p in parts if p) + "\n"


def compile_pdf(source: str, root) -> bytes:
    """The PDF of Typst ``source``, images read under ``root`` only; ImportError without the typst package."""
    import typst

    return typst.compile(source.encode("utf-8"), root=str(root), format="pdf", ignore_system_fonts=False)
