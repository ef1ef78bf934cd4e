"""Hyper-parameter sweeps: a grid of λ × η (× n_batch × n_epochs), every point an ordinary training run.

Each point is the ``TrainConfig`` that ``cifarcli train`` would build from the
same options, trained through ``pipeline.train`` (or stored through
``pipeline.store_trained``), so its run ID is the one ``train`` gives it: sweeps
and single runs share the cache, and an interrupted sweep resumes with only
the missing points.

Backends:

- ``local``: one process per point at a time on up to ``ws.jobs`` joblib/loky
  processes (``pipeline._train_missing_in_parallel``), each writing its run to
  the store exactly as a sequential ``train`` would.
- ``dask``: an existing ``dask.distributed`` cluster. The client prepares each
  needed split once and scatters its training part to every worker
  (``broadcast=True``); workers run ``cifarcli.train.train`` and return W, b,
  history, timings and the divergence epoch; the client alone writes the cache
  (``pipeline.store_trained``), so workers need no shared disk. dask is
  imported only on this path.

Selection is on validation accuracy (the final history row), never on test;
only the selected point is evaluated on the test split. Diverged points are
listed as diverged and never selected.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cifarcli.errors import CifarError, WorkFailed

GRID = {"lam": ("--lam", float), "eta": ("--eta", float), "n_batch": ("--n-batch", int),
        "n_epochs": ("--n-epochs", int)}
DASK_HINT = "pip install 'cifarcli[dask]'"


# -- the grid ------------------------------------------------------------------------


def parse_list(option: str, text: str | None, kind: type) -> list:
    """``"0,0.01,0.1"`` -> ``[0.0, 0.01, 0.1]``; one CifarError naming ``option`` when it is not a good grid."""
    if text is None or not str(text).strip():
        raise CifarError(f"{option}: empty grid", hint=f"give a comma list, e.g. {option} {_example(option)}")
    values = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise CifarError(f"{option}: empty item in {text!r}", hint=f"e.g. {option} {_example(option)}")
        try:
            value = float(item)
        except ValueError:
            raise CifarError(f"{option}: {item!r} is not a number", hint=f"e.g. {option} {_example(option)}") from None
        values.append(value)
    return check_values(option, values, kind)


def check_values(option: str, values: Any, kind: type) -> list:
    """Validate a grid given as a list (TOML) or a single number; returns the list, typed."""
    if not isinstance(values, list):
        values = [values]
    if not values:
        raise CifarError(f"{option}: empty grid", hint=f"e.g. {_example(option)}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CifarError(f"{option}: {value!r} is not a finite number", hint=f"e.g. {_example(option)}")
        if kind is int:
            if value != int(value) or value < 1:
                raise CifarError(f"{option}: {value!r} is not an integer >= 1", hint=f"e.g. {_example(option)}")
            value = int(value)
        else:
            value = float(value)
            if option.endswith("eta") and value <= 0:
                raise CifarError(f"{option}: the learning rate must be > 0, got {value:g}",
                                 hint=f"e.g. {_example(option)}")
            if option.endswith("lam") and value < 0:
                raise CifarError(f"{option}: the regularisation must be >= 0, got {value:g}",
                                 hint=f"e.g. {_example(option)}")
        if value in out:
            raise CifarError(f"{option}: {value:g} is listed twice", hint="each value once")
        out.append(value)
    return out


def _example(option: str) -> str:
    return {"lam": "0,0.01,0.1,1", "eta": "0.001,0.01,0.1", "n-batch": "50,100",
            "n-epochs": "20,40", "n_batch": "[50, 100]", "n_epochs": "[20, 40]"}.get(
        option.rsplit(" ", 1)[-1].lstrip("-"), "0.001,0.01")


def train_fields() -> dict[str, type]:
    """TrainConfig's fields and their (plain) types, read from the dataclass."""
    import typing

    from cifarcli.train import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in fields(TrainConfig):
        tp = hints.get(f.name, str)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        out[f.name] = args[0] if args and typing.get_origin(tp) is not None else tp
    return out


