"""The `cifarcli cache` commands: list, clear, collect garbage in and verify the artifact cache.

Each parses its options, calls one function of the workspace and renders the result, as in ``cli.py``,
which adds this group to the app.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cifarcli import options as opt
from cifarcli.cli_setup import HELP_OPTIONS, commands_of, start
from cifarcli.errors import CifarError, WorkFailed
from cifarcli.terminal import CifarGroup

cache_app = typer.Typer(
    cls=CifarGroup, no_args_is_help=True, help="Inspect and prune the artifact cache.", context_settings=HELP_OPTIONS
)
cache_command = commands_of(cache_app)


@cache_command("cifarcli cache ls --stage train", "cifarcli cache ls --json", name="ls")
@opt.common_options()
def cache_ls(stage: opt.Stage = None, *, common: opt.Common):
    """List cached artifacts (reads only their meta.json)."""
    from cifarcli import cache_views

    out, ws = start(common)
    rows = ws.cache_listing(stage)
    out.result({"cache_dir": str(ws.cache_dir), "artifacts": rows}, cache_views.cache_table(rows))


@cache_command(
    "cifarcli cache clear --dry-run",
    "cifarcli cache clear --stage plot --yes",
    "cifarcli cache clear --keep-data --yes",
    name="clear",
)
@opt.common_options("quiet")
def cache_clear(
    stage: opt.Stage = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", metavar="", help="Remove without asking (needed without a terminal).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="List what would be removed; remove nothing.")
    ] = False,
    keep_data: Annotated[
        bool, typer.Option("--keep-data", metavar="", help="Keep the dataset and its download.")
    ] = False,
    *,
    common: opt.Common,
):
    """Remove cached artifacts (all, or one stage) and leftovers of interrupted writes; lists them, asks first."""
    from cifarcli import cache_views

    out, ws = start(common)
    plan = ws.clear_plan(stage, keep_data=keep_data)
    if dry_run:
        out.result({"dry_run": True, **plan}, *cache_views.clear_plan_view(plan, ws.cache_dir))
        return
    if (plan["stages"] or plan["links"]) and not yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise CifarError(
                f"cache clear would remove {cache_views.plan_summary(plan)} from {ws.cache_dir}, and asks first",
                hint="add --yes to remove them without a terminal, or --dry-run to list them",
            )
        out.err.print(*cache_views.clear_plan_view(plan, ws.cache_dir), sep="\n")
        if not typer.confirm("Remove them?", default=False, err=True):
            out.result({"removed": 0}, "nothing removed")
            return
    removed = ws.clear_cache(stage, keep_data=keep_data)
    out.result({"removed": removed}, f"removed {removed} artifact(s) from {ws.cache_dir}")


@cache_command("cifarcli cache gc", "cifarcli cache gc --json", name="gc")
@opt.common_options("quiet")
def cache_gc(common: opt.Common):
    """Remove temporary files left by interrupted writes, and artifacts no run ID reaches any more."""
    from cifarcli import stages

    out, ws = start(common)
    removed = [str(p) for p in stages.collect_garbage(ws)]
    out.result({"removed": removed}, f"removed {len(removed)} leftover(s)")


@cache_command("cifarcli cache verify", "cifarcli cache verify --stage train --json", name="verify")
@opt.common_options("quiet")
def cache_verify(stage: opt.Stage = None, *, common: opt.Common):
    """Re-hash every payload and report damaged artifacts (exit 1 if any)."""
    from cifarcli import cache_views

    out, ws = start(common)
    rows = ws.verify_cache(stage)
    damaged = [row for row in rows if not row["ok"]]
    out.result({"checked": len(rows), "damaged": damaged}, cache_views.verify_view(rows))
    if damaged:
        named = ", ".join(f"{row['stage']}/{row['key']}" for row in damaged[:3]) + (" …" if len(damaged) > 3 else "")
        raise WorkFailed(
            f"{len(damaged)} damaged artifact(s): {named}",
            hint="they are recomputed on next use, or run cifarcli cache clear",
        )
