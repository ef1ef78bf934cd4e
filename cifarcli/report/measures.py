"""Layer 2 of the report, its base: the numbers read from one run's entry of the document.

Accuracies and their intervals, histories, the weights' roughness and update size, the loss a run was
trained with and its evaluate summaries, the gradient check's verdict, and ``PairTests`` (McNemar's exact
test between two runs on the same images). Every label of a run comes from ``run_name``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import LOSSES, TRAIN_DEFAULTS, loss_named
from ..stats import ALPHA, mcnemar_exact
from .format import finite, fmt_acc_ci, fmt_num

if TYPE_CHECKING:
    from ..losses import Loss


def run_name(run: Mapping[str, Any]) -> str:
    """The human label of a run ('λ=0.1, η=0.001'), built from the config if absent.

    Every label of a run in the report (tables, sentences, captions) comes from here."""
    if run.get("label"):
        return str(run["label"])
    c = run.get("config", {})
    return f"λ={fmt_num(c.get('lam'))}, η={fmt_num(c.get('eta'))}"


def metrics_of(run: Mapping[str, Any]) -> Mapping[str, Any]:
    """The run's evaluation, {} when it has none (a diverged run is never evaluated: ``metrics`` is None)."""
    return run.get("metrics") or {}


def accuracy_of(run: Mapping[str, Any], split: str) -> float | None:
    v = (metrics_of(run).get(split) or {}).get("accuracy")
    return float(v) if finite(v) else None


def accuracy_text(run: Mapping[str, Any], split: str) -> str:
    """The run's accuracy on ``split`` with its 95 % Wilson interval, as printed in sentences and tables."""
    return fmt_acc_ci(accuracy_of(run, split), (metrics_of(run).get(split) or {}).get("accuracy_ci"))


class PairTests:
    """McNemar's exact test between two runs on the same images, from the document's discordant counts.

    ``doc["discordant"]`` lists ``{"a", "b", "split", "a_only", "b_only"}`` (run IDs). ``test(a, b, split)``
    returns the comparison oriented as asked, with ``p`` and ``significant`` (p < ``ALPHA``), and records it
    in ``used``: the comparisons the report's sentences rest on, in order, each once (``report --json``).
    """

    def __init__(self, discordant: Sequence[Mapping[str, Any]] = ()):
        self.counts = {}
        for d in discordant:
            self.counts[(d["a"], d["b"], d["split"])] = (int(d["a_only"]), int(d["b_only"]))
            self.counts[(d["b"], d["a"], d["split"])] = (int(d["b_only"]), int(d["a_only"]))
        self.used: list[dict] = []

    def test(self, a: Mapping[str, Any], b: Mapping[str, Any], split: str) -> dict | None:
        found = self.counts.get((a.get("run_id"), b.get("run_id"), split))
        if found is None:
            return None
        p = mcnemar_exact(*found)
        result = {
            "a": a["run_id"],
            "b": b["run_id"],
            "split": split,
            "a_only": found[0],
            "b_only": found[1],
            "p": p,
            "significant": p < ALPHA,
        }
        if not any({x["a"], x["b"], x["split"]} == {result["a"], result["b"], split} for x in self.used):
            self.used.append(result)
        return result


def test_words(t: Mapping[str, Any], a_name: str, b_name: str) -> str:
    """The discordant counts of a test: '120 images right only with A, 146 only with B'."""
    return f"{t['a_only']} images right only with {a_name}, {t['b_only']} only with {b_name}"


def roughness_of(run: Mapping[str, Any]) -> float | None:
    """The roughness of the run's ten weight templates (``evaluate.template_roughness``), None if not measured."""
    r = (metrics_of(run).get("weights") or {}).get("roughness")
    return float(r) if finite(r) else None


def accuracy_gap(run: Mapping[str, Any]) -> float | None:
    """Final train accuracy minus validation accuracy (a fraction)."""
    tr, va = accuracy_of(run, "train"), accuracy_of(run, "val")
    return None if tr is None or va is None else tr - va


def history_of(run: Mapping[str, Any], key: str) -> list[float]:
    return [float(v) if v is not None else float("nan") for v in run.get("history", {}).get(key, [])]


def epochs_of(run: Mapping[str, Any]) -> list[Any]:
    h = run.get("history", {})
    n = max((len(v) for v in h.values()), default=0)
    return list(h.get("epoch", range(n)))


def update_of(run: Mapping[str, Any]) -> float | None:
    """Median size of one mini-batch update relative to W, η‖∂J/∂W‖/‖W‖ (``evaluate.update_sizes``), or None."""
    v = (metrics_of(run).get("update") or {}).get("median")
    return float(v) if finite(v) else None


def fmt_update(r: float) -> str:
    return f"{r * 100:.2g} %" if r < 0.1 else f"{r * 100:.0f} %"


def loss_of(run: Mapping[str, Any]) -> str:
    """The name of the run's training loss; the study's when the config names none (its default)."""
    return str((run.get("config") or {}).get("loss", TRAIN_DEFAULTS.loss))


def loss_object(name: str | None) -> Loss:
    """The loss (losses.py) a payload names; the study's when it names none, or one unknown here."""
    return loss_named(name if name in LOSSES else TRAIN_DEFAULTS.loss)


def probability_stats(run: Mapping[str, Any]) -> dict[str, float | None]:
    """Mean true-class probability on correct / misclassified test images and the share of
    confident mistakes, from the run's evaluate summary (None where missing)."""
    return _group_stats(metrics_of(run).get("probabilities") or {})


def margin_stats(run: Mapping[str, Any]) -> dict[str, float | None]:
    """An SVM run's mean true-class margin on correct / misclassified test images and the share of
    confident mistakes (margin below the threshold), from its evaluate summary (None where missing)."""
    return _group_stats(metrics_of(run).get("margins") or {})


def _group_stats(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The two groups' means, the share of confident mistakes and its threshold of a histogram summary."""

    def num(x):
        return float(x) if finite(x) else None

    return {
        "correct": num((summary.get("correct") or {}).get("mean")),
        "incorrect": num((summary.get("incorrect") or {}).get("mean")),
        "confident": num(summary.get("confident_mistakes")),
        "threshold": num(summary.get("threshold")),
    }


def gradcheck_passed(gc: Mapping[str, Any]) -> bool:
    """The document's verdict if given, else every max error ≤ tol."""
    if "passed" in gc and gc["passed"] is not None:
        return bool(gc["passed"])
    tol = float(gc.get("tol", 0))
    return all(float(res.get(p, {}).get("max", math.inf)) <= tol for res in gc.get("results", []) for p in ("W", "b"))
