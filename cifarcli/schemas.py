"""What each stage's artifacts hold: payload, parameters and info, checkpoints, the workspace file.

Checked on every load (``cache.Store`` with these schemas): a payload,
checkpoint or meta.json that does not fit is "damaged" — reported, removed,
recomputed — instead of a traceback further down. See ``cache.validate`` for
the notation.
"""

from __future__ import annotations

from cifarcli.cache import HEX64, NUMBER, Array, Check, DictOf, ListOf, OneOf, Opt, Schema
from cifarcli.config import HISTORY_KEYS, LOSSES, TrainConfig, loss_named, run_name_problem
from cifarcli.errors import CifarError

FLOATS = ("float32", "float64")
LABELS = ("i", "u")  # any integer dtype
PNG = Check(bytes, lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG file")
NAMES = ListOf(str, 10)
HISTORY = {key: ListOf(int if key == "epoch" else NUMBER, "rows") for key in HISTORY_KEYS}
MAYBE_NUMBER = OneOf((None, NUMBER))
MAYBE_INT = OneOf((None, int))


def _valid_train_params(params: dict) -> bool:
    """A train meta's params rebuild a valid config whose key params are exactly these."""
    try:
        return TrainConfig(**params).validate().key_params() == params
    except (TypeError, ValueError, CifarError):
        return False


DATASET_PAYLOAD = {
    "train_x": Array(("uint8",), ("n", 3072)), "train_y": Array(LABELS, ("n",), within=(0, 9)),
    "test_x": Array(("uint8",), ("m", 3072)), "test_y": Array(LABELS, ("m",), within=(0, 9)),
    "label_names": NAMES, "batch_size": Check(int, lambda n: n >= 1, "at least 1"),
}
DATASET_INFO = {
    "source": str, "format": str, "md5": str, "sha256": HEX64, "official": bool, "note": OneOf((None, str)),
    "n_train": int, "n_test": int, "batch_size": int, "label_names": NAMES,
    "per_class": {"train": ListOf(int, 10), "test": ListOf(int, 10)},
}
TRAIN_PAYLOAD = Check(
    {"W": OneOf((None, Array(FLOATS, ("K", "d")))), "b": OneOf((None, Array(FLOATS, ("K", 1)))),
     "mean": Array(FLOATS, ("d", 1)), "std": Array(FLOATS, ("d", 1)), "history": HISTORY,
     "label_names": ListOf(str, "K"), "diverged_at": MAYBE_INT,
     "chosen_epoch": Opt(MAYBE_INT)},   # early stopping: the epoch whose weights W, b are
    lambda p: (p["W"] is None) == (p["b"] is None) and (p["W"] is not None or p["diverged_at"] is not None)
    and (p.get("chosen_epoch") is None or p["chosen_epoch"] in p["history"]["epoch"]),
    "W and b both present, or both absent in a diverged run; a chosen epoch of the history")
TRAIN_INFO = {"config": dict, "split_sizes": DictOf(str, int), "timings": {"total_seconds": Opt(NUMBER)},
              "diverged_at": MAYBE_INT, "final": DictOf(str, MAYBE_NUMBER), "chosen_epoch": Opt(MAYBE_INT),
              "chosen": Opt(DictOf(str, MAYBE_NUMBER)),
              "curves": Opt({"epoch": ListOf(int, "rows"), "train_cost": ListOf(MAYBE_NUMBER, "rows"),
                             "val_loss": ListOf(MAYBE_NUMBER, "rows")})}
# With keep="best" a checkpoint also holds the best epoch so far and its weights (train.EarlyStopping).
CHECKPOINT = Check({"epoch": int, "W": Array(FLOATS, ("K", "d")), "b": Array(FLOATS, ("K", 1)), "history": HISTORY,
                    "best_epoch": Opt(int), "best_W": Opt(Array(FLOATS, ("K", "d"))),
                    "best_b": Opt(Array(FLOATS, ("K", 1)))},
                   lambda c: c["epoch"] >= 0 and len(c["history"]["epoch"]) == c["epoch"] + 1
                   and (("best_epoch" in c) == ("best_W" in c) == ("best_b" in c))
                   and 1 <= c.get("best_epoch", 1) <= c["epoch"],
                   "a checkpoint whose history has one row per epoch, epoch 0 included, and a best epoch "
                   "(with its W and b) among them")
_SPLIT_METRICS = {"loss": NUMBER, "cost": NUMBER, "accuracy": NUMBER, "n": int, "accuracy_ci": Opt(ListOf(NUMBER, 2))}
# Each split's predicted classes, one per image (a dimension name per split: their sizes differ).
_PREDICTIONS = {split: Array(("uint8",), (f"n_{split}",), within=(0, 9)) for split in ("train", "val", "test")}
_PROBABILITY_GROUP = {"n": int, "mean": MAYBE_NUMBER, "median": MAYBE_NUMBER, "counts": ListOf(int, "bins")}
_TRUE_CLASS_SUMMARY = {"kind": str, "bins": ListOf(NUMBER), "threshold": NUMBER, "correct": _PROBABILITY_GROUP,
                       "incorrect": _PROBABILITY_GROUP, "confident_mistakes": MAYBE_NUMBER}


def _gives_probabilities(loss) -> bool:
    """Whether an evaluate payload's loss (the study's when it names none) has probabilities."""
    return loss not in LOSSES or loss_named(loss).gives_probabilities


# An SVM run has no probabilities: its test split summarises the true class's margins instead (evaluate.py).
EVALUATE_PAYLOAD = Check({
    "lam": NUMBER, "loss": Opt(str), "train": _SPLIT_METRICS, "val": _SPLIT_METRICS, "test": _SPLIT_METRICS,
    "confusion_matrix": ListOf(ListOf(int, "K"), "K"), "per_class_accuracy": DictOf(str, NUMBER),
    "probabilities": Opt(_TRUE_CLASS_SUMMARY), "margins": Opt({**_TRUE_CLASS_SUMMARY, "open_ends": Opt(bool)}),
    "label_names": ListOf(str, "K"),
    "predictions": Opt(_PREDICTIONS),
    "update": Opt({"median": NUMBER, "max": NUMBER, "n_updates": int}),
    "weights": Opt({"roughness": NUMBER, "per_class": ListOf(NUMBER, "K")}),
}, lambda p: ("margins" in p) != _gives_probabilities(p.get("loss")) and ("probabilities" in p) != ("margins" in p),
    '"probabilities", or "margins" for an svm run (one of the two)')
_ERRORS = {"max": NUMBER, "mean": NUMBER, "median": NUMBER, "share_below_tol": NUMBER, "n": int,
           "n_excluded": Opt(int), "corner": ListOf(ListOf(NUMBER))}
GRADCHECK_PAYLOAD = {
    "h": NUMBER, "eps": NUMBER, "loss": str, "n_images": int, "n_params": int, "max_error": NUMBER,
    "results": ListOf({"lam": NUMBER, "W": _ERRORS, "b": _ERRORS, "kinks": Opt({"W": int, "b": int}),
                        "seconds": NUMBER}),
    "n_samples": int, "n_dims": int, "seed": int, "elapsed": NUMBER,
}
FIGURES = ("loss", "accuracy", "weights", "confusion", "probabilities")
COMPARISON_FIGURES = ("curves", "weights")   # every run's validation curves overlaid; their weights, a row each
# An SVM run's plot has "margins" (the true class's margin histogram) in place of "probabilities".
SVM_FIGURES = ("loss", "accuracy", "weights", "confusion", "margins")
_REPORT_RUN = {"run_id": str, "label": str, "config": {"lam": NUMBER, "eta": NUMBER, "n_batch": int, "n_epochs": int},
               "split_sizes": DictOf(str, int), "history": HISTORY, "diverged_at": MAYBE_INT,
               "train_seconds": MAYBE_NUMBER, "metrics": OneOf((None, EVALUATE_PAYLOAD)), "figures": DictOf(str, str),
               "chosen_epoch": Opt(MAYBE_INT)}
REPORT_PAYLOAD = {
    "doc": {"title": str, "cifarcli_version": str, "dataset": dict, "preprocessing": dict, "initialisation": dict,
            "gradcheck": {**GRADCHECK_PAYLOAD, "tol": NUMBER, "passed": bool}, "runs": ListOf(_REPORT_RUN),
            "sweep": Opt(dict), "comparison": Opt({"key": str, "figures": DictOf(str, str)}), "ensemble": Opt(dict),
            "created": str, "discordant": Opt(ListOf({"a": str, "b": str, "split": str, "a_only": int, "b_only": int})),
            "discussion": Opt(str), "brief": Opt(bool)},
    "report.md": str, "report.html": str, "report.typ": Opt(str),
}
# Keyed by content since issue 17; a dataset keyed by its source file ({"sha256"}) still reads,
# unreachable, until `cache gc` removes it with everything made from it.
LEGACY_DATASET_PARAMS = {"sha256": HEX64}
DATASET = Schema(DATASET_PAYLOAD, params=OneOf(({"content_sha256": HEX64}, LEGACY_DATASET_PARAMS)),
                 info=DATASET_INFO)
GRADCHECK = Schema(GRADCHECK_PAYLOAD, info={"max_error": NUMBER, "elapsed": NUMBER})
TRAIN = Schema(TRAIN_PAYLOAD, params=Check(dict, _valid_train_params, "valid training settings"), info=TRAIN_INFO)
EVALUATE = Schema(EVALUATE_PAYLOAD)
PLOT = Schema(OneOf(({name: PNG for name in FIGURES}, {name: PNG for name in SVM_FIGURES})))
REPORT = Schema(REPORT_PAYLOAD)
SWEEP = Schema({"heatmap": PNG}, info={"n_points": int})
COMPARISON = Schema({name: PNG for name in COMPARISON_FIGURES}, info={"n_runs": int})
_ENSEMBLE_SPLIT = {"vote": NUMBER, "mean": NUMBER, "vote_ties": int, "n": int}
ENSEMBLE_PAYLOAD = {
    "loss": str, "combined": str, "tie_rule": str, "split": str, "n_members": int,
    "members": ListOf({"run_id": str, "label": str, "config": dict, "val": NUMBER, "test": NUMBER}, "M"),
    "val": _ENSEMBLE_SPLIT, "test": _ENSEMBLE_SPLIT,
}
ENSEMBLE = Schema(ENSEMBLE_PAYLOAD, info={"n_members": int, "val_vote": NUMBER, "val_mean": NUMBER})
KEY16 = Check(str, lambda k: len(k) == 16 and all(c in "0123456789abcdef" for c in k), "a 16-digit key")
RUN_NAME = Check(str, lambda name: run_name_problem(name) is None, "a valid run name")
WORKSPACE_SCHEMA = {
    "dataset": Opt({"key": KEY16, "source": str, "path": str}),
    "checksums": Opt(DictOf(str, {"md5": str, "sha256": HEX64})),
    # source sha256 -> the dataset its content decoded to, so a known file is never decoded again
    "sources": Opt(DictOf(HEX64, {"key": KEY16,
                                  "format": Check(str, lambda f: f in ("binary", "python"), "binary or python")})),
    # run name -> run ID; a run has at most one name (names never enter a key)
    "names": Opt(Check(DictOf(RUN_NAME, KEY16), lambda names: len(set(names.values())) == len(names),
                       "one name per run")),
}
