"""Use a trained model outside the study: classify image files, export a portable ``.npz``.

Images to CIFAR records (``load_image``, ``image_record``)::

    any size, any mode → RGB → 32 × 32 → record x (3072,) uint8 in CIFAR order
    x = [R row-major (1024), G row-major (1024), B row-major (1024)]

i.e. the transpose (C, H, W) of Pillow's H × W × C array, flattened. The whole
picture is resized (not cropped) to 32 × 32 with ``Image.Resampling.BOX``
when it is at least 32 pixels on both sides: each output pixel is the plain
mean of the input pixels it covers (area averaging: no aliasing of fine
detail, no ringing, and a 32 × 32 image is left unchanged). An image smaller
than 32 on either side is enlarged with BICUBIC instead (BOX would only
repeat pixels). The EXIF orientation of camera JPEGs is applied first, and a
transparent image is laid on white.

Records to probabilities (``classify``), pure numpy, the training pipeline's
own preprocessing::

    X = (x / 255 - mean) / std         (d × n; mean, std the training split's)
    S = W X + b,   P = softmax(S)      (columns sum to 1)
                   P = σ(S)            for a run trained with loss "bce": K independent
                                       yes/no probabilities, which do not sum to 1

The ``.npz`` export (``export_arrays``) holds only plain arrays, so
``numpy.load(path, allow_pickle=False)`` reads it without cifarcli.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .config import loss_named
from .errors import CifarError
from .model import scores
from .prepare import normalise
from .threads import on_one_blas_thread

SIDE = 32
D = 3 * SIDE * SIDE
__all__ = ["ImageError", "load_image", "image_record", "classify", "top_k", "export_arrays", "RESAMPLE"]
RESAMPLE = "BOX when shrinking, BICUBIC when enlarging"


class ImageError(CifarError):
    """An input file that is not a readable image (exit code 2); the message names the file."""


def image_record(image) -> np.ndarray:
    """A Pillow image (any size and mode) → CIFAR record (3072,) uint8. No I/O."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("RGB")
    if image.size != (SIDE, SIDE):
        shrink = min(image.size) >= SIDE
        image = image.resize((SIDE, SIDE), Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC)
    hwc = np.asarray(image, dtype=np.uint8)  # 32 × 32 × 3
    return np.ascontiguousarray(hwc.transpose(2, 0, 1)).reshape(D)


def load_image(path: str | Path) -> np.ndarray:
    """Read the image file at ``path`` → CIFAR record (3072,) uint8; ImageError naming it otherwise."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # over 2× the limit is an error
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file fails here
                return image_record(image)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: not allowed to read it") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (PNG, JPEG, ...) or an image format that cannot be read") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated or damaged data
        raise ImageError(f"{path}: damaged or truncated image ({exc})") from None


@on_one_blas_thread
def classify(
    records: np.ndarray, W: np.ndarray, b: np.ndarray, mean: np.ndarray, std: np.ndarray, loss: str = "softmax"
) -> np.ndarray:
    """Class probabilities P (K × n) of records (n × 3072 uint8, CIFAR order), in float64 (an SVM: scores).

    Softmax columns sum to 1; for ``loss="bce"`` each entry is that class's sigmoid.
    For ``loss="svm"`` the result is the class SCORES S = W X + b (K × n), not
    probabilities: an SVM has none. They are unbounded, do not sum to 1, and
    only their order (the highest wins) and differences (margins) mean anything.
    """
    records = np.asarray(records, dtype=np.uint8).reshape(-1, D)
    X = normalise(records, mean, std, np.float64)  # d × n
    S = scores(X, np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return loss_named(loss).output(S)


def top_k(P: np.ndarray, names: list[str], k: int = 3) -> list[list[dict[str, Any]]]:
    """Per column of P (K × n), the k most probable classes: [{"class", "probability"}], highest first."""
    order = np.argsort(-P, axis=0, kind="stable")[:k]
    return [[{"class": names[int(c)], "probability": float(P[c, i])} for c in order[:, i]] for i in range(P.shape[1])]


def export_arrays(
    W, b, mean, std, class_names: list[str], loss: str, settings: dict, run_id: str, version: str
) -> dict[str, np.ndarray]:
    """The arrays of the portable model file: no object arrays, so ``allow_pickle=False`` reads them.

    W (K × 3072), b (K × 1), mean and std (3072 × 1, of the training split, on pixels / 255),
    class_names (K,) fixed-width unicode, loss / settings (JSON) / run_id / cifarcli_version
    0-d unicode, lam and eta 0-d float64, n_epochs, n_batch and seed 0-d int64.
    """

    def text(value: str) -> np.ndarray:
        return np.array(str(value), dtype=f"<U{max(1, len(str(value)))}")

    names = [str(n) for n in class_names]
    return {
        "W": np.asarray(W),
        "b": np.asarray(b).reshape(-1, 1),
        "mean": np.asarray(mean, dtype=np.float64).reshape(-1, 1),
        "std": np.asarray(std, dtype=np.float64).reshape(-1, 1),
        "class_names": np.array(names, dtype=f"<U{max(1, max(map(len, names), default=1))}"),
        "loss": text(loss),
        "settings": text(json.dumps(settings, sort_keys=True)),
        "run_id": text(run_id),
        "cifarcli_version": text(version),
        "lam": np.array(float(settings["lam"])),
        "eta": np.array(float(settings["eta"])),
        "n_epochs": np.array(int(settings["n_epochs"]), dtype=np.int64),
        "n_batch": np.array(int(settings["n_batch"]), dtype=np.int64),
        "seed": np.array(int(settings["seed"]), dtype=np.int64),
    }
