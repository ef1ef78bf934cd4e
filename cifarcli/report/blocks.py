"""Layer 3 of the report: the document turned into a neutral list of blocks.

``build_blocks(doc)`` returns headings, paragraphs, bullet lists, tables,
figures and a table of contents, in reading order. Both renderers
(``markdown.py``, ``html.py``) read only these blocks, never the document, so
the two reports always say the same thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis import (
    STABILITY_RULE,
    PairTests,
    accuracy_of,
    accuracy_text,
    analysis,
    best_runs,
    best_versus_runner_up,
    epochs_of,
    fmt_update,
    gradcheck_passed,
    instability,
    loss_object,
    loss_of,
    loss_pairs,
    loss_sentences,
    margin_stats,
    metrics_of,
    probability_stats,
    roughness_of,
    run_name,
    stability_label,
    svm_sentences,
    update_of,
)
from .format import (
    PARAM_WORDS,
    describe_setting,
    finite,
    fmt_acc,
    fmt_ci,
    fmt_err,
    fmt_loss,
    fmt_num,
    fmt_points,
    fmt_seconds,
    fmt_share,
    join_names,
)

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


def _anchor(text: str) -> str:
    a = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return a or "section"


def source_name(source: Any) -> str:
    """The data source as a reader may see it: a URL as it is, a local file or folder by its name
    only (the checksums beside it identify it), never where it lies on the machine."""
    if source is None or source == "":
        return "—"
    text = str(source)
    if re.match(r"^[a-z][a-z0-9+.\-]*://", text, flags=re.I):
        return text
    return re.split(r"[\\/]", text.rstrip("/\\"))[-1] or text


def _dataset_rows(ds: Mapping[str, Any]) -> list[list[Inline]]:
    """Set-up table rows on the data: source, format, checksums, official or not, image counts."""
    if not ds:
        return []
    rows: list[list[Inline]] = [["data source", source_name(ds.get("source"))]]
    if ds.get("format"):
        rows.append(["format", str(ds["format"])])
    for k, name in (("md5", "MD5"), ("sha256", "SHA-256")):
        if ds.get(k):
            rows.append([name, Span(str(ds[k]), code=True)])
    official = ds.get("official")
    if official is not None:
        rows.append(["official archive", "yes" if official else "no"])
    if ds.get("n_train_total") is not None:
        rows.append(["training images available", str(ds["n_train_total"])])
    if ds.get("n_test") is not None:
        rows.append(["test images", str(ds["n_test"])])
    return rows


def _split_sizes(runs: Sequence[Mapping[str, Any]]) -> str | None:
    """'train / val / test' image counts when every run used the same ones (and the split's name if shared)."""
    sizes = {json.dumps(r.get("split_sizes"), sort_keys=True) for r in runs if r.get("split_sizes")}
    splits = {str(r.get("config", {}).get("split")) for r in runs}
    if len(sizes) != 1:
        return None
    s = json.loads(sizes.pop())
    txt = " / ".join(str(s.get(k, "—")) for k in ("train", "val", "test"))
    if len(splits) == 1 and splits != {"None"}:
        txt += f" (split “{splits.pop()}”)"
    return txt


def _initialisation(init: Mapping[str, Any]) -> str:
    bits = [str(init.get("distribution", ""))]
    if init.get("std") is not None:
        bits.append(f"std {fmt_num(init['std'])}")
    if init.get("seed") is not None:
        bits.append(f"seed {init['seed']}")
    return ", ".join(b for b in bits if b)


def _setup_blocks(doc: Mapping[str, Any]) -> list:
    ds = doc.get("dataset") or {}
    pre = doc.get("preprocessing") or {}
    init = doc.get("initialisation") or {}
    rows = _dataset_rows(ds)
    sizes = _split_sizes(doc.get("runs", []))
    if sizes is not None:
        rows.append(["train / validation / test", sizes])
    if pre.get("scale"):
        rows.append(["scaling", str(pre["scale"])])
    if pre.get("normalisation"):
        rows.append(["normalisation", str(pre["normalisation"])])
    if init:
        rows.append(["initialisation of W and b", _initialisation(init)])
    if doc.get("cifarcli_version"):
        rows.append(["cifarcli version", str(doc["cifarcli_version"])])
    if doc.get("created"):
        rows.append(["created", str(doc["created"])])
    blocks: list = [Heading(2, "Set-up", "setup")]
    if rows:
        blocks.append(Table(["item", "value"], rows, align="ll"))
    if ds.get("official") is False or ds.get("note"):
        note = ds.get("note") or "not the official archive"
        blocks.append(Para(f"Data: {note}.", "warn" if ds.get("official") is False else "note"))
    return blocks


def _gradcheck_blocks(gc: Mapping[str, Any] | None) -> list:
    blocks: list = [Heading(2, "Gradient check", "gradcheck")]
    if not gc:
        blocks.append(Para("The gradient check is not part of this report."))
        return blocks
    tol = gc.get("tol")
    ok = gradcheck_passed(gc)
    desc = [
        "Relative error |g_a − g_n| / max(eps, |g_a| + |g_n|) between the analytic and a "
        "centred-difference numerical gradient"
    ]
    if gc.get("n_samples") is not None:
        desc.append(f", on {gc['n_samples']} examples")
    if gc.get("n_dims") is not None:
        desc.append(f" and {gc['n_dims']} input dimensions")
    if gc.get("h") is not None:
        desc.append(f", step h = {fmt_err(gc['h'])}")
    if gc.get("elapsed") is not None:
        desc.append(f" ({fmt_seconds(gc['elapsed'])})")
    blocks.append(Para("".join(desc) + "."))
    rows, bad = [], set()
    kinked = not loss_object(gc.get("loss")).smooth
    for res in gc.get("results", []):
        for p in ("W", "b"):
            st = res.get(p)
            if not st:
                continue
            passed = tol is not None and finite(st.get("max")) and float(st["max"]) <= float(tol)
            if not passed:
                bad.add(len(rows))
            kinks = [f"{(res.get('kinks') or {}).get(p, 0)} of {st.get('n', '—')}"] if kinked else []
            rows.append(
                [
                    fmt_num(res.get("lam")),
                    Span(p, code=True),
                    fmt_err(st.get("max")),
                    fmt_err(st.get("mean")),
                    fmt_err(st.get("median")),
                    fmt_share(st.get("share_below_tol")),
                    *kinks,
                    Span("PASS" if passed else "FAIL", bold=True),
                ]
            )
    if rows:
        blocks.append(
            Table(
                [
                    "λ",
                    "parameter",
                    "max",
                    "mean",
                    "median",
                    f"share < {fmt_err(tol)}",
                    *(["within h of a kink (excluded)"] if kinked else []),
                    "result",
                ],
                rows,
                align="llrrrr" + ("r" if kinked else "") + "l",
                highlight=bad,
            )
        )
    if kinked:
        n_kinks = sum(sum((res.get("kinks") or {}).values()) for res in gc.get("results", []))
        blocks.append(
            Para(
                f"The SVM's hinge has kinks: {n_kinks} checked parameter(s) lie within h of one "
                "(their ±h moves a margin across zero, where a centred difference is not a "
                "gradient). They are left out of max, mean, median and the verdict.",
                "note",
            )
        )
    blocks.append(
        Para(
            [
                Span(f"{'PASS' if ok else 'FAIL'}", bold=True),
                f": every maximum relative error {'is' if ok else 'is not'} within the tolerance {fmt_err(tol)}.",
            ],
            "pass" if ok else "fail",
        )
    )
    for res in gc.get("results", []):
        corner = (res.get("W") or {}).get("corner")
        if not corner:
            continue
        n = len(corner[0]) if corner else 0
        blocks.append(
            Table(
                [""] + [f"j={j}" for j in range(n)],
                [[f"k={i}"] + [fmt_err(v) for v in r] for i, r in enumerate(corner)],
                caption=f"Relative error of W, top-left {len(corner)}×{n} corner "
                f"(λ={fmt_num(res.get('lam'))}); k = class, j = input dimension.",
            )
        )
    return blocks


def _accuracy_cell(accuracy: Any, ci: Any) -> list[str | Span]:
    """A table cell: the accuracy, then its 95 % interval (HTML: on a smaller line of its own)."""
    interval = fmt_ci(ci) if finite(accuracy) else ""
    return [fmt_acc(accuracy)] + ([Span(" " + interval, aside=True)] if interval else [])


def _run_anchor(run: Mapping[str, Any], i: int) -> str:
    rid = str(run.get("run_id") or i)
    return "run-" + _anchor(rid)


BRIEF_FIGURES = ("loss", "accuracy", "weights")  # the assignment asks for curves and weights per run


def _run_blocks(run: Mapping[str, Any], i: int, brief: bool = False) -> list:
    c = run.get("config", {})
    blocks: list = [Heading(3, f"Run {i + 1}: {run_name(run)}", _run_anchor(run, i))]
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
                    _accuracy_cell(s.get("accuracy"), s.get("accuracy_ci")),
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


def _epochs_cell(run: Mapping[str, Any]) -> str:
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
    text = FIGURE_CAPTIONS["probabilities"].rstrip(".") + f" ({kind})."
    st = probability_stats(run)
    if st["correct"] is not None or st["incorrect"] is not None:
        text += (
            f" Mean {fmt_acc(st['correct'])} on correctly and {fmt_acc(st['incorrect'])} on "
            "incorrectly classified images"
        )
        if st["confident"] is not None:
            text += f"; {fmt_share(st['confident'])} of the mistakes have p < {st['threshold'] or 0.1:g}"
        text += "."
    return text


def _margin_caption(run: Mapping[str, Any]) -> str:
    """The SVM margin histogram's caption with the run's own numbers."""
    text = FIGURE_CAPTIONS["margins"]
    st = margin_stats(run)
    if st["correct"] is not None or st["incorrect"] is not None:
        text += (
            f" Mean {fmt_loss(st['correct'])} on correctly and {fmt_loss(st['incorrect'])} on "
            "incorrectly classified images"
        )
        if st["confident"] is not None:
            threshold = st["threshold"] if st["threshold"] is not None else -1.0
            text += f"; {fmt_share(st['confident'])} of the mistakes have a margin < {threshold:g}"
        text += "."
    return text


def _svm_comparison_blocks(runs: Sequence[Mapping[str, Any]], tests: PairTests | None = None) -> list:
    """Softmax vs SVM: a table of accuracies and the SVM's margins, the figures, sentences; [] without both."""
    pairs = loss_pairs(runs, "svm")
    if not pairs:
        return []
    blocks: list = [Heading(3, "Softmax vs SVM", "comparison-svm")]
    rows = []
    for soft, svm, _ in pairs:
        for r in (soft, svm):
            scores_only = not loss_object(loss_of(r)).gives_probabilities
            st = margin_stats(r) if scores_only else {"correct": None, "incorrect": None}
            rows.append(
                [
                    run_name(r),
                    loss_of(r),
                    fmt_acc(accuracy_of(r, "val")),
                    fmt_acc(accuracy_of(r, "test")),
                    fmt_loss(st["correct"]) if st["correct"] is not None else "—",
                    fmt_loss(st["incorrect"]) if st["incorrect"] is not None else "—",
                    Span(str(r.get("run_id", "—")), code=True),
                ]
            )
    blocks.append(
        Table(
            ["run", "loss", "val. acc.", "test acc.", "mean margin, correct", "mean margin, misclassified", "run ID"],
            rows,
            align="llrrrrl",
            caption="The multi-class SVM (hinge loss, margin 1) against softmax. The SVM gives "
            "scores, not probabilities: its margin is the true class's score minus the "
            "best other score, on the test set.",
        )
    )
    for soft, svm, same in pairs:
        figs = [
            (soft, (soft.get("figures") or {}).get("probabilities")),
            (svm, (svm.get("figures") or {}).get("margins")),
        ]
        if all(path for _, path in figs):
            blocks.append(
                FigureRow(
                    [
                        Figure(path, f"true class, {run_name(r)}, loss {loss_of(r)}", f"{loss_of(r)}: {run_name(r)}")
                        for r, path in figs
                    ],
                    side_by_side=True,
                )
            )
        blocks.append(Bullets(list(svm_sentences(soft, svm, same, tests))))
    return blocks


def _loss_comparison_blocks(runs: Sequence[Mapping[str, Any]], tests: PairTests | None = None) -> list:
    """Softmax vs BCE: a table, the histograms side by side, sentences from the numbers; [] with one loss."""
    pairs = loss_pairs(runs)
    if not pairs:
        return []
    blocks: list = [Heading(3, "Softmax vs binary cross-entropy", "comparison-losses")]
    rows = []
    t = 0.1
    for soft, bce, _ in pairs:
        for r in (soft, bce):
            st = probability_stats(r)
            t = st["threshold"] if st["threshold"] is not None else t
            rows.append(
                [
                    run_name(r),
                    loss_of(r),
                    fmt_acc(accuracy_of(r, "test")),
                    fmt_acc(st["correct"]),
                    fmt_acc(st["incorrect"]),
                    fmt_share(st["confident"]),
                    Span(str(r.get("run_id", "—")), code=True),
                ]
            )
    blocks.append(
        Table(
            [
                "run",
                "loss",
                "test acc.",
                "mean p(true), correct",
                "mean p(true), misclassified",
                f"confident mistakes (p(true) < {t:g})",
                "run ID",
            ],
            rows,
            align="llrrrrl",
            caption="Probability given to the true class on the test set. Softmax probabilities "
            "sum to 1 over the classes; BCE's are one sigmoid per class and do not. "
            "Confident mistakes: share of the misclassified images.",
        )
    )
    for soft, bce, same in pairs:
        figs = [(r, (r.get("figures") or {}).get("probabilities")) for r in (soft, bce)]
        if all(path for _, path in figs):
            blocks.append(
                FigureRow(
                    [
                        Figure(
                            path,
                            f"true-class probability, {run_name(r)}, loss {loss_of(r)}",
                            f"{loss_of(r)}: {run_name(r)}",
                        )
                        for r, path in figs
                    ],
                    side_by_side=True,
                )
            )
        blocks.append(Bullets(list(loss_sentences(soft, bce, same, tests))))
    return blocks


def _stability_cell(run: Mapping[str, Any]) -> Inline:
    """'stable', or the flag of an unstable or diverged run (bold: it must catch the eye)."""
    label = stability_label(run)
    return label if label == "stable" else Span(label, bold=True, nowrap=True)


def _comparison_figure_blocks(runs: Sequence[Mapping[str, Any]], compared: Mapping[str, Any] | None) -> list:
    """The overlaid validation curves and the weights grid of every run (both full width)."""
    figs = (compared or {}).get("figures") or {}
    names = join_names([run_name(r) for r in runs])
    blocks: list = []
    if figs.get("curves"):
        blocks.append(
            FigureRow(
                [
                    Figure(
                        figs["curves"],
                        "validation loss and accuracy of every run, overlaid",
                        f"validation loss and accuracy of every run ({names}), per epoch, one "
                        "colour and mark per run (the same in the weights grid). An unstable "
                        "run's loss has a panel of its own, so the stable runs stay apart (their "
                        "panel is zoomed on where they differ). A diverged run's curves stop where "
                        "its cost became NaN or infinite.",
                    )
                ],
                wide=True,
            )
        )
    if figs.get("weights"):
        blocks.append(
            FigureRow(
                [
                    Figure(
                        figs["weights"],
                        "learnt weights of every run, one row per run",
                        "learnt weights of every run, one row per run (labelled λ, η, in the "
                        "run's colour), one 32×32 image per class, each scaled to its own range; "
                        "the comparison table gives each row's roughness.",
                    )
                ],
                wide=True,
            )
        )
    return blocks


def _comparison_blocks(
    runs: Sequence[Mapping[str, Any]],
    compared: Mapping[str, Any] | None = None,
    tests: PairTests | None = None,
    brief: bool = False,
) -> list:
    blocks: list = [Heading(2, "Comparison of runs", "comparison")]
    if not runs:
        blocks.append(Para("No run is part of this report."))
        return blocks
    best = set(best_runs(runs, "test")) if len(runs) > 1 else set()
    rows = []
    for i, r in enumerate(runs):
        c = r.get("config", {})
        test = (
            ["diverged"]
            if r.get("diverged_at") is not None
            else _accuracy_cell(accuracy_of(r, "test"), (metrics_of(r).get("test") or {}).get("accuracy_ci"))
        )
        rough, step = roughness_of(r), update_of(r)
        rows.append(
            [
                Span(run_name(r), nowrap=True),
                fmt_num(c.get("lam")),
                fmt_num(c.get("eta")),
                fmt_num(c.get("n_batch")),
                _epochs_cell(r),
                *(
                    _accuracy_cell(accuracy_of(r, s), (metrics_of(r).get(s) or {}).get("accuracy_ci"))
                    for s in ("train", "val")
                ),
                [Span(f"{test[0]} ★", bold=True), *test[1:]] if i in best else test,
                "—" if rough is None else f"{rough:.2f}",
                "—" if step is None else fmt_update(step),
                _stability_cell(r),
                Span(str(r.get("run_id", "—")), code=True),
            ]
        )
    flagged = [(r, instability(r)) for r in runs]
    flagged = [(r, found) for r, found in flagged if found is not None]
    header = [
        "run",
        "λ",
        "η",
        "n_batch",
        "epochs",
        "train acc.",
        "val. acc.",
        "test acc.",
        "roughness of W",
        "update / ‖W‖",
        "stability",
        "run ID",
    ]
    # A setting every run shares is said once, in the caption: the table stays within the page.
    shared = {k: rows[0][i] for i, k in ((3, "n_batch"), (4, "epochs")) if len({str(row[i]) for row in rows}) == 1}
    keep = [i for i in range(len(header)) if header[i] not in shared]
    blocks.append(
        Table(
            [header[i] for i in keep],
            [[row[i] for i in keep] for row in rows],
            align="".join("lrrrrrrrrrll"[i] for i in keep),
            highlight=best,
            caption=(f"Every run: {', '.join(f'{k} {v}' for k, v in shared.items())}. " if shared else "")
            + "Final accuracies with their 95 % Wilson intervals; roughness of W: "
            "how rough the ten weight templates are (1 = like noise, 0 = smooth; defined "
            "under the table); update / ‖W‖: the median size of one mini-batch update relative "
            "to the weights; ⚠ flags an unstable or diverged run (rule in the analysis).",
        )
    )
    for r, found in flagged:
        blocks.append(
            Para(
                [
                    Span(run_name(r), bold=True),
                    f" was {'unstable' if found.kind != 'diverged' else 'diverged'}: {found.reason}; {found.curve}.",
                ],
                "warn",
            )
        )
    if len(runs) > 1:
        star = best_versus_runner_up(runs, tests)
        blocks.append(
            Para(
                "★ marks the highest test accuracy. "
                + (star + " " if star else "")
                + "It is reported for comparison with "
                "the study only: a model for deployment is chosen on validation accuracy, "
                "with the test set kept unseen.",
                "note",
            )
        )
    if any(roughness_of(r) is not None for r in runs):
        blocks.append(Para(ROUGHNESS_DEFINITION, "note"))
    blocks += _comparison_figure_blocks(runs, compared)
    if brief:
        return blocks
    evaluated = [r for r in runs if metrics_of(r).get("per_class_accuracy")]  # not the diverged ones
    pcs = [metrics_of(r)["per_class_accuracy"] for r in evaluated]
    classes = list(dict.fromkeys(k for p in pcs for k in p))
    if classes:
        prow = [[cls] + [fmt_acc(p.get(cls)) for p in pcs] for cls in classes]
        blocks.append(
            Table(["class"] + [run_name(r) for r in evaluated], prow, caption="Accuracy per class on the test set.")
        )
    return blocks + _loss_comparison_blocks(runs, tests) + _svm_comparison_blocks(runs, tests)


ROUGHNESS_DEFINITION = (
    "Roughness of W: for each class template w (one row of W as a 3×32×32 image), the mean squared "
    "difference between horizontally or vertically neighbouring pixels of one colour, divided by twice the "
    "template's variance; the table gives the mean over the ten classes. Independent noise scores 1, a "
    "smooth image near 0: the lower, the more structured the templates in the weights grid."
)


def _sweep_blocks(sweep: Mapping[str, Any], tests: PairTests | None = None) -> list:
    """The sweep: what was varied, the heat-map, the points by validation accuracy, the chosen run in full.

    ``sweep`` holds ``grid`` (lam, eta, n_batch, n_epochs lists), ``fixed``,
    ``points`` (sorted, best first; each with lam, eta, n_batch, n_epochs,
    train_acc, val_acc, train_cost, diverged_at, run_id), ``best_run_id``,
    ``best`` (a run entry as in ``runs``), ``heatmap`` (path relative to the
    reports folder) and ``title`` (the heat-map's).
    """
    blocks: list = [Heading(2, "Hyper-parameter sweep", "sweep")]
    grid, points = sweep.get("grid") or {}, list(sweep.get("points") or [])
    axes = [
        f"{PARAM_WORDS.get(k, k)} ∈ {{{', '.join(fmt_num(v) for v in grid[k])}}}"
        for k in ("lam", "eta", "n_batch", "n_epochs")
        if grid.get(k)
    ]
    fixed = sweep.get("fixed") or {}
    text = f"{len(points)} settings: " + "; ".join(axes)
    if fixed:
        text += "; fixed: " + describe_setting(fixed)
    text += (
        ". Each point is an ordinary training run (run ID in the table). The setting is chosen on "
        "validation accuracy; only the chosen one is evaluated on the test set."
    )
    blocks.append(Para(text))
    if sweep.get("heatmap"):
        blocks.append(
            FigureRow(
                [
                    Figure(
                        sweep["heatmap"],
                        "validation accuracy heat-map over λ and η",
                        f"{sweep.get('title') or 'Validation accuracy over λ × η'}; "
                        "grey cells diverged, the chosen setting is outlined.",
                    )
                ]
            )
        )
    rows, best_row = [], set()
    for i, p in enumerate(points):
        diverged = p.get("diverged_at") is not None
        if p.get("run_id") == sweep.get("best_run_id"):
            best_row.add(i)
        val = "diverged" if diverged else fmt_acc(p.get("val_acc"))
        rows.append(
            [
                fmt_num(p.get("lam")),
                fmt_num(p.get("eta")),
                fmt_num(p.get("n_batch")),
                fmt_num(p.get("n_epochs")),
                "—" if diverged else fmt_acc(p.get("train_acc")),
                Span(f"{val} ★", bold=True) if i in best_row else val,
                "—" if diverged else fmt_loss(p.get("train_cost")),
                Span(str(p.get("run_id", "—")), code=True),
            ]
        )
    if rows:
        blocks.append(
            Table(
                ["λ", "η", "n_batch", "epochs", "train acc.", "val. acc.", "final cost", "run ID"],
                rows,
                align="rrrrrrrl",
                highlight=best_row,
                caption="Sweep points by validation accuracy (★: chosen); final cost on the training split.",
            )
        )
    best = sweep.get("best")
    if not best:
        blocks.append(Para("Every point diverged: no setting was chosen.", "warn"))
        return blocks
    chosen = (
        f"Chosen on validation accuracy: {run_name(best)} (validation accuracy "
        f"{accuracy_text(best, 'val')}); its test accuracy is {accuracy_text(best, 'test')}."
    )
    second = sweep.get("runner_up")
    if second:
        tested = best_versus_runner_up([best, second], tests, "val", "chosen setting")
        chosen += " " + (tested or "")
    blocks.append(Para(chosen.strip(), "note"))
    section = _run_blocks(best, 0)
    section[0] = Heading(3, f"Chosen setting: {run_name(best)}", "sweep-best")
    return blocks + section


def _ensemble_blocks(ens: Mapping[str, Any]) -> list:
    """The [ensemble] section: each member's accuracy, the majority vote's and the mean's, sentences."""
    combined = "scores" if ens.get("combined") == "scores" else "probabilities"
    members = list(ens.get("members") or [])
    blocks: list = [
        Heading(2, "Ensemble", "ensemble"),
        Para(
            f"{len(members)} runs of one setting at different seeds, combined on the validation and "
            f"test sets by majority vote ({ens.get('tie_rule', '')}) and by the mean of their "
            f"{combined}{' (an SVM has no probabilities)' if combined == 'scores' else ''}."
        ),
    ]
    rows = [
        [str(m.get("label")), fmt_acc(m.get("val")), fmt_acc(m.get("test")), Span(str(m.get("run_id")), code=True)]
        for m in members
    ]
    val, test = ens.get("val") or {}, ens.get("test") or {}
    for key, name in (("vote", "majority vote"), ("mean", f"mean of the {combined}")):
        rows.append([Span(name, bold=True), fmt_acc(val.get(key)), fmt_acc(test.get(key)), "—"])
    blocks.append(
        Table(
            ["member", "val. acc.", "test acc.", "run ID"],
            rows,
            align="lrrl",
            highlight={len(members), len(members) + 1},
        )
    )
    sentences = []
    if members and finite(val.get("vote")) and finite(val.get("mean")):
        best_member = max(members, key=lambda m: m.get("val") or 0)
        rule = "vote" if val["vote"] > val["mean"] else "mean"  # a tie: the mean (it uses more information)
        chosen = (val[rule], test.get(rule))
        if val["vote"] == val["mean"]:
            sentences.append(
                f"On validation the majority vote and the mean are level at {fmt_acc(chosen[0])}; "
                f"on test the vote reached {fmt_acc(test.get('vote'))} and the mean "
                f"{fmt_acc(test.get('mean'))}."
            )
        else:
            sentences.append(
                f"On validation the {'majority vote' if rule == 'vote' else 'mean'} is the better rule "
                f"({fmt_acc(chosen[0])} against {fmt_acc(val['mean' if rule == 'vote' else 'vote'])}); "
                f"its test accuracy is {fmt_acc(chosen[1])}."
            )
        gain = chosen[0] - float(best_member.get("val") or 0)
        sentences.append(
            f"The best member on validation, {best_member.get('label')}, reached {fmt_acc(best_member.get('val'))} "
            f"(test {fmt_acc(best_member.get('test'))}): the ensemble is "
            f"{fmt_points(abs(gain))} points {'above' if gain >= 0 else 'below'} it on validation."
        )
        if finite(val.get("vote_ties")):
            sentences.append(f"{val['vote_ties']} of {val.get('n')} validation images had a tied vote.")
    if sentences:
        blocks.append(Bullets(sentences))
    return blocks


def _analysis_blocks(doc: Mapping[str, Any], tests: PairTests | None = None) -> list:
    blocks: list = [Heading(2, "Analysis", "analysis")]
    groups = analysis(doc, tests)
    for title, sentences in groups:
        blocks.append(Heading(3, title, "analysis-" + _anchor(title)))
        blocks.append(Bullets(list(sentences)))
        if title == "Stability":
            blocks.append(Para(STABILITY_RULE, "note"))
    return blocks


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


def _discussion_section(doc: Mapping[str, Any]) -> list:
    text = doc.get("discussion")
    if not text or not str(text).strip():
        return []
    return [Heading(2, "Discussion", "discussion"), *discussion_blocks(str(text))]


def _summary(doc: Mapping[str, Any]) -> list:
    runs = list(doc.get("runs", []))
    bits = []
    if runs:
        bt = best_runs(runs, "test")
        bits.append(f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
        diverged = [r for r in runs if r.get("diverged_at") is not None]
        if diverged:
            bits.append(f"{len(diverged)} diverged ({join_names([run_name(r) for r in diverged])})")
        if bt:
            bits.append(f"best test accuracy {fmt_acc(accuracy_of(runs[bt[0]], 'test'))} ({run_name(runs[bt[0]])})")
    gc = doc.get("gradcheck")
    if gc:
        bits.append(f"gradient check {'PASS' if gradcheck_passed(gc) else 'FAIL'}")
    return [Para("Summary: " + "; ".join(bits) + ".")] if bits else []


def build_blocks(doc: Mapping[str, Any], tests: PairTests | None = None) -> list:
    """The whole report as a list of blocks, in reading order.

    Every comparison is tested with ``tests`` (default: a ``PairTests`` of the document's discordant counts),
    which records the comparisons used. With ``doc["brief"]`` the assignment's layout: set-up, gradient
    check, each run (its table, curves and weights), the comparison, the analysis, the discussion.
    """
    runs = list(doc.get("runs", []))
    tests = tests if tests is not None else PairTests(doc.get("discordant") or [])
    if doc.get("brief"):
        return number_figures(_brief_blocks(doc, runs, tests))
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    meta = []
    if doc.get("cifarcli_version"):
        meta.append(f"cifarcli {doc['cifarcli_version']}")
    if doc.get("created"):
        meta.append(str(doc["created"]))
    blocks: list = [Heading(1, title, "top")]
    if meta:
        blocks.append(Para(" · ".join(meta), "meta"))
    blocks += _summary(doc)
    toc = [("comparison", "Comparison of runs"), ("setup", "Set-up"), ("gradcheck", "Gradient check"), ("runs", "Runs")]
    toc += [(_run_anchor(r, i), f"Run {i + 1}: {run_name(r)}") for i, r in enumerate(runs)]
    toc += [("sweep", "Hyper-parameter sweep")] if doc.get("sweep") else []
    toc += [("ensemble", "Ensemble")] if doc.get("ensemble") else []
    toc += [("analysis", "Analysis")]
    toc += [("discussion", "Discussion")] if doc.get("discussion") else []
    blocks.append(Contents(toc))
    # The study's central result first: every run side by side, then how it was made, then each run.
    blocks += _comparison_blocks(runs, doc.get("comparison"), tests)
    blocks += _setup_blocks(doc)
    blocks += _gradcheck_blocks(doc.get("gradcheck"))
    blocks.append(Heading(2, "Runs", "runs"))
    if not runs:
        blocks.append(Para("No run is part of this report."))
    for i, r in enumerate(runs):
        blocks += _run_blocks(r, i)
    if doc.get("sweep"):
        blocks += _sweep_blocks(doc["sweep"], tests)
    if doc.get("ensemble"):
        blocks += _ensemble_blocks(doc["ensemble"])
    blocks += _analysis_blocks(doc, tests)
    blocks += _discussion_section(doc)
    return number_figures(blocks)


def _title_blocks(doc: Mapping[str, Any]) -> list:
    title = str(doc.get("title") or "One-layer network on CIFAR-10")
    meta = [f"cifarcli {doc['cifarcli_version']}"] if doc.get("cifarcli_version") else []
    meta += [str(doc["created"])] if doc.get("created") else []
    return [Heading(1, title, "top")] + ([Para(" · ".join(meta), "meta")] if meta else [])


def _brief_blocks(doc: Mapping[str, Any], runs: list, tests: PairTests) -> list:
    """The assignment's layout: set-up, gradient check, per run its table with curves and weights, the
    comparison, the analysis, the discussion (no per-class, probability or confusion figures)."""
    blocks = _title_blocks(doc) + _setup_blocks(doc) + _gradcheck_blocks(doc.get("gradcheck"))
    blocks.append(Heading(2, "Runs", "runs"))
    for i, r in enumerate(runs):
        blocks += _run_blocks(r, i, brief=True)
    blocks += _comparison_blocks(runs, doc.get("comparison"), tests, brief=True)
    if doc.get("sweep"):
        blocks += _sweep_blocks(doc["sweep"], tests)
    return blocks + _analysis_blocks(doc, tests) + _discussion_section(doc)


def comparisons(doc: Mapping[str, Any]) -> list[dict]:
    """Every comparison a sentence of the report rests on: ``{"a", "b", "split", "a_only", "b_only", "p",
    "significant"}``, in reading order, each pair once (``report --json``'s "comparisons")."""
    tests = PairTests(doc.get("discordant") or [])
    build_blocks(doc, tests)
    return tests.used


def number_figures(blocks: list) -> list:
    """Number every figure in reading order: its caption starts "Figure n: "."""
    n = 0
    for b in blocks:
        if isinstance(b, FigureRow):
            for f in b.figures:
                n += 1
                f.caption = f"Figure {n}: {f.caption}"
    return blocks
