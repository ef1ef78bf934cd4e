"""``cifarcli sweep``: grids, shared run IDs with ``train``, resuming, --jobs, selection, heat-map, Dask, report."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from cifarcli import stages
from cifarcli import sweep as sweeping
from cifarcli.cli import app
from cifarcli.config import GRID as AXES
from cifarcli.config import make_spec, train_fields
from cifarcli.errors import OptionError
from cifarcli.options import parse_grid

# On the tiny archive (160 training / 40 validation images, n_batch 20) these
# settings give accuracies well inside (0, 1), with ties on validation.
GRID = ("--lam", "0,0.1,1", "--eta", "0.0001,0.0003,0.0005", "--n-epochs", "2", "--n-batch", "20")
SMALL = ("--lam", "0,0.1", "--eta", "0.0003,0.0005", "--n-epochs", "2", "--n-batch", "20")


def sweep_json(cli, *args) -> dict:
    result = cli("sweep", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def load_run(cache: Path, run_id: str):
    return stages.find_run(stages.Workspace(cache), run_id)


# -- grid parsing --------------------------------------------------------------------------------


def spec_of(lam, eta, n_batch=None, n_epochs=None, fixed=None):
    """The spec `cifarcli sweep --lam LAM --eta ETA ...` builds."""
    axes = {
        name: parse_grid(name, text)
        for name, text in (("lam", lam), ("eta", eta), ("n_batch", n_batch), ("n_epochs", n_epochs))
        if text is not None
    }
    return make_spec(axes, fixed)


def test_parse_lists():
    assert parse_grid("lam", " 0, 0.001,1e-2 ,1") == [0.0, 0.001, 0.01, 1.0]
    assert make_spec({"lam": 0, "eta": 0.1, "n_batch": parse_grid("n_batch", "20,40")}).n_batch == (20, 40)
    with pytest.raises(OptionError, match="not an integer"):
        make_spec({"lam": 0, "eta": 0.1, "n_batch": [20.5]})
    spec = spec_of("0,0.1", "0.001", None, "3,5", {"seed": 7})
    assert spec.lam == (0.0, 0.1) and spec.eta == (0.001,) and spec.n_batch == (100,) and spec.n_epochs == (3, 5)
    configs = spec.configs()
    assert [(c.lam, c.n_epochs, c.seed) for c in configs] == [(0.0, 3, 7), (0.0, 5, 7), (0.1, 3, 7), (0.1, 5, 7)]
    assert spec.varying() == ["n_epochs"]


@pytest.mark.parametrize(
    "args, named",
    [
        (("--lam", "", "--eta", "0.1"), "--lam"),
        (("--lam", "0,,1", "--eta", "0.1"), "--lam"),
        (("--lam", "0,abc", "--eta", "0.1"), "--lam"),
        (("--lam", "-1", "--eta", "0.1"), "--lam"),
        (("--lam", "0.1,0.10", "--eta", "0.1"), "--lam"),
        (("--lam", "0", "--eta", "0.1,-0.01"), "--eta"),
        (("--lam", "0", "--eta", "0"), "--eta"),
        (("--lam", "0", "--eta", "nan"), "--eta"),
        (("--lam", "0", "--eta", "0.1", "--n-batch", "20.5"), "--n-batch"),
        (("--lam", "0", "--eta", "0.1", "--n-epochs", "0"), "--n-epochs"),
        (("--lam", "0", "--eta", "0.1", "--split", "nope"), "--split"),
        (("--lam", "0", "--eta", "0.1", "--shufle", "1"), "--shufle"),
        (("--lam", "0", "--eta", "0.1", "--backend", "spark"), "--backend"),
        (("--lam", "0", "--eta", "0.1", "--backend", "dask"), "--scheduler"),
        (("--lam", "0", "--eta", "0.1", "--jobs", "0"), "--jobs"),
    ],
)
def test_bad_grids_are_one_line_exit_2(cli, fetched, args, named):
    result = cli("sweep", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], result.stderr
    assert not (Path("cache") / "train").exists()  # nothing trained before the grid was checked


def sweep_fixed(*args: str) -> dict:
    """The fixed training options `cifarcli sweep --lam 0 --eta 0.1 ARGS` passes on (its command, not run)."""
    sweep = typer.main.get_command(app).commands["sweep"]
    ctx = sweep.make_context("sweep", ["--lam", "0", "--eta", "0.1", *args])
    return {
        name: value
        for name, value in ctx.params.items()
        if name in train_fields() and value is not None and name not in AXES
    }


def test_extra_training_options_follow_trainconfig(cli, fetched):
    assert {"seed", "split", "val_size", "dtype", "shuffle"} <= set(train_fields()) and set(AXES) <= set(train_fields())
    assert sweep_fixed("--val-size=500", "--seed", "3", "--shuffle") == {"val_size": 500, "seed": 3, "shuffle": True}
    assert sweep_fixed("--no-shuffle", "--loss", "svm") == {"shuffle": False, "loss": "svm"}
    assert set(train_fields()) <= {p.name for p in typer.main.get_command(app).commands["sweep"].params}
    for args, message in (
        (("--nope", "1"), "No such option: --nope"),
        (("--seed", "1,2"), "--seed: takes one value in a sweep, got '1,2'"),
        (("--seed", "x"), "--seed: 'x' is not a valid int"),
        (("stray",), "Got unexpected extra argument(s) (stray)"),
    ):
        result = cli("sweep", "--lam", "0", "--eta", "0.1", *args)
        assert result.exit_code == 2 and result.stderr.startswith(f"error: {message}"), (args, result.stderr)


# -- runs shared with `train`, resuming ---------------------------------------------------------


def test_sweep_run_ids_are_train_run_ids(cli, fetched):
    doc = sweep_json(cli, *SMALL, "--seed", "7")
    assert doc["n_points"] == 4 and len(doc["points"]) == 4
    assert sorted(doc["computed"]) == sorted(p["run_id"] for p in doc["points"])
    for p in doc["points"]:
        assert p["config"]["seed"] == 7
        trained = cli(
            "train", "--lam", p["lam"], "--eta", p["eta"], "--n-epochs", 2, "--n-batch", 20, "--seed", 7, "--json"
        )
        assert trained.exit_code == 0, trained.stderr
        single = json.loads(trained.stdout)
        assert single["run_id"] == p["run_id"] and single["cached"] is True
    again = sweep_json(cli, *SMALL, "--seed", "7")
    assert again["computed"] == [] and {p["status"] for p in again["points"]} == {"cached"}
    assert again["sweep"] == doc["sweep"] and again["best"] == doc["best"]


def test_interrupted_sweep_computes_only_missing_points(workspace):
    spec = spec_of("0,0.1", "0.0003,0.0005", "20", "2")
    configs = spec.configs()
    done = {stages.train(workspace, c).key for c in configs[:2]}  # what a stopped sweep left behind
    workspace.events.clear()
    result = sweeping.run_sweep(workspace, spec)
    trained = {k for stage, k, status in workspace.events if stage == "train" and status == "computed"}
    all_ids = {p["run_id"] for p in result["points"]}
    assert done < all_ids and trained == all_ids - done == set(result["computed"])


def test_sweep_killed_mid_way_resumes_with_only_missing_points(tmp_path, tiny_archive):
    """A real kill -9 of a sequential sweep; the rerun trains what is not in the cache, nothing else."""
    cache = tmp_path / "cache"
    base = [sys.executable, "-m", "cifarcli"]
    subprocess.run(
        [*base, "fetch", "--source", str(tiny_archive), "--cache-dir", str(cache), "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    def finished() -> set[str]:  # whole artifacts only: a kill may leave a .tmp-* folder mid-commit
        return {p.parent.name for p in cache.glob("train/*/meta.json") if not p.parent.name.startswith(".")}

    args = [
        "sweep",
        "--lam",
        "0,0.1,1",
        "--eta",
        "0.0001,0.0003",
        "--n-epochs",
        "25",
        "--n-batch",
        "20",
        "--dtype",
        "float64",
        "--jobs",
        "1",
        "--cache-dir",
        str(cache),
        "--reports-dir",
        str(tmp_path / "reports"),
        "--json",
    ]
    proc = subprocess.Popen([*base, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(finished()) < 2:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    before = finished()
    rerun = subprocess.run([*base, *args], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert set(doc["computed"]) == {p["run_id"] for p in doc["points"]} - before
    assert {p["run_id"] for p in doc["points"] if p["status"] == "cached"} == before


# -- parallel and selection ------------------------------------------------------------------


def test_jobs_2_equals_jobs_1_bit_for_bit(cli, tmp_path, tiny_archive):
    docs = {}
    for jobs in (1, 2):
        cache = tmp_path / f"cache{jobs}"
        assert cli("fetch", "--source", tiny_archive, "--cache-dir", cache, "--quiet").exit_code == 0
        docs[jobs] = sweep_json(
            cli, *SMALL, "--jobs", jobs, "--cache-dir", cache, "--reports-dir", tmp_path / f"reports{jobs}"
        )
    one, two = docs[1], docs[2]
    assert [p["run_id"] for p in one["points"]] == [p["run_id"] for p in two["points"]]
    assert one["best"] == two["best"] and one["sweep"] == two["sweep"] and two["jobs"] == 2
    for p in one["points"]:
        a, b = load_run(tmp_path / "cache1", p["run_id"]), load_run(tmp_path / "cache2", p["run_id"])
        assert a.payload["W"].tobytes() == b.payload["W"].tobytes()
        assert a.payload["b"].tobytes() == b.payload["b"].tobytes()
        assert a.payload["history"] == b.payload["history"]
    assert Path(one["heatmap"]).read_bytes() == Path(two["heatmap"]).read_bytes()


def test_best_is_chosen_on_validation_never_on_test(cli, fetched):
    doc = sweep_json(cli, *GRID)
    points = doc["points"]
    vals = [p["val_acc"] for p in points]
    assert vals == sorted(vals, reverse=True)
    best = doc["best"]
    assert best["run_id"] == points[0]["run_id"] and best["val_acc"] == pytest.approx(max(vals), abs=1e-9)
    tests = {}
    for p in points:
        ev = cli("evaluate", "--run", p["run_id"], "--json")
        assert ev.exit_code == 0, ev.stderr
        tests[p["run_id"]] = json.loads(ev.stdout)["test"]["accuracy"]
    assert best["test_acc"] == tests[best["run_id"]]
    # On this grid three settings tie on validation (0.6) and differ on test: the tie goes to grid
    # order (λ=0), while the test set would have picked λ=1 — selection never looks at the test set.
    assert (best["config"]["lam"], best["config"]["eta"]) == (0.0, 0.0005)
    assert max(tests, key=tests.get) != best["run_id"]


def test_only_the_best_point_is_evaluated(workspace):
    spec = spec_of("0,0.1", "0.0003,0.0005", "20", "2")
    result = sweeping.run_sweep(workspace, spec)
    evaluated = [k for stage, k, status in workspace.events if stage == "evaluate"]
    assert len(evaluated) == 1 and workspace.cache_listing("evaluate")[0]["key"] == evaluated[0]
    assert result["best"]["run_id"] == result["points"][0]["run_id"]


def test_ranking_rule():
    points = [
        {"index": 0, "val_acc": 0.30, "diverged_at": None},
        {"index": 1, "val_acc": None, "diverged_at": 3},
        {"index": 2, "val_acc": 0.35, "diverged_at": None},
        {"index": 3, "val_acc": 0.35, "diverged_at": None},
    ]
    assert [p["index"] for p in sorted(points, key=sweeping.rank)] == [2, 3, 0, 1]


def test_diverged_points_are_shown_and_never_selected(cli, fetched):
    doc = sweep_json(cli, "--lam", "0", "--eta", "0.0005,1e300", "--n-epochs", "2", "--n-batch", "20")
    diverged = [p for p in doc["points"] if p["diverged_at"] is not None]
    assert len(diverged) == 1 and diverged[0]["eta"] == 1e300 and diverged[0]["val_acc"] is None
    assert doc["points"][-1]["eta"] == 1e300  # listed last
    assert doc["best"]["config"]["eta"] == 0.0005
    text = cli("sweep", "--lam", "0", "--eta", "0.0005,1e300", "--n-epochs", "2", "--n-batch", "20")
    assert text.exit_code == 0 and "diverged" in text.stdout
    every = cli("sweep", "--lam", "0", "--eta", "1e300", "--n-epochs", "2", "--n-batch", "20", "--json")
    assert every.exit_code == 1 and json.loads(every.stdout)["best"] is None


# -- heat-map and JSON ------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_heatmap_png_is_cached_and_restored(cli, fetched, tmp_path):
    doc = sweep_json(cli, *GRID)
    path = Path(doc["heatmap"])
    assert path == Path("reports") / "figures" / f"sweep-{doc['sweep']}" / "heatmap.png"
    assert png_size(path) == (960, 720)
    first = path.read_bytes()
    path.unlink()
    again = sweep_json(cli, *GRID)
    assert Path(again["heatmap"]).read_bytes() == first  # restored from the cache, not redrawn
    assert ("sweep", doc["sweep"]) in [
        (r["stage"], r["key"]) for r in json.loads(cli("cache", "ls", "--stage", "sweep", "--json").stdout)["artifacts"]
    ]


def test_heatmap_takes_the_max_over_n_batch_and_epochs(workspace):
    spec = spec_of("0,0.1", "0.0003,0.0005", "20,40", "1,2")
    result = sweeping.run_sweep(workspace, spec)
    values = sweeping.heatmap_matrix(spec, result["points"])
    for i, lam in enumerate(spec.lam):
        for j, eta in enumerate(spec.eta):
            cell = [p["val_acc"] for p in result["points"] if (p["lam"], p["eta"]) == (lam, eta)]
            assert len(cell) == 4 and values[i, j] == max(cell)
    assert "max over n_batch and epochs" in sweeping.heatmap_title(spec)
    assert "max over" not in sweeping.heatmap_title(spec_of("0", "0.1"))


def test_json_is_one_document_with_every_point_and_the_best(cli, fetched):
    result = cli("sweep", *SMALL, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)  # exactly one document: json.loads rejects trailing text
    assert {
        "sweep",
        "grid",
        "fixed",
        "backend",
        "jobs",
        "selection",
        "n_points",
        "computed",
        "points",
        "best",
        "heatmap",
    } <= set(doc)
    assert doc["grid"] == {"lam": [0.0, 0.1], "eta": [0.0003, 0.0005], "n_batch": [20], "n_epochs": [2]}
    assert doc["selection"] == "validation accuracy" and "_best_run" not in doc
    for p in doc["points"]:
        assert {
            "run_id",
            "lam",
            "eta",
            "n_batch",
            "n_epochs",
            "config",
            "train_acc",
            "val_acc",
            "train_cost",
            "val_cost",
            "diverged_at",
            "status",
        } <= set(p)
    assert {"run_id", "config", "train_acc", "val_acc", "test_acc", "metrics"} <= set(doc["best"])


# -- Dask --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_sweep_equals_local_sweep(cli, tmp_path, tiny_archive):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    for name in ("local", "dask"):
        assert cli("fetch", "--source", tiny_archive, "--cache-dir", tmp_path / name, "--quiet").exit_code == 0
    local = sweep_json(cli, *SMALL, "--cache-dir", tmp_path / "local", "--reports-dir", tmp_path / "rl")
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        remote = sweep_json(
            cli,
            *SMALL,
            "--backend",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
            "--cache-dir",
            tmp_path / "dask",
            "--reports-dir",
            tmp_path / "rd",
        )
    assert remote["backend"] == "dask" and sorted(remote["computed"]) == sorted(local["computed"])
    assert [p["run_id"] for p in remote["points"]] == [p["run_id"] for p in local["points"]]
    assert remote["best"] == local["best"] and remote["sweep"] == local["sweep"]
    for p in local["points"]:
        a, b = load_run(tmp_path / "local", p["run_id"]), load_run(tmp_path / "dask", p["run_id"])
        assert a.payload["W"].tobytes() == b.payload["W"].tobytes()
        assert a.payload["b"].tobytes() == b.payload["b"].tobytes()
        assert a.payload["history"] == b.payload["history"]
        assert a.meta["params"] == b.meta["params"]
        assert a.meta["info"]["final"] == b.meta["info"]["final"]
    # The runs the cluster trained are ordinary runs: `train` finds them cached.
    p = local["points"][0]
    again = cli(
        "train",
        "--lam",
        p["lam"],
        "--eta",
        p["eta"],
        "--n-epochs",
        2,
        "--n-batch",
        20,
        "--cache-dir",
        tmp_path / "dask",
        "--json",
    )
    assert json.loads(again.stdout)["cached"] is True


def test_dask_unreachable_scheduler_is_exit_1_naming_it(cli, fetched, monkeypatch):
    pytest.importorskip("dask.distributed")
    monkeypatch.setenv("CIFARCLI_DASK_TIMEOUT", "1")
    address = f"tcp://127.0.0.1:{free_port()}"
    result = cli("sweep", *SMALL, "--scheduler", address)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0], result.stderr


def test_dask_missing_is_exit_2_with_install_hint(cli, fetched, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    result = cli("sweep", *SMALL, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:8786")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'cifarcli[dask]'" in lines[0], result.stderr


# -- report --------------------------------------------------------------------------------------


REPORT_TOML = """[defaults]
n_epochs = 2
n_batch = 20

