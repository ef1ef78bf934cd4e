"""cifarcli.report: analysis sentences from numbers, Markdown and self-contained HTML."""

from __future__ import annotations

import base64
import copy
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cifarcli import plots, report
from cifarcli.report.markdown import md_text

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# (lam, eta, final train acc, val acc, test acc, unstable?) — the study's four settings
STUDY = [
    (0.0, 0.1, 0.3011, 0.2650, 0.2574, True),
    (0.0, 0.001, 0.4560, 0.3790, 0.3717, False),
    (0.1, 0.001, 0.4420, 0.3880, 0.3876, False),
    (1.0, 0.001, 0.4010, 0.3800, 0.3784, False),
]


def make_history(
    train_acc: float, val_acc: float, unstable: bool, lam: float, n_epochs: int = 40, seed: int = 0
) -> dict[str, list[float]]:
    """A plausible per-epoch history; the unstable one is a saw-tooth."""
    rng = np.random.default_rng(seed)
    ep = np.arange(n_epochs + 1, dtype=float)
    decay = 1 - np.exp(-ep / 6)
    tl = 2.35 - 0.75 * decay
    vl = 2.35 - 0.62 * decay
    if unstable:
        tl = tl + 2.5 * np.abs(np.sin(1.7 * ep)) * (ep > 0)
        vl = vl + 2.5 * np.abs(np.sin(1.7 * ep + 0.2)) * (ep > 0)
    ta = 0.1 + (train_acc - 0.1) * decay
    va = 0.1 + (val_acc - 0.1) * decay
    if unstable:
        ta = ta - 0.05 * np.abs(np.cos(ep)) * (ep > 0)
        va = va - 0.05 * np.abs(np.cos(ep + 0.3)) * (ep > 0)
        ta[-1], va[-1] = train_acc, val_acc
    reg = lam * 0.2 * (1 + 0.1 * rng.random(len(ep)))
    return {
        "epoch": [int(e) for e in ep],
        "train_loss": tl.tolist(),
        "train_cost": (tl + reg).tolist(),
        "train_acc": ta.tolist(),
        "val_loss": vl.tolist(),
        "val_cost": (vl + reg).tolist(),
        "val_acc": va.tolist(),
    }


def make_run(lam, eta, tr, va, te, unstable, idx, reports_dir: Path | None, **cfg):
    rng = np.random.default_rng(100 + idx)
    run_id = f"{idx:02d}ab{int(lam * 10):x}{int(eta * 1000):03x}cd9e"[:12]
    config = {"lam": lam, "eta": eta, "n_epochs": 40, "n_batch": 100, "seed": 42, "split": "seed", "dtype": "float32"}
    config.update(cfg)
    hist = make_history(tr, va, unstable, lam, seed=idx)
    cm = rng.integers(0, 60, size=(10, 10))
    cm[np.arange(10), np.arange(10)] = rng.integers(250, 500, size=10)
    per_class = {n: float(cm[i, i] / cm[i].sum()) for i, n in enumerate(LABEL_NAMES)}
    figures = {k: f"figures/{run_id}/{k}.png" for k in ("loss", "accuracy", "weights", "confusion")}
    run = {
        "run_id": run_id,
        "label": f"λ={lam:g}, η={eta:g}",
        "config": config,
        "split_sizes": {"train": 8000, "val": 2000, "test": 10000},
        "metrics": {
            "train": {"loss": hist["train_loss"][-1], "cost": hist["train_cost"][-1], "accuracy": tr},
            "val": {"loss": hist["val_loss"][-1], "cost": hist["val_cost"][-1], "accuracy": va},
            "test": {"loss": hist["val_loss"][-1] + 0.01, "cost": hist["val_cost"][-1] + 0.01, "accuracy": te},
            "per_class_accuracy": per_class,
            "confusion_matrix": cm.tolist(),
        },
        "history": hist,
        "diverged_at": None,
        "train_seconds": 1.9 + idx,
        "figures": figures,
    }
    if reports_dir is not None:
        d = reports_dir
        plots.plot_loss(hist, d / figures["loss"], title=run["label"])
        plots.plot_accuracy(hist, d / figures["accuracy"], title=run["label"])
        W = rng.normal(0, 0.01, size=(10, 3072))
        plots.plot_weights(W, LABEL_NAMES, d / figures["weights"])
        plots.plot_confusion(cm, LABEL_NAMES, d / figures["confusion"])
    return run


