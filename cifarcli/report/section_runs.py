"""Layer 3 of the report: one run's section (settings, its accuracy per split, its figures).

Also the cells and anchors the other sections share with it: an accuracy with its interval, a run's
epochs, a run's anchor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .blocks import Figure, FigureRow, Heading, Para, Span, Table, anchor
from .format import PARAM_WORDS, finite, fmt_acc, fmt_ci, fmt_loss, fmt_num, fmt_seconds, fmt_share
from .measures import epochs_of, loss_object, loss_of, margin_stats, metrics_of, probability_stats, run_name

SPLITS = (("train", "train"), ("val", "validation"), ("test", "test"))
FIGURE_CAPTIONS = {
    "loss": "Loss and cost per epoch (train and validation).",
    "accuracy": "Accuracy per epoch (train and validation).",
    "weights": "Learnt weights W, one 32×32 image per class, each scaled to its own range.",
    "confusion": "Confusion matrix on the test set (rows: true class, columns: predicted).",
    "probabilities": "Probability the model gives the true class of each test image, correctly vs "
    "incorrectly classified images, each as a share of its group.",
    "margins": "Margin of the true class of each test image, s_y − max_(j≠y) s_j (an SVM gives scores, not "
    "probabilities; > 0 is a correct answer), correctly vs incorrectly classified images, each as "
    "a share of its group; the outer bins hold everything beyond ±5.",
}


# What each per-run figure shows, as the start of its caption ("Figure 5: loss and cost, λ=0.1, η=0.001").
FIGURE_NAMES = {
    "loss": "loss and cost",
    "accuracy": "accuracy",
    "weights": "learnt weights",
    "confusion": "confusion matrix",
    "probabilities": "true-class probability",
    "margins": "true-class margin (SVM)",
}
# The rest of a per-run caption, after its name and the run's.
RUN_FIGURE_DETAILS = {
    "loss": "Per epoch, train and validation; dashed: the cost, loss + λ‖W‖².",
    "accuracy": "Per epoch, train and validation; dotted: chance (0.1).",
    "weights": "W as one 32×32 image per class, each scaled to its own range.",
    "confusion": "On the test set; rows: true class, columns: predicted.",
}
# Per-run figures two to a row: (loss | accuracy), (weights | confusion), then the histogram.
FIGURE_PAIRS = (("loss", "accuracy"), ("weights", "confusion"), ("probabilities",), ("margins",))


def accuracy_cell(accuracy: Any, ci: Any) -> list[str | Span]:
    """A table cell: the accuracy, then its 95 % interval (HTML: on a smaller line of its own)."""
    interval = fmt_ci(ci) if finite(accuracy) else ""
    return [fmt_acc(accuracy)] + ([Span(" " + interval, aside=True)] if interval else [])


def run_anchor(run: Mapping[str, Any], i: int) -> str:
    rid = str(run.get("run_id") or i)
    return "run-" + anchor(rid)


BRIEF_FIGURES = ("loss", "accuracy", "weights")  # the assignment asks for curves and weights per run


def run_blocks(run: Mapping[str, Any], i: int, brief: bool = False) -> list:
    c = run.get("config", {})
    blocks: list = [Heading(3, f"Run {i + 1}: {run_name(run)}", run_anchor(run, i))]
    settings = ", ".join(f"{PARAM_WORDS.get(k, k)}={fmt_num(v)}" for k, v in c.items())
    meta: list[str | Span] = ["Run ID ", Span(str(run.get("run_id", "—")), code=True), f". Settings: {settings}."]
    if run.get("train_seconds") is not None:
        meta.append(f" Training took {fmt_seconds(run['train_seconds'])}.")
    blocks.append(Para(meta))
    if run.get("chosen_epoch") is not None:
        blocks.append(Para(_early_stopping_text(run), "note"))
    m = metrics_of(run)
    if run.get("diverged_at") is not None:
        blocks += _diverged_blocks(run)
    if m or run.get("diverged_at") is None:
        sizes = run.get("split_sizes") or {}
        rows = []
        for key, name in SPLITS:
            s = m.get(key) or {}
            rows.append(
                [
                    name,
                    str(sizes.get(key, "—")),
                    fmt_loss(s.get("loss")),
                    fmt_loss(s.get("cost")),
                    accuracy_cell(s.get("accuracy"), s.get("accuracy_ci")),
                ]
            )
        blocks.append(Table(["split", "images", "loss", "cost", "accuracy [95 % CI]"], rows))
    figs = run.get("figures") or {}
    if brief:
        figs = {k: v for k, v in figs.items() if k in BRIEF_FIGURES}
    for pair in FIGURE_PAIRS:
        row = [_run_figure(run, k, figs[k]) for k in pair if figs.get(k)]
        if row:
            blocks.append(FigureRow(row, side_by_side=len(row) > 1, half=len(row) == 1))
    return blocks


def _run_figure(run: Mapping[str, Any], k: str, path: str) -> Figure:
    """One figure of a run; its caption starts with what it shows and the run ("loss and cost, λ=0.1, η=0.001")."""
    what = f"{k} curves" if k in ("loss", "accuracy") else k
    name = FIGURE_NAMES[k]
    if k == "loss" and finite(run.get("config", {}).get("lam")) and float(run["config"]["lam"]) == 0:
        name = "loss (= cost, λ = 0)"
    if k == "probabilities":
        detail = _probability_caption(run)
    elif k == "margins":
        detail = _margin_caption(run)
    elif k == "loss" and name != FIGURE_NAMES["loss"]:
        detail = "Per epoch, train and validation; with λ = 0 the cost equals the loss, so each is drawn once."
    else:
        detail = RUN_FIGURE_DETAILS.get(k, FIGURE_CAPTIONS[k])
    return Figure(path, f"{what}, {run_name(run)}", f"{name}, {run_name(run)}. {detail}")


def epochs_cell(run: Mapping[str, Any]) -> str:
    """The comparison table's epochs: the setting, and with early stopping the epochs trained and the one kept."""
    c = run.get("config", {})
    if run.get("chosen_epoch") is None:
        return fmt_num(c.get("n_epochs"))
    trained = (epochs_of(run) or [None])[-1]
    return f"{fmt_num(trained)} of {fmt_num(c.get('n_epochs'))}, kept {fmt_num(run['chosen_epoch'])}"


