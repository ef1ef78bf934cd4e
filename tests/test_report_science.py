"""Issue 19: the report argues like a scientist — intervals, tested comparisons, measured weights and
instability, the author's discussion, a typeset A4 PDF, the brief layout, duplicate runs refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifarcli import plots
from cifarcli.report import comparisons, discussion_blocks, render_html, render_markdown
from cifarcli.report.analysis import PairTests, best_run_sentences, effect_sentences
from cifarcli.report.blocks import Span
from cifarcli.report.typeset import render_typst, typst_string
from cifarcli.stats import mcnemar_exact, wilson_interval

HOSTILE = '#read("/etc/passwd") <script>alert(1)</script> $x$ \\ "q" `tick`'


def run(run_id, lam, eta, test_acc, n=10000):
    k = round(test_acc * n)
    split = {"accuracy": test_acc, "accuracy_ci": list(wilson_interval(k, n)), "n": n, "loss": 1.8, "cost": 1.9}
    return {
        "run_id": run_id,
        "label": f"λ={lam:g}, η={eta:g}",
        "diverged_at": None,
        "history": {},
        "config": {"lam": lam, "eta": eta, "n_batch": 100, "n_epochs": 40},
        "metrics": {"test": split, "val": {**split}, "train": {**split}},
    }


def study_doc(a_only=162, b_only=188):
    runs = [run("aaaa", 0.0, 0.001, 0.3863), run("bbbb", 0.1, 0.001, 0.3889)]
    return {
        "title": "t",
        "runs": runs,
        "discordant": [{"a": "aaaa", "b": "bbbb", "split": "test", "a_only": a_only, "b_only": b_only}],
    }


# -- the comparison sentences follow McNemar's test ------------------------------------------


def test_a_difference_that_is_not_significant_is_said_so_with_p_and_both_counts():
    doc = study_doc(162, 188)
    [sentence] = effect_sentences(doc["runs"], "lam", PairTests(doc["discordant"]))
    p = mcnemar_exact(162, 188)
    assert p > 0.05
    assert "no significant difference" in sentence and "raised test accuracy" not in sentence
    assert f"p = {p:.2f}" in sentence
    assert "162 images right only with λ=0, 188 only with λ=0.1" in sentence
    assert "0.3863 [0.3768, 0.3959]" in sentence  # the interval, in the text too


@pytest.mark.parametrize("a_only, b_only, verb", [(100, 190, "raised"), (190, 100, "lowered")])
def test_a_significant_difference_may_say_raised_or_lowered(a_only, b_only, verb):
    doc = study_doc(a_only, b_only)
    tests = PairTests(doc["discordant"])
    [sentence] = effect_sentences(doc["runs"], "lam", tests)
    assert sentence.count(verb + " test accuracy") == 1 and "no significant" not in sentence
    assert "McNemar p < 0.0001" in sentence
    assert tests.used == [
        {
            "a": "aaaa",
            "b": "bbbb",
            "split": "test",
            "a_only": a_only,
            "b_only": b_only,
            "p": mcnemar_exact(a_only, b_only),
            "significant": True,
        }
    ]


def test_the_star_says_whether_the_best_run_beats_the_runner_up():
    not_sig = best_run_sentences(study_doc(162, 188)["runs"], PairTests(study_doc(162, 188)["discordant"]))
    assert any("is not significantly better than the runner-up, λ=0, η=0.001" in s for s in not_sig)
    sig = best_run_sentences(study_doc(100, 190)["runs"], PairTests(study_doc(100, 190)["discordant"]))
    assert any("is significantly better than the runner-up" in s and "p < 0.0001" in s for s in sig)


def test_comparisons_list_every_tested_pair_once_as_the_sentences_word_it():
    doc = study_doc(162, 188)
    found = comparisons(doc)
    assert len(found) == 1 and found[0]["p"] == pytest.approx(mcnemar_exact(162, 188))
    assert found[0]["significant"] is False
    md = render_markdown(doc)
    assert "no significant difference (McNemar p = 0.18" in md


# -- the discussion: a Markdown subset, escaped in every format -----------------------------------

DISCUSSION = f"""First paragraph with *emphasis*, **bold** and `code`.
Still the first paragraph.