def gradcheck_doc(passed=True):
    def stats(mx):
        return {
            "max": mx,
            "mean": mx / 10,
            "median": mx / 20,
            "share_below_tol": 1.0 if passed else 0.97,
            "corner": [[mx / (1 + i + j) for j in range(5)] for i in range(5)],
        }

    mx = 3.1e-8 if passed else 2.5e-5
    return {
        "tol": 1e-6,
        "passed": passed,
        "n_samples": 100,
        "n_dims": 3072,
        "h": 1e-6,
        "elapsed": 0.8,
        "results": [
            {"lam": 0.0, "W": stats(mx), "b": stats(mx / 3)},
            {"lam": 0.1, "W": stats(mx / 2), "b": stats(mx / 4)},
        ],
    }


def make_doc(reports_dir: Path | None = None, settings=STUDY) -> dict:
    runs = [make_run(*s, idx=i, reports_dir=reports_dir) for i, s in enumerate(settings)]
    return {
        "title": "One-layer network on CIFAR-10",
        "cifarcli_version": "0.1.0",
        "created": "2026-11-27T10:00:00+00:00",
        "dataset": {
            "source": "/home/student/Datasets/cifar-10-binary.tar.gz",
            "format": "binary",
            "md5": "c32a1d4ab5d03f1284b67883e8d87530",
            "sha256": "a3c4ba2d1e9c1f2f7c1b1d1e0b6f1a2c3d4e5f60718293a4b5c6d7e8f9012345",
            "official": False,
            "note": "not the official archive (checksum unknown); structure valid",
            "n_train_total": 50000,
            "n_test": 10000,
        },
        "preprocessing": {"scale": "pixels / 255", "normalisation": "per-dimension mean and std of the training split"},
        "initialisation": {"distribution": "normal", "std": 0.01, "seed": 42},
        "gradcheck": gradcheck_doc(),
        "runs": runs,
    }


def write_report(doc, d: Path) -> dict[str, Path]:
    """Both renderings of ``doc`` written to ``d`` as report.md and report.html (as ``cifarcli report`` does)."""
    paths = {"md": d / "report.md", "html": d / "report.html"}
    paths["md"].write_text(report.render_markdown(doc), encoding="utf-8")
    paths["html"].write_text(report.render_html(doc, d), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    doc = make_doc(d)
    paths = write_report(doc, d)
    return doc, d, paths


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse_html(text: str) -> _Collector:
    p = _Collector()
    p.feed(text)
    p.close()
    return p


# --------------------------------------------------------------------------
# Markdown


def test_markdown_has_every_test_accuracy_as_in_table(written):
    doc, d, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    rows = [line for line in md.splitlines() if line.startswith("| ") and "`" in line]
    for run in doc["runs"]:
        acc = f"{run['metrics']['test']['accuracy']:.4f}"
        assert any(acc in r and run["run_id"] in r for r in rows), acc
    # the best test accuracy (0.3876) is bold with a star, and only that one
    assert "**0.3876 ★**" in md
    assert md.count("★**") == 1


def test_markdown_image_links_are_relative_and_exist(written):
    doc, d, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 4 * len(doc["runs"])
    for link in links:
        assert not link.startswith(("/", "http:", "https:"))
        assert (paths["md"].parent / link).is_file(), link


def test_markdown_tables_are_well_formed(written):
    _, _, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    blocks = re.findall(r"(?:^\|.*\|\n)+", md, flags=re.M)
    assert len(blocks) >= 5
    for b in blocks:
        lines = b.strip().splitlines()
        assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1])
        ncol = lines[1].count("|") - 1
        for line in lines:
            # count unescaped pipes
            assert len(re.findall(r"(?<!\\)\|", line)) - 1 == ncol, line


