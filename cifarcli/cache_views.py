"""What the cache holds, on screen: its artifacts, what `cache clear` would remove, what `cache verify`
found, and which stages of one setting are cached (`status`)."""

from __future__ import annotations

from rich.table import Table

from cifarcli.errors import human_size
from cifarcli.markup import literal


def cache_table(rows: list[dict]) -> Table:
    table = Table(title="Cached artifacts")
    for column in ("stage", "key", "params", "size", "created"):
        table.add_column(column)
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        params = f"run {row['run'][:8]}: {params}" if row.get("run") else params  # made from that run alone
        size = human_size(row["size"]) if row["size"] is not None else "?"
        table.add_row(
            literal(row["stage"]),
            literal(row["key"]),
            literal(params if len(params) < 60 else params[:57] + "…"),
            size,
            literal(row.get("damaged") or row["created"] or ""),
        )
    return table


def plan_summary(plan: dict) -> str:
    n_bytes = sum(stage["bytes"] for stage in plan["stages"].values())
    n_artifacts = sum(stage["artifacts"] for stage in plan["stages"].values())
    links = f" and {len(plan['links'])} link(s) (not their targets)" if plan["links"] else ""
    return f"{n_artifacts} artifact(s), {human_size(n_bytes)}{links}"


def clear_plan_view(plan: dict, cache_dir) -> list:
    """What `cache clear` removes: artifacts and MB per stage, and the links it unlinks."""
    table = Table(title=f"To remove from {literal(cache_dir)}")
    for column, justify in (("stage", "left"), ("artifacts", "right"), ("size", "right")):
        table.add_column(column, justify=justify)
    for name, stage in plan["stages"].items():
        table.add_row(literal(name), str(stage["artifacts"]), human_size(stage["bytes"]))
    return [
        table,
        *(f"the link {literal(path)} (its target is left alone)" for path in plan["links"]),
        f"in all {plan_summary(plan)}",
    ]


def verify_view(rows: list[dict]) -> Table:
    table = Table(title=f"Verified {len(rows)} artifact(s)")
    for column in ("stage", "key", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            literal(row["stage"]),
            literal(row["key"]),
            "[green]ok[/]" if row["ok"] else f"[red]{literal(row['reason'])}[/]",
        )
    return table


def status_view(rows: list[dict]) -> Table:
    colours = {
        "cached": "green",
        "missing": "yellow",
        "partial": "cyan",
        "damaged": "red",
        "stale": "magenta",
        "unreadable": "red",
    }
    table = Table(title="Pipeline status")
    for column in ("stage", "key", "state"):
        table.add_column(column)
    for row in rows:
        state = f"[{colours[row['state']]}]{row['state']}[/]" + (
            f" ({literal(row['reason'])})" if row["reason"] else ""
        )
        table.add_row(literal(row["stage"]), literal(row["key"] or "-"), state)
    return table
