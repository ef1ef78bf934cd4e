"""How a run is named in progress lines, notices and figure titles: its settings as short text."""

from __future__ import annotations

from cifarcli.config import TrainConfig

# Settings a run's label names when they are not the same in every run shown together.
_TELLING = (
    ("seed", "seed {}"),
    ("n_batch", "batch {}"),
    ("n_epochs", "{} epochs"),
    ("split", "split {}"),
    ("init", "init {}"),
    ("dtype", "{}"),
)


def run_label(config: TrainConfig) -> str:
    # A BCE run says so: a softmax and a BCE run of the same λ, η are otherwise indistinguishable.
    return f"λ={config.lam:g}, η={config.eta:g}" + (f", {config.loss_fn.tag}" if config.loss_fn.tag else "")


def distinct_labels(configs: list[TrainConfig]) -> list[str]:
    """``run_label`` of each config, with the settings that tell them apart (members of one ensemble: the seed)."""
    differing = [(name, form) for name, form in _TELLING if len({getattr(c, name) for c in configs}) > 1]
    return [", ".join([run_label(c), *(form.format(getattr(c, name)) for name, form in differing)]) for c in configs]


def trained_line(label: str, n_epochs: int, info: dict) -> str:
    """One run's outcome in one short line (it must fit 80 columns): ``trained λ=0.1, η=0.001: epoch 40/40,
    val acc 0.3876, 2.3 s``, or ``... diverged at epoch 12, ...``."""
    seconds = (info.get("timings") or {}).get("total_seconds")
    took = f", {seconds:.1f} s" if seconds else ""
    if info.get("diverged_at") is not None:
        return f"trained {label}: diverged at epoch {info['diverged_at']}{took}"
    final = info.get("final") or {}
    return (
        f"trained {label}: epoch {final.get('epoch', n_epochs)}/{n_epochs}, "
        f"val acc {final.get('val_acc', float('nan')):.4f}{took}"
    )
