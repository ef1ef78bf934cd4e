"""The workspace is found from any folder below it (as git finds .git), and a new one says where it is."""

from __future__ import annotations

import json

FAST = ("--n-epochs", "1", "--n-batch", "50")


def ok(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_new_workspace_says_where(cli, tmp_path, tiny_archive):
    result = cli("fetch", "--source", tiny_archive, "--json")
    assert result.exit_code == 0, result.stderr
    assert f"new workspace: {tmp_path / 'cache'}" in result.stderr
    again = cli("fetch", "--source", tiny_archive, "--json")
    assert "new workspace" not in again.stderr


def test_from_a_subfolder_commands_use_the_parent_workspace(cli, tmp_path, tiny_archive, monkeypatch):
    ok(cli("fetch", "--source", tiny_archive, "--json"))
    run = ok(cli("train", *FAST, "--name", "base", "--json"))["run_id"]
    sub = tmp_path / "notes" / "week1"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    result = cli("runs", "--json")
    assert [row["run_id"] for row in ok(result)["runs"]] == [run]
    assert f"using the workspace {tmp_path / 'cache'} (found above the current folder)" in result.stderr
    again = ok(cli("train", *FAST, "--json"))  # no download, no second workspace
    assert again["run_id"] == run and again["cached"] is True
    ok(cli("plot", "--run", "base", "--json"))
    assert (tmp_path / "reports" / "figures").is_dir()  # reports/ beside the workspace it found
    assert sorted(p.name for p in sub.iterdir()) == []


def test_an_explicit_cache_dir_or_a_local_cache_is_never_passed_over(cli, tmp_path, tiny_archive, monkeypatch):
    ok(cli("fetch", "--source", tiny_archive, "--json"))
    ok(cli("train", *FAST, "--json"))
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    monkeypatch.chdir(sub)
    for args, env in ((("--cache-dir", "cache"), None), ((), str(sub / "cache"))):
        if env:
            monkeypatch.setenv("CIFARCLI_CACHE_DIR", env)
        result = cli("runs", *args, "--json")
        assert ok(result)["runs"] == [] and "using the workspace" not in result.stderr
        monkeypatch.delenv("CIFARCLI_CACHE_DIR", raising=False)
    (sub / "cache").mkdir(exist_ok=True)  # a cache here, even without its workspace file, is this folder's
    result = cli("runs", "--json")
    assert ok(result)["runs"] == [] and "using the workspace" not in result.stderr
