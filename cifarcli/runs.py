"""``cifarcli runs``: list, filter, sort and compare the trained runs, from their meta.json files alone.

Every training run's meta.json holds its settings (``params``), its final
metrics (``info.final``), where it diverged (``info.diverged_at``), its
training time (``info.timings``) and when it was made (``created``); a cached
evaluation's meta.json holds its test numbers. Nothing here loads a payload,
so listing thousands of runs stays fast. Nothing here speaks in flags: a bad
filter or sort field is an ``OptionError`` naming ``where`` or ``sort``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from typing import Any

from cifarcli import stages
from cifarcli.config import CHOICES, TrainConfig, train_fields
from cifarcli.errors import CifarError, OptionError, shown
from cifarcli.stages import Workspace

SETTINGS: tuple[str, ...] = tuple(train_fields())  # TrainConfig's order: the study's settings first
METRICS = ("train_acc", "val_acc", "test_acc", "train_cost", "val_cost")
FIELDS = (*SETTINGS, *METRICS, "diverged_at", "created", "seconds", "run_id", "name", "stable")
DEFAULT_SORT = "val_acc"
MIN_ID_LENGTH = 8
# Best first: accuracies high to low, costs low to high; the newest run first; everything else ascending.
_DESCENDING = {"train_acc", "val_acc", "test_acc", "created", "seconds"}
_WHERE = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*$")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_DEFAULTS = asdict(TrainConfig())


def list_runs(
    ws: Workspace,
    where: list[str] | None = None,
    split: str | None = None,
    sort: str = DEFAULT_SORT,
    reverse: bool = False,
) -> dict:
    """The trained runs that pass every filter, sorted; with the settings that differ between them.

    Returns ``{"cache_dir", "n_runs", "n_total", "sort", "reverse", "where", "changed": [setting],
    "same": {setting: value}, "runs": [row]}``; each row is ``{"run_id", "id" (shortest unique prefix,
    at least 8 characters), "name" (None when unnamed), "settings": {every setting}, "train_acc", "val_acc",
    "train_cost", "val_cost", "test_acc" (None unless evaluated), "evaluated", "diverged_at", "created", "seconds",
    "stability" (the report's verdict: "stable", "⚠ unstable", "⚠ diverged at epoch N"), "stable"}``.
    """
    sort_field = _field(sort, "sort")
    filters = [parse_where(text) for text in where or ()]
    if split is not None:
        filters.append(("split", "=", _choice("split", split, "split")))
    rows = _rows(ws)
    prefixes = short_ids([row["run_id"] for row in rows])
    for row in rows:
        row["id"] = prefixes[row["run_id"]]
    total = len(rows)
    rows = [row for row in rows if all(_matches(row, *f) for f in filters)]
    rows = sort_runs(rows, sort_field, reverse)
    changed = changed_settings(rows)
    same = {name: rows[0]["settings"][name] for name in SETTINGS if name not in changed} if rows else {}
    return {
        "cache_dir": str(ws.cache_dir),
        "n_runs": len(rows),
        "n_total": total,
        "sort": sort_field,
        "reverse": reverse,
        "where": [f"{n}{op}{v}" for n, op, v in filters],
        "changed": changed,
        "same": same,
        "runs": rows,
    }


def diff_runs(ws: Workspace, first: str, second: str) -> dict:
    """Two runs (names or ID prefixes) side by side: every setting (``same`` or not), their final metrics
    and each metric's difference ``delta`` = B − A (None where either is missing)."""
    rows = _rows(ws)
    prefixes = short_ids([row["run_id"] for row in rows])
    a, b = (_one(rows, stages.run_id_of(ws, text)) for text in (first, second))
    for row in (a, b):
        row["id"] = prefixes[row["run_id"]]
    settings = [
        {
            "name": name,
            "a": a["settings"][name],
            "b": b["settings"][name],
            "same": a["settings"][name] == b["settings"][name],
        }
        for name in SETTINGS
    ]
    metrics = [
        {
            "name": name,
            "a": a[name],
            "b": b[name],
            "delta": b[name] - a[name] if name != "created" and None not in (a[name], b[name]) else None,
        }
        for name in (*METRICS, "diverged_at", "created", "seconds")
    ]
    return {
        "a": a,
        "b": b,
        "settings": settings,
        "metrics": metrics,
        "changed": [s["name"] for s in settings if not s["same"]],
    }


def _one(rows: list[dict], run_id: str) -> dict:
    found = [row for row in rows if row["run_id"] == run_id]
    if not found:  # its meta.json is damaged, or it was made from a dataset no key reaches any more
        raise CifarError(f"training run {run_id} is not readable", hint="run cifarcli cache verify")
    return dict(found[0])


def _rows(ws: Workspace) -> list[dict]:
    names = stages.run_names(ws)
    return [_row(meta, evaluated, names.get(meta["key"])) for meta, evaluated in stages.run_metas(ws)]


def _row(meta: dict, evaluated: dict | None, name: str | None = None) -> dict:
    from cifarcli.report.stability import stability_label

    info = meta["info"]
    final = info.get("final") or {}
    test = ((evaluated or {}).get("info") or {}).get("test") or {}
    # Runs trained before meta.json kept the curves are judged on divergence alone.
    stability = stability_label({"history": info.get("curves", {}), "diverged_at": info.get("diverged_at")})
    return {
        "run_id": meta["key"],
        "name": name,
        "stability": stability,
        "stable": stability == "stable",
        "settings": {**_DEFAULTS, **meta["params"]},  # the params leave out defaults
        **{name: _number(final.get(name)) for name in ("train_acc", "val_acc", "train_cost", "val_cost")},
        "test_acc": _number(test.get("accuracy")),
        "evaluated": evaluated is not None,
        "diverged_at": info.get("diverged_at"),
        "created": meta["created"],
        "seconds": _number((info.get("timings") or {}).get("total_seconds")),
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def short_ids(keys: list[str], minimum: int = MIN_ID_LENGTH) -> dict[str, str]:
    """Each key's shortest prefix that no other key shares, at least ``minimum`` characters."""
    ordered = sorted(set(keys))
    result = {}
    for i, key in enumerate(ordered):
        shared = 0
        for other in (ordered[i - 1] if i else None, ordered[i + 1] if i + 1 < len(ordered) else None):
            if other is not None:
                n = 0
                while n < min(len(key), len(other)) and key[n] == other[n]:
                    n += 1
                shared = max(shared, n)
        result[key] = key[: max(minimum, shared + 1)]
    return result


def changed_settings(rows: list[dict]) -> list[str]:
    """The settings whose value is not the same in every row, in TrainConfig's order."""
    return [name for name in SETTINGS if len({repr(row["settings"][name]) for row in rows}) > 1]


def sort_runs(rows: list[dict], field: str, reverse: bool = False) -> list[dict]:
    """Sorted by ``field`` (best first for metrics); missing values last; diverged runs after the
    others when sorting by a metric; ties broken by the run ID."""
    descending = (field in _DESCENDING) != reverse

    def value(row: dict):
        return row["run_id"] if field == "run_id" else row["settings"][field] if field in SETTINGS else row[field]

    present = [row for row in rows if value(row) is not None]
    missing = [row for row in rows if value(row) is None]
    present.sort(key=lambda row: row["run_id"])
    present.sort(key=value, reverse=descending)  # stable: equal values keep the run-ID order
    ordered = present + sorted(missing, key=lambda row: row["run_id"])
    if field in METRICS:
        ordered = [r for r in ordered if r["diverged_at"] is None] + [
            r for r in ordered if r["diverged_at"] is not None
        ]
    return ordered


def _field(name: str, option: str) -> str:
    field = name.strip().replace("-", "_")
    if field not in FIELDS:
        raise OptionError(option, f"unknown field {name!r}", hint="one of: " + ", ".join(FIELDS))
    return field


def parse_where(text: str) -> tuple[str, str, Any]:
    """``"lam=0.1"`` -> ``("lam", "=", 0.1)``: the value in the field's type (``!=``, ``<``, ``<=``, ``>``,
    ``>=`` too). Settings and metrics can be filtered on."""
    match = _WHERE.match(text)
    if not match or not match.group(3):
        raise OptionError("where", f"cannot read {text!r}", hint="e.g. `where` lam=0.1 or `where` val_acc>=0.38")
    name, op, raw = match.groups()
    field = _field(name, "where")
    if field in ("run_id", "created", "name"):
        kind: type = str
    elif field == "stable":
        kind = bool
    elif field in SETTINGS:
        kind = train_fields()[field]
    else:
        kind = int if field == "diverged_at" else float
    op = "=" if op == "==" else op
    if (kind is bool or (kind is str and field != "created")) and op not in ("=", "!="):
        raise OptionError("where", f"{field} can only be compared with = or !=, got {text!r}")
    return field, op, _choice(field, _typed(field, kind, raw), "where")


def _choice(field: str, value: Any, option: str) -> Any:
    """``value``, unless ``field`` takes one of a few words and this is none of them (a typo listed nothing)."""
    choices = CHOICES.get(field)
    if choices is not None and value not in choices:
        raise OptionError(option, f"unknown {field} {shown(value)}", hint="one of: " + ", ".join(choices))
    return value


def _typed(field: str, kind: type, raw: str) -> Any:
    if kind is bool:
        if raw.lower() not in _TRUE + _FALSE:
            raise OptionError("where", f"{field} is true or false, got {raw!r}")
        return raw.lower() in _TRUE
    try:
        value = kind(raw)
    except ValueError:
        raise OptionError("where", f"{field} takes a {kind.__name__}, got {raw!r}") from None
    if kind is float and not math.isfinite(value):
        raise OptionError("where", f"{field} takes a finite number, got {raw!r}")
    return value


def _matches(row: dict, field: str, op: str, expected: Any) -> bool:
    value = row["settings"][field] if field in SETTINGS else row[field]
    if value is None:
        return op == "!="
    if op in ("=", "!="):
        # A run ID matches by its start, as --run takes it: the table shows 8 of its 16 characters.
        equal = value.startswith(expected.strip().lower()) if field == "run_id" else value == expected
        return equal if op == "=" else not equal
    return {"<": value < expected, "<=": value <= expected, ">": value > expected, ">=": value >= expected}[op]
