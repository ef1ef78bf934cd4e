"""A report a student would hand in: the comparison at the top, compact numbered figures, a clean PDF."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cifarcli import plots

PNG = b"\x89PNG\r\n\x1a\n"
RUNS = [(0.0, 0.001), (0.1, 0.0003), (1.0, 0.0002)]
CHROMIUM = Path("/usr/bin/chromium")


def settings_toml(runs=RUNS, n_epochs: int = 3) -> str:
    text = f"[defaults]\nn_epochs = {n_epochs}\nn_batch = 20\n\n[gradcheck]\nn_samples = 10\nn_dims = 50\n"
    for lam, eta in runs:
        text += f"\n[[run]]\nlam = {lam!r}\neta = {eta!r}\n"
    return text


def report(cli, config: Path | None = None) -> dict:
    result = cli("report", *(["--config", config] if config else []), "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def study(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    config = tmp_path / "r.toml"
    config.write_text(settings_toml())
    doc = report(cli, config)
    reports = tmp_path / "reports"
    return config, doc, (reports / "report.md").read_text(), (reports / "report.html").read_text()


def test_comparison_section_is_at_the_top_with_both_figures_in_both_reports(tmp_path, study):
    _, doc, md, html = study
    key = doc["comparison"]["key"]
    assert set(doc["comparison"]["figures"]) == {"curves", "weights"}
    # near the top: before the set-up, the gradient check and the runs, in both reports
    assert md.index("## Comparison of runs") < md.index("## Set-up") < md.index("## Runs")
    assert html.index('id="comparison"') < html.index('id="setup"') < html.index('id="runs"')
    for name in ("curves", "weights"):
        rel = f"figures/comparison-{key}/{name}.png"
        assert doc["comparison"]["figures"][name] == rel
        data = (tmp_path / "reports" / rel).read_bytes()
        assert data.startswith(PNG)
        assert f"]({rel})" in md  # linked in Markdown
        assert base64.b64encode(data).decode() in html  # inlined in HTML
    # the table flags nothing on these stable runs, and has the stability column
    assert "| stability | run ID |" in md
    assert md.count("| stable | `") == len(RUNS)


def test_a_second_report_draws_no_comparison(cli, tmp_path, study):
    config, first, _, _ = study
    assert [s["status"] for s in first["stages"] if s["stage"] == "comparison"] == ["computed"]
    figures = {p: p.read_bytes() for p in (tmp_path / "reports" / "figures").glob("comparison-*/*.png")}
    second = report(cli, config)
    assert [(s["key"], s["status"]) for s in second["stages"] if s["stage"] == "comparison"] == [
        (first["comparison"]["key"], "hit")
    ]
    assert {p: p.read_bytes() for p in figures} == figures


def test_the_comparison_key_follows_the_runs_and_records_their_content(cli, tmp_path, study):
    from cifarcli import upkeep
    from cifarcli.store import Store

    config, first, _, _ = study
    [meta] = [row for row in upkeep.ls(Store(tmp_path / "cache"), "comparison")]
    stored = Store(tmp_path / "cache").meta("comparison", meta["key"])
    assert stored["inputs"] == {f"run{i}": r["run_id"] for i, r in enumerate(first["runs"])}
    assert set(stored["input_sha256"]) == {f"train/{r['run_id']}" for r in first["runs"]}
    config.write_text(settings_toml(RUNS[:2]))
    second = report(cli, config)
    assert second["comparison"]["key"] != first["comparison"]["key"]


def test_figures_are_numbered_and_captions_name_the_run(study):
    _, doc, md, html = study
    for page in (md, html):
        numbers = [int(n) for n in re.findall(r"Figure (\d+): ", page)]
        assert numbers == list(range(1, 2 + 5 * len(RUNS) + 1))  # comparison 2, then 5 per run
    assert "Figure 3: loss (= cost, λ = 0), λ=0, η=0.001" in md  # λ = 0: loss and cost are one
    assert "Figure 8: loss and cost, λ=0.1, η=0.0003" in md
    assert "Figure 9: accuracy, λ=0.1, η=0.0003" in md
    assert "Figure 10: learnt weights, λ=0.1, η=0.0003" in md
    assert "Figure 11: confusion matrix, λ=0.1, η=0.0003" in md
    assert "Figure 12: true-class probability, λ=0.1, η=0.0003" in md
    assert "<figcaption>Figure 8: loss and cost, λ=0.1, η=0.0003" in html
    # two to a row: loss | accuracy and weights | confusion in one Markdown table row, one HTML grid row
    pairs = [line for line in md.splitlines() if line.count("](figures/") == 2]
    assert len(pairs) == 2 * len(RUNS)
    assert html.count('class="figrow pair"') == 2 * len(RUNS)


def test_no_legend_entry_for_the_cost_when_lambda_is_zero():
    ep = np.arange(6)
    loss = (2.3 - 0.1 * ep).tolist()
    history = {
        "epoch": ep.tolist(),
        "train_loss": loss,
        "train_cost": loss,
        "train_acc": [0.1] * 6,
        "val_loss": [v + 0.1 for v in loss],
        "val_cost": [v + 0.1 for v in loss],
        "val_acc": [0.1] * 6,
    }
    fig = plots.loss_figure(history, lam=0.0)
    assert plots.legend_labels(fig) == ["train loss = cost (λ = 0)", "validation loss = cost (λ = 0)"]
    assert len(fig.axes[0].get_lines()) == 2
    # without λ, equal numbers say the same (without claiming λ)
    assert plots.legend_labels(plots.loss_figure(history)) == ["train loss = cost", "validation loss = cost"]
    regularised = {**history, "train_cost": [v + 0.05 for v in loss], "val_cost": [v + 0.15 for v in loss]}
    labels = plots.legend_labels(plots.loss_figure(regularised, lam=0.1))
    assert len(labels) == 4 and sum("cost" in label for label in labels) == 2


def test_comparison_figures_overlay_every_run_and_label_each_weights_row(tmp_path):
    rng = np.random.default_rng(0)
    ep = np.arange(5)
    runs = [
        (
            f"λ={lam:g}, η=0.001",
            {
                "epoch": ep.tolist(),
                "val_loss": (2.3 - 0.1 * ep * (1 + lam)).tolist(),
                "val_acc": (0.1 + 0.05 * ep).tolist(),
            },
        )
        for lam in (0, 0.1, 1)
    ]
    diverged = (
        "λ=0, η=0.1 (diverged at epoch 2)",
        {"epoch": [0, 1, 2], "val_loss": [2.3, 40.0, float("nan")], "val_acc": [0.1, 0.12, float("nan")]},
    )
    fig = plots.comparison_curves_figure(runs + [diverged])
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == [label for label, _ in runs + [diverged]]
    assert loss_ax.get_yscale() == "linear" and acc_ax.get_ylabel() == "validation accuracy"
    a = plots.plot_comparison_curves(runs, tmp_path / "a.png")
    b = plots.plot_comparison_curves(runs, tmp_path / "b.png")
    assert a.read_bytes().startswith(PNG) and a.read_bytes() == b.read_bytes()  # deterministic

    names = [f"c{i}" for i in range(10)]
    weights = [(label, rng.normal(size=(10, 3072))) for label, _ in runs] + [("λ=0, η=0.1", None)]
    fig = plots.comparison_weights_figure(weights, names)
    assert len(fig.axes) == 10 * len(weights)
    assert [fig.axes[10 * r].get_ylabel() for r in range(len(weights))] == [label for label, _ in weights]
    assert [ax.get_title() for ax in fig.axes[:10]] == names
    assert "no weights (diverged)" in [t.get_text() for t in fig.axes[30].texts]
    c = plots.plot_comparison_weights(weights, names, tmp_path / "w.png")
    assert c.read_bytes() == plots.plot_comparison_weights(weights, names, tmp_path / "w2.png").read_bytes()


def test_no_absolute_path_in_either_report(tiny_archive, study):
    _, doc, md, html = study
    absolute = str(Path(tiny_archive).resolve())
    for page in (md, html):
        assert absolute not in page and str(Path(absolute).parent) not in page
        assert f"| data source | {tiny_archive.name.replace('_', chr(92) + '_')} |" in md
        assert doc["dataset"]["sha256"] in page


def test_a_url_source_is_shown_as_it_is():
    from cifarcli.report.section_setup import source_name

    assert (
        source_name("https://example.org/data/cifar-10-binary.tar.gz")
        == "https://example.org/data/cifar-10-binary.tar.gz"
    )
    assert source_name("/home/student/Downloads/cifar-10-binary.tar.gz") == "cifar-10-binary.tar.gz"
    assert source_name("/home/student/cifar-10-batches-bin/") == "cifar-10-batches-bin"
    assert source_name(r"C:\Users\student\cifar.tar.gz") == "cifar.tar.gz"


def test_print_css_keeps_figures_with_captions_and_ids_on_one_line(study):
    html = study[3]
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    printed = css.split("@media print", 1)[1]
    assert re.search(r"figure, figure img, figcaption[^{]*\{[^}]*break-inside: avoid", printed)
    assert re.search(r"\.figrow \{[^}]*break-inside: avoid", printed)
    assert re.search(r"h2, h3[^{]*\{[^}]*break-after: avoid", printed)
    assert re.search(r"td code[^{]*\{[^}]*white-space: nowrap", css)
    assert "<script" not in html and "http://" not in html and "https://" not in html


@pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("pdfinfo") is None,
    reason="needs /usr/bin/chromium and pdfinfo (poppler-utils)",
)
def test_the_default_four_run_report_prints_on_at_most_12_a4_pages(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    doc = report(cli)  # the study's four settings
    assert len(doc["runs"]) == 4
    pdf = tmp_path / "report.pdf"
    profile = tmp_path / "chromium-profile"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            (tmp_path / "reports" / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, flags=re.M).group(1))
    assert re.search(r"Page size:\s+59[45]\.\d+ x 841\.\d+ pts \(A4\)", info), info  # the print CSS asks for A4
    assert 1 <= pages <= 12, pages
