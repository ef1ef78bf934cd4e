"""A report made through the CLI from a few [[run]] tables, and the sections read back from it."""

from __future__ import annotations

import json
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"


def settings(runs: list[dict], n_epochs: int = 3) -> str:
    text = f"[defaults]\nn_epochs = {n_epochs}\nn_batch = 20\n\n[gradcheck]\nn_samples = 10\nn_dims = 50\n"
    for run in runs:
        text += "\n[[run]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in run.items())
    return text


def make_report(cli, tmp_path: Path, tiny_archive, runs: list[dict]) -> tuple[dict, str, str]:
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    (tmp_path / "r.toml").write_text(settings(runs))
    result = cli("report", "--config", "r.toml", "-j", "1", "--json")
    assert result.exit_code == 0, result.stderr
    return (
        json.loads(result.stdout),
        (tmp_path / "reports" / "report.md").read_text(),
        (tmp_path / "reports" / "report.html").read_text(),
    )


def md_section(md: str, heading: str) -> str:
    return md.split(heading, 1)[1].split("\n## ", 1)[0]
