"""What each stage's artifacts hold: payload, parameters and info, checkpoints, the workspace file.

Written in the schema language of ``schema_language.py``, and checked on every load
(``store.Store`` with these schemas): a payload, checkpoint or meta.json that does not
fit is "damaged" — reported, removed, recomputed — instead of a traceback further down.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from cifarcli.config import HISTORY_KEYS, LOSSES, TrainConfig, loss_named, run_name_problem
from cifarcli.errors import CifarError
from cifarcli.schema_language import HEX64, NUMBER, Array, Check, DictOf, ListOf, OneOf, Opt, Schema

# The store's own fields of every meta.json; the key must be the hash of the rest.
META_SCHEMA = {
    "stage": str,
    "key": str,
    "version": int,
    "params": dict,
    "inputs": DictOf(str, str),
    "info": dict,
    "created": Check(str, lambda text: _sane_date(text), "a date with its time zone, from 2000 to now"),
    "duration": Check(NUMBER, lambda s: 0 <= s < 1e9, "a duration in seconds"),
    "cifarcli_version": str,
    "payload_size": int,
    "payload_mtime_ns": int,
    "payload_sha256": HEX64,
    "input_sha256": Opt(DictOf(str, HEX64)),
}


def _sane_date(text: str) -> bool:
    try:
        moment = datetime.fromisoformat(text)
        return moment.tzinfo is not None and datetime(2000, 1, 1, tzinfo=timezone.utc) <= moment <= datetime.now(
            timezone.utc
        ) + timedelta(days=1)
    except (ValueError, OverflowError):
        return False


# -- the stages' schemas ------------------------------------------------------------

FLOATS = ("float32", "float64")
LABELS = ("i", "u")  # any integer dtype
PNG = Check(bytes, lambda data: data.startswith(b"\x89PNG\r\n\x1a\n"), "a PNG file")
NAMES = ListOf(str, 10)
HISTORY = {key: ListOf(int if key == "epoch" else NUMBER, "rows") for key in HISTORY_KEYS}
MAYBE_NUMBER = OneOf((None, NUMBER))
MAYBE_INT = OneOf((None, int))
ACCURACY = Check(NUMBER, lambda a: 0 <= a <= 1, "an accuracy from 0 to 1")
NON_NEGATIVE = Check(NUMBER, lambda v: 0 <= v < float("inf"), "a finite number of at least 0")


def _metric_in_range(name: str, value) -> bool:
    """A metric named as in a history row (train_acc, val_cost, epoch) within its range; None: not measured."""
    if value is None:
        return True
    if name == "epoch":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return 0 <= value <= 1 if name.endswith("acc") else 0 <= value < float("inf")


METRICS_ROW = Check(
    DictOf(str, MAYBE_NUMBER),
    lambda row: all(_metric_in_range(k, v) for k, v in row.items()),
    "metrics within their ranges (accuracies from 0 to 1, losses and costs at least 0)",
)


def inputs_named(*names: str) -> Check:
    """A meta.json's inputs: exactly these (a stage's code reads each of them)."""
    return Check(DictOf(str, str), lambda inputs: sorted(inputs) == sorted(names), "the keys of " + ", ".join(names))


def _valid_train_params(params: dict) -> bool:
    """A train meta's params rebuild a valid config whose key params are exactly these."""
    try:
        return TrainConfig(**params).validate().key_params() == params
    except (TypeError, ValueError, CifarError):
        return False


