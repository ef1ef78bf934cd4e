"""The command line: parse options, call one pipeline function, render the result.

No math and no file formats here. The options the commands share are declared in
``options.py``; streams, signals, output and the one error boundary live in ``terminal.py``;
what each command starts with in ``cli_setup.py``; the `cache` commands in ``cli_cache.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from cifarcli import options as opt
from cifarcli import terminal
from cifarcli.cli_cache import cache_app
from cifarcli.cli_setup import HELP_OPTIONS, commands_of, examples, start
from cifarcli.config import GRADCHECK_DEFAULTS as G
from cifarcli.config import GRADCHECK_TOL, TRAIN_DEFAULTS, GradcheckConfig, TrainConfig
from cifarcli.errors import CifarError, GateFailed, OptionError, WorkFailed
from cifarcli.terminal import CifarGroup, Output


def _version(value: bool) -> None:
    if value:
        from cifarcli import __version__

        print(f"cifarcli {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    cls=CifarGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
    help="Reproduce the one-layer softmax network on CIFAR-10, end to end, with every stage cached.",
    epilog=examples(
        "cifarcli report                # the whole study → reports/report.html",
        "cifarcli fetch --source cifar-10-binary.tar.gz   # offline: import a copy",
        "cifarcli runs                  # compare the runs you trained",
    ),
)
app.add_typer(cache_app, name="cache")
command = commands_of(app)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit."),
    ] = False,
) -> None:
    pass


def _run(ws, run_id, config):
    from cifarcli import stages

    # `--run ""` (an unset shell variable) is an error, not a silent 40-epoch training run.
    return stages.find_run(ws, run_id) if run_id is not None else stages.train(ws, config)


# -- commands --------------------------------------------------------------------


@command(
    "cifarcli fetch                     # a local copy, else download",
    "cifarcli fetch --source cifar-10-binary.tar.gz",
    "cifarcli fetch --format python --json",
)
@opt.common_options("force", "quiet")
def fetch(
    source: opt.Source = None,
    fmt: opt.Format = "binary",
    md5: opt.Md5 = None,
    sha256: opt.Sha256 = None,
    *,
    common: opt.Common,
):
    """Obtain CIFAR-10: import a copy you have, find one in the usual places, or download it."""
    from cifarcli import stages, views

    out, ws = start(common)
    artifact = stages.fetch(ws, source, fmt, md5, sha256, common.force)
    out.result(views.dataset_json(artifact), *views.dataset_view(artifact))


@command(
    "cifarcli gradcheck                 # verdict against 1e-06",
    "cifarcli gradcheck --tol 1e-6        # CI gate: exit 1 above it",
    "cifarcli gradcheck --n-samples 20 --n-dims 100 --lam 0.5 --loss bce",
)
@opt.common_options("force", "quiet")
def gradcheck(
    n_samples: opt.NSamples = G.n_samples,
    n_dims: opt.NDims = G.n_dims,
    lam: opt.Lams = None,
    h: opt.Step = G.h,
    tol: opt.Tol = None,
    seed: opt.Seed = G.seed,
    loss: opt.GradcheckLoss = G.loss,
    *,
    common: opt.Common,
):
    """Compare analytic and numerical gradients for every parameter of W and b."""
    from cifarcli import stages, views

    out, ws = start(common)
    if tol is not None and not (math.isfinite(tol) and tol >= 0):  # `worst > nan` is never true: a silent pass
        raise OptionError("tol", f"must be a finite number >= 0, got {tol}", hint="CI uses --tol 1e-6")
    config = GradcheckConfig(n_samples, n_dims, tuple(lam) if lam else G.lams, h, seed, loss).validate()
    artifact = stages.gradcheck(ws, config, common.force)
    result = views.gradcheck_json(artifact, tol)
    out.result(
        result,
        *views.gradcheck_view(artifact, tol),
        views.gradcheck_verdict(artifact, GRADCHECK_TOL if tol is None else tol),
    )
    worst = artifact.payload["max_error"]
    if tol is not None and not result["passed"]:  # a NaN error fails the gate too, and so does nothing checked
        raise GateFailed(
            "gradient check failed: "
            + (
                f"max relative error {worst:.2e} exceeds --tol {tol:g}"
                if result["n_checked"]
                else "no parameter could be checked"
            )
        )


@command(
    "cifarcli train --lam 0.1 --eta 0.001    # the study's best setting",
    "cifarcli train --lam 0 --eta 0.1 --n-epochs 40 --json",
    "cifarcli train --split full --shuffle --flip 0.5 --decay-every 10 --decay-factor 0.3",
)
@opt.training_options
@opt.common_options("force", "quiet")
def train(config: TrainConfig, name: opt.RunName = None, *, common: opt.Common):
    """Train one configuration with mini-batch gradient descent (resumes an interrupted run)."""
    from cifarcli import stages, views

    out, ws = start(common)
    run = stages.train(ws, config, common.force, name=name)
    out.result(views.run_json(run), *views.run_view(run))
    stages.require_converged(run)
    unstable = views.run_instability(run)
    if unstable:  # a finished run whose cost exploded: exit 0, but never without a word
        out.log(f"warning: this run is unstable by the report's rule: {unstable}")


@command(
    "cifarcli evaluate --lam 0.1 --eta 0.001",
    "cifarcli evaluate --run f8d0f9dc --min-accuracy 0.38   # CI gate",
    "cifarcli evaluate --lam 1 --eta 0.001 --json",
)
@opt.training_options
@opt.common_options("force", "quiet")
def evaluate(
    config: TrainConfig, run_id: opt.RunId = None, min_accuracy: opt.MinAccuracy = None, *, common: opt.Common
):
    """Loss, cost and accuracy on train/validation/test, per-class accuracy, confusion matrix."""
    from cifarcli import stages, views

    out, ws = start(common)
    if min_accuracy is not None and not math.isfinite(min_accuracy):  # `accuracy < nan` never fails the gate
        raise OptionError(
            "min_accuracy", f"must be a finite number, got {min_accuracy}", hint="e.g. --min-accuracy 0.38"
        )
    run = _run(ws, run_id, config)
    metrics = stages.evaluate(ws, run, common.force)
    out.result(views.metrics_json(run, metrics, min_accuracy), *views.metrics_view(run, metrics))
    accuracy = metrics.payload["test"]["accuracy"]
    if min_accuracy is not None and accuracy < min_accuracy:
        raise GateFailed(f"test accuracy {accuracy:.4f} is below --min-accuracy {min_accuracy:g}")


@command(
    "cifarcli plot --lam 0.1 --eta 0.001   # → reports/figures/<run id>/",
    "cifarcli plot --run f8d0f9dc --reports-dir out",
)
@opt.training_options
@opt.common_options("reports_dir", "force", "quiet")
def plot(config: TrainConfig, run_id: opt.RunId = None, *, common: opt.Common):
    """Draw loss and accuracy curves, the learnt weights and the confusion matrix as PNG."""
    from cifarcli import stages

    out, ws = start(common)
    run = _run(ws, run_id, config)
    paths = stages.plot(ws, run, common.force)
    out.result(
        {"run_id": run.key, "figures": {name: str(path) for name, path in paths.items()}},
        *[str(path) for path in paths.values()],
    )


@command(
    "cifarcli predict cat.jpg dog.png --lam 0.1 --eta 0.001", "cifarcli predict photos/*.jpg --run f8d0f9dc --json"
)
@opt.training_options
@opt.common_options("quiet")
def predict(images: opt.Images, config: TrainConfig, run_id: opt.RunId = None, *, common: opt.Common):
    """Classify image files with a trained model: the top 3 classes and their probabilities.

    Each image is converted to RGB and resized to 32×32 (area average when shrinking).
    An unreadable file is one error line naming it; the others are still classified (exit code 2).
    """
    from cifarcli import views, workflows

    out, ws = start(common)
    read = workflows.read_images(images)
    bad = [image for image in read if "error" in image]
    for image in bad:  # one line per bad file, shown even with --quiet
        terminal.error_line(image["error"])
    if len(bad) < len(read):
        run = _run(ws, run_id, config)
        if run_id is None and config == TRAIN_DEFAULTS:  # nothing chosen: say which run that is
            settings = ", ".join(f"{k}={v}" for k, v in run.meta["params"].items())
            out.log(
                f"using run {run.key} ({settings}), the default training options; pick another with "
                "--run ID or training options such as --lam 0.1 --eta 0.001 (list runs: cifarcli runs)"
            )
        result = workflows.predict(ws, run, read)
    else:  # nothing to classify: no need to find (or train) the run
        result = {"images": [{"path": image["path"], "error": image["error"]} for image in read]}
    out.result(result, *views.predict_view(result))
    if bad:
        names = ", ".join(image["path"] for image in bad)
        out.failed_in_part(f"{len(bad)} of {len(read)} image(s) could not be read: {names}", "give PNG or JPEG files")
        raise typer.Exit(2)


@command(
    "cifarcli export --lam 0.1 --eta 0.001    # → model-<run id>.npz", "cifarcli export --run f8d0f9dc --out model.npz"
)
@opt.training_options
@opt.common_options("quiet")
def export(config: TrainConfig, run_id: opt.RunId = None, path: opt.Out = None, *, common: opt.Common):
    """Write a trained model as a plain .npz (W, b, mean, std, class names, loss, settings) for numpy alone."""
    from cifarcli import views, workflows

    out, ws = start(common)
    run = _run(ws, run_id, config)
    result = workflows.export(ws, run, path if path is not None else Path(f"model-{run.key}.npz"))
    out.result(result, *views.export_view(result))


@command(
    "cifarcli ensemble --run 559822a5 --run f8d0f9dc --run 99f574ed",
    "cifarcli ensemble --lam 0.1 --eta 0.001 --seeds 1,2,3,4,5",
    "cifarcli ensemble --loss svm --lam 0.1 --eta 0.001 --seeds 1,2,3 --json",
)
@opt.training_options(exclude=("seed",))
@opt.common_options("force", "quiet")
def ensemble(
    run_ids: opt.Members = None,
    seeds: opt.Seeds = None,
    *,
    config: TrainConfig,
    jobs: opt.EnsembleJobs = opt.JOBS,
    common: opt.Common,
):
    """Combine trained runs: majority vote and mean probabilities (scores for SVM) on validation and test.

    A tied vote goes to the lowest class index. Members: --run A --run B ..., or training options plus --seeds.
    """
    from cifarcli import comparison_views, workflows

    out, ws = start(common, jobs)
    seeds = opt.parse_seeds(seeds) if seeds is not None else None
    result = workflows.ensemble(ws, run_ids, config, seeds, common.force)
    out.result(result, *comparison_views.ensemble_view(result))


@command(
    "cifarcli report                      # the study's four settings",
    "cifarcli report --config my-study.toml --jobs 1",
    "cifarcli report --brief --pdf --discussion discussion.md",
)
@opt.common_options("reports_dir", "force", "quiet")
def report(
    config: opt.Settings = None,
    jobs: opt.ReportJobs = opt.JOBS,
    discussion: opt.Discussion = None,
    brief: opt.Brief = None,
    pdf: opt.Pdf = False,
    *,
    common: opt.Common,
):
    """Run or reuse every stage for every setting and write reports/report.md and report.html (--pdf: report.pdf)."""
    from cifarcli import comparison_views, workflows

    out, ws = start(common, jobs)
    result = workflows.report(ws, config, common.force, discussion, brief, pdf)
    out.result(result, *comparison_views.report_view(result))
    _require_a_converged_run(out, result)


def _require_a_converged_run(out: Output, result: dict) -> None:
    """A diverged run is a finding the report shows (exit 0); a report in which every run diverged failed (exit 1).

    The same rule as ``sweep``: the report was written either way, but with no
    converged run it holds no accuracy to compare, which a CI job must notice.
    """
    runs = result.get("runs") or []
    diverged = [run for run in runs if run.get("diverged_at") is not None]
    for run in diverged:
        out.log(
            f"run {run['run_id']} ({run['label']}) diverged at epoch {run['diverged_at']}; "
            "its section in the report says so"
        )
    sweep = result.get("sweep")
    if runs and len(diverged) == len(runs) and not (sweep and sweep.get("best")):
        raise WorkFailed(
            f"every run of the report diverged ({len(runs)} of {len(runs)}); the report was written",
            hint="try smaller eta values",
        )


@command("cifarcli status --lam 0.1 --eta 0.001", "cifarcli status --lam 0 --eta 0.1 --json")
@opt.training_options
@opt.common_options()
def status(config: TrainConfig, common: opt.Common):
    """Show, for these training options, which stages are cached, missing, partial or damaged."""
    from cifarcli import cache_views, stages

    out, ws = start(common)
    rows = stages.status(ws, config)
    out.result({"cache_dir": str(ws.cache_dir), "stages": rows}, cache_views.status_view(rows))


@command(
    "cifarcli sweep --lam 0,0.01,0.1,1 --eta 0.001,0.01",
    "cifarcli sweep --lam 0,0.1 --eta 0.001 --n-epochs 20,40 --jobs 2",
    "cifarcli sweep --lam 0,0.1 --eta 0.001 --shuffle --scheduler tcp://host:8786",
)
@opt.training_options(fixed=True)
@opt.common_options("reports_dir", "quiet")
def sweep(
    lam: opt.GridLam,
    eta: opt.GridEta,
    n_batch: opt.GridBatch = None,
    n_epochs: opt.GridEpochs = None,
    *,
    config: dict,
    jobs: opt.SweepJobs = opt.JOBS,
    backend: opt.Backend = "local",
    scheduler: opt.Scheduler = None,
    common: opt.Common,
):
    """Train a grid of settings (each an ordinary cached run), pick the best on validation accuracy.

    Every other training option of `cifarcli train` takes one value, fixed for every point.
    """
    from cifarcli import comparison_views
    from cifarcli import sweep as sweeping
    from cifarcli.config import make_spec

    out, ws = start(common, jobs)
    axes = {
        name: opt.parse_grid(name, text)
        for name, text in (("lam", lam), ("eta", eta), ("n_batch", n_batch), ("n_epochs", n_epochs))
        if text is not None
    }
    backend = "dask" if scheduler and backend == "local" else backend
    result = sweeping.run_sweep(ws, make_spec(axes, config), backend, scheduler)
    out.result(result, *comparison_views.sweep_view(result))
    if result["best"] is None:
        raise WorkFailed("every point of the sweep diverged", hint="try smaller --eta values")


@command(
    "cifarcli runs                           # every run, best validation accuracy first",
    "cifarcli runs --where lam=0.1 --where 'eta<0.01' --sort created",
    "cifarcli runs --diff f8d0f9dc 559822a5   # two runs side by side",
)
@opt.common_options()
def runs(
    where: opt.Where = None,
    split: opt.RunsSplit = None,
    sort: opt.Sort = "val_acc",
    reverse: opt.Reverse = False,
    all_params: opt.AllParams = False,
    diff: opt.Diff = None,
    as_csv: opt.Csv = False,
    *,
    common: opt.Common,
):
    """List the trained runs: the settings that differ, final accuracy and cost, test accuracy where evaluated.

    Reads only the runs' meta.json files. The run ID shown is the shortest prefix that is unique (at least
    8 characters); any command's --run takes it.
    """
    from cifarcli import runs as listing
    from cifarcli import runs_table

    out, ws = start(common)
    if as_csv and common.as_json:
        raise OptionError("csv", "cannot be combined with --json", hint="choose one output format")
    if as_csv and diff is not None:
        raise OptionError(
            "csv", "lists the runs; it cannot be combined with `diff`", hint="`diff` with --json for a file"
        )
    if diff is not None:
        result = listing.diff_runs(ws, *diff)
        out.result(result, *runs_table.runs_diff_view(result))
    elif as_csv:
        out.text(runs_table.runs_csv(listing.list_runs(ws, where, split, sort, reverse)))
    else:
        result = listing.list_runs(ws, where, split, sort, reverse)
        out.result(result, *(() if common.as_json else runs_table.runs_view(result, out.out.width, all_params)))


@command(
    "cifarcli name f8d0f9dc base          # then: cifarcli evaluate --run base",
    "cifarcli name --remove base",
    name="name",
)
@opt.common_options("quiet")
def name_run(
    run: Annotated[str | None, typer.Argument(help="The run: its ID, a unique prefix, or its current name.")] = None,
    new_name: Annotated[str | None, typer.Argument(metavar="NAME", help="Its name: 1-64 of A-Z a-z 0-9 . _ -")] = None,
    remove: Annotated[str | None, typer.Option("--remove", metavar="NAME", help="Take this name off its run.")] = None,
    *,
    common: opt.Common,
):
    """Name a run, so that any --run accepts the name; a name moves when given to another run."""
    from cifarcli import stages

    if (remove is None) == (new_name is None) or (remove is not None and run is not None):
        raise CifarError("give a run and a name, or --remove NAME", hint="see: cifarcli name --help")
    out, ws = start(common)
    done = stages.set_name(ws, remove or new_name, run)
    moved = f" (it named {done['was']} before)" if done["was"] else ""
    out.result(
        done,
        f"{done['run_id']} is named {done['name']}{moved}"
        if done["run_id"]
        else f"removed the name {done['name']} from {done['was']}",
    )


def main() -> None:
    app()
