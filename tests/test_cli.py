"""The CLI contract through the real Typer app: help, the cache commands, --json, exit codes, gates.

Each test works in its own tmp_path (``cli`` fixture) on the tiny generated
archive, with real joblib artifacts on disk and short trainings (1-2 epochs).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from cifarcli import stages
from cifarcli.config import TrainConfig

COMMANDS = ("fetch", "gradcheck", "train", "evaluate", "plot", "report", "cache")
SHORT = ("--n-epochs", "2")
SMALL_GRADCHECK = ("--n-samples", "5", "--n-dims", "20")
SETTINGS = """\
[defaults]
n_epochs = 2

[gradcheck]
n_samples = 5
n_dims = 20

[[run]]
lam = 0.0
eta = 0.001

[[run]]
lam = 0.1
eta = 0.001
"""


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _offline(offline):
    """Every test here: a wrong fallback to the official download fails at once (conftest.offline)."""


def ok_json(result) -> dict:
    """The one JSON document of a successful --json run."""
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict) and "error" not in doc
    return doc


def error_line(result, *words: str) -> str:
    """The single ``error:`` line on stderr (no traceback anywhere), containing every word."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def failed_json(result, code: int, *words: str) -> dict:
    """A failed --json run: exit ``code``, stdout exactly one document with the error, one error line."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == code and "hint" in doc
    for word in words:
        assert word in doc["error"], (word, doc["error"])
    error_line(result, *words)
    return doc


def artifacts(cli, stage: str | None = None) -> list[dict]:
    args = ("cache", "ls", "--json") + (("--stage", stage) if stage else ())
    return ok_json(cli(*args))["artifacts"]


def keys(cli, stage: str) -> list[str]:
    return [row["key"] for row in artifacts(cli, stage)]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def run(cli, fetched) -> dict:
    """One short training run (λ=0, η=0.001, 2 epochs); returns train's JSON document."""
    return ok_json(cli("train", *SHORT, "--json"))


@pytest.fixture
def settings_file(tmp_path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(SETTINGS)
    return path


def payload_of(run_id: str) -> Path:
    return Path("cache/train") / run_id / "payload.joblib"


# --------------------------------------------------------------------------- help and start-up


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f" {name} " in result.stdout, name
    cache_help = cli("cache", "--help")
    assert cache_help.exit_code == 0
    for name in ("ls", "clear", "gc", "verify"):
        assert f" {name} " in cache_help.stdout, name


def test_no_arguments_shows_help(cli):
    result = cli()
    assert "fetch" in result.stdout + result.stderr and "Usage" in result.stdout + result.stderr


def _subprocess_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "CLICOLOR_FORCE")}
    env["CIFARCLI_CACHE_DIR"] = "cache"
    return env


def test_help_imports_no_heavy_modules(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; sys.argv = ['cifarcli', '--help']; from cifarcli.cli import main; main()",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fetch" in result.stdout
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "cifarcli" in imported and "typer" in imported  # the measurement itself works
    for heavy in ("matplotlib", "joblib", "numpy", "PIL"):
        assert heavy not in imported, f"`cifarcli --help` imports {heavy}"


def test_python_dash_m_works(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cifarcli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_subprocess_env(),
    )
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


def test_python_dash_m_exit_codes_and_plain_output(tmp_path, tiny_archive):
    """A real process with pipes (not a terminal): exit codes, one JSON document, no control characters."""

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "cifarcli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=_subprocess_env(),
        )

    fetched = run("fetch", "--source", str(tiny_archive), "--json")
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["n_train"] == 1000
    trained = run("train", "--n-epochs", "2")
    assert trained.returncode == 0, trained.stderr
    assert "run ID" in trained.stdout
    assert "\x1b" not in trained.stdout and "\x1b" not in trained.stderr
    bad = run("train", "--eta", "0")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "error: --eta: the learning rate must be a finite number > 0, got 0.0 (the study uses 0.001 (and 0.1))"
    ]


# --------------------------------------------------------------------------- cache ls / verify / clear / gc


