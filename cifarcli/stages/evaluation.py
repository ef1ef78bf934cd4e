"""The gradient check (analytic against centred differences) and the evaluation of one run."""

from __future__ import annotations

import numpy as np

from cifarcli import schemas
from cifarcli.config import GradcheckConfig
from cifarcli.errors import OptionError
from cifarcli.evaluate import evaluate_model, template_roughness, update_sizes
from cifarcli.gradcheck import check_gradients
from cifarcli.model import init_parameters, one_hot
from cifarcli.store import Artifact

from .datasets import dataset, dataset_by_key, prepared
from .declarations import EVALUATE, GRADCHECK
from .labels import run_label
from .runs import config_of, require_converged
from .workspace import Workspace


def gradcheck(ws: Workspace, config: GradcheckConfig = GradcheckConfig(), force: bool = False) -> Artifact:
    """Analytic against centred-difference gradients on the first training images."""
    config.validate()
    data_artifact = dataset(ws)

    def compute():
        ws.progress.phase(f"checking gradients ({len(config.lams)} λ values, {config.n_samples} images)")
        split = prepared(data_artifact, dtype="float64")
        if config.n_samples > split.sizes["train"]:
            raise OptionError(
                "n_samples", f"{config.n_samples} is more than the {split.sizes['train']} training images"
            )
        dims = split.X_train.shape[0] if config.n_dims is None else min(config.n_dims, split.X_train.shape[0])
        X = np.ascontiguousarray(split.X_train[:dims, : config.n_samples], dtype=np.float64)
        Y = one_hot(split.y_train[: config.n_samples], len(split.label_names)).astype(np.float64)
        W, b = init_parameters(Y.shape[0], dims, np.random.default_rng(config.seed), dtype=np.float64)
        result = check_gradients(
            X, Y, W, b, lams=tuple(float(lam) for lam in config.lams), h=config.h, loss=config.loss
        )
        elapsed = sum(entry["seconds"] for entry in result["results"])
        result = {**result, "n_samples": config.n_samples, "n_dims": dims, "seed": config.seed, "elapsed": elapsed}
        ws.progress.phase_done()
        return result, {"max_error": result["max_error"], "elapsed": elapsed}

    return GRADCHECK.get_or_compute(
        ws,
        config.key_params(),
        {"dataset": data_artifact.key},
        compute,
        force=force,
        depends=[("dataset", data_artifact.key)],
    )


def evaluate(ws: Workspace, run: Artifact, force: bool = False) -> Artifact:
    """Loss, cost, accuracy per split, per-class accuracy and the test confusion matrix of a run."""
    require_converged(run)
    config = config_of(run)
    data_key = run.meta["inputs"]["dataset"]

    def compute():
        ws.progress.phase(f"evaluating {run_label(config)}")
        split = prepared(dataset_by_key(ws, data_key), config.split, config.val_size, config.dtype)
        metrics = evaluate_model(run.payload["W"], run.payload["b"], config.lam, split, loss=config.loss)
        metrics["update"] = update_sizes(
            run.payload["W"],
            run.payload["b"],
            config.lam,
            config.eta,
            config.n_batch,
            split.X_train,
            split.y_train,
            config.loss,
        )
        metrics["weights"] = template_roughness(run.payload["W"])
        ws.progress.phase_done()
        return metrics, schemas.EVALUATE.summary(metrics)

    return EVALUATE.get_or_compute(ws, {}, {"train": run.key}, compute, force=force, depends=[("train", run.key)])
