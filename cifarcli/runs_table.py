"""The `runs` listing on screen: a table that fits the terminal, the same listing as CSV, and two runs side by side.

The rows come from ``runs.list_runs`` and ``runs.diff_runs``; this module only lays them out.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from cifarcli.markup import literal

Column = tuple[str, str, list[str]]  # a column of the runs table: its name, its header, its cells (plain text)


_SETTING_HEADERS = {
    "lam": "λ",
    "eta": "η",
    "n_epochs": "epochs",
    "n_batch": "batch",
    "val_size": "val\nsize",
    "decay_every": "decay\nevery",
    "decay_factor": "decay\nfactor",
}
_METRIC_HEADERS = {
    "train_acc": "train\nacc",
    "val_acc": "val\nacc",
    "test_acc": "test\nacc",
    "train_cost": "train\ncost",
    "val_cost": "val\ncost",
    "seconds": "time",
    "created": "created",
}
# Dropped first when the terminal is too narrow, then settings the runs share (--all-params), then
# train_acc, test_acc and stability (a diverged run's accuracy cells still say so), then the differing
# settings from the right; never the run ID or val_acc.
_DROP_FIRST, _DROP_LATER = ("created", "seconds", "train_cost", "val_cost"), ("train_acc", "test_acc", "stability")


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _created(text: str | None) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return "?"


def _run_cells(row: dict) -> dict[str, str]:
    """The plain text of a row's metric cells; a diverged run says where instead of its accuracies."""

    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:.4f}"

    cells = {name: number(row[name]) for name in ("train_acc", "val_acc", "train_cost", "val_cost")}
    cells["test_acc"] = number(row["test_acc"]) if row["evaluated"] else "—"
    if row["diverged_at"] is not None:
        cells.update(train_acc="diverged", val_acc=f"at epoch {row['diverged_at']}", train_cost="—", val_cost="—")
    cells["seconds"] = _duration(row["seconds"])
    cells["created"] = _created(row["created"])
    return cells


def _widths(columns: list[Column]) -> list[int]:
    from rich.cells import cell_len

    return [
        max([cell_len(line) for line in header.split("\n")] + [cell_len(cell) for cell in cells])
        for _, header, cells in columns
    ]


def _table_width(columns: list[Column]) -> int:
    """The width of ``_fixed_table`` for these columns: the cells, two spaces between columns."""
    widths = _widths(columns)
    return sum(widths) + 2 * (len(widths) - 1) if widths else 0


def _fixed_table(columns: list[Column], rows: list[dict], best: bool, left: set[str]):
    """The runs table as one rich Text: one line per run, cells padded to their column's width.

    Drawn here, not with rich's Table: every cell is one line of known width (the columns were
    chosen to fit), and laying out thousands of rows through Table takes seconds.
    """
    from rich.cells import cell_len
    from rich.text import Text

    widths = _widths(columns)
    depth = max(header.count("\n") + 1 for _, header, _ in columns)
    text = Text(no_wrap=True, overflow="ignore")

    def cell(value: str, width: int, name: str) -> str:
        pad = " " * (width - cell_len(value))
        return value + pad if name in left else pad + value

    for level in range(depth):
        parts = []
        for (name, header, _), width in zip(columns, widths):
            lines = header.split("\n")
            lines = [""] * (depth - len(lines)) + lines  # headers sit on the bottom line
            parts.append(cell(lines[level], width, name))
        text.append("  ".join(parts).rstrip() + "\n", style="bold")
    text.append("─" * (sum(widths) + 2 * (len(widths) - 1)) + "\n", style="dim")
    for i, row in enumerate(rows):
        for j, ((name, _, cells), width) in enumerate(zip(columns, widths)):
            style = None
            if row["diverged_at"] is not None and name in ("train_acc", "val_acc"):
                style = "red"
            elif best and i == 0 and name == "val_acc":
                style = "bold green"
            elif name == "stability" and not row["stable"]:
                style = "bold yellow"
            value = cell(cells[i], width, name)
            text.append(value.rstrip() if j == len(columns) - 1 else value + "  ", style=style)
        text.append("\n")
    text.rstrip()
    return text