def test_cache_ls_lists_the_dataset_then_runs(cli, fetched):
    rows = artifacts(cli)
    assert [(r["stage"], r["key"]) for r in rows] == [("dataset", fetched["dataset"])]
    assert rows[0]["info"]["n_train"] == 1000 and rows[0]["size"] > 1000 * 3072

    first = ok_json(cli("train", *SHORT, "--json"))
    second = ok_json(cli("train", *SHORT, "--lam", "0.1", "--json"))
    listing = ok_json(cli("cache", "ls", "--json"))
    assert listing["cache_dir"] == "cache"
    assert sorted((r["stage"], r["key"]) for r in listing["artifacts"]) == sorted(
        [("dataset", fetched["dataset"]), ("train", first["run_id"]), ("train", second["run_id"])]
    )
    train_rows = artifacts(cli, "train")
    assert sorted(r["key"] for r in train_rows) == sorted([first["run_id"], second["run_id"]])
    by_key = {r["key"]: r for r in train_rows}
    assert by_key[second["run_id"]]["params"]["lam"] == 0.1
    assert by_key[first["run_id"]]["params"]["n_epochs"] == 2


def test_cache_ls_table_names_the_runs(cli, run):
    result = cli("cache", "ls", "--stage", "train")
    assert result.exit_code == 0
    assert run["run_id"] in result.stdout and "dataset" not in result.stdout


def test_cache_ls_reads_only_meta_json(cli, run):
    # A payload that would not even load does not disturb a listing.
    payload_of(run["run_id"]).write_bytes(b"not a joblib file")
    assert keys(cli, "train") == [run["run_id"]]


