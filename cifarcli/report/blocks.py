"""Layer 3 of the report, its vocabulary: the neutral blocks a report is made of.

Headings, paragraphs, bullet lists, code, tables, figures and a table of
contents. The section modules (``section_*.py``) build them, ``assemble.py``
puts the sections in reading order, and both renderers (``markdown.py``,
``html.py``) and the typesetter read only these blocks, never the document, so
every format says the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    text: str
    bold: bool = False
    code: bool = False
    nowrap: bool = False  # HTML: never broken across lines (a run's name in a narrow column)
    italic: bool = False
    aside: bool = False  # HTML: a smaller line of its own under the cell's value (an accuracy's interval)


Inline = str | Span | Sequence[str | Span]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str


@dataclass
class Para:
    content: Inline
    kind: str = ""  # '', 'note', 'warn', 'pass', 'fail', 'meta'


@dataclass
class Bullets:
    items: list[Inline]
    ordered: bool = False


@dataclass
class CodeBlock:
    text: str  # shown verbatim (escaped), in a monospaced block


@dataclass
class Table:
    header: list[Inline]
    rows: list[list[Inline]]
    align: str = ""  # one 'l' or 'r' per column; default: first l, rest r
    caption: str = ""
    highlight: set[int] = field(default_factory=set)  # row indices to emphasise


@dataclass
class Figure:
    path: str  # relative to the reports folder
    alt: str
    caption: str


@dataclass
class FigureRow:
    figures: list[Figure]
    wide: bool = False  # HTML: use the full column width (weights grid)
    side_by_side: bool = False  # Markdown: one table row of images instead of one image after another
    half: bool = False  # HTML: a lone figure at half the column width (the slot of a pair)


@dataclass
class Contents:
    entries: list[tuple[str, str]]  # (anchor, text); HTML only


def anchor(text: str) -> str:
    """A heading's anchor: the text in lower case, every run of other characters a hyphen."""
    a = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return a or "section"