DATASET_PAYLOAD = {
    "train_x": Array(("uint8",), ("n", 3072)),
    "train_y": Array(LABELS, ("n",), within=(0, 9)),
    "test_x": Array(("uint8",), ("m", 3072)),
    "test_y": Array(LABELS, ("m",), within=(0, 9)),
    "label_names": NAMES,
    "batch_size": Check(int, lambda n: n >= 1, "at least 1"),
}
DATASET_INFO = {
    "source": str,
    "format": str,
    "md5": str,
    "sha256": HEX64,
    "official": bool,
    "note": OneOf((None, str)),
    "n_train": int,
    "n_test": int,
    "batch_size": int,
    "label_names": NAMES,
    "per_class": {"train": ListOf(int, 10), "test": ListOf(int, 10)},
}
TRAIN_PAYLOAD = Check(
    {
        "W": OneOf((None, Array(FLOATS, ("K", "d")))),
        "b": OneOf((None, Array(FLOATS, ("K", 1)))),
        "mean": Array(FLOATS, ("d", 1)),
        "std": Array(FLOATS, ("d", 1)),
        "history": HISTORY,
        "label_names": ListOf(str, "K"),
        "diverged_at": MAYBE_INT,
        "chosen_epoch": Opt(MAYBE_INT),
    },  # early stopping: the epoch whose weights W, b are
    lambda p: (
        (p["W"] is None) == (p["b"] is None)
        and (p["W"] is not None or p["diverged_at"] is not None)
        and (p.get("chosen_epoch") is None or p["chosen_epoch"] in p["history"]["epoch"])
    ),
    "W and b both present, or both absent in a diverged run; a chosen epoch of the history",
)
TRAIN_INFO = {
    "config": dict,
    "split_sizes": DictOf(str, int),
    "timings": {"total_seconds": Opt(NON_NEGATIVE)},
    "diverged_at": MAYBE_INT,
    "final": METRICS_ROW,
    "chosen_epoch": Opt(MAYBE_INT),
    "chosen": Opt(METRICS_ROW),
    # what the report's stability rule reads, so `runs` applies it from meta.json alone
    "curves": Opt(
        {
            "epoch": ListOf(int, "rows"),
            "train_cost": ListOf(MAYBE_NUMBER, "rows"),
            "val_loss": ListOf(MAYBE_NUMBER, "rows"),
        }
    ),
}


def _epochs_within_settings(meta: dict) -> bool:
    """A train meta's epochs (diverged at, chosen, the final row's) are epochs the run's settings have."""
    n_epochs, info = meta["params"]["n_epochs"], meta["info"]
    diverged, chosen = info["diverged_at"], info.get("chosen_epoch")
    return (
        (diverged is None or 0 <= diverged <= n_epochs)
        and (chosen is None or 0 <= chosen <= n_epochs)
        and all(row.get("epoch") is None or row["epoch"] <= n_epochs for row in (info["final"], info.get("chosen", {})))
    )


def final_row(history: dict) -> dict:
    """The last history row with a finite cost: a diverged run's last row holds NaN/inf, which JSON cannot."""
    rows = [
        i
        for i, (a, b) in enumerate(zip(history["train_cost"], history["val_cost"]))
        if math.isfinite(a) and math.isfinite(b)
    ]
    i = rows[-1] if rows else -1
    return {k: v[i] if not isinstance(v[i], float) or math.isfinite(v[i]) else None for k, v in history.items()}


def _train_summary(payload: dict) -> dict:
    return {"diverged_at": payload["diverged_at"], "final": final_row(payload["history"])}


# With keep="best" a checkpoint also holds the best epoch so far and its weights (train.EarlyStopping).
CHECKPOINT = Check(
    {
        "epoch": int,
        "W": Array(FLOATS, ("K", "d")),
        "b": Array(FLOATS, ("K", 1)),
        "history": HISTORY,
        "best_epoch": Opt(int),
        "best_W": Opt(Array(FLOATS, ("K", "d"))),
        "best_b": Opt(Array(FLOATS, ("K", 1))),
    },
    lambda c: (
        c["epoch"] >= 0
        and len(c["history"]["epoch"]) == c["epoch"] + 1
        and (("best_epoch" in c) == ("best_W" in c) == ("best_b" in c))
        and 1 <= c.get("best_epoch", 1) <= c["epoch"]
    ),
    "a checkpoint whose history has one row per epoch, epoch 0 included, and a best epoch "
    "(with its W and b) among them",
)
_SPLIT_METRICS = {
    "loss": NON_NEGATIVE,
    "cost": NON_NEGATIVE,
    "accuracy": ACCURACY,
    "n": int,
    "accuracy_ci": Opt(ListOf(ACCURACY, 2)),
}
# Each split's predicted classes, one per image (a dimension name per split: their sizes differ).
_PREDICTIONS = {split: Array(("uint8",), (f"n_{split}",), within=(0, 9)) for split in ("train", "val", "test")}
_PROBABILITY_GROUP = {"n": int, "mean": MAYBE_NUMBER, "median": MAYBE_NUMBER, "counts": ListOf(int, "bins")}
_TRUE_CLASS_SUMMARY = {
    "kind": str,
    "bins": ListOf(NUMBER),
    "threshold": NUMBER,
    "correct": _PROBABILITY_GROUP,
    "incorrect": _PROBABILITY_GROUP,
    "confident_mistakes": MAYBE_NUMBER,
}


