"""What every command of the command line starts from: the decorator that adds it to its group with the
examples that end its help, and the output and workspace it works in (``start``).

``cli.py`` and ``cli_cache.py`` declare their commands with these.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cifarcli import options as opt
from cifarcli import terminal
from cifarcli.errors import CifarError, OptionError, symlink_loop
from cifarcli.terminal import CifarCommand

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}  # inherited by every subcommand's context


def start(common: opt.Common, jobs: int = 1):
    """Set up output and the workspace for one command."""
    from cifarcli.progress_bars import progress_for
    from cifarcli.stages import Workspace, workspace_above

    out = terminal.begin(common.as_json, common.quiet)
    cache_dir, reports_dir = common.cache_dir, common.reports_dir
    if cache_dir is None:  # neither --cache-dir nor CIFARCLI_CACHE_DIR: the nearest workspace, as git finds .git
        cache_dir = workspace_above()
        if cache_dir is not None:
            out.log(f"using the workspace {cache_dir} (found above the current folder)")
            reports_dir = reports_dir or cache_dir.parent / "reports"
        cache_dir = cache_dir or Path("cache")
    reports_dir = reports_dir or Path("reports")
    for option, folder in (("--cache-dir", cache_dir), ("--reports-dir", reports_dir)):
        if folder.exists() and not folder.is_dir():
            raise CifarError(f"{option} {folder} is a file, not a folder", hint=f"give {option} a folder")
        if symlink_loop(folder):  # exists() says False: a notice, then "cannot write …" came before
            raise CifarError(f"{option} {folder} is a loop of symbolic links", hint=f"give {option} a folder")
    if jobs < 1:
        raise OptionError("jobs", f"must be at least 1, got {jobs}")
    progress = out.progress = progress_for(out.err)
    return out, Workspace(cache_dir, reports_dir, log=out.log, progress=progress, jobs=jobs)


def examples(*lines: str) -> str:
    """A command's help epilog: 2–3 real command lines (rich help keeps paragraphs, so one per paragraph)."""
    return "\n\n".join(["Examples:", *(f"  {line}" for line in lines)])


def commands_of(group: typer.Typer):
    """The decorator that adds a command to the Typer ``group``, its help ending with the examples given."""

    def command(*example_lines: str, name: str | None = None):
        """A command of ``group``, its help ending with these examples."""
        return group.command(name, cls=CifarCommand, epilog=examples(*example_lines))

    return command
