"""The stages of the study: what each needs, its key, how it is produced, how its state reads.

    fetch ──► dataset ──► gradcheck
                     └──► train(config) ──► evaluate ──► plot ──► report(all configs)
                                   └──► ensemble(runs)

Each stage is declared once (``Stage``: name, version, schema); its function
asks the artifact store for it and computes it when missing, so asking for a
stage runs the missing stages upstream of it and reuses everything else.
Nothing here prints (notices go to ``Workspace.log``, progress to
``Workspace.progress``). One file per concern, each importing only the ones
above it in this list:

1. ``progress.py``: ``Progress``, where the stages report how far they are.
2. ``declarations.py``: ``Stage``, the stages (``DATASET``, ``TRAIN``, ...) and their keys.
3. ``workspace.py``: ``Workspace`` (the store, the folders, the workspace file), ``workspace_above``.
4. ``labels.py``: a run's settings as short text (``run_label``, ``trained_line``).
5. ``legacy.py``: datasets keyed by their source file, migrated on use; ``collect_garbage``.
6. ``datasets.py``: ``fetch``, the import policy, checksums, the current dataset, the ``prepared`` split.
7. ``names.py``: run names and ID prefixes (``run_id_of``, ``set_name``).
8. ``runs.py``: ``train``, checkpoints, the run payload, ``find_run``, ``run_metas``.
9. ``evaluation.py``: ``gradcheck`` and ``evaluate``.
10. ``figures.py``: ``plot``, ``comparison``, drawing folders, ``figures_to_draw``, ``write_if_changed``.
11. ``ensembles.py``: ``ensemble``.
12. ``states.py``: ``status``.
"""

from __future__ import annotations

from .datasets import dataset, dataset_by_key, fetch, forget_prepared, n_train, prepared
from .declarations import (
    COMPARISON,
    DATASET,
    ENSEMBLE,
    EVALUATE,
    GRADCHECK,
    PLOT,
    REPORT,
    STAGES,
    SWEEP,
    TRAIN,
    Stage,
    comparison_key,
    gradcheck_key,
    run_key,
    train_key,
)
from .ensembles import ensemble
from .evaluation import evaluate, gradcheck
from .figures import (
    comparison,
    figure_names,
    figures_to_draw,
    materialise,
    plot,
    plot_artifact,
    plotted,
    write_if_changed,
)
from .labels import distinct_labels, run_label, trained_line
from .legacy import collect_garbage, is_legacy_dataset
from .names import check_run_name, run_id_of, run_names, set_name
from .progress import Progress
from .runs import (
    STABILITY_CURVES,
    checkpoint_file,
    config_of,
    find_run,
    load_checkpoint,
    require_converged,
    run_metas,
    run_payload,
    store_trained,
    train,
    trained_meta,
)
from .states import status
from .workspace import WORKSPACE_FILE, Workspace, workspace_above

__all__ = [
    "checkpoint_file",
    "plotted",
    "trained_meta",
    "COMPARISON",
    "DATASET",
    "ENSEMBLE",
    "EVALUATE",
    "GRADCHECK",
    "PLOT",
    "REPORT",
    "STABILITY_CURVES",
    "STAGES",
    "SWEEP",
    "TRAIN",
    "WORKSPACE_FILE",
    "Progress",
    "Stage",
    "Workspace",
    "check_run_name",
    "collect_garbage",
    "comparison",
    "comparison_key",
    "config_of",
    "dataset",
    "dataset_by_key",
    "distinct_labels",
    "ensemble",
    "evaluate",
    "fetch",
    "figure_names",
    "figures_to_draw",
    "find_run",
    "forget_prepared",
    "gradcheck",
    "gradcheck_key",
    "is_legacy_dataset",
    "load_checkpoint",
    "materialise",
    "n_train",
    "plot",
    "plot_artifact",
    "prepared",
    "require_converged",
    "run_id_of",
    "run_key",
    "run_label",
    "run_metas",
    "run_names",
    "run_payload",
    "set_name",
    "status",
    "store_trained",
    "train",
    "train_key",
    "trained_line",
    "workspace_above",
    "write_if_changed",
]