def runs_view(result: dict, width: int = 80, all_params: bool = False) -> list[Any]:
    """One row per run: its ID, the settings that differ (all with ``all_params``), the final metrics,
    test accuracy where evaluated, time and creation; columns are dropped, never wrapped, to fit ``width``."""
    rows = result["runs"]
    if not rows:
        where = f" matching {', '.join(result['where'])}" if result["where"] else ""
        return [
            f"no trained runs{literal(where)} in {literal(result['cache_dir'])} "
            f"({result['n_total']} in all; train one with: cifarcli train)"
        ]
    shown = list(result["changed"]) if not all_params else [name for name in result["runs"][0]["settings"]]
    columns, dropped = _fitted(_columns(rows, shown), rows, shown, result["changed"], width)
    table = _fixed_table(
        columns,
        rows,
        best=result["sort"] == "val_acc" and not result["reverse"],
        left={"id", "name", "stability", "created", *shown},
    )
    return [table, *(literal(line) for line in _wrap(_notes(result, columns, dropped, width), width))]


def _columns(rows: list[dict], shown: list[str]) -> list[Column]:
    """Every column the table could show, left to right: run ID, name (when a run has one), the ``shown``
    settings, accuracies (test where a run was evaluated), stability, costs, time and creation."""
    cells = [_run_cells(row) for row in rows]
    columns: list[Column] = [("id", "run ID", [row["id"] for row in rows])]
    if any(row["name"] for row in rows):
        columns.append(("name", "name", [literal(row["name"] or "") for row in rows]))
    columns += [
        (name, _SETTING_HEADERS.get(name, name), [_setting_text(row["settings"][name]) for row in rows])
        for name in shown
    ]
    metrics = ["train_acc", "val_acc"] + (["test_acc"] if any(row["evaluated"] for row in rows) else [])
    columns += [(name, _METRIC_HEADERS[name], [c[name] for c in cells]) for name in metrics]
    # "⚠ diverged" alone: the accuracy cells already say at which epoch
    columns.append(("stability", "stability", [row["stability"].split(" at ")[0] for row in rows]))
    columns += [
        (name, _METRIC_HEADERS[name], [c[name] for c in cells])
        for name in ("train_cost", "val_cost", "seconds", "created")
    ]
    return columns


def _fitted(
    columns: list[Column], rows: list[dict], shown: list[str], changed: list[str], width: int
) -> tuple[list[Column], list[str]]:
    """``columns`` less those dropped, in the order given at ``_DROP_FIRST``, until the table fits ``width``;
    and the names of the dropped ones."""
    dropped: list[str] = []
    shared = [name for name in reversed(shown) if name not in changed]
    differing = [name for name in reversed(shown) if name in changed]
    for name in (*_DROP_FIRST, *shared, *_DROP_LATER, *differing):
        if _table_width(columns) <= width:
            break
        if any(column[0] == name for column in columns):
            columns = [column for column in columns if column[0] != name]
            dropped.append(name)
            if name == "train_acc":
                columns = _divergence_in_one_cell(columns, rows)
    return columns, dropped


def _divergence_in_one_cell(columns: list[Column], rows: list[dict]) -> list[Column]:
    """Without train_acc, "diverged | at epoch N" lose their first half: val_acc says it in one cell."""

    def merged(name: str, cells: list[str]) -> list[str]:
        if name != "val_acc":
            return cells
        return [
            f"diverged at epoch {row['diverged_at']}" if row["diverged_at"] is not None else cell
            for row, cell in zip(rows, cells)
        ]

    return [(name, header, merged(name, cells)) for name, header, cells in columns]


