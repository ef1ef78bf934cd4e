"""Data augmentation per epoch: the shuffled order of the rows and the left-right flips.

* ``shuffle``: epoch e visits the rows in the order ``epoch_rng(seed, e).permutation(n)``.
* ``flip=p``: in epoch e, image i is mirrored left-right when
  ``epoch_rng(seed, e).random(n)[i] < p`` (drawn after the permutation). The
  flip is that of the raw image, normalised with the training statistics, as
  in the course: mirroring the raw pixels x to x' (x'_j = x_m(j)) and then
  normalising gives, from the normalised row z,

      z'_j = (x_m(j)/255 - μ_j) / σ_j = z_m(j) · σ_m(j)/σ_j + (μ_m(j) - μ_j)/σ_j

  i.e. a column gather plus a per-pixel affine map (``flip_rows``). Mirroring
  z alone would pair each pixel with the statistics of its mirror pixel. The
  metrics after each epoch are those of the unflipped training split.

Both come from ``epoch_rng(seed, epoch)`` only, never from a generator that runs
across epochs: a resumed run draws exactly what an uninterrupted one draws.
"""

from __future__ import annotations

import numpy as np

from .config import TrainConfig
from .errors import CifarError

IMAGE_SHAPE = (3, 32, 32)  # a CIFAR record: 3 channels × 32 rows × 32 columns


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator for per-epoch randomness: derived from (seed, epoch) only."""
    return np.random.default_rng([int(seed), int(epoch)])


def epoch_plan(config: TrainConfig, n: int, epoch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(order, flips) of ``epoch``: the row permutation (or None) and the flip mask over images (or None).

    Both come from ``epoch_rng(config.seed, epoch)``, the permutation first;
    flips[i] says whether training image i is mirrored in this epoch.
    """
    if not config.shuffle and not config.flip > 0:
        return None, None
    rng = epoch_rng(config.seed, epoch)
    order = rng.permutation(n) if config.shuffle else None
    flips = rng.random(n) < config.flip if config.flip > 0 else None
    return order, flips


def mirror_index(shape: tuple[int, int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Column index m with x[m] = the image x (channels × rows × columns, flattened) mirrored left-right."""
    return np.arange(int(np.prod(shape))).reshape(shape)[:, :, ::-1].ravel()


def flip_transform(mean: np.ndarray, std: np.ndarray, dtype=np.float64):
    """(m, scale, shift) with flip(z) = z[:, m] · scale + shift for normalised rows z (n × d).

    flip(z) is the normalisation (with the same μ, σ) of the mirrored raw
    image: z'_j = z_m(j) σ_m(j)/σ_j + (μ_m(j) - μ_j)/σ_j; see the module docstring.
    """
    mean = np.asarray(mean, dtype=np.float64).ravel()
    std = np.asarray(std, dtype=np.float64).ravel()
    m = mirror_index()
    if mean.size != m.size or std.size != m.size:
        raise CifarError(f"flipping needs 32 × 32 colour images ({m.size} values), got {mean.size}")
    scale = (std[m] / std).astype(dtype)
    shift = ((mean[m] - mean) / std).astype(dtype)
    return m, scale, shift


def flip_rows(Z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised rows Z (n × d) of images → normalised rows of the same images mirrored left-right.

    Z[:, m] is the reversed last axis of the (n, 3, 32, 32) view, which numpy
    reads with a negative stride (faster than gathering columns by index).
    """
    _, scale, shift = flip_transform(mean, std, Z.dtype)
    out = np.multiply(Z.reshape(-1, *IMAGE_SHAPE)[..., ::-1], scale.reshape(IMAGE_SHAPE))
    out = out.reshape(Z.shape[0], -1)
    out += shift
    return out