def test_markdown_escapes_special_characters():
    doc = make_doc(None)
    doc["runs"][0]["label"] = "a|b *x* <y>"
    doc["dataset"]["source"] = "C:\\data|evil_name.tar.gz"
    md = report.render_markdown(doc)
    assert "a\\|b \\*x\\* \\<y\\>" in md
    assert "<y>" not in md
    assert "evil\\_name" in md


# --------------------------------------------------------------------------
# HTML


def test_html_is_self_contained(written):
    doc, d, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    p = parse_html(page)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 4 * len(doc["runs"])
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        assert a.get("alt")
    for tag, a in p.tags:
        assert tag not in ("script", "iframe", "link", "object", "embed")
        for key in ("src", "href"):
            v = a.get(key) or ""
            assert not re.match(r"\s*(https?:)?//", v, flags=re.I), (tag, v)
            if key == "href" and key in a:
                assert v.startswith("#")
        assert not any(k.startswith("on") for k in a)
    assert "http://" not in page and "https://" not in page
    assert [t for t, _ in p.tags].count("style") == 1
    assert "@media print" in page and "page-break-inside: avoid" in page


def test_html_embeds_the_very_png_files(written):
    doc, d, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    for run in doc["runs"]:
        raw = (d / run["figures"]["weights"]).read_bytes()
        assert base64.b64encode(raw).decode() in page


def test_html_escapes_doc_text(tmp_path):
    doc = make_doc(None)
    doc["title"] = "<b>T&amp;</b>"
    doc["runs"][1]["label"] = '<script>alert("x")</script>'
    doc["dataset"]["note"] = 'quote " and <img src=x onerror=1>'
    page = report.render_html(doc, tmp_path)
    assert "<script" not in page and "<img src=x" not in page and "<b>T" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;T&amp;amp;&lt;/b&gt;" in page
    text = "".join(parse_html(page).text)
    assert '<script>alert("x")</script>' in text  # shown literally to the reader


def test_html_missing_figure_is_a_visible_placeholder(tmp_path):
    doc = make_doc(None)
    doc["runs"] = doc["runs"][:1]
    doc["runs"][0]["figures"]["loss"] = "../../../etc/passwd"
    page = report.render_html(doc, tmp_path)
    assert "<img" not in page
    assert "Figure not available: ../../../etc/passwd" in page


def test_html_and_markdown_show_same_numbers(written):
    doc, _, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    text = "".join(parse_html(paths["html"].read_text(encoding="utf-8")).text)
    for run in doc["runs"]:
        for split in ("train", "val", "test"):
            acc = f"{run['metrics'][split]['accuracy']:.4f}"
            assert acc in md and acc in text


# --------------------------------------------------------------------------
# content: set-up and gradient check


def test_setup_and_gradcheck_content(written):
    doc, _, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    assert doc["dataset"]["sha256"] in md and doc["dataset"]["md5"] in md
    assert "not the official archive" in md
    assert "8000 / 2000 / 10000" in md
    assert "3.10e-08" in md  # max error of W at λ=0
    assert md.count("**PASS**") >= 4 and "FAIL" not in md
    assert "j=4" in md and "k=4" in md  # 5×5 corner


def test_gradcheck_failure_is_reported():
    doc = make_doc(None)
    doc["gradcheck"] = gradcheck_doc(passed=False)
    md = report.render_markdown(doc)
    assert "**FAIL**" in md
    s = report.gradcheck_sentences(doc["gradcheck"])
    assert len(s) == 1 and "2.50e-05" in s[0] and "above the tolerance" in s[0] and s[0].endswith("FAIL.")


# --------------------------------------------------------------------------
# analysis: every sentence from the numbers


def study_runs():
    return make_doc(None)["runs"]


