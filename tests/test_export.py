"""cifarcli export: a plain .npz, read with allow_pickle=False, classified by the NumPy lines of docs/commands.md."""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinycifar
from cifarcli import stages

COMMANDS_DOC = Path(__file__).resolve().parent.parent / "docs" / "commands.md"
TRAIN = ("--n-epochs", "3", "--n-batch", "20")


def readme_snippet() -> str:
    """The python block of the export section of docs/commands.md, exactly as written there."""
    section = COMMANDS_DOC.read_text().split("### export", 1)[1].split("\n### ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def run_snippet(code: str, namespace: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/commands.md", "exec"), namespace)
    return out.getvalue()


def trained(cli, tiny_archive, *options: str) -> dict:
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("train", *TRAIN, *options, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def train_artifact(tmp_path: Path, run_id: str):
    return stages.find_run(stages.Workspace(tmp_path / "cache", tmp_path / "reports"), run_id)


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_export_arrays_equal_the_run_and_load_without_pickle(cli, tmp_path, tiny_archive, loss):
    run = trained(cli, tiny_archive, "--loss", loss, "--eta", "0.01")
    result = cli("export", "--run", run["run_id"], "--out", "models/model.npz", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    path = tmp_path / "models" / "model.npz"
    assert Path(doc["path"]).resolve() == path.resolve() and doc["bytes"] == path.stat().st_size
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]  # no temporary file left

    artifact = train_artifact(tmp_path, run["run_id"])
    with np.load(path, allow_pickle=False) as m:
        assert all(m[name].dtype != object for name in m.files)
        assert doc["arrays"] == {name: {"shape": list(m[name].shape), "dtype": m[name].dtype.str} for name in m.files}
        np.testing.assert_array_equal(m["W"], artifact.payload["W"])
        np.testing.assert_array_equal(m["b"], artifact.payload["b"])
        np.testing.assert_array_equal(m["mean"], artifact.payload["mean"])
        np.testing.assert_array_equal(m["std"], artifact.payload["std"])
        assert m["W"].shape == (10, 3072) and m["b"].shape == (10, 1)
        assert m["mean"].shape == m["std"].shape == (3072, 1)
        assert m["class_names"].dtype.kind == "U" and m["class_names"].tolist() == tinycifar.LABEL_NAMES
        assert m["loss"].shape == () and str(m["loss"]) == loss
        settings = json.loads(str(m["settings"]))
        assert settings == asdict(stages.config_of(artifact)) and settings["loss"] == loss
        assert str(m["run_id"]) == run["run_id"]
        assert float(m["lam"]) == 0.0 and float(m["eta"]) == 0.01 and int(m["n_epochs"]) == 3
        assert int(m["n_batch"]) == 20 and int(m["seed"]) == 42


def test_readme_snippet_classifies_an_image_and_the_test_set_like_evaluate(cli, tmp_path, tiny_archive):
    run = trained(cli, tiny_archive)
    assert cli("export", "--run", run["run_id"], "--out", "model.npz", "--quiet").exit_code == 0
    evaluated = json.loads(cli("evaluate", "--run", run["run_id"], "--json").stdout)
    _, (x, y) = tinycifar.make_arrays()
    code = readme_snippet()
    statements = [line for line in code.splitlines() if line and not line.startswith(("import", "from"))]
    assert len(statements) == 6 and statements[1].startswith("img = Image.open")  # 5 NumPy lines + Pillow's

    # 1. The block as written: model.npz and cat.jpg in the working folder (the cli fixture's tmp_path).
    cat = int(np.flatnonzero(y == tinycifar.LABEL_NAMES.index("cat"))[0])
    Image.fromarray(x[cat].reshape(3, 32, 32).transpose(1, 2, 0)).resize((96, 96), Image.Resampling.NEAREST).save(
        tmp_path / "cat.jpg", quality=95, subsampling=0
    )
    assert run_snippet(code, {}).strip() == "['cat']"

    # 2. Its classifying lines, unchanged, on every test record (x: one record per column).
    lines = code.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("z = "))
    namespace = {"np": np, "m": np.load(tmp_path / "model.npz", allow_pickle=False), "x": x.T}
    printed = run_snippet("\n".join(lines[start:]), namespace)
    names = namespace["m"]["class_names"][namespace["scores"].argmax(axis=0)]
    assert printed.strip() == str(names)
    accuracy = float(np.mean(names == np.array(tinycifar.LABEL_NAMES)[y]))
    assert accuracy == evaluated["test"]["accuracy"] and 0.5 < accuracy


def test_export_with_training_options_and_default_name(cli, tmp_path, tiny_archive):
    run = trained(cli, tiny_archive)
    result = cli("export", *TRAIN, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["run_id"] == run["run_id"] and doc["path"] == f"model-{run['run_id']}.npz"
    with np.load(tmp_path / doc["path"], allow_pickle=False) as m:
        assert str(m["run_id"]) == run["run_id"]
    text = cli("export", *TRAIN, "--out", "again.npz")
    assert text.exit_code == 0 and "again.npz" in text.stdout


def test_export_replaces_an_existing_file_whole_and_refuses_a_folder(cli, tmp_path, tiny_archive):
    run = trained(cli, tiny_archive)
    target = tmp_path / "model.npz"
    target.write_bytes(b"old junk" * 100_000)
    assert cli("export", "--run", run["run_id"], "--out", target.name).exit_code == 0
    with np.load(target, allow_pickle=False) as m:
        assert m["W"].shape == (10, 3072)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left

    (tmp_path / "adir").mkdir()
    result = cli("export", "--run", run["run_id"], "--out", "adir")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "adir" in result.stderr and "folder" in result.stderr
    assert list((tmp_path / "adir").iterdir()) == []


def test_export_of_an_unknown_run_is_one_line(cli, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("export", "--run", "zzzz", "--out", "m.npz")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "zzzz" in result.stderr