[gradcheck]
n_samples = 10

[[run]]
lam = 0.0
eta = 0.0003

[sweep]
lam = [0, 0.1]
eta = [0.0003, 0.0005]
"""


def test_report_with_a_sweep_table(cli, fetched, tmp_path):
    config = tmp_path / "r.toml"
    config.write_text(REPORT_TOML)
    result = cli("report", "--config", config, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    swept = doc["sweep"]
    assert len(swept["points"]) == 4 and swept["best_run_id"] == swept["points"][0]["run_id"]
    assert swept["best"]["run_id"] == swept["best_run_id"] and swept["best"]["metrics"]["test"]["accuracy"]
    assert swept["heatmap"] == f"figures/sweep-{swept['key']}/heatmap.png"
    assert png_size(tmp_path / "reports" / swept["heatmap"]) == (960, 720)
    # The same points as `cifarcli sweep` with the same grid.
    direct = sweep_json(cli, *SMALL)
    assert direct["sweep"] == swept["key"] and direct["best"]["run_id"] == swept["best_run_id"]
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "## Hyper-parameter sweep" in md and f"]({swept['heatmap']})" in md
    assert f"### Chosen setting: λ={swept['best']['config']['lam']:g}" in md
    for p in swept["points"]:
        assert f"`{p['run_id']}`" in md
    for name in ("loss", "accuracy", "weights", "confusion", "probabilities"):
        assert f"figures/{swept['best_run_id']}/{name}.png" in md
    page = (tmp_path / "reports" / "report.html").read_text()
    assert 'id="sweep"' in page and "Figure not available" not in page
    assert page.count("data:image/png;base64,") == 2 + 5 + 1 + 5  # comparison, the run, the heat-map, the chosen run
    # Nothing changed: all cache hits.
    again = json.loads(cli("report", "--config", config, "--json").stdout)
    assert not [s for s in again["stages"] if s["status"] == "computed"]


@pytest.mark.parametrize(
    "table, named",
    [
        ("[sweep]\nlam = [0]\neta = [0.1]\nlr = 1\n", "'lr'"),
        ("[sweep]\nlam = []\neta = [0.1]\n", "lam"),
        ("[sweep]\nlam = [0, 0]\neta = [0.1]\n", "lam"),
        ("[sweep]\nlam = [0]\neta = [-0.1]\n", "eta"),
        ('[sweep]\nlam = [0]\neta = ["x"]\n', "eta"),
        ("[sweep]\neta = [0.1]\n", "lam"),
        ('[sweep]\nlam = [0]\neta = [0.1]\nsplit = "nope"\n', "split"),
    ],
)
def test_bad_sweep_table_is_one_line(cli, fetched, tmp_path, table, named):
    config = tmp_path / "bad.toml"
    config.write_text(table)
    result = cli("report", "--config", config)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[sweep]" in lines[0] and named in lines[0], result.stderr