def test_instability_flags_the_saw_tooth_run_only():
    runs = study_runs()
    flagged = [report.run_name(r) for r in runs if report.instability(r) is not None]
    assert flagged == ["λ=0, η=0.1"]
    assert report.instability(runs[0]).kind == "oscillation"
    s = " ".join(report.stability_sentences(runs))
    assert "λ=0, η=0.1 was unstable" in s and "saw-tooth" in s


def test_instability_detects_divergence_and_late_rise():
    run = study_runs()[1]
    assert report.instability(run) is None
    div = copy.deepcopy(run)
    div["diverged_at"] = 7
    assert report.instability(div).kind == "diverged"
    nan = copy.deepcopy(run)
    nan["history"]["train_cost"][12] = math.inf
    inst = report.instability(nan)
    assert inst.kind == "diverged" and "epoch 12" in inst.reason
    rise = copy.deepcopy(run)
    c = rise["history"]["train_cost"]
    c[-1] = min(c) * 1.2
    inst = report.instability(rise)
    assert inst.kind == "rise" and "20.0 %" in inst.reason


def test_slow_validation_rise_is_overfitting_not_instability():
    run = copy.deepcopy(study_runs()[1])
    v = run["history"]["val_loss"]
    lo = min(v)
    for i in range(24, 41):
        v[i] = lo * (1 + 0.002 * (i - 24))  # +3.2 % by the end, smoothly
    assert report.instability(run) is None
    e, lo2, rise = report.overfitting(run)
    assert e == 24 and rise == pytest.approx(0.032)
    assert any("over-fitting" in s for s in report.stability_sentences([run]))


def test_gap_sentences_use_percentage_points():
    runs = study_runs()
    s = report.gap_sentences(runs)
    assert len(s) == 4
    assert "7.70 percentage points" in s[1]  # 0.4560 - 0.3790
    assert "train accuracy 0.4560, validation 0.3790" in s[1]
    r = copy.deepcopy(runs[1])
    r["metrics"]["val"]["accuracy"] = 0.47
    assert "validation is above train by 1.40 percentage points" in report.gap_sentences([r])[0]


def test_lambda_effect_follows_the_numbers():
    runs = study_runs()
    s = report.effect_sentences(runs, "lam")
    # only the three η=0.001 runs differ in λ alone: two consecutive pairs
    assert len(s) == 2
    assert s[0].startswith(
        "At η=0.001, raising λ from 0 to 0.1 raised test accuracy from 0.3717 to 0.3876 (+1.59 points)"
    )
    assert "shrank the train–validation gap from 7.70 to 5.40 percentage points" in s[0]
    assert "raising λ from 0.1 to 1 lowered test accuracy from 0.3876 to 0.3784 (−0.92 points)" in s[1]

    swapped = copy.deepcopy(runs)
    swapped[1]["metrics"]["test"]["accuracy"], swapped[2]["metrics"]["test"]["accuracy"] = 0.3876, 0.3717
    s2 = report.effect_sentences(swapped, "lam")
    assert "raising λ from 0 to 0.1 lowered test accuracy from 0.3876 to 0.3717 (−1.59 points)" in s2[0]


def test_eta_effect_and_instability_mention():
    s = report.effect_sentences(study_runs(), "eta")
    assert len(s) == 1
    assert s[0].startswith("At λ=0, raising η from 0.001 to 0.1 lowered test accuracy from 0.3717 to 0.2574")
    assert "the run with η=0.1 was unstable, the one with η=0.001 was not" in s[0]


def test_no_effect_sentence_without_a_single_change_pair():
    runs = study_runs()
    # λ=0/η=0.1 and λ=0.1/η=0.001 differ in two settings: nothing to say about either
    pair = [runs[0], runs[2]]
    assert report.effect_sentences(pair, "lam") == []
    assert report.effect_sentences(pair, "eta") == []
    groups = dict(report.analysis({"runs": pair}))
    assert not any(k.startswith("Effect") for k in groups)
    # a different n_batch also breaks the pair
    other = copy.deepcopy(runs[2])
    other["config"]["n_batch"] = 50
    assert report.effect_sentences([runs[1], other], "lam") == []
    # the same pair with equal n_batch does compare
    assert len(report.effect_sentences([runs[1], runs[2]], "lam")) == 1


