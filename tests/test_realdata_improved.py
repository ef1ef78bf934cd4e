"""Beyond the study on the CIFAR-10 stand-in: all the training data, flips and step decay.

The setting documented in docs/beyond-the-study.md, chosen among a handful of candidates by
validation accuracy (never test), must reach 41 % test accuracy; the study's
best setting reaches 38.9 %. Skipped without CIFARCLI_TEST_ARCHIVE.
"""

from __future__ import annotations

import pytest

from cifarcli import stages
from cifarcli.config import TrainConfig

pytestmark = pytest.mark.realdata

# cifarcli train --split full --lam 0.005 --eta 0.01 --shuffle --flip 0.5 --decay-every 10 --decay-factor 0.3
# (on the stand-in: validation 0.4060, test 0.4142; see docs/beyond-the-study.md)
IMPROVED = TrainConfig(lam=0.005, eta=0.01, split="full", shuffle=True, flip=0.5, decay_every=10, decay_factor=0.3)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, real_archive):
    root = tmp_path_factory.mktemp("realdata-improved")
    workspace = stages.Workspace(root / "cache", root / "reports")
    stages.fetch(workspace, str(real_archive))
    return workspace


def test_documented_improved_setting_reaches_41_percent(ws):
    run = stages.train(ws, IMPROVED)
    assert run.payload["diverged_at"] is None
    assert run.meta["info"]["split_sizes"] == {"train": 49000, "val": 1000, "test": 10000}
    metrics = stages.evaluate(ws, run).payload
    assert metrics["test"]["accuracy"] >= 0.41, metrics["test"]
    assert metrics["val"]["accuracy"] >= 0.39, metrics["val"]
    # flips regularise: the recorded (unflipped) training accuracy stays close to validation
    assert metrics["train"]["accuracy"] - metrics["val"]["accuracy"] < 0.06
    history = run.payload["history"]
    assert len(history["epoch"]) == 41 and history["train_cost"][-1] < history["train_cost"][0]
