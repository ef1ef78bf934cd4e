"""Writing the two report files: ``report.md`` and ``report.html``, each atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..plots import atomic_write_bytes
from .html import render_html
from .markdown import render_markdown


def write_report(doc: Mapping[str, Any], reports_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` in ``reports_dir``, each atomically.

    Returns ``{"md": <path of report.md>, "html": <path of report.html>}``.
    """
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    md = render_markdown(doc).encode("utf-8")
    page = render_html(doc, reports_dir).encode("utf-8")
    out = {
        "md": atomic_write_bytes(reports_dir / "report.md", lambda fh: fh.write(md)),
        "html": atomic_write_bytes(reports_dir / "report.html", lambda fh: fh.write(page)),
    }
    return out

