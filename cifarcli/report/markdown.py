"""Layer 4a of the report: the blocks as GitHub Markdown (``report.md``).

Images are linked relative to the report file; every piece of text from the
document is escaped, so a class name or a label cannot break a table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .assemble import build_blocks
from .blocks import Bullets, CodeBlock, Contents, FigureRow, Heading, Inline, Para, Span, Table

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#!~])")
_CODE_SAFE = re.compile(r"^[\w.\-/:+=]+$")


def md_text(s: str) -> str:
    s = re.sub(r"\s+", " ", str(s))  # no newline may break a table or a paragraph
    return _MD_SPECIAL.sub(r"\\\1", s)


def _md_inline(x: Inline) -> str:
    if isinstance(x, str):
        return md_text(x)
    if isinstance(x, Span):
        if x.code and _CODE_SAFE.match(x.text):
            t = f"`{x.text}`"
        else:
            t = md_text(x.text)
        t = f"*{t}*" if x.italic else t
        return f"**{t}**" if x.bold else t
    return "".join(_md_inline(p) for p in x)


def _md_link(path: str) -> str:
    return quote(Path(path).as_posix(), safe="/")


def _md_block(b) -> str:
    if isinstance(b, Heading):
        return f"{'#' * b.level} {md_text(b.text)}"
    if isinstance(b, Para):
        text = _md_inline(b.content)
        if b.kind in ("warn", "fail"):
            return f"> **Warning:** {text}"
        if b.kind == "note":
            return f"> {text}"
        if b.kind == "meta":
            return f"*{text}*"
        return text
    if isinstance(b, Bullets):
        return "\n".join(f"{f'{n}.' if b.ordered else '-'} {_md_inline(i)}" for n, i in enumerate(b.items, 1))
    if isinstance(b, CodeBlock):
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", b.text)), default=0))
        return f"{fence}text\n{b.text}\n{fence}"
    if isinstance(b, Table):
        align = b.align or "l" + "r" * (len(b.header) - 1)
        lines = []
        if b.caption:
            lines += [f"*{md_text(b.caption)}*", ""]
        lines.append("| " + " | ".join(_md_inline(h) or " " for h in b.header) + " |")
        lines.append("|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|")
        for r in b.rows:
            lines.append("| " + " | ".join(_md_inline(c) for c in r) + " |")
        return "\n".join(lines)
    if isinstance(b, FigureRow) and b.side_by_side:
        cells = [f"![{md_text(f.alt)}]({_md_link(f.path)})" for f in b.figures]
        return "\n".join(
            [
                "| " + " | ".join(md_text(f.caption) for f in b.figures) + " |",
                "|" + "|".join(":---:" for _ in b.figures) + "|",
                "| " + " | ".join(cells) + " |",
            ]
        )
    if isinstance(b, FigureRow):
        return "\n\n".join(f"![{md_text(f.alt)}]({_md_link(f.path)})\n\n*{md_text(f.caption)}*" for f in b.figures)
    if isinstance(b, Contents):
        return ""
    raise TypeError(f"unknown block {b!r}")


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The report as GitHub Markdown; figure links relative to the report file.

    Figure paths in ``doc`` are relative to the reports folder, where
    ``report.md`` is written, so they are used as they are (URL-quoted).
    """
    parts = [_md_block(b) for b in build_blocks(doc)]
    return "\n\n".join(p for p in parts if p) + "\n"