def fixed_fields() -> dict[str, type]:
    """The training options a sweep holds fixed: every TrainConfig field but the grid's."""
    return {name: tp for name, tp in train_fields().items() if name not in GRID}


def convert_option(name: str, text: str) -> Any:
    """The value of ``--name TEXT`` in the type of TrainConfig's field ``name``."""
    tp = fixed_fields()[name]
    option = "--" + name.replace("_", "-")
    if "," in text and tp is not str:
        raise CifarError(f"{option}: takes one value in a sweep, got {text!r}",
                         hint="only --lam, --eta, --n-batch and --n-epochs take lists")
    try:
        if tp is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("true", "1", "yes", "on")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        raise CifarError(f"{option}: {text!r} is not a valid {tp.__name__}") from None
    return text


def parse_extra_options(args: list[str]) -> dict:
    """Training options not declared on the sweep command (``--name value``, ``--flag``, ``--no-flag``).

    Lets a sweep fix any option TrainConfig has, including ones added after
    this command was written.
    """
    known = fixed_fields()
    fixed: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise CifarError(f"unexpected argument {arg!r}", hint="see cifarcli sweep --help")
        name, has_value, value = arg[2:].partition("=")
        field_name = name.replace("-", "_")
        negated = field_name.startswith("no_") and known.get(field_name[3:]) is bool
        if negated and not has_value:
            fixed[field_name[3:]] = False
            i += 1
            continue
        if field_name not in known:
            raise CifarError(f"no such option: --{name}", hint="see cifarcli sweep --help; "
                             "training options: " + ", ".join("--" + k.replace("_", "-") for k in known))
        if not has_value:
            if known[field_name] is bool and (i + 1 == len(args) or args[i + 1].startswith("--")):
                fixed[field_name] = True
                i += 1
                continue
            if i + 1 == len(args):
                raise CifarError(f"--{name}: needs a value")
            value = args[i + 1]
            i += 1
        fixed[field_name] = convert_option(field_name, value)
        i += 1
    return fixed


@dataclass(frozen=True)
class SweepSpec:
    """The grid and the options every point shares."""

    lam: tuple
    eta: tuple
    n_batch: tuple = (100,)
    n_epochs: tuple = (40,)
    fixed: dict = field(default_factory=dict)

    def axes(self) -> dict[str, list]:
        return {"lam": list(self.lam), "eta": list(self.eta), "n_batch": list(self.n_batch),
                "n_epochs": list(self.n_epochs)}

    def configs(self) -> list:
        """One TrainConfig per point, in grid order (λ slowest, epochs fastest)."""
        from cifarcli.train import TrainConfig

        out = []
        for lam, eta, nb, ne in itertools.product(self.lam, self.eta, self.n_batch, self.n_epochs):
            out.append(TrainConfig(lam=lam, eta=eta, n_batch=nb, n_epochs=ne, **self.fixed))
        return out

    def varying(self) -> list[str]:
        """The axes besides λ and η that take more than one value."""
        return [name for name in ("n_batch", "n_epochs") if len(getattr(self, name)) > 1]


def make_spec(lam, eta, n_batch=None, n_epochs=None, fixed: dict | None = None, where: str = "") -> SweepSpec:
    """A SweepSpec from option strings (CLI) or lists (TOML); ``where`` prefixes error messages."""
    from cifarcli.train import TrainConfig

    prefix = f"{where} " if where else ""
    values = {}
    for name, raw in (("lam", lam), ("eta", eta), ("n_batch", n_batch), ("n_epochs", n_epochs)):
        option, kind = GRID[name]
        label = prefix + (name if where else option)
        if raw is None:
            if name in ("lam", "eta"):
                raise CifarError(f"{label}: missing", hint=f"e.g. {option} {_example(option)}")
            values[name] = [getattr(TrainConfig, name)]
        elif isinstance(raw, str):
            values[name] = parse_list(label, raw, kind)
        else:
            values[name] = check_values(label, raw, kind)
    fixed = dict(fixed or {})
    unknown = [k for k in fixed if k not in fixed_fields()]
    if unknown:
        raise CifarError(f"{prefix}unknown option {unknown[0]!r}",
                         hint="known: " + ", ".join(sorted(set(GRID) | set(fixed_fields()))))
    spec = SweepSpec(**{k: tuple(v) for k, v in values.items()}, fixed=fixed)
    try:
        spec.configs()[0].validate()  # the fixed options, named as in `cifarcli train`
    except CifarError as error:
        raise CifarError(prefix + error.message, error.hint) from None
    except TypeError as error:
        raise CifarError(f"{prefix}bad training option: {error}") from None
    return spec


