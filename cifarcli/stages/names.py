"""Finding a run by its name or an ID prefix, and naming runs (names live in the workspace file, never in a key)."""

from __future__ import annotations

from cifarcli.config import run_name_problem
from cifarcli.errors import CifarError

from .declarations import TRAIN
from .workspace import Workspace


def run_id_of(ws: Workspace, text: str) -> str:
    """The full ID of the run named ``text``, or whose ID starts with it (a name can never look like an ID)."""
    named = ws.read_state().get("names", {}).get(text.strip())
    keys = [named] if named else ws.store.find("train", text.strip().lower()) if text.strip() else []
    if not keys or not ws.store.path(TRAIN.name, keys[0]).is_dir():
        raise CifarError(f"no training run {text!r} in {ws.cache_dir}", hint="list runs with: cifarcli runs")
    if len(keys) > 1:
        raise CifarError(f"run ID {text!r} is ambiguous: {', '.join(keys[:5])}", hint="type more of the ID")
    return keys[0]


def run_names(ws: Workspace) -> dict[str, str]:
    """Run ID -> its name, for the named runs."""
    return {key: name for name, key in ws.read_state().get("names", {}).items()}


def check_run_name(name: str) -> str:
    problem = run_name_problem(name)
    if problem:
        raise CifarError(f"cannot name a run {name!r}: {problem}", hint="e.g. base, lam0.1_eta1e-3")
    return name


def set_name(ws: Workspace, name: str, run: str | None) -> dict:
    """Name ``run`` (a name or ID prefix) ``name``; with ``run`` None, take the name off.

    A name is unique in the workspace: naming another run moves it there. A run has one
    name: a new one replaces the old. Returns ``{"name", "run_id" (None when removed), "was"}``:
    ``was`` is the run the name left, or None.
    """
    check_run_name(name)
    state = ws.read_state()
    names = dict(state.get("names", {}))
    was = names.get(name)
    if run is None:
        if was is None:
            raise CifarError(f"no run is named {name!r}", hint="list runs and their names with: cifarcli runs")
        del names[name]
        key = None
    else:
        key = run_id_of(ws, run)
        names = {n: k for n, k in names.items() if k != key and n != name}
        names[name] = key
    ws.write_state({**state, "names": names})
    return {"name": name, "run_id": key, "was": was if was != key else None}
