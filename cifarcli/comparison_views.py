"""Results that compare several runs, on screen: the report's table of the study, a sweep's grid
sorted by validation accuracy, and an ensemble's members beside its two rules."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from cifarcli.markup import literal
from cifarcli.views import gradcheck_verdict_of

# -- report ------------------------------------------------------------------------


def report_view(result: dict) -> list[Any]:
    # Compact, and no cell wraps or is cut: a run ID is typed back (--run), so all of its 12 characters stay.
    table = Table(title="The study", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    for column in ("run", "λ", "η", "batch", "epochs", "train acc", "val acc", "test acc"):
        table.add_column(column, justify="right", no_wrap=True, min_width=12 if column == "run" else None)
    best = max((run["metrics"]["test"]["accuracy"] for run in result["runs"] if run["metrics"]), default=None)
    for run in result["runs"]:
        c, m = run["config"], run["metrics"]
        accs = [f"{m[s]['accuracy']:.4f}" for s in ("train", "val", "test")] if m else ["diverged"] * 3
        if m and m["test"]["accuracy"] == best:
            accs[2] = f"[bold green]{accs[2]} ★[/]"
        table.add_row(
            literal(run["run_id"][:12]), f"{c['lam']:g}", f"{c['eta']:g}", str(c["n_batch"]), str(c["n_epochs"]), *accs
        )
    check = result["gradcheck"]
    return [
        table,
        f"gradient check: {gradcheck_verdict_of(check, check['tol'])}",
        *(f"wrote {literal(path)}" for path in result["paths"].values()),
    ]


# -- sweep -------------------------------------------------------------------------------------


def sweep_view(result: dict) -> list[Any]:
    """The points sorted by validation accuracy (selection), the best with its test accuracy, the heat-map."""
    grid = result["grid"]
    shape = " × ".join(
        str(len(grid[k])) for k in ("lam", "eta", "n_batch", "n_epochs") if len(grid[k]) > 1 or k in ("lam", "eta")
    )
    table = Table(
        title=f"Sweep {literal(result['sweep'])}: {result['n_points']} points ({shape}), "
        "sorted by validation accuracy (cost: final training cost)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
    )
    for column in ("λ", "η", "batch", "epochs", "train acc", "val acc", "cost", "run ID"):
        table.add_column(column, justify="right", no_wrap=True)
    best = (result.get("best") or {}).get("run_id")
    for p in result["points"]:
        if p["diverged_at"] is not None:
            accs = ["[red]diverged[/]", f"[red]at epoch {p['diverged_at']}[/]", "—"]
        else:
            accs = [f"{p['train_acc']:.4f}", f"{p['val_acc']:.4f}", f"{p['train_cost']:.4f}"]
        if p["run_id"] == best:
            accs[1] = f"[bold green]{accs[1]}★[/]"
        run_id = literal(p["run_id"]) if p["status"] == "computed" else f"[dim]{literal(p['run_id'])}[/]"
        table.add_row(f"{p['lam']:g}", f"{p['eta']:g}", str(p["n_batch"]), str(p["n_epochs"]), *accs, run_id)
    out: list[Any] = [table]
    if result.get("best"):
        b = result["best"]
        c = b["config"]
        out.append(
            f"best on validation: λ={c['lam']:g}, η={c['eta']:g}, n_batch={c['n_batch']}, "
            f"epochs={c['n_epochs']}: val acc [bold]{b['val_acc']:.4f}[/], "
            f"test acc [bold]{b['test_acc']:.4f}[/], run ID [bold]{literal(b['run_id'])}[/]"
        )
    else:
        out.append("[red]every point diverged: nothing to select[/]")
    out.append(
        f"trained {len(result['computed'])} of {result['n_points']} points (cached ones dimmed); "
        f"heat-map {literal(result['heatmap'])}"
    )
    return out


# -- ensemble ----------------------------------------------------------------------------------


def ensemble_view(result: dict) -> list[Any]:
    """Each member's accuracy, then the majority vote's and the mean's, on validation and test."""
    combined = "scores" if result["combined"] == "scores" else "probabilities"
    table = Table(
        title=f"Ensemble {literal(result['ensemble'])}: {result['n_members']} members, loss {literal(result['loss'])}",
        box=box.SIMPLE_HEAD,
    )
    for column in ("", "val acc", "test acc", "run ID"):
        table.add_column(column, justify="right" if column.endswith("acc") else "left")
    for member in result["members"]:
        table.add_row(
            literal(member["label"]), f"{member['val']:.4f}", f"{member['test']:.4f}", literal(member["run_id"])
        )
    best_val = max(result["val"]["vote"], result["val"]["mean"])
    for key, name in (("vote", "majority vote"), ("mean", f"mean of the {combined}")):
        val, test = result["val"][key], result["test"][key]
        mark = " ★" if val == best_val else ""
        table.add_row(f"[bold]{name}[/]", f"[bold]{val:.4f}{mark}[/]", f"[bold]{test:.4f}[/]", "")
    return [
        table,
        f"ties: {literal(result['tie_rule'])} ({result['val']['vote_ties']} tied votes on validation, "
        f"{result['test']['vote_ties']} on test); ★ the better rule on validation"
        + ("  (cached)" if result.get("cached") else ""),
    ]