def spec_from_table(table: dict, defaults: dict, where: str) -> SweepSpec:
    """The ``[sweep]`` table of a report settings file (``[defaults]`` fill the options it leaves out)."""
    allowed = set(GRID) | set(fixed_fields())
    for key in table:
        if key not in allowed:
            raise CifarError(f"{where}: unknown key {key!r}", hint="known keys: " + ", ".join(sorted(allowed)))
    merged = {**{k: v for k, v in defaults.items() if k not in ("lam", "eta")}, **table}
    fixed = {k: v for k, v in merged.items() if k not in GRID}
    return make_spec(merged.get("lam"), merged.get("eta"), merged.get("n_batch"), merged.get("n_epochs"),
                     fixed, where=where)


# -- running -------------------------------------------------------------------------


def run_sweep(ws, spec: SweepSpec, backend: str = "local", scheduler: str | None = None) -> dict:
    """Train (or reuse) every point, select on validation accuracy, evaluate the best, draw the heat-map.

    Returns the JSON-able result (see ``cifarcli sweep --json``).
    """
    from cifarcli import pipeline

    if backend not in ("local", "dask"):
        raise CifarError(f"--backend: unknown backend {backend!r}", hint="use local or dask")
    if backend == "dask" and not scheduler:
        raise CifarError("--backend dask needs --scheduler tcp://HOST:PORT",
                         hint="the address printed by dask-scheduler")
    data_artifact = pipeline.dataset(ws)
    configs = spec.configs()
    for config in configs:  # every point checked before any is trained
        config.validate(pipeline._n_train(data_artifact, config))
    keys = [pipeline._train_key(c, data_artifact.key) for c in configs]
    started = len(ws.store.events)
    if backend == "dask":
        missing = [c for c, k in zip(configs, keys) if ws.store.state("train", k)[0] != "cached"]
        if missing:
            train_on_dask(ws, data_artifact, missing, scheduler)
    else:
        pipeline._train_missing_in_parallel(ws, configs)
    runs = []
    for i, config in enumerate(configs):
        run = pipeline.train(ws, config)
        runs.append(run)
    computed = {k for stage, k, status in ws.store.events[started:] if stage == "train" and status == "computed"}
    points = [_point(run, config, i, run.key in computed) for i, (run, config) in enumerate(zip(runs, configs))]
    ranked = sorted(points, key=_rank)
    best_point = next((p for p in ranked if p["diverged_at"] is None and p["val_acc"] is not None), None)
    best = None
    if best_point is not None:
        best_run = runs[best_point["index"]]
        metrics = pipeline.evaluate(ws, best_run).payload
        best = {"run_id": best_run.key, "config": best_run.meta["params"],
                **{f"{s}_acc": metrics[s]["accuracy"] for s in ("train", "val", "test")},
                "metrics": {s: metrics[s] for s in ("train", "val", "test")}}
    key, heatmap = draw_heatmap(ws, spec, points, data_artifact.key, best_point)
    return {"sweep": key, "grid": spec.axes(), "fixed": dict(spec.fixed), "backend": backend,
            "jobs": ws.jobs if backend == "local" else None, "scheduler": scheduler,
            "selection": "validation accuracy", "n_points": len(points),
            "computed": [p["run_id"] for p in points if p["status"] == "computed"],
            "points": [{k: v for k, v in p.items() if k != "index"} for p in ranked],
            "best": best, "heatmap": str(heatmap)}


