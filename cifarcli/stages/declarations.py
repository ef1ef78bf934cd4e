"""The stages of the study, each declared once (name, version, schema), and the keys of their artifacts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cifarcli import schemas
from cifarcli.config import GradcheckConfig, TrainConfig
from cifarcli.schemas import Schema
from cifarcli.store import Artifact, Store, artifact_key


class HoldsStore(Protocol):
    """What a stage needs of the workspace (``stages.workspace.Workspace``): its artifact store."""

    store: Store


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: its folder in the cache, the version of its output, what its artifacts hold.

    Bump a stage's version when its output for the same inputs changes.
    """

    name: str
    version: int
    schema: Schema

    def key(self, params: dict, inputs: dict[str, str]) -> str:
        """The artifact's address: a hash of the stage, its version, its parameters and its inputs' keys."""
        return artifact_key(self.name, self.version, params, inputs)

    def get_or_compute(
        self, ws: HoldsStore, params: dict, inputs: dict[str, str], compute: Callable[[], tuple[Any, dict]], **options
    ) -> Artifact:
        return ws.store.get_or_compute(self.name, self.version, params, inputs, compute, **options)

    def state(self, ws: HoldsStore, key: str) -> tuple[str, str | None]:
        """("cached" | "missing" | "damaged" | "stale", reason), without loading the payload."""
        return ws.store.state(self.name, key)


DATASET = Stage("dataset", 1, schemas.DATASET)
GRADCHECK = Stage("gradcheck", 1, schemas.GRADCHECK)
TRAIN = Stage("train", 1, schemas.TRAIN)
EVALUATE = Stage("evaluate", 3, schemas.EVALUATE)
PLOT = Stage("plot", 3, schemas.PLOT)
REPORT = Stage("report", 4, schemas.REPORT)
SWEEP = Stage("sweep", 1, schemas.SWEEP)
COMPARISON = Stage("comparison", 2, schemas.COMPARISON)  # every run of a report side by side
ENSEMBLE = Stage("ensemble", 1, schemas.ENSEMBLE)  # runs combined: majority vote and mean output
STAGES = {
    stage.name: stage for stage in (DATASET, GRADCHECK, TRAIN, EVALUATE, PLOT, REPORT, SWEEP, COMPARISON, ENSEMBLE)
}


def train_key(config: TrainConfig, data_key: str) -> str:
    """The run ID of ``config`` on dataset ``data_key``."""
    return TRAIN.key(config.key_params(), {"dataset": data_key})


def gradcheck_key(config: GradcheckConfig, data_key: str) -> str:
    return GRADCHECK.key(config.key_params(), {"dataset": data_key})


def run_key(stage: Stage, run_id: str) -> str:
    """The key of a stage made from one run alone (evaluate, plot)."""
    return stage.key({}, {"train": run_id})


def comparison_key(runs: list[Artifact]) -> str:
    """The comparison's key: the run IDs, in the report's order."""
    return COMPARISON.key({}, {f"run{i}": run.key for i, run in enumerate(runs)})
