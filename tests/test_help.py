"""Help, version and hints: -h everywhere, --version, option panels, examples that parse, flags
without a value type, the gradcheck verdict line, predict naming its run, fetch hints."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cifarcli import __version__
from cifarcli.cli import app

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [
    "fetch",
    "gradcheck",
    "train",
    "evaluate",
    "plot",
    "predict",
    "export",
    "report",
    "status",
    "sweep",
    "runs",
    "cache ls",
    "cache clear",
    "cache gc",
    "cache verify",
]


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one help line per option


def panels(text: str) -> dict[str, str]:
    """The text of each ``╭─ Name ─…`` panel of a rich help page."""
    found = {}
    for part in text.split("╭─ ")[1:]:
        name = part.split(" ─", 1)[0]
        found[name] = part.split("╰", 1)[0]
    return found


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"cifarcli {__version__}\n"
    done = subprocess.run(
        [sys.executable, "-m", "cifarcli", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == f"cifarcli {__version__}\n" and done.stderr == ""


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_dash_h_is_help_everywhere(cli, wide, command):
    words = command.split()
    short, long = cli(*words, "-h"), cli(*words, "--help")
    assert short.exit_code == 0 and long.exit_code == 0
    assert short.stdout == long.stdout and "Usage:" in short.stdout


FLAG_LINE = r"(--(force|json|quiet|help|all-params|csv|version|reverse)|--no-shuffle)\s+(-\w\s+)?(\S+)"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_flags_show_no_value_type(cli, wide, command):
    text = cli(*command.split(), "--help").stdout
    assert "<bool>" not in text
    for line in text.splitlines():  # a flag's line: its name, then straight to its help text
        flag = re.search(FLAG_LINE, line)
        if flag:
            assert not flag.group(4).startswith("<"), line


@pytest.mark.parametrize("command", ["train", "evaluate", "plot", "predict", "export", "status"])
def test_training_options_are_grouped_into_three_panels(cli, wide, command):
    found = panels(cli(command, "--help").stdout)
    study, beyond, output = found["The study"], found["Beyond the study"], found["Output and cache"]
    for flag in ("--lam", "--eta", "--n-epochs", "--n-batch", "--seed", "--split", "--val-size", "--dtype"):
        assert flag in study and flag not in beyond and flag not in output, flag
    for flag in ("--shuffle", "--flip", "--decay-every", "--decay-factor", "--init", "--loss"):
        assert flag in beyond and flag not in study, flag
    for flag in ("--cache-dir", "--json"):
        assert flag in output and flag not in study, flag


def test_report_sweep_and_runs_put_output_options_in_their_panel(cli, wide):
    for command, flags in (
        ("report", ("--jobs", "--force", "--reports-dir", "--quiet")),
        ("sweep", ("--jobs", "--reports-dir")),
        ("runs", ("--json", "--csv", "--cache-dir")),
    ):
        output = panels(cli(command, "--help").stdout)["Output and cache"]
        for flag in flags:
            assert flag in output, (command, flag)
    assert "--lam" in panels(cli("sweep", "--help").stdout)["The study"]


def examples(text: str, command: str) -> list[str]:
    tail = text.rsplit("Examples:", 1)
    assert len(tail) == 2, text
    return [line.strip() for line in tail[1].splitlines() if line.strip()]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_ends_with_examples_that_parse(cli, wide, command):
    lines = examples(cli(*command.split(), "--help").stdout, command)
    assert 2 <= len(lines) <= 3, lines
    group = typer.main.get_command(app)
    for line in lines:
        args = shlex.split(line, comments=True)
        assert args[: 1 + command.count(" ") + 1] == ["cifarcli", *command.split()], line
        target, rest = group, args[1:]
        while isinstance(target, typer.core.TyperGroup):
            target, rest = target.commands[rest[0]], rest[1:]
        target.make_context(command, list(rest))  # raises on an unknown option or a bad value


def test_top_level_help_has_examples(cli, wide):
    lines = examples(cli("--help").stdout, "")
    assert any(line.startswith("cifarcli runs") for line in lines)


# -- gradcheck verdict --------------------------------------------------------------------


SMALL = ("--n-samples", "5", "--n-dims", "20")


def test_gradcheck_prints_a_pass_verdict_against_the_default_bound(cli, fetched):
    result = cli("gradcheck", *SMALL)
    assert result.exit_code == 0
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"PASS: max relative error (\d\.\de-\d\d) ≤ 1e-06", last)
    assert match, last
    doc = json.loads(cli("gradcheck", *SMALL, "--json").stdout)
    assert doc["verdict"] == last and float(match.group(1)) == float(f"{doc['max_error']:.1e}")
    assert doc["passed"] is None  # no gate without --tol


def test_gradcheck_verdict_uses_tol_and_fails(cli, fetched):
    result = cli("gradcheck", *SMALL, "--tol", "1e-30")
    assert result.exit_code == 1
    assert re.fullmatch(r"FAIL: max relative error \d\.\de-\d\d > 1e-30", result.stdout.strip().splitlines()[-1])
    assert "exceeds --tol 1e-30" in result.stderr
    doc = json.loads(cli("gradcheck", *SMALL, "--tol", "1e-30", "--json").stdout)
    assert doc["verdict"].startswith("FAIL: max relative error ") and doc["verdict"].endswith(" > 1e-30")
    assert cli("gradcheck", *SMALL, "--tol", "1e-3").stdout.strip().splitlines()[-1].endswith("≤ 0.001")


def test_verdict_of_a_nan_error_is_fail():
    from cifarcli.gradcheck import verdict_line

    assert verdict_line(float("nan"), 1e-6) == "FAIL: max relative error nan > 1e-06"
    assert verdict_line(2.1e-9, 1e-6) == "PASS: max relative error 2.1e-09 ≤ 1e-06"


# -- predict names its run ----------------------------------------------------------------


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


def test_predict_without_options_says_which_run_it_used(cli, fetched, image):
    result = cli("predict", image)
    assert result.exit_code == 0, result.stderr
    run_id = re.search(r"Top 3 classes, run ([0-9a-f]{16})", result.stdout).group(1)
    notice = [line for line in result.stderr.splitlines() if line.startswith("using run")]
    assert len(notice) == 1
    assert f"using run {run_id} (lam=0.0, eta=0.001, n_epochs=40" in notice[0]
    assert "--run ID" in notice[0] and "cifarcli runs" in notice[0]
    assert "using run" not in cli("predict", image, "--quiet").stderr


def test_predict_with_chosen_options_or_run_says_nothing_about_it(cli, fetched, image):
    result = cli("predict", image, "--lam", "0.1", "--n-epochs", "2")
    assert result.exit_code == 0 and "using run" not in result.stderr
    run_id = re.search(r"run ([0-9a-f]{16})", result.stdout).group(1)
    result = cli("predict", image, "--run", run_id[:8])
    assert result.exit_code == 0 and "using run" not in result.stderr


# -- hints name real commands -----------------------------------------------------------------


def test_no_hint_names_source_without_the_fetch_command():
    for path in sorted((ROOT / "cifarcli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "--source PATH" in node.value:
                assert "cifarcli fetch --source PATH" in node.value, (path, node.value)


def test_offline_report_on_an_empty_folder_names_the_fetch_command(cli, offline):
    result = cli("report")
    assert result.exit_code == 1
    assert "cifarcli fetch --source PATH" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_run_points_at_cifarcli_runs(cli, fetched):
    result = cli("evaluate", "--run", "ffffffff")
    assert result.exit_code == 2 and "list runs with: cifarcli runs" in result.stderr


# -- the library names settings; the command line names flags -------------------------------


CLI_SIDE = {
    "cli.py",
    "cli_cache.py",
    "cli_setup.py",
    "options.py",
    "terminal.py",
    "views.py",
    "comparison_views.py",
    "cache_views.py",
    "runs_table.py",
    "progress_bars.py",
    "markup.py",
}


def test_the_library_names_settings_not_flags():
    for path in sorted((ROOT / "cifarcli").rglob("*.py")):
        if path.name in CLI_SIDE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in ("--source", "--run", "--seeds", "--cache-dir", "--reports-dir", "--where"):
                    assert flag not in node.value, (path.name, node.value)


def test_library_errors_get_their_flags_and_command_hints_in_one_place():
    from cifarcli.errors import CifarError, OptionError, disk_error
    from cifarcli.options import as_typed

    error = as_typed(OptionError("seeds", "give either `run` or `seeds`", hint="e.g. `seeds` 1,2,3"))
    assert (error.message, error.hint) == ("--seeds: give either --run or --seeds", "e.g. --seeds 1,2,3")
    error = as_typed(CifarError("x.tar.gz is empty", hint="the copy is incomplete", setting="source"))
    assert error.hint == "the copy is incomplete; import a copy you have with: cifarcli fetch --source PATH"
    error = as_typed(disk_error(OSError(28, "No space left on device"), "cache/x"))
    assert error.hint == "free some disk space, or use --cache-dir / --reports-dir on another disk"


def test_every_training_setting_is_an_option_of_train_and_of_sweep():
    from cifarcli.config import train_fields
    from cifarcli.options import TRAINING

    assert list(TRAINING) == list(train_fields())  # a new TrainConfig field needs its option, in one place
    group = typer.main.get_command(app)
    for command in ("train", "sweep"):
        assert set(train_fields()) <= {param.name for param in group.commands[command].params}, command