def _early_stopping_text(run: Mapping[str, Any]) -> str:
    """What early stopping did, from the run's history: epochs trained, the epoch kept and its accuracy."""
    c, h = run.get("config", {}), run.get("history") or {}
    epochs, chosen = epochs_of(run), run["chosen_epoch"]
    trained = epochs[-1] if epochs else None
    val = (h.get("val_acc") or [])[epochs.index(chosen)] if chosen in epochs else None
    text = f"Early stopping: trained {fmt_num(trained)} of {fmt_num(c.get('n_epochs'))} epochs"
    if c.get("patience"):
        stopped = trained is not None and trained < c.get("n_epochs", trained)
        text += (
            f" (stopped: validation accuracy had not improved for {fmt_num(c['patience'])} epochs)"
            if stopped
            else f" (patience {fmt_num(c['patience'])} never ran out)"
        )
    if c.get("keep") == "best":
        text += (
            f"; the weights kept, and evaluated below, are those of epoch {fmt_num(chosen)}, the highest "
            f"validation accuracy ({fmt_acc(val)}; ties go to the earliest), marked on the curves."
        )
    else:
        text += f"; the weights kept are those of the last epoch, {fmt_num(chosen)}."
    return text


def _diverged_blocks(run: Mapping[str, Any]) -> list:
    """A diverged run: when it diverged, and its history up to then (it has no metrics and no figures)."""
    epoch = run["diverged_at"]
    what = (
        "the metrics below are those of the last finite weights"
        if metrics_of(run)
        else "the run was not evaluated and has no figures"
    )
    blocks: list = [
        Para(
            f"Training diverged at epoch {epoch}: the cost became NaN or infinite and training "
            f"was stopped; {what}. Its history up to epoch {epoch} is below; a smaller η "
            "avoids the divergence.",
            "warn",
        )
    ]
    h = run.get("history") or {}
    columns = [
        ("train_cost", "train cost"),
        ("val_cost", "val. cost"),
        ("train_acc", "train acc."),
        ("val_acc", "val. acc."),
    ]
    rows = []
    for i, e in enumerate(epochs_of(run)):
        if epoch is not None and finite(e) and float(e) > float(epoch):
            break
        rows.append([fmt_num(e)] + [_fmt_history(h.get(key), i) for key, _ in columns])
    if rows:
        blocks.append(
            Table(
                ["epoch"] + [name for _, name in columns],
                rows,
                align="rrrrr",
                caption="History of the diverged run (epoch 0: the initial weights).",
            )
        )
    return blocks


def _fmt_history(values: Any, i: int) -> str:
    """One history value: 4 decimals, 'NaN' / 'inf' where it blew up, '—' where there is none."""
    if not isinstance(values, (list, tuple)) or i >= len(values) or values[i] is None:
        return "—"
    try:
        return fmt_acc(float(values[i]))  # nan -> 'nan', inf -> 'inf': said as they are
    except (TypeError, ValueError):
        return "—"


def _probability_caption(run: Mapping[str, Any]) -> str:
    """The histogram's caption with the run's own numbers (kind of probability, the two means)."""
    kind = loss_object(loss_of(run)).probability_caption
    st = probability_stats(run)
    text = FIGURE_CAPTIONS["probabilities"].rstrip(".") + f" ({kind})."
    return text + _group_means(st, fmt_acc, f"p < {st['threshold'] or 0.1:g}")


def _margin_caption(run: Mapping[str, Any]) -> str:
    """The SVM margin histogram's caption with the run's own numbers."""
    st = margin_stats(run)
    threshold = st["threshold"] if st["threshold"] is not None else -1.0
    return FIGURE_CAPTIONS["margins"] + _group_means(st, fmt_loss, f"a margin < {threshold:g}")


def _group_means(st: Mapping[str, float | None], fmt, confident: str) -> str:
    """' Mean … on correctly and … on incorrectly classified images; x % of the mistakes have ….', or ''."""
    if st["correct"] is None and st["incorrect"] is None:
        return ""
    text = f" Mean {fmt(st['correct'])} on correctly and {fmt(st['incorrect'])} on incorrectly classified images"
    if st["confident"] is not None:
        text += f"; {fmt_share(st['confident'])} of the mistakes have {confident}"
    return text + "."
