"""Issue 19 done-when, on the CIFAR-10 stand-in: every comparison sentence of report.md agrees with its
entry in ``report --json``, and each entry's p is McNemar's exact p recomputed from the two runs'
exported models (test set, argmax). Skipped without the stand-in (CIFARCLI_TEST_ARCHIVE)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cifarcli import stages, workflows
from cifarcli.report.format import fmt_p
from cifarcli.report.measures import run_name
from cifarcli.stats import mcnemar_exact

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_archive):
    root = tmp_path_factory.mktemp("realdata-science")
    ws = stages.Workspace(root / "cache", root / "reports")
    stages.fetch(ws, str(real_archive))
    return ws, workflows.report(ws), (root / "reports" / "report.md").read_text()


def exported_predictions(ws, run_id, tmp_path):
    """The test set's argmax predictions of the run's exported .npz (no cache involved)."""
    out = tmp_path / f"{run_id}.npz"
    workflows.export(ws, stages.find_run(ws, run_id), out)
    model = np.load(out, allow_pickle=False)
    data = stages.dataset(ws).payload
    X = (data["test_x"].T.astype(np.float64) / 255 - model["mean"]) / model["std"]
    return np.argmax(model["W"] @ X + model["b"], axis=0), np.asarray(data["test_y"])


def test_each_comparison_p_is_mcnemar_recomputed_from_the_exported_models(study, tmp_path):
    ws, doc, _ = study
    assert len(doc["comparisons"]) >= 3
    for c in doc["comparisons"]:
        assert c["split"] == "test"
        pa, y = exported_predictions(ws, c["a"], tmp_path)
        pb, _ = exported_predictions(ws, c["b"], tmp_path)
        a_only = int(np.sum((pa == y) & (pb != y)))
        b_only = int(np.sum((pa != y) & (pb == y)))
        assert (c["a_only"], c["b_only"]) == (a_only, b_only)
        assert c["p"] == pytest.approx(mcnemar_exact(a_only, b_only), rel=1e-12)
        assert c["significant"] == (c["p"] < 0.05)


def test_every_comparison_sentence_agrees_with_its_json_entry(study):
    _, doc, md = study
    names = {r["run_id"]: run_name(r) for r in doc["runs"]}
    sentences = [line for line in md.splitlines() if "McNemar" in line and line.startswith(("- ", "> "))]
    assert sentences
    for line in sentences:
        counts = re.search(r"(\d+) images right only with (.+?), (\d+) only with (.+?)\)", line)
        assert counts, line
        matching = [
            c
            for c in doc["comparisons"]
            if {(c["a_only"], c["b_only"]), (c["b_only"], c["a_only"])} >= {(int(counts[1]), int(counts[3]))}
        ]
        assert len(matching) == 1, line
        c = matching[0]
        assert fmt_p(c["p"]) in line.replace("\\<", "<")
        if c["significant"]:
            assert "no significant difference" not in line
        else:
            assert "no significant difference" in line and "raised" not in line and "lowered test" not in line
    # the names in the sentences are the runs of the entries
    assert all(c["a"] in names and c["b"] in names for c in doc["comparisons"])


def test_every_accuracy_in_the_json_has_its_wilson_interval(study):
    _, doc, md = study
    for r in doc["runs"]:
        for split in ("train", "val", "test"):
            s = r["metrics"][split]
            lo, hi = s["accuracy_ci"]
            assert lo < s["accuracy"] < hi
        assert 0.008 < r["metrics"]["test"]["accuracy"] - r["metrics"]["test"]["accuracy_ci"][0] < 0.011
    assert md.count(" \\[0.") >= 12  # 4 runs × 3 splits in the table


def test_the_unstable_run_is_explained_by_the_size_of_its_updates(study):
    _, doc, md = study
    sizes = {(r["config"]["lam"], r["config"]["eta"]): r["metrics"]["update"]["median"] for r in doc["runs"]}
    assert sizes[(0.0, 0.1)] > 10 * sizes[(0.0, 0.001)]
    assert "Why λ=0, η=0.1 was unstable" in md
    rough = {(r["config"]["lam"], r["config"]["eta"]): r["metrics"]["weights"]["roughness"] for r in doc["runs"]}
    assert rough[(1.0, 0.001)] < rough[(0.1, 0.001)] < rough[(0.0, 0.001)]  # λ smooths the templates
