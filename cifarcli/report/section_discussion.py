"""Layer 3 of the report: the author's discussion, a Markdown subset read into blocks.

Paragraphs, bullet and numbered lists, inline emphasis and code, fenced code blocks. Everything else
stays text, escaped by each renderer like any untrusted string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .blocks import Bullets, CodeBlock, Heading, Para, Span

_INLINE = re.compile(r"(`[^`\n]+`|\*\*[^*\n]+\*\*|__[^_\n]+__|\*[^*\s][^*\n]*\*|_[^_\s][^_\n]*_)")
_ITEM = re.compile(r"^\s{0,3}(?:([-*+])|(\d{1,9})[.)])\s+(.*)$")


def discussion_inline(text: str) -> list[str | Span]:
    """One line of the discussion's Markdown subset as spans: `code`, **bold**, *emphasis* or _emphasis_.
    Everything else is plain text, escaped by each renderer like any untrusted string."""
    out: list[str | Span] = []
    for i, piece in enumerate(_INLINE.split(text)):
        if not piece:
            continue
        if i % 2 == 0:
            out.append(piece)
        elif piece.startswith("`"):
            out.append(Span(piece[1:-1], code=True))
        elif piece[:2] in ("**", "__"):
            out.append(Span(piece[2:-2], bold=True))
        else:
            out.append(Span(piece[1:-1], italic=True))
    return out


def discussion_blocks(text: str) -> list:
    """The author's discussion (a Markdown subset) as blocks: paragraphs (split at blank lines), bullet and
    numbered lists, inline emphasis and code, and fenced code blocks (```). Headings, links, images and
    HTML are not part of the subset: they stay text."""
    blocks: list = []
    para: list[str] = []
    items: list[str] = []
    ordered = False
    code: list[str] | None = None

    def flush():
        nonlocal para, items
        if para:
            blocks.append(Para(discussion_inline(" ".join(line.strip() for line in para))))
        if items:
            blocks.append(Bullets([discussion_inline(item) for item in items], ordered=ordered))
        para, items = [], []

    for line in text.replace("\r\n", "\n").split("\n"):
        if code is not None:
            if line.strip().startswith("```"):
                blocks.append(CodeBlock("\n".join(code)))
                code = None
            else:
                code.append(line)
            continue
        if line.strip().startswith("```"):
            flush()
            code = []
            continue
        if not line.strip():
            flush()
            continue
        item = _ITEM.match(line)
        if item:
            if para or (items and ordered != (item.group(2) is not None)):
                flush()
            ordered = item.group(2) is not None
            items.append(item.group(3).strip())
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()  # a list item continued on the next line
        else:
            if items:
                flush()
            para.append(line)
    if code is not None:
        blocks.append(CodeBlock("\n".join(code)))
    flush()
    return blocks


def discussion_section(doc: Mapping[str, Any]) -> list:
    text = doc.get("discussion")
    if not text or not str(text).strip():
        return []
    return [Heading(2, "Discussion", "discussion"), *discussion_blocks(str(text))]