def _point(run, config, index: int, computed: bool) -> dict:
    info = run.meta["info"]
    final = info["final"]
    diverged = info["diverged_at"]
    return {"index": index, "run_id": run.key, "lam": config.lam, "eta": config.eta, "n_batch": config.n_batch,
            "n_epochs": config.n_epochs, "config": run.meta["params"],
            "train_acc": None if diverged is not None else final.get("train_acc"),
            "val_acc": None if diverged is not None else final.get("val_acc"),
            "train_cost": None if diverged is not None else final.get("train_cost"),
            "val_cost": None if diverged is not None else final.get("val_cost"),
            "diverged_at": diverged, "train_seconds": (info.get("timings") or {}).get("total_seconds"),
            "status": "computed" if computed else "cached"}


def _rank(point: dict) -> tuple:
    """Best validation accuracy first, grid order among ties, diverged points last."""
    val = point["val_acc"]
    usable = point["diverged_at"] is None and val is not None
    return (not usable, -(val if usable else 0.0), point["index"])


def heatmap_matrix(spec: SweepSpec, points: list[dict]):
    """λ × η validation accuracy, the max over n_batch and n_epochs per cell; NaN where every point diverged."""
    import numpy as np

    values = np.full((len(spec.lam), len(spec.eta)), np.nan)
    for p in points:
        if p["val_acc"] is None:
            continue
        i, j = spec.lam.index(p["lam"]), spec.eta.index(p["eta"])
        values[i, j] = p["val_acc"] if np.isnan(values[i, j]) else max(values[i, j], p["val_acc"])
    return values


def heatmap_title(spec: SweepSpec) -> str:
    title = "Validation accuracy over λ × η"
    varying = spec.varying()
    if varying:
        words = {"n_batch": "n_batch", "n_epochs": "epochs"}
        title += f" (max over {' and '.join(words[v] for v in varying)} per cell)"
    return title


def draw_heatmap(ws, spec: SweepSpec, points: list[dict], data_key: str, best: dict | None) -> tuple[str, Path]:
    """The heat-map PNG, cached as a "sweep" artifact keyed by the points' run IDs, under figures/sweep-<key>/."""
    from cifarcli import pipeline

    by_index = sorted(points, key=lambda p: p["index"])
    inputs = {"dataset": data_key, **{f"run{p['index']:04d}": p["run_id"] for p in by_index}}
    params = {"grid": spec.axes()}

    def compute():
        import tempfile

        from cifarcli import plots

        values = heatmap_matrix(spec, by_index)
        cell = (spec.lam.index(best["lam"]), spec.eta.index(best["eta"])) if best else None
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.plot_sweep_heatmap(list(spec.lam), list(spec.eta), values, Path(tmp) / "heatmap.png",
                                            title=heatmap_title(spec), best=cell)
            return {"heatmap": path.read_bytes()}, {"n_points": len(points)}

    artifact = ws.store.get_or_compute("sweep", pipeline.VERSIONS["sweep"], params, inputs, compute,
                                       depends=[("train", p["run_id"]) for p in by_index])
    paths = pipeline._materialise(ws.reports_dir / "figures" / f"sweep-{artifact.key}", artifact.payload)
    return artifact.key, paths["heatmap"]


# -- Dask ------------------------------------------------------------------------------


def train_point(data, config) -> dict:
    """Train one point on a Dask worker: W, b, history, timings, diverged_at (nothing written to disk).

    A diverged run keeps its last finite weights, as ``pipeline.train`` does
    with its checkpoint.
    """
    from cifarcli import train as training

    last: list = []

    def keep(checkpoint) -> None:
        last[:] = [checkpoint]

    try:
        result = training.train(config, data, on_epoch=keep)
        return {"W": result.W, "b": result.b, "history": result.history, "timings": result.timings,
                "diverged_at": None}
    except training.TrainingDiverged as diverged:
        checkpoint = last[-1] if last else None
        return {"W": checkpoint.W if checkpoint else None, "b": checkpoint.b if checkpoint else None,
                "history": diverged.history, "timings": {}, "diverged_at": diverged.epoch}