- a point {HOSTILE}
- another
  continued

1. one
2. two

```
{HOSTILE}
```
"""


def test_discussion_subset_parses_paragraphs_lists_emphasis_and_code():
    blocks = discussion_blocks(DISCUSSION)
    kinds = [type(b).__name__ for b in blocks]
    assert kinds == ["Para", "Bullets", "Bullets", "CodeBlock"]
    first = blocks[0].content
    assert Span("emphasis", italic=True) in first and Span("bold", bold=True) in first
    assert Span("code", code=True) in first and first[-1].endswith("Still the first paragraph.")
    assert blocks[1].ordered is False and blocks[1].items[1] == ["another continued"]
    assert blocks[2].ordered is True and len(blocks[2].items) == 2
    assert blocks[3].text == HOSTILE


def test_discussion_is_escaped_in_markdown_html_and_typst(tmp_path):
    doc = {**study_doc(), "discussion": DISCUSSION}
    md = render_markdown(doc)
    assert md.index("## Analysis") < md.index("## Discussion")
    assert "<script>" not in md.split("```")[0]  # outside the code block: escaped
    html = render_html(doc, tmp_path)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<em>emphasis</em>" in html and "<ol>" in html and "<pre><code>" in html
    typ = render_typst(doc)
    assert f"#raw(block: true, {typst_string(HOSTILE)})" in typ  # the code block: one string literal
    assert '#read("/etc/passwd")' not in typ  # its quotes escaped wherever it lands


def test_typst_string_escapes_only_backslash_and_quote():
    assert typst_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


# -- the PDF ------------------------------------------------------------------------------------

typst = pytest.importorskip("typst", reason="the PDF tests need the typst package (pip install 'cifarcli[pdf]')")


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def pdf_pages(path: Path) -> tuple[int, str]:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, flags=re.M).group(1)), info


needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None,
    reason="needs poppler-utils (pdftotext, pdfinfo)",
)


def settings(tmp_path, runs, extra="") -> Path:
    text = "[defaults]\nn_epochs = 4\nn_batch = 20\n\n[gradcheck]\nn_samples = 10\nn_dims = 50\n" + extra
    for lam, eta in runs:
        text += f"\n[[run]]\nlam = {lam!r}\neta = {eta!r}\n"
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@needs_poppler
def test_report_pdf_is_a4_with_math_tables_numbered_figures_and_the_discussion_escaped(cli, fetched, tmp_path):
    (tmp_path / "discussion.md").write_text(f"My words.\n\n- {HOSTILE}\n")
    config = settings(tmp_path, [(0.0, 0.001), (0.1, 0.001)], '\n[report]\ndiscussion = "discussion.md"\n')
    result = cli("report", "--config", config, "--pdf", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    pdf, typ = tmp_path / "reports" / "report.pdf", tmp_path / "reports" / "report.typ"
    assert doc["paths"]["report.pdf"] == "reports/report.pdf" and pdf.read_bytes().startswith(b"%PDF")
    pages, info = pdf_pages(pdf)
    assert re.search(r"Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)", info)
    text = pdf_text(pdf)
    assert '#read("/etc/passwd")' in text and "<script>alert(1)</script>" in text  # printed, never evaluated
    assert "root:" not in text
    assert "Discussion" in text and "My words." in text
    assert "Figure 1:" in text and "Figure 2:" in text
    assert "softmax" in text and "J(W, b)" in typ.read_text().replace(" ", "").replace("J(W,b)", "J(W, b)")
    assert "#table(" in typ.read_text() and "$ J(W, b)" in typ.read_text()
    for name in ("report.md", "report.html"):  # the discussion is in every format
        assert "My words." in (tmp_path / "reports" / name).read_text()


@needs_poppler
def test_brief_default_study_fits_six_a4_pages_and_the_full_one_twelve(cli, fetched, tmp_path):
    study = [(0.0, 0.1), (0.0, 0.001), (0.1, 0.001), (1.0, 0.001)]  # the study's four settings
    config = settings(tmp_path, study)
    full = cli("report", "--config", config, "--pdf", "--quiet")
    assert full.exit_code == 0, full.stderr
    pages_full, _ = pdf_pages(tmp_path / "reports" / "report.pdf")
    brief = cli("report", "--config", config, "--pdf", "--brief", "--quiet")
    assert brief.exit_code == 0, brief.stderr
    pages_brief, _ = pdf_pages(tmp_path / "reports" / "report.pdf")
    assert pages_brief <= 6 < pages_full <= 12, (pages_brief, pages_full)
    md = (tmp_path / "reports" / "report.md").read_text()
    order = [md.index(h) for h in ("## Set-up", "## Gradient check", "## Runs", "## Comparison of runs", "## Analysis")]
    assert order == sorted(order)
    assert "confusion" not in md and "weights.png" in md and "loss.png" in md


def test_brief_true_in_the_settings_file_is_the_brief_layout(cli, fetched, tmp_path):
    config = settings(tmp_path, [(0.0, 0.001), (0.1, 0.001)], "\n[report]\nbrief = true\n")
    assert cli("report", "--config", config, "--quiet").exit_code == 0
    md = (tmp_path / "reports" / "report.md").read_text()
    assert md.index("## Set-up") < md.index("## Comparison of runs") and "confusion" not in md


# -- bad input: one line, exit 2 ------------------------------------------------------------------


def test_a_missing_discussion_file_is_one_error_line(cli, fetched, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cifarcli", "report", "--discussion", "nowhere.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) <= 2 and "nowhere.md" in result.stderr
    assert "(give a Markdown file with --discussion)" in result.stderr  # the library's `discussion`, as typed
    assert "Traceback" not in result.stderr and not (tmp_path / "reports" / "report.md").exists()


def test_duplicate_run_tables_are_one_error_line_naming_both(tmp_path):
    config = settings(tmp_path, [(0.1, 0.001), (0.0, 0.001), (0.1, 0.001)])
    result = subprocess.run(
        [sys.executable, "-m", "cifarcli", "report", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "run 1 and run 3 are the same setting" in result.stderr and "Traceback" not in result.stderr


def test_pdf_without_typst_is_one_line_with_the_install_command(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "typst.py").write_text("raise ImportError('typst is not installed')\n")  # as if it were absent
    env = {**__import__("os").environ, "PYTHONPATH": str(shim)}
    result = subprocess.run(
        [sys.executable, "-m", "cifarcli", "report", "--pdf"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "pip install 'cifarcli[pdf]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists()  # nothing was done first


# -- the figures that compare -------------------------------------------------------------------


def test_the_unstable_run_gets_its_own_loss_panel_and_the_legend_sits_off_the_data():
    epochs = list(range(11))
    stable = [
        (
            f"stable {i}",
            {
                "epoch": epochs,
                "val_loss": [2.5] + [1.8 + 0.01 * i + 0.3 / (e + 1) for e in epochs[1:]],
                "val_acc": [0.1] + [0.3 + 0.01 * i] * 10,
            },
        )
        for i in range(3)
    ]
    unstable = (
        "unstable",
        {"epoch": epochs, "val_loss": [2.5, 8, 6, 9, 5, 10, 6, 9, 7, 11, 8], "val_acc": [0.1] + [0.25] * 10},
    )
    fig = plots.comparison_curves_figure(stable + [unstable], apart=[False, False, False, True])
    axes = fig.axes
    assert len(axes) == 3
    assert [line.get_label() for line in axes[0].get_lines()] == ["stable 0", "stable 1", "stable 2"]
    assert [line.get_label() for line in axes[1].get_lines()] == ["unstable"]
    lo, hi = axes[0].get_ylim()
    assert hi < 2.5 and lo > 1.5  # zoomed on where the stable runs differ
    # one colour per run: the same in the loss and the accuracy panel
    colours = [line.get_color() for line in axes[0].get_lines() + axes[1].get_lines()]
    assert len(set(colours)) == 4
    assert colours == [line.get_color() for line in axes[2].get_lines()[:4]]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [legend] = fig.legends
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in axes)


def test_the_weights_grid_labels_each_row_in_its_runs_colour():
    W = np.random.default_rng(0).normal(size=(10, 3072))
    fig = plots.comparison_weights_figure([("a", W), ("b", W)], [str(k) for k in range(10)])
    rows = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.yaxis.label.get_color() for ax in rows] == [plots.run_style(0)["color"], plots.run_style(1)["color"]]


def test_the_sweeps_chosen_point_is_tested_against_its_runner_up_on_validation(cli, fetched, tmp_path):
    config = settings(tmp_path, [(0.0, 0.001)], "\n[sweep]\nlam = [0.0, 1.0]\neta = [0.001, 0.003]\n")
    result = cli("report", "--config", config, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    points = [p for p in doc["sweep"]["points"] if p["diverged_at"] is None]
    chosen, second = points[0]["run_id"], points[1]["run_id"]
    [entry] = [c for c in doc["comparisons"] if c["split"] == "val"]
    assert {entry["a"], entry["b"]} == {chosen, second}
    assert entry["p"] == pytest.approx(mcnemar_exact(entry["a_only"], entry["b_only"]))
    md = (tmp_path / "reports" / "report.md").read_text()
    verdict = "is significantly better" if entry["significant"] else "is not significantly better"
    assert f"The chosen setting {verdict} than the runner-up" in md
    assert f"{entry['a_only']} images right only with" in md


def test_the_comparison_table_shows_intervals_roughness_and_update_size(cli, fetched, tmp_path):
    config = settings(tmp_path, [(0.0, 0.001), (1.0, 0.001)])
    result = cli("report", "--config", config, "--json")
    doc = json.loads(result.stdout)
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "| roughness of W | update / ‖W‖ |" in md and "Roughness of W: for each class template" in md
    for r in doc["runs"]:
        m = r["metrics"]
        lo, hi = m["test"]["accuracy_ci"]
        assert f"{m['test']['accuracy']:.4f} \\[{lo:.4f}, {hi:.4f}\\]" in md
        assert f"| {m['weights']['roughness']:.2f} |" in md
        assert len(m["weights"]["per_class"]) == 10 and m["update"]["n_updates"] >= 1
    assert "predictions" not in json.dumps(doc)  # kept in the cache, not in the JSON


@pytest.mark.parametrize("a_only, b_only, significant", [(150, 160, False), (100, 200, True)])
def test_softmax_against_another_loss_is_worded_by_the_test_too(a_only, b_only, significant):
    from cifarcli.report.loss_comparison import loss_sentences, svm_sentences

    soft, other = run("soft", 0.1, 0.001, 0.3889), run("other", 0.1, 0.001, 0.3989)
    other["config"]["loss"] = "bce"
    tests = PairTests([{"a": "other", "b": "soft", "split": "test", "a_only": b_only, "b_only": a_only}])
    for sentences, name in (
        (loss_sentences(soft, other, True, tests), "BCE"),
        (svm_sentences(soft, other, True, tests), "the SVM"),
    ):
        first = sentences[0]
        assert f"{b_only} images right only with {name}, {a_only} only with softmax" in first
        assert ("significantly more test images correctly" in first) == significant
        assert ("no significant difference" in first) == (not significant)
    assert tests.used[0]["p"] == pytest.approx(mcnemar_exact(a_only, b_only))