def test_cache_verify_rehashes_and_names_the_damaged_artifact(cli, fetched, run):
    clean = ok_json(cli("cache", "verify", "--json"))
    assert clean == {"checked": 2, "damaged": []}
    assert cli("cache", "verify").exit_code == 0

    payload = payload_of(run["run_id"])
    stat = payload.stat()
    raw = bytearray(payload.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    payload.write_bytes(bytes(raw))
    os.utime(payload, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: only a re-hash sees it
    assert payload.stat().st_mtime_ns == stat.st_mtime_ns and payload.stat().st_size == stat.st_size

    result = cli("cache", "verify", "--json")
    doc = failed_json(result, 1, "1 damaged artifact")
    assert doc["checked"] == 2
    assert doc["damaged"] == [
        {"stage": "train", "key": run["run_id"], "ok": False, "reason": "payload checksum does not match meta.json"}
    ]

    table = cli("cache", "verify")
    assert table.exit_code == 1
    assert run["run_id"] in table.stdout and "checksum does not match" in table.stdout
    error_line(table, "1 damaged artifact")

    # Only the train stage is damaged.
    assert ok_json(cli("cache", "verify", "--stage", "dataset", "--json")) == {"checked": 1, "damaged": []}


def test_cache_clear_of_one_stage_keeps_the_others(cli, tiny_archive, fetched, run):
    evaluated = ok_json(cli("evaluate", *SHORT, "--json"))
    assert evaluated["run_id"] == run["run_id"]
    ok_json(cli("gradcheck", *SMALL_GRADCHECK, "--json"))
    before = {r["stage"] for r in artifacts(cli)}
    assert before == {"dataset", "train", "evaluate", "gradcheck"}

    assert ok_json(cli("cache", "clear", "--stage", "train", "--yes", "--json")) == {"removed": 1}
    assert {r["stage"] for r in artifacts(cli)} == {"dataset", "evaluate", "gradcheck"}
    assert not Path("cache/train", run["run_id"]).exists()
    assert Path("cache/dataset", fetched["dataset"], "payload.joblib").is_file()
    assert ok_json(cli("cache", "verify", "--json"))["damaged"] == []

    # Everything else is still used: a new fetch is a hit, the run is trained again identically.
    assert ok_json(cli("fetch", "--source", tiny_archive, "--json"))["cached"] is True
    again = ok_json(cli("train", *SHORT, "--json"))
    assert again["run_id"] == run["run_id"] and again["cached"] is False
    assert again["history"] == run["history"]


def test_cache_clear_everything(cli, run):
    result = cli("cache", "clear", "--yes")
    assert result.exit_code == 0 and "removed 2 artifact(s)" in result.stdout
    assert artifacts(cli) == []


def test_cache_gc_removes_a_leftover_temporary_folder(cli, run):
    leftover = Path("cache/train") / ".tmp-0123456789abcdef-x1y2z3"
    leftover.mkdir()
    (leftover / "payload.joblib").write_bytes(b"half written")
    doc = ok_json(cli("cache", "gc", "--json"))
    assert doc["removed"] == [str(leftover)]
    assert not leftover.exists()
    assert keys(cli, "train") == [run["run_id"]]
    assert ok_json(cli("cache", "verify", "--json"))["damaged"] == []
    assert ok_json(cli("cache", "gc", "--json")) == {"removed": []}


def test_cache_dir_option_and_environment_variable(cli, tiny_archive, monkeypatch):
    ok_json(cli("fetch", "--source", tiny_archive, "--cache-dir", "elsewhere", "--json"))
    assert len(list(Path("elsewhere/dataset").iterdir())) == 1 and not Path("cache").exists()
    monkeypatch.setenv("CIFARCLI_CACHE_DIR", "from-env")
    doc = ok_json(cli("fetch", "--source", tiny_archive, "--json"))
    assert (Path("from-env/dataset") / doc["dataset"] / "meta.json").is_file()
    assert ok_json(cli("cache", "ls", "--json"))["cache_dir"] == "from-env"


# --------------------------------------------------------------------------- damage and determinism


def test_a_truncated_payload_is_reported_and_recomputed_identically(cli, run):
    payload = payload_of(run["run_id"])
    W = np.array(joblib.load(payload)["W"])
    meta_sha = json.loads((payload.parent / "meta.json").read_text())["payload_sha256"]
    assert sha256(payload) == meta_sha
    size = payload.stat().st_size
    with open(payload, "r+b") as handle:
        handle.truncate(size // 2)

    result = cli("train", *SHORT, "--json")
    doc = ok_json(result)
    assert doc["run_id"] == run["run_id"] and doc["cached"] is False
    notices = result.stderr.strip().splitlines()
    assert notices == [
        f"damaged artifact train/{run['run_id']}: payload is {size // 2} bytes, "
        f"expected {size}; removing it and recomputing",
        "training λ=0, η=0.001: 2 epochs",
    ]  # the notice, then the phase line of the retraining
    np.testing.assert_array_equal(np.array(joblib.load(payload)["W"]), W)
    assert sha256(payload) == meta_sha
    assert json.loads((payload.parent / "meta.json").read_text())["payload_sha256"] == meta_sha
    assert doc["history"] == run["history"]

    # And from now on it is an ordinary cache hit.
    hit = cli("train", *SHORT, "--json")
    assert ok_json(hit)["cached"] is True and hit.stderr == ""


def test_forced_retraining_is_bit_identical(cli, run):
    payload = payload_of(run["run_id"])
    before = sha256(payload)
    forced = ok_json(cli("train", *SHORT, "--force", "--json"))
    assert forced["cached"] is False and forced["run_id"] == run["run_id"]
    assert sha256(payload) == before


def test_a_second_train_is_a_cache_hit_with_the_same_numbers(cli, run):
    again = ok_json(cli("train", *SHORT, "--json"))
    assert again["cached"] is True
    assert again["run_id"] == run["run_id"] and again["final"] == run["final"]
    assert again["config"] == {
        "lam": 0.0,
        "eta": 0.001,
        "n_epochs": 2,
        "n_batch": 100,
        "seed": 42,
        "split": "seed",
        "dtype": "float32",
    }
    assert again["split_sizes"] == {"train": 160, "val": 40, "test": 200}
    assert again["history"]["epoch"] == [0, 1, 2]


# --------------------------------------------------------------------------- --json for every command


def test_json_success_for_every_command(cli, tiny_archive, settings_file):
    doc = ok_json(cli("fetch", "--source", tiny_archive, "--json"))
    assert doc["n_train"] == 1000

    doc = ok_json(cli("gradcheck", *SMALL_GRADCHECK, "--json"))
    assert doc["n_samples"] == 5 and doc["n_dims"] == 20 and doc["max_error"] < 1e-6
    assert doc["tol"] is None and doc["passed"] is None

    trained = ok_json(cli("train", *SHORT, "--json"))
    assert len(trained["history"]["train_loss"]) == 3 and trained["diverged_at"] is None

    doc = ok_json(cli("evaluate", *SHORT, "--json"))
    assert doc["run_id"] == trained["run_id"]
    assert 0 <= doc["test"]["accuracy"] <= 1 and len(doc["confusion_matrix"]) == 10
    assert sum(map(sum, doc["confusion_matrix"])) == 200

    doc = ok_json(cli("plot", "--run", trained["run_id"], "--json"))
    assert doc["run_id"] == trained["run_id"]
    assert sorted(doc["figures"]) == ["accuracy", "confusion", "loss", "probabilities", "weights"]
    for path in doc["figures"].values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(path).parent == Path("reports/figures") / trained["run_id"]

    doc = ok_json(cli("report", "--config", settings_file, "-j", "1", "--json"))
    assert [r["config"]["lam"] for r in doc["runs"]] == [0.0, 0.1]
    assert all(r["config"]["n_epochs"] == 2 and r["metrics"] for r in doc["runs"])
    assert doc["runs"][0]["run_id"] == trained["run_id"]  # the run trained above is reused
    assert doc["paths"] == {"report.md": "reports/report.md", "report.html": "reports/report.html"}
    assert Path("reports/report.md").read_text().strip() and "<html" in Path("reports/report.html").read_text()

    listing = ok_json(cli("cache", "ls", "--json"))
    assert {r["stage"] for r in listing["artifacts"]} == {
        "dataset",
        "gradcheck",
        "train",
        "evaluate",
        "plot",
        "comparison",
        "report",
    }
    assert ok_json(cli("cache", "verify", "--json"))["damaged"] == []
    assert ok_json(cli("cache", "gc", "--json")) == {"removed": []}
    assert ok_json(cli("cache", "clear", "--stage", "report", "--yes", "--json")) == {"removed": 1}
    assert ok_json(cli("cache", "clear", "--yes", "--json"))["removed"] == len(listing["artifacts"]) - 1


def test_json_failure_of_bad_input_is_exit_2(cli, fetched):
    doc = failed_json(cli("train", "--eta", "-1", "--json"), 2, "--eta", "-1.0")
    assert doc["hint"] == "the study uses 0.001 (and 0.1)"
    failed_json(cli("fetch", "--source", "missing.tar.gz", "--json"), 2, "missing.tar.gz")
    failed_json(cli("evaluate", "--run", "zzzz", "--json"), 2, "'zzzz'")
    failed_json(cli("plot", "--run", "zzzz", "--json"), 2, "'zzzz'")
    failed_json(cli("gradcheck", "--n-samples", "0", "--json"), 2, "--n-samples")
    failed_json(cli("report", "--config", "nope.toml", "--json"), 2, "nope.toml")
    assert keys(cli, "train") == []


def test_json_failure_of_gates_keeps_the_numbers(cli, run):
    doc = failed_json(cli("evaluate", *SHORT, "--min-accuracy", "0.99", "--json"), 1, "below --min-accuracy 0.99")
    assert doc["passed"] is False and doc["min_accuracy"] == 0.99
    assert doc["test"]["accuracy"] < 0.99 and doc["run_id"] == run["run_id"]
    assert f"{doc['test']['accuracy']:.4f}" in doc["error"]

    doc = failed_json(cli("gradcheck", *SMALL_GRADCHECK, "--tol", "1e-30", "--json"), 1, "exceeds --tol 1e-30")
    assert doc["passed"] is False and doc["tol"] == 1e-30 and 0 < doc["max_error"] < 1e-6


def test_json_failure_of_a_diverged_run(cli, fetched):
    result = cli("train", "--lam", "1", "--eta", "1e6", "--n-epochs", "3", "--json")
    doc = failed_json(result, 1, "diverged at epoch 3")
    assert doc["diverged_at"] == 3 and doc["history"]["train_cost"][-1] is None  # NaN/inf written as null
    assert doc["hint"] == "train it with a smaller learning rate η"
    # A diverged run cannot be evaluated; the message says why.
    failed_json(cli("evaluate", "--run", doc["run_id"], "--json"), 1, "diverged at epoch 3")


def test_json_failure_of_cache_verify(cli, run):
    payload_of(run["run_id"]).unlink()
    doc = failed_json(cli("cache", "verify", "--json"), 1, "1 damaged artifact")
    assert doc["damaged"][0]["key"] == run["run_id"] and doc["damaged"][0]["reason"] == "payload is missing"


# --------------------------------------------------------------------------- bad options

BAD_TRAIN_OPTIONS = [
    (("--eta", "0"), "--eta: the learning rate must be a finite number > 0, got 0.0"),
    (("--eta", "-1"), "--eta: the learning rate must be a finite number > 0, got -1.0"),
    (("--eta", "nan"), "--eta: the learning rate must be a finite number > 0, got nan"),
    (("--lam", "-0.1"), "--lam: the regularisation must be a finite number from 0 to 1e+10, got -0.1"),
    (("--lam", "1e300"), "--lam: the regularisation must be a finite number from 0 to 1e+10, got 1e+300"),
    (("--n-batch", "0"), "--n-batch: must be an integer >= 1, got 0"),
    (("--n-batch", "100000"), "--n-batch: 100000 is larger than the training split (160 images)"),
    (("--n-epochs", "0"), "--n-epochs: must be an integer from 1 to 100000, got 0"),
    (("--n-epochs", "1000000"), "--n-epochs: must be an integer from 1 to 100000, got 1000000"),
    (("--split", "nope"), "unknown split 'nope'"),
    (("--dtype", "float16"), "--dtype: unknown dtype 'float16'"),
    (("--seed", "-1"), "--seed: must be an integer from 0 to"),
    (("--seed", str(2**63)), "--seed: must be an integer from 0 to"),
    (("--split", "full", "--val-size", "0"), "--val-size"),
]


@pytest.mark.parametrize("options, message", BAD_TRAIN_OPTIONS, ids=[" ".join(o) for o, _ in BAD_TRAIN_OPTIONS])
def test_bad_training_options_are_one_line_and_exit_2(cli, fetched, options, message):
    result = cli("train", *options, "--n-epochs", "2") if "--n-epochs" not in options else cli("train", *options)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    error_line(result, message)
    assert keys(cli, "train") == []


@pytest.mark.parametrize("command", ["evaluate", "plot"])
def test_stage_commands_validate_training_options_too(cli, fetched, command):
    result = cli(command, "--eta", "0", "--quiet")
    assert result.exit_code == 2 and result.stdout == ""
    error_line(result, "--eta")
    assert keys(cli, "train") == []


@pytest.mark.parametrize("options", [("--eta", "abc"), ("--n-epochs", "two"), ("--nonsense",)])
def test_unparseable_options_are_click_errors_with_exit_2(cli, options):
    result = cli("train", *options)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert options[0] in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, not a usage box
    assert "(see: cifarcli train --help)" in result.stderr
    assert not Path("cache").exists()  # rejected before any work


def test_usage_errors_are_one_line_and_json_with_json(cli):
    result = cli("cache", "ls", "--stage", "nope")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--stage': unknown stage 'nope'")
    assert "(see: cifarcli cache ls --help)" in result.stderr and len(result.stderr.splitlines()) == 1
    unknown = cli("nosuch")
    assert unknown.exit_code == 2 and "(see: cifarcli --help)" in unknown.stderr
    as_json = cli("train", "--eta", "abc", "--json")
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"].startswith("Invalid value for '--eta'")


def test_unknown_run_suggests_cifarcli_runs(cli, run):
    result = cli("evaluate", "--run", "zzzz")
    assert result.exit_code == 2
    line = error_line(result, "no training run 'zzzz'", "list runs with: cifarcli runs")
    assert len(result.stderr.strip().splitlines()) == 1, line


def test_empty_run_id_is_an_unknown_run_not_a_default_training(cli, run):
    result = cli("evaluate", "--run", "", "--quiet")
    assert result.exit_code == 2
    error_line(result, "no training run ''")
    assert keys(cli, "train") == [run["run_id"]]  # nothing was trained


def test_a_unique_prefix_selects_the_run(cli, run):
    doc = ok_json(cli("evaluate", "--run", run["run_id"][:6].upper(), "--json"))
    assert doc["run_id"] == run["run_id"] and doc["config"]["n_epochs"] == 2


def test_an_ambiguous_prefix_is_refused(cli, fetched):
    # Find two seeds whose run IDs share their first hex digit (17 candidates guarantee a pair).
    by_digit: dict[str, list[int]] = {}
    for seed in range(17):
        key = stages.train_key(TrainConfig(lam=0.0, eta=0.001, n_epochs=1, seed=seed), fetched["dataset"])
        by_digit.setdefault(key[0], []).append(seed)
    digit, seeds = next((d, s) for d, s in by_digit.items() if len(s) >= 2)
    made = [ok_json(cli("train", "--n-epochs", "1", "--seed", str(seed), "--json"))["run_id"] for seed in seeds[:2]]
    assert all(key.startswith(digit) for key in made)

    result = cli("evaluate", "--run", digit, "--quiet")
    assert result.exit_code == 2
    error_line(result, f"run ID {digit!r} is ambiguous", made[0], made[1], "type more of the ID")
    assert sorted(keys(cli, "train")) == sorted(made)  # nothing else was trained


def test_find_run_directly_with_two_folders_sharing_a_prefix(tmp_path):
    ws = stages.Workspace(tmp_path / "cache")
    for key in ("abc1000000000000", "abc2000000000000"):
        (tmp_path / "cache" / "train" / key).mkdir(parents=True)
    from cifarcli.errors import CifarError

    with pytest.raises(CifarError, match="ambiguous: abc1000000000000, abc2000000000000"):
        stages.find_run(ws, "abc")
    with pytest.raises(CifarError, match="no training run 'abd'"):
        stages.find_run(ws, "abd")


# --------------------------------------------------------------------------- gates


def test_gradcheck_gate_passes_at_1e_6(cli, fetched):
    result = cli("gradcheck", "--tol", "1e-6")
    assert result.exit_code == 0, result.stderr
    assert "error" not in result.stderr
    doc = ok_json(cli("gradcheck", "--tol", "1e-6", "--json"))
    assert doc["cached"] is True and doc["passed"] is True and doc["max_error"] <= 1e-6
    assert doc["n_samples"] == 100 and doc["n_dims"] == 3072
    assert [entry["lam"] for entry in doc["results"]] == [0.0, 0.1]


def test_gradcheck_gate_fails_and_names_the_tolerance(cli, fetched):
    result = cli("gradcheck", *SMALL_GRADCHECK, "--tol", "1e-30")
    assert result.exit_code == 1
    error_line(result, "gradient check failed", "exceeds --tol 1e-30")
    assert "Relative error" in result.stdout  # the table is still shown


def test_evaluate_gate_passes_and_fails(cli, run):
    passed = cli("evaluate", *SHORT, "--min-accuracy", "0.05")
    assert passed.exit_code == 0, passed.stderr
    assert "test" in passed.stdout and "error" not in passed.stderr
    failed = cli("evaluate", *SHORT, "--min-accuracy", "1.01")
    assert failed.exit_code == 1
    error_line(failed, "below --min-accuracy 1.01")


# --------------------------------------------------------------------------- output hygiene


def test_no_control_characters_when_not_a_terminal(cli, fetched, monkeypatch):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
    result = cli("train", *SHORT)
    assert result.exit_code == 0
    assert "run ID" in result.stdout
    for text in (result.stdout, result.stderr):
        assert "\x1b[" not in text and "\r" not in text
    bad = cli("train", "--eta", "0")
    assert "\x1b[" not in bad.stderr and bad.stderr.startswith("error: --eta")


def test_quiet_silences_notices_but_not_errors(cli, run):
    with open(payload_of(run["run_id"]), "r+b") as handle:
        handle.truncate(10)
    result = cli("train", *SHORT, "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    failed = cli("train", "--eta", "0", "--quiet")
    assert failed.exit_code == 2 and failed.stderr.startswith("error:")


def test_json_stdout_holds_nothing_but_the_document(cli, tiny_archive):
    # The first train also imports nothing: the dataset comes from fetch; notices go to stderr only.
    ok_json(cli("fetch", "--source", tiny_archive, "--json"))
    result = cli("evaluate", *SHORT, "--json")  # trains its missing upstream run itself
    doc = ok_json(result)
    assert doc["run_id"] in keys(cli, "train")
    assert result.stdout.lstrip().startswith("{") and result.stdout.rstrip().endswith("}")