def _training_part(data):
    """The prepared split without its test matrices (workers never look at the test set)."""
    import dataclasses

    import numpy as np

    return dataclasses.replace(data, X_test=np.empty((data.X_test.shape[0], 0), data.X_test.dtype),
                               Y_test=np.empty((data.Y_test.shape[0], 0), data.Y_test.dtype),
                               y_test=np.empty(0, data.y_test.dtype))


def connect(scheduler: str):
    """A dask.distributed Client for ``scheduler``; exit 2 without dask, exit 1 when unreachable."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise CifarError("--backend dask needs dask.distributed, which is not installed", hint=DASK_HINT) from None
    timeout = float(os.environ.get("CIFARCLI_DASK_TIMEOUT", "10"))
    try:
        return Client(scheduler, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkFailed(f"cannot reach the Dask scheduler at {scheduler}: {reason}",
                         hint="start one with dask-scheduler, or check --scheduler") from None


def train_on_dask(ws, data_artifact, configs: list, scheduler: str) -> None:
    """Train ``configs`` on the cluster at ``scheduler``; this process alone stores each result as it arrives."""
    client = connect(scheduler)
    try:
        _train_with_client(ws, client, data_artifact, configs, scheduler)
    except (CifarError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the scheduler went away, a worker died, ...
        raise WorkFailed(f"Dask sweep on {scheduler} failed: {type(exc).__name__}: {_first_line(exc)}",
                         hint="finished points are kept; rerun to resume") from None
    finally:
        client.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _train_with_client(ws, client, data_artifact, configs: list, scheduler: str) -> None:
    from dask.distributed import as_completed

    from cifarcli import pipeline

    try:
        client.wait_for_workers(1, timeout=float(os.environ.get("CIFARCLI_DASK_TIMEOUT", "10")))
    except Exception:
        raise WorkFailed(f"the Dask scheduler at {scheduler} has no workers",
                         hint="start some with: dask-worker " + scheduler) from None
    prepared, futures = {}, {}
    for config in configs:
        group = (config.split, config.val_size, config.dtype)
        if group not in prepared:  # each split prepared once here, sent once to every worker
            data = pipeline.prepared(data_artifact, *group)
            prepared[group] = (data, client.scatter(_training_part(data), broadcast=True))
        future = client.submit(train_point, prepared[group][1], config, pure=False)
        futures[future] = (config, prepared[group][0])
    ws.log(f"training {len(configs)} points on the Dask cluster at {scheduler} ({len(client.nthreads())} workers)")
    for done, future in enumerate(as_completed(list(futures), loop=client.loop), 1):
        config, data = futures[future]
        try:
            result = future.result()
        except CifarError:
            raise
        except Exception as exc:
            raise WorkFailed(f"Dask training of λ={config.lam:g}, η={config.eta:g} failed on {scheduler}: "
                             f"{type(exc).__name__}: {_first_line(exc)}",
                             hint="finished points are kept; rerun to resume") from None
        run = pipeline.store_trained(ws, config, data_artifact, data, result)
        ws.log(f"[{done}/{len(configs)}] {run.key} λ={config.lam:g} η={config.eta:g}: "
               + ("diverged" if result["diverged_at"] is not None
                  else f"val acc {result['history']['val_acc'][-1]:.4f}"))


# -- the report's sweep section ------------------------------------------------------------


def report_section(ws, spec: SweepSpec) -> dict:
    """The report document's ``"sweep"`` entry: points, best run (a full run section), heat-map path."""
    from cifarcli import pipeline

    result = run_sweep(ws, spec)
    best_run = ws.store.load("train", result["best"]["run_id"]) if result["best"] else None
    heatmap = Path(result["heatmap"]).relative_to(ws.reports_dir).as_posix()
    return {"key": result["sweep"], "grid": result["grid"], "fixed": result["fixed"],
            "title": heatmap_title(spec), "points": result["points"],
            "best_run_id": best_run.key if best_run is not None else None,
            "best": pipeline._report_run(ws, best_run) if best_run is not None else None,
            "heatmap": heatmap}