def _notes(result: dict, columns: list[Column], dropped: list[str], width: int) -> list[str]:
    """The lines below the table: how many runs and in which order, the settings all runs share that no
    column shows, and the columns hidden to fit ``width``."""
    order = "reversed " if result["reverse"] else ""
    lines = [
        f"{result['n_runs']} of {result['n_total']} run(s), sorted by {order}{literal(result['sort'])}"
        + (f", where {literal(', '.join(result['where']))}" if result["where"] else "")
    ]
    kept = {column[0] for column in columns}
    same = ", ".join(f"{k}={_setting_text(v)}" for k, v in result["same"].items() if k not in kept)
    if same:
        lines.append(f"same in all: {same}")
    hidden = [name for name in dropped if name not in result["same"]]
    if hidden:
        lines.append(f"hidden to fit {width} columns: {', '.join(hidden)} (wider terminal, --json or --csv)")
    return lines


def _wrap(lines: list[str], width: int) -> list[str]:
    """Notes below the table, broken at spaces to ``width`` (the console itself never wraps)."""
    import textwrap

    return [part for line in lines for part in textwrap.wrap(line, width, subsequent_indent="  ") or [""]]


def runs_csv(result: dict) -> str:
    """The listing as CSV for spreadsheets: the full run ID, every setting, every metric (empty when missing)."""
    import csv
    import io

    buffer = io.StringIO()
    names = list(result["runs"][0]["settings"]) if result["runs"] else []
    header = [
        "run_id",
        *names,
        "train_acc",
        "val_acc",
        "test_acc",
        "train_cost",
        "val_cost",
        "diverged_at",
        "created",
        "seconds",
    ]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in result["runs"]:
        writer.writerow(
            map(
                _inert,
                [
                    row["run_id"],
                    *(row["settings"][n] for n in names),
                    *("" if row[k] is None else row[k] for k in header[len(names) + 1 :]),
                ],
            )
        )
    return buffer.getvalue()


def _inert(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(…)`` in a doctored ``created``)
    gets a leading ``'``, as OWASP's CSV-injection rule says; numbers stay numbers."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def runs_diff_view(result: dict) -> list[Any]:
    """Two runs side by side: settings (the differing ones marked), then final metrics."""
    a, b = result["a"], result["b"]
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column(literal(a["id"]), no_wrap=True, justify="right")
    table.add_column(literal(b["id"]), no_wrap=True, justify="right")
    table.add_column("", no_wrap=True)
    table.add_column("B − A", no_wrap=True, justify="right")
    for s in result["settings"]:
        marker = "" if s["same"] else "[yellow]≠[/]"
        cell = (
            (lambda v: literal(_setting_text(v)))
            if s["same"]
            else (lambda v: f"[bold yellow]{literal(_setting_text(v))}[/]")
        )
        table.add_row(
            literal(s["name"]) if s["same"] else f"[bold]{literal(s['name'])}[/]",
            cell(s["a"]),
            cell(s["b"]),
            marker,
            "",
        )
    table.add_section()
    ca, cb = _run_cells(a), _run_cells(b)
    delta = {m["name"]: m["delta"] for m in result["metrics"]}

    def signed(name: str, text: str) -> str:
        return "—" if delta[name] is None else literal(text.format(delta[name]))

    table.add_row("name", literal(a["name"] or "—"), literal(b["name"] or "—"), "", "")
    for name in ("train_acc", "val_acc", "test_acc", "train_cost", "val_cost"):
        table.add_row(literal(name), literal(ca[name]), literal(cb[name]), "", signed(name, "{:+.4f}"))
    table.add_row("stability", literal(a["stability"]), literal(b["stability"]), "", "")
    table.add_row(
        "diverged at",
        literal(a["diverged_at"] or "—"),
        literal(b["diverged_at"] or "—"),
        "",
        signed("diverged_at", "{:+d}"),
    )
    table.add_row("time", literal(ca["seconds"]), literal(cb["seconds"]), "", signed("seconds", "{:+.1f} s"))
    table.add_row("created", literal(ca["created"]), literal(cb["created"]), "", "")
    changed = ", ".join(result["changed"]) or "none"
    return [table, f"settings that differ: {literal(changed)}"]
