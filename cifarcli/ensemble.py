"""Ensembles of trained runs: the majority vote and the mean of the members' outputs.

For M members with scores S_m = W_m X + b_m (K × n) on a split:

* each member predicts ŷ_m,i = argmax_k S_m[k, i] (its own accuracy);
* the majority vote counts V[k, i] = #{m : ŷ_m,i = k} and predicts
  argmax_k V[k, i]; a tie between classes goes to the **lowest class index**
  (numpy's argmax returns the first maximum), and the number of images with a
  tied vote is reported;
* the mean predicts argmax_k (1/M) Σ_m P_m[k, i], with P_m the member's
  probabilities (softmax, or the per-class sigmoids of a BCE run) or, for SVM
  members, which have no probabilities, their scores S_m.

Members must share the loss and the data (dataset, split and, for split full,
the validation size), so that they are scored on the same images. Pure numpy;
the stage that caches it is ``stages.ensemble``.
"""

from __future__ import annotations

import numpy as np

from .config import loss_named
from .model import scores
from .threads import on_one_blas_thread

TIE_RULE = "a tied vote goes to the lowest class index"


@on_one_blas_thread
def combine(members: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray, y: np.ndarray, loss: str) -> dict:
    """Accuracies on (X d × n, y) of each member (W, b), of the majority vote and of the mean output."""
    y = np.asarray(y, dtype=np.intp)
    K = members[0][0].shape[0]
    votes = np.zeros((K, y.size), dtype=np.int64)
    total = np.zeros((K, y.size), dtype=np.float64)
    own = []
    for W, b in members:
        S = scores(
            X, np.asarray(W).astype(X.dtype, copy=False), np.asarray(b).reshape(-1, 1).astype(X.dtype, copy=False)
        ).astype(np.float64)
        predicted = np.argmax(S, axis=0)
        own.append(float(np.mean(predicted == y)))
        votes[predicted, np.arange(y.size)] += 1
        total += loss_named(loss).output(S)
    top = votes.max(axis=0)
    ties = int(np.count_nonzero((votes == top).sum(axis=0) > 1))
    return {
        "members": own,
        "vote": float(np.mean(np.argmax(votes, axis=0) == y)),
        "mean": float(np.mean(np.argmax(total / len(members), axis=0) == y)),
        "vote_ties": ties,
        "n": int(y.size),
    }
