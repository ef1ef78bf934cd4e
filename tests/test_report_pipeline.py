"""``cifarcli report`` end to end on the tiny archive: numbers, links, caching, --jobs, TOML errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cifarcli import upkeep
from cifarcli.config import load_settings
from cifarcli.store import Store

# Settings chosen so the tiny data gives accuracies well inside (0, 1): the
# comparison of formatted numbers then means something.
RUNS = [(0.0, 0.001), (0.1, 0.0003), (1.0, 0.0002)]


def settings_toml(runs=RUNS, n_epochs: int = 2) -> str:
    text = f"[defaults]\nn_epochs = {n_epochs}\nn_batch = 20\n\n[gradcheck]\nn_samples = 10\n"
    for lam, eta in runs:
        text += f"\n[[run]]\nlam = {lam!r}\neta = {eta!r}\n"
    return text


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def report(cli, config: Path, *extra: str) -> dict:
    result = cli("report", "--config", config, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def computed(doc: dict) -> list[tuple[str, str]]:
    return [(s["stage"], s["key"]) for s in doc["stages"] if s["status"] == "computed"]


@pytest.fixture
def study(cli, tmp_path, tiny_archive):
    """The report of RUNS, made with the default --jobs in tmp_path (./cache, ./reports)."""
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    config = write(tmp_path, settings_toml())
    return config, report(cli, config)


def _section_rows(md: str, run_id: str) -> dict[str, list[str]]:
    """The split table (train/validation/test -> cells) of the run section naming ``run_id``."""
    sections = re.split(r"^##+ ", md, flags=re.M)
    [section] = [s for s in sections if s.startswith("Run ") and f"`{run_id}`" in s]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("train", "validation", "test"):
            rows[cells[0]] = cells[1:]
    return rows


def test_report_numbers_equal_evaluate_and_links_resolve(cli, tmp_path, study):
    _, doc = study
    md_path, html_path = tmp_path / "reports" / "report.md", tmp_path / "reports" / "report.html"
    assert md_path.is_file() and html_path.is_file()
    assert {k: (tmp_path / v).resolve() for k, v in doc["paths"].items()} == {
        "report.md": md_path.resolve(),
        "report.html": html_path.resolve(),
    }
    md = md_path.read_text()
    assert len(doc["runs"]) == len(RUNS)
    assert [(r["config"]["lam"], r["config"]["eta"]) for r in doc["runs"]] == RUNS
    accuracies = set()
    for run in doc["runs"]:
        ev = cli("evaluate", "--run", run["run_id"], "--json")
        assert ev.exit_code == 0, ev.stderr
        metrics = json.loads(ev.stdout)
        assert metrics["run_id"] == run["run_id"]
        rows = _section_rows(md, run["run_id"])
        for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
            m = metrics[split]
            images, loss, cost, acc = rows[name]
            assert images == str(m["n"])
            lo, hi = m["accuracy_ci"]  # with its 95 % Wilson interval
            assert (loss, cost, acc) == (
                f"{m['loss']:.4f}",
                f"{m['cost']:.4f}",
                f"{m['accuracy']:.4f} \\[{lo:.4f}, {hi:.4f}\\]",
            )
            assert run["metrics"][split] == m
            accuracies.add(m["accuracy"])
        # the comparison table row carries the same three accuracies
        row = next(line for line in md.splitlines() if line.endswith(f"`{run['run_id']}` |"))
        cells = [c.strip().strip("*").replace(" ★", "") for c in row.strip().strip("|").split("|")]
        header = next(line for line in md.splitlines() if line.startswith("| run | λ | η |"))
        at = [c.strip() for c in header.strip().strip("|").split("|")].index("train acc.")
        shown = [c.split(" ")[0].strip("*") for c in cells[at : at + 3]]  # each then its interval
        assert shown == [f"{metrics[s]['accuracy']:.4f}" for s in ("train", "val", "test")]
    assert all(0 < a < 1 for a in accuracies)  # the numbers compared are not all 1.0000

    # figure links in report.md exist relative to it: 5 per run
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5 * len(RUNS) + 2  # and the comparison's curves and weights grid
    for link in links:
        target = md_path.parent / link
        assert target.is_file(), link
        assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    html = html_path.read_text()
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert refs and not [r for r in refs if re.match(r"\s*(https?:)?//", r, flags=re.I)]
    imgs = re.findall(r"<img\b[^>]*>", html, flags=re.I)
    assert len(imgs) == 5 * len(RUNS) + 2
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', img) for img in imgs)
    assert "http://" not in html and "https://" not in html

    # gradcheck settings from the TOML reached the report
    assert doc["gradcheck"]["n_samples"] == 10 and doc["gradcheck"]["max_error"] <= 1e-6


def test_second_report_computes_nothing_and_rewrites_nothing(cli, tmp_path, study):
    config, first = study
    files = {name: (tmp_path / "reports" / name).read_bytes() for name in ("report.md", "report.html")}
    figures = {p: p.read_bytes() for p in (tmp_path / "reports" / "figures").rglob("*.png")}
    assert len(figures) == 5 * len(RUNS) + 2
    # the first report computed every stage once (plus the parallel training)
    assert {s for s, _ in computed(first)} == {"gradcheck", "train", "evaluate", "plot", "comparison", "report"}

    second = report(cli, config)
    assert computed(second) == []
    assert {s["status"] for s in second["stages"]} == {"hit"}
    assert {s["stage"] for s in second["stages"]} >= {"gradcheck", "train", "evaluate", "plot", "comparison", "report"}
    assert {name: (tmp_path / "reports" / name).read_bytes() for name in files} == files
    assert {p: p.read_bytes() for p in figures} == figures
    assert second["runs"] == first["runs"]


def test_editing_one_setting_recomputes_only_that_run_and_the_report(cli, tmp_path, study):
    config, first = study
    old_keys = {s["key"] for s in first["stages"]}
    edited = list(RUNS)
    edited[1] = (0.5, RUNS[1][1])
    config.write_text(settings_toml(edited))
    doc = report(cli, config)

    changed = doc["runs"][1]["run_id"]
    assert changed not in {r["run_id"] for r in first["runs"]}
    assert [r["run_id"] for i, r in enumerate(doc["runs"]) if i != 1] == [
        r["run_id"] for i, r in enumerate(first["runs"]) if i != 1
    ]
    done = computed(doc)
    assert sorted(s for s, _ in done) == ["comparison", "evaluate", "plot", "report", "train"]
    assert ("train", changed) in done
    assert not {k for _, k in done} & old_keys
    hits = {(s["stage"], s["key"]) for s in doc["stages"] if s["status"] == "hit"}
    for run in (doc["runs"][0], doc["runs"][2]):
        assert ("train", run["run_id"]) in hits
    [gradcheck_key] = {s["key"] for s in first["stages"] if s["stage"] == "gradcheck"}
    assert ("gradcheck", gradcheck_key) in hits
    assert doc["runs"][1]["config"]["lam"] == 0.5
    md = (tmp_path / "reports" / "report.md").read_text()
    assert f"`{changed}`" in md


def test_jobs_2_and_jobs_1_give_identical_weights_and_numbers(cli, tmp_path, tiny_archive):
    config = write(tmp_path, settings_toml())
    docs = {}
    for jobs in ("1", "2"):
        cache, reports = tmp_path / f"cache{jobs}", tmp_path / f"reports{jobs}"
        assert cli("fetch", "--source", tiny_archive, "--cache-dir", cache, "--quiet").exit_code == 0
        docs[jobs] = report(cli, config, "--jobs", jobs, "--cache-dir", cache, "--reports-dir", reports)
        trained = [k for s, k in computed(docs[jobs]) if s == "train"]
        assert sorted(trained) == sorted(r["run_id"] for r in docs[jobs]["runs"])  # each trained once
    one, two = docs["1"], docs["2"]
    assert [r["run_id"] for r in one["runs"]] == [r["run_id"] for r in two["runs"]]
    for a, b in zip(one["runs"], two["runs"]):
        assert a["metrics"] == b["metrics"]
        assert a["history"] == b["history"]
        wa = Store(tmp_path / "cache1").load("train", a["run_id"]).payload
        wb = Store(tmp_path / "cache2").load("train", b["run_id"]).payload
        assert np.array_equal(wa["W"], wb["W"]) and np.array_equal(wa["b"], wb["b"])

    # the reports differ at most in their creation time and the measured training times
    def strip(text):
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*", "<created>", text)
        return re.sub(r"Training took [^|]*? s\.", "Training took <t>.", text)

    md1 = strip((tmp_path / "reports1" / "report.md").read_text())
    md2 = strip((tmp_path / "reports2" / "report.md").read_text())
    assert md1 == md2


@pytest.mark.parametrize(
    "text, key",
    [
        (settings_toml() + "\n[extra]\nx = 1\n", "extra"),
        ("[[run]]\nlamda = 0.1\neta = 0.001\n", "lamda"),
        ('[[run]]\nlam = 0.1\neta = "fast"\n', "eta"),
        ("[[run]]\nlam = 0.1\neta = -0.001\n", "eta"),
        ("[defaults]\nn_epochs = 2\n", "run"),
        ("[[run]]\nlam = 0.1\neta = 0.001\nn_epochs = 2.5\n", "n_epochs"),
        ("[[run]]\neta = 0.001\n", "lam"),
        ("[gradcheck]\nn_sample = 10\n[[run]]\nlam = 0.1\neta = 0.001\n", "n_sample"),
        # every [gradcheck] key is checked as `cifarcli gradcheck` checks its options (these crashed or passed)
        ("[gradcheck]\nlams = []\n[[run]]\nlam = 0.1\neta = 0.001\n", "lams"),
        ('[gradcheck]\nlams = "abc"\n[[run]]\nlam = 0.1\neta = 0.001\n', "lams"),
        ("[gradcheck]\nlams = [nan]\n[[run]]\nlam = 0.1\neta = 0.001\n", "lams"),
        ('[gradcheck]\nn_samples = "abc"\n[[run]]\nlam = 0.1\neta = 0.001\n', "n_samples"),
        ("[gradcheck]\nn_dims = 0.5\n[[run]]\nlam = 0.1\neta = 0.001\n", "n_dims"),
        ("[gradcheck]\nh = inf\n[[run]]\nlam = 0.1\neta = 0.001\n", "h"),
        ("[gradcheck]\nseed = 1.5\n[[run]]\nlam = 0.1\neta = 0.001\n", "seed"),
        ("[[run]]\nlam = 0.1\neta = 0.001\nn_epochs = 100000000\n", "n_epochs"),
        ("[[run]]\nlam = 0.1\neta = 0.001\nseed = 99999999999999999999\n", "seed"),
    ],
)
def test_settings_errors_are_one_line_exit_2(cli, tmp_path, text, key):
    config = write(tmp_path, text)
    result = cli("report", "--config", config)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert key in lines[0] and "r.toml" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "cache").exists()  # rejected before any work


def test_settings_file_not_toml_or_missing(cli, tmp_path):
    bad = write(tmp_path, "[[run]\nlam = ")
    for path in (bad, tmp_path / "missing.toml"):
        result = cli("report", "--config", path)
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1 and path.name in result.stderr


def test_default_settings_are_the_studys_four():
    settings = load_settings(None)
    assert [(c.lam, c.eta) for c in settings.runs] == [(0, 0.1), (0, 0.001), (0.1, 0.001), (1, 0.001)]
    assert all(c.n_epochs == 40 and c.n_batch == 100 for c in settings.runs)
    assert all((c.seed, c.split, c.dtype) == (42, "seed", "float32") for c in settings.runs)
    assert settings.gradcheck.lams == (0.0, 0.1)


def test_toml_defaults_apply_and_runs_override(tmp_path):
    path = write(
        tmp_path,
        "[defaults]\nn_epochs = 3\nn_batch = 50\n[[run]]\nlam = 0\neta = 0.01\n"
        "[[run]]\nlam = 1\neta = 0.001\nn_epochs = 7\n",
    )
    settings = load_settings(path)
    assert [(c.lam, c.eta, c.n_epochs, c.n_batch) for c in settings.runs] == [(0, 0.01, 3, 50), (1, 0.001, 7, 50)]
    assert settings.gradcheck.n_samples == 100


def test_parallel_training_after_a_change_of_folder_writes_to_this_cache(cli, tmp_path, tiny_archive, monkeypatch):
    """joblib reuses its worker processes across reports: a relative ./cache must still mean this folder."""
    keys = {}
    for name, runs in (("a", RUNS[:2]), ("b", [(0.0, 0.0005), (0.5, 0.001)])):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)
        assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
        doc = report(cli, write(folder, settings_toml(runs)), "--jobs", "2")
        keys[name] = [r["run_id"] for r in doc["runs"]]
        trained = [k for s, k in computed(doc) if s == "train"]
        assert sorted(trained) == sorted(keys[name])  # each run trained once, by a worker
        assert sorted(row["key"] for row in upkeep.ls(Store(folder / "cache"), "train")) == sorted(keys[name])
    assert sorted(row["key"] for row in upkeep.ls(Store(tmp_path / "a" / "cache"), "train")) == sorted(keys["a"])


# -- a run that diverges ----------------------------------------------------------------


def test_a_diverged_run_is_a_section_and_the_rest_of_the_report_is_written(cli, tmp_path, tiny_archive):
    """eta = 1e300 crashed the report (report.py:144); now its section says so and the report is written, exit 0."""
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    config = write(tmp_path, settings_toml([(0.0, 1e300), (0.1, 0.0003)]))
    result = cli("report", "--config", config, "--json")
    assert result.exit_code == 0, result.stderr
    assert "diverged at epoch 1" in result.stderr  # a notice naming the run
    doc = json.loads(result.stdout)
    diverged, fine = doc["runs"]
    assert diverged["diverged_at"] == 1 and diverged["metrics"] is None and diverged["figures"] == {}
    assert len(diverged["history"]["train_cost"]) == 2 and diverged["history"]["train_cost"][-1] is None  # NaN
    assert fine["diverged_at"] is None and fine["metrics"]["test"]["accuracy"] > 0
    md = (tmp_path / "reports" / "report.md").read_text()
    html = (tmp_path / "reports" / "report.html").read_text()
    for page in (md, html):
        assert "Training diverged at epoch 1" in page and "the run was not evaluated" in page
        assert "History of the diverged run" in page
        assert "Comparison of runs" in page and "Analysis" in page
        assert "was unstable: training diverged at epoch 1" in page
    assert "1 diverged" in md  # the summary line
    # its row, flagged (no roughness or update size: a diverged run has no weights)
    assert f"| diverged | — | — | **⚠ diverged at epoch 1** | `{diverged['run_id']}` |" in md
    assert len(re.findall(r"\| 0 \| [\d.]+ \| [\d.]+ \|", md)) >= 1  # the history table, epoch 0 first


def test_a_report_where_every_run_diverged_is_written_but_exits_1(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    config = write(tmp_path, settings_toml([(0.0, 1e300)]))
    result = cli("report", "--config", config, "--json", "--quiet")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "every run of the report diverged" in lines[0], result.stderr
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 1 and doc["runs"][0]["diverged_at"] == 1 and doc["hint"]
    assert "it diverged at epoch 1" in (tmp_path / "reports" / "report.md").read_text()
