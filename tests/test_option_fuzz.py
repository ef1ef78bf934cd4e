"""Generated extreme values for every command's options, through the real CLI.

Each example sets one option of one command to an extreme value (huge, tiny,
negative, 0, nan, ±inf, empty, not a number, very long) with every other
option tiny, and asserts the CLI's contract: exit 2 with exactly one
``error:`` line and no traceback, or an ordinary outcome (exit 0, or 1 for
work that failed, e.g. a run that diverged) without a traceback.
``catch_exceptions=False``: an exception that escapes the CLI fails the test
with its own traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

EXTREMES = [
    "1e308",
    "1e-308",
    "5e-324",
    "-1",
    "-1e308",
    "0",
    "-0",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "",
    " ",
    "abc",
    "1,2",
    "0x10",
    "1" * 40,
    "-" + "9" * 40,
    "x" * 5000,
    "λ",
    "[/]",
    "--",
    "true",
    "1.5",
    "1",
]
VALUES = st.one_of(
    st.sampled_from(EXTREMES),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
)
# Epochs are the one option whose plausible values would train for long: only the extremes.
EPOCHS = st.sampled_from(["0", "-1", "1", "1000000", "1" * 40, "nan", "", "abc", "1.5"])

TRAINING = [
    "--lam",
    "--eta",
    "--n-batch",
    "--seed",
    "--split",
    "--val-size",
    "--dtype",
    "--flip",
    "--decay-every",
    "--decay-factor",
    "--init",
    "--loss",
]
TINY = ["--n-epochs", "1", "--n-batch", "20"]
COMMANDS = {
    # name: (arguments before the fuzzed option, options to fuzz)
    "train": (["train", *TINY, "-q"], TRAINING + ["--n-epochs"]),
    "status": (["status", *TINY], TRAINING + ["--n-epochs"]),
    "evaluate": (["evaluate", *TINY, "-q"], TRAINING + ["--min-accuracy", "--run"]),
    "export": (["export", *TINY, "-q"], ["--out", "--run", "--lam", "--loss"]),
    "predict": (["predict", "IMAGE", *TINY, "-q"], ["--run", "--eta", "--flip", "--dtype"]),
    "gradcheck": (
        ["gradcheck", "--n-samples", "5", "--n-dims", "20", "-q"],
        ["--n-samples", "--n-dims", "--lam", "--h", "--tol", "--seed", "--loss"],
    ),
    "sweep": (
        ["sweep", "--lam", "0", "--eta", "0.01", *TINY, "--jobs", "1", "-q"],
        [
            "--lam",
            "--eta",
            "--n-batch",
            "--n-epochs",
            "--seed",
            "--split",
            "--val-size",
            "--dtype",
            "--jobs",
            "--backend",
            "--flip",
            "--decay-factor",
        ],
    ),
    "report": (["report", "--config", "SETTINGS", "--jobs", "1", "-q"], ["--jobs", "--config"]),
    "fetch": (["fetch", "--source", "ARCHIVE", "-q"], ["--source", "--format", "--md5", "--sha256"]),
    "cache-ls": (["cache", "ls"], ["--stage", "--cache-dir"]),
    "cache-verify": (["cache", "verify", "-q"], ["--stage"]),
}


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory, tiny_archive) -> Path:
    """A folder whose ./cache holds the tiny dataset; a PNG and a tiny report settings file beside it."""
    from PIL import Image

    from cifarcli.cli import app

    root = tmp_path_factory.mktemp("fuzz")
    done = CliRunner().invoke(app, ["fetch", "--source", str(tiny_archive), "--cache-dir", str(root / "cache"), "-q"])
    assert done.exit_code == 0, done.stderr
    Image.new("RGB", (32, 32), (200, 30, 30)).save(root / "red.png")
    (root / "s.toml").write_text(
        "[defaults]\nn_epochs = 1\nn_batch = 20\n[gradcheck]\nn_samples = 5\nn_dims = 20\n"
        "[[run]]\nlam = 0.0\neta = 0.01\n[[run]]\nlam = 0.1\neta = 0.01\n"
    )
    return root


def _args(name: str, option: str, value: str, home: Path, archive: Path) -> list[str]:
    before, _ = COMMANDS[name]
    fill = {"IMAGE": str(home / "red.png"), "SETTINGS": str(home / "s.toml"), "ARCHIVE": str(archive)}
    args = [fill.get(a, a) for a in before]
    for i in range(len(args) - 1):  # the fuzzed option replaces a fixed value of the same option
        if args[i] == option:
            del args[i : i + 2]
            break
    return args + [option, value]


def _check(result, args) -> None:
    where = f"{args[:3]}... {args[-2:]!r}"
    assert "Traceback" not in result.stderr + result.stdout, where
    assert result.exit_code in (0, 1, 2), (where, result.exit_code, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if result.exit_code == 2:
        assert len(errors) == 1, (where, result.stderr)
        assert result.stderr.strip().splitlines() == errors, (where, result.stderr)  # nothing but that line


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_extreme_option_values_are_one_line_or_work(
    name, fuzz_home, tiny_archive, tmp_path_factory, monkeypatch, offline
):
    from cifarcli.cli import app

    work = tmp_path_factory.mktemp(f"fuzz-{name}")
    shutil.copytree(fuzz_home / "cache", work / "cache")
    monkeypatch.chdir(work)
    monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    runner = CliRunner()
    _, options = COMMANDS[name]

    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(option=st.sampled_from(options), data=st.data())
    def run(option, data):
        value = data.draw(EPOCHS if option == "--n-epochs" else VALUES, label=option)
        args = _args(name, option, value, fuzz_home, tiny_archive)
        _check(runner.invoke(app, args, catch_exceptions=False), args)

    run()