def test_fixed_settings_named_when_they_vary_elsewhere():
    runs = study_runs()
    a, b = copy.deepcopy(runs[1]), copy.deepcopy(runs[2])
    c, d = copy.deepcopy(runs[1]), copy.deepcopy(runs[2])
    for r in (c, d):
        r["config"]["n_batch"] = 50
    s = report.effect_sentences([a, b, c, d], "lam")
    assert len(s) == 2
    assert all(x.startswith("At η=0.001, n_batch=") for x in s)
    assert any("n_batch=100" in x for x in s) and any("n_batch=50" in x for x in s)


def test_single_run_says_nothing_comparative():
    doc = make_doc(None)
    doc["runs"] = doc["runs"][1:2]
    groups = dict(report.analysis(doc))
    assert not any(k.startswith("Effect") for k in groups)
    assert "nothing to compare" in groups["Best run"][0]
    md = report.render_markdown(doc)
    assert "★" not in md


def test_best_run_sentences_name_test_and_validation_winners():
    runs = study_runs()
    s = report.best_run_sentences(runs)
    assert "The highest test accuracy, 0.3876, was reached by λ=0.1, η=0.001" in s[0]
    assert "selects λ=0.1, η=0.001 (0.3880): the same choice" in s[1]
    r = copy.deepcopy(runs)
    r[3]["metrics"]["val"]["accuracy"] = 0.3950
    s = report.best_run_sentences(r)
    assert "selects λ=1, η=0.001 (0.3950): a different choice" in s[1]


def test_analysis_appears_in_both_renderings(written):
    doc, _, paths = written
    md = paths["md"].read_text(encoding="utf-8")
    text = "".join(parse_html(paths["html"].read_text(encoding="utf-8")).text)
    for _, sentences in report.analysis(doc):
        for sentence in sentences:
            assert sentence in text
            assert md_text(sentence) in md


def test_formatting_helpers():
    assert report.fmt_acc(0.38764) == "0.3876"
    assert report.fmt_acc(None) == "—"
    assert report.fmt_points(0.0692) == "6.92"
    assert report.fmt_points(-0.0159, signed=True) == "−1.59"
    assert report.fmt_points(0.0, signed=True) == "±0.00"
    assert report.fmt_num(0.001) == "0.001" and report.fmt_num(0.0) == "0" and report.fmt_num(1.0) == "1"


def test_diverged_run_renders_and_is_flagged(tmp_path):
    doc = make_doc(None, settings=STUDY[:2])
    run = doc["runs"][0]
    cut = 9
    for k, v in run["history"].items():
        run["history"][k] = v[: cut + 1]
    run["history"]["train_cost"][-1] = float("nan")
    run["history"]["train_loss"][-1] = float("inf")
    run["diverged_at"] = cut
    run["metrics"]["train"] = {"loss": float("nan"), "cost": float("nan"), "accuracy": 0.1}
    d = tmp_path
    plots.plot_loss(run["history"], d / run["figures"]["loss"])
    plots.plot_accuracy(run["history"], d / run["figures"]["accuracy"])
    paths = write_report(doc, d)
    md = paths["md"].read_text(encoding="utf-8")
    assert "Training diverged at epoch 9" in md
    inst = report.instability(run)
    assert inst.kind == "diverged" and "epoch 9" in inst.reason
    assert "λ=0, η=0.1 was unstable: training diverged at epoch 9" in md
    # the η effect still compares the test accuracies, and names the unstable run
    assert "the run with η=0.1 was unstable, the one with η=0.001 was not" in md
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2  # the two figures that exist
    assert page.count("Figure not available") == 6


def test_rendering_is_deterministic(tmp_path):
    doc = make_doc(None)
    assert report.render_markdown(doc) == report.render_markdown(copy.deepcopy(doc))
    assert report.render_html(doc, tmp_path) == report.render_html(copy.deepcopy(doc), tmp_path)