def _gives_probabilities(loss) -> bool:
    """Whether an evaluate payload's loss (the study's when it names none) has probabilities."""
    return loss not in LOSSES or loss_named(loss).gives_probabilities


# An SVM run has no probabilities: its test split summarises the true class's margins instead (evaluate.py).
EVALUATE_PAYLOAD = Check(
    {
        "lam": NUMBER,
        "loss": Opt(str),
        "train": _SPLIT_METRICS,
        "val": _SPLIT_METRICS,
        "test": _SPLIT_METRICS,
        "confusion_matrix": ListOf(ListOf(int, "K"), "K"),
        "per_class_accuracy": DictOf(str, ACCURACY),
        "probabilities": Opt(_TRUE_CLASS_SUMMARY),
        "margins": Opt({**_TRUE_CLASS_SUMMARY, "open_ends": Opt(bool)}),
        "label_names": ListOf(str, "K"),
        "predictions": Opt(_PREDICTIONS),
        "update": Opt({"median": NUMBER, "max": NUMBER, "n_updates": int}),
        "weights": Opt({"roughness": NUMBER, "per_class": ListOf(NUMBER, "K")}),
    },
    lambda p: ("margins" in p) != _gives_probabilities(p.get("loss")) and ("probabilities" in p) != ("margins" in p),
    '"probabilities", or "margins" for an svm run (one of the two)',
)
_ERRORS = {
    "max": NUMBER,
    "mean": NUMBER,
    "median": NUMBER,
    "share_below_tol": NUMBER,
    "n": int,
    "n_excluded": Opt(int),
    "corner": ListOf(ListOf(NUMBER)),
}
GRADCHECK_PAYLOAD = {
    "h": NUMBER,
    "eps": NUMBER,
    "loss": str,
    "n_images": int,
    "n_params": int,
    "max_error": NUMBER,
    "results": ListOf(
        {"lam": NUMBER, "W": _ERRORS, "b": _ERRORS, "kinks": Opt({"W": int, "b": int}), "seconds": NUMBER}
    ),
    "n_samples": int,
    "n_dims": int,
    "seed": int,
    "elapsed": NUMBER,
}
FIGURES = ("loss", "accuracy", "weights", "confusion", "probabilities")
COMPARISON_FIGURES = ("curves", "weights")  # every run's validation curves overlaid; their weights, a row each
# An SVM run's plot has "margins" (the true class's margin histogram) in place of "probabilities".
SVM_FIGURES = ("loss", "accuracy", "weights", "confusion", "margins")
_REPORT_RUN = {
    "run_id": str,
    "label": str,
    "config": {"lam": NUMBER, "eta": NUMBER, "n_batch": int, "n_epochs": int},
    "split_sizes": DictOf(str, int),
    "history": HISTORY,
    "diverged_at": MAYBE_INT,
    "train_seconds": MAYBE_NUMBER,
    "metrics": OneOf((None, EVALUATE_PAYLOAD)),
    "figures": DictOf(str, str),
    "chosen_epoch": Opt(MAYBE_INT),
}
REPORT_PAYLOAD = {
    "doc": {
        "title": str,
        "cifarcli_version": str,
        "dataset": dict,
        "preprocessing": dict,
        "initialisation": dict,
        "gradcheck": {**GRADCHECK_PAYLOAD, "tol": NUMBER, "passed": bool},
        "runs": ListOf(_REPORT_RUN),
        "sweep": Opt(dict),
        "comparison": Opt({"key": str, "figures": DictOf(str, str)}),
        "ensemble": Opt(dict),
        "created": str,
        "discordant": Opt(ListOf({"a": str, "b": str, "split": str, "a_only": int, "b_only": int})),
        "discussion": Opt(str),
        "brief": Opt(bool),
    },
    "report.md": str,
    "report.html": str,
    "report.typ": Opt(str),
}
# Keyed by content; a dataset keyed by its source file ({"sha256"}) still reads, unreachable,
# until `cache gc` removes it with everything made from it.
LEGACY_DATASET_PARAMS = {"sha256": HEX64}
DATASET = Schema(
    DATASET_PAYLOAD,
    params=OneOf(({"content_sha256": HEX64}, LEGACY_DATASET_PARAMS)),
    info=DATASET_INFO,
    summary=lambda p: {
        "n_train": len(p["train_y"]),
        "n_test": len(p["test_y"]),
        "batch_size": p["batch_size"],
        "label_names": p["label_names"],
    },
)
GRADCHECK = Schema(
    GRADCHECK_PAYLOAD,
    info={"max_error": NON_NEGATIVE, "elapsed": NON_NEGATIVE},
    inputs=inputs_named("dataset"),
    summary=lambda p: {"max_error": p["max_error"], "elapsed": p["elapsed"]},
)
TRAIN = Schema(
    TRAIN_PAYLOAD,
    params=Check(dict, _valid_train_params, "valid training settings"),
    info=TRAIN_INFO,
    inputs=inputs_named("dataset"),
    meta=Check(dict, _epochs_within_settings, "epochs within the run's number of epochs"),
    summary=_train_summary,
)
# The test numbers are in meta.json too, so `cifarcli runs` lists them without loading payloads.
EVALUATE = Schema(
    EVALUATE_PAYLOAD,
    info={"test": {"loss": NON_NEGATIVE, "cost": NON_NEGATIVE, "accuracy": ACCURACY}},
    inputs=inputs_named("train"),
    summary=lambda p: {"test": {k: p["test"][k] for k in ("loss", "cost", "accuracy")}},
)
PLOT = Schema(
    OneOf(({name: PNG for name in FIGURES}, {name: PNG for name in SVM_FIGURES})), inputs=inputs_named("train")
)
REPORT = Schema(REPORT_PAYLOAD)
SWEEP = Schema({"heatmap": PNG}, info={"n_points": int})
COMPARISON = Schema({name: PNG for name in COMPARISON_FIGURES}, info={"n_runs": int})
_ENSEMBLE_SPLIT = {"vote": ACCURACY, "mean": ACCURACY, "vote_ties": int, "n": int}
ENSEMBLE_PAYLOAD = {
    "loss": str,
    "combined": str,
    "tie_rule": str,
    "split": str,
    "n_members": int,
    "members": ListOf({"run_id": str, "label": str, "config": dict, "val": NUMBER, "test": NUMBER}, "M"),
    "val": _ENSEMBLE_SPLIT,
    "test": _ENSEMBLE_SPLIT,
}
ENSEMBLE = Schema(
    ENSEMBLE_PAYLOAD,
    info={"n_members": int, "val_vote": ACCURACY, "val_mean": ACCURACY},
    summary=lambda p: {"n_members": p["n_members"], "val_vote": p["val"]["vote"], "val_mean": p["val"]["mean"]},
)
KEY16 = Check(str, lambda k: len(k) == 16 and all(c in "0123456789abcdef" for c in k), "a 16-digit key")
RUN_NAME = Check(str, lambda name: run_name_problem(name) is None, "a valid run name")
WORKSPACE_SCHEMA = {
    "dataset": Opt({"key": KEY16, "source": str, "path": str}),
    "checksums": Opt(DictOf(str, {"md5": str, "sha256": HEX64})),
    # source sha256 -> the dataset its content decoded to, so a known file is never decoded again
    "sources": Opt(
        DictOf(HEX64, {"key": KEY16, "format": Check(str, lambda f: f in ("binary", "python"), "binary or python")})
    ),
    # run name -> run ID; a run has at most one name (names never enter a key)
    "names": Opt(
        Check(DictOf(RUN_NAME, KEY16), lambda names: len(set(names.values())) == len(names), "one name per run")
    ),
}
