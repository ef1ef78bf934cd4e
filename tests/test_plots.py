"""plots.py: real PNG files, their size, their content, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cifarcli import plots
from cifarcli.errors import CifarError

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def history(n_epochs=40, unstable=False):
    ep = np.arange(n_epochs + 1)
    tl = 2.3 - 0.7 * (1 - np.exp(-ep / 6))
    if unstable:
        tl = tl + 3 * np.abs(np.sin(1.7 * ep)) * (ep > 0)
    vl = tl + 0.1
    acc = 0.1 + 0.3 * (1 - np.exp(-ep / 6))
    return {
        "epoch": ep.tolist(),
        "train_loss": tl.tolist(),
        "train_cost": (tl + 0.02).tolist(),
        "train_acc": acc.tolist(),
        "val_loss": vl.tolist(),
        "val_cost": (vl + 0.02).tolist(),
        "val_acc": (acc - 0.05).tolist(),
    }


def png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_matplotlib_is_not_imported_with_the_module():
    code = "import sys, cifarcli.plots; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_loss_png_size_lines_and_determinism(tmp_path):
    h = history()
    out = plots.plot_loss(h, tmp_path / "sub" / "loss.png", title="λ=0.1, η=0.001")
    assert out == tmp_path / "sub" / "loss.png"
    img = png(out)
    assert img.shape == (675, 1050, 3)
    assert img.std() > 10  # not a blank canvas
    again = plots.plot_loss(h, tmp_path / "again.png", title="λ=0.1, η=0.001")
    assert out.read_bytes() == again.read_bytes()
    other = plots.plot_loss(history(unstable=True), tmp_path / "other.png")
    assert other.read_bytes() != out.read_bytes()
    assert no_temp_files(tmp_path / "sub") == []

    fig = plots.loss_figure(h)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert sum(lbl.startswith(("train", "validation")) for lbl in labels) == 4
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel()
    assert np.allclose(ax.get_lines()[0].get_ydata(), h["train_loss"])


def test_loss_survives_non_finite_and_switches_to_log_axis(tmp_path):
    h = history(unstable=True)
    h["train_cost"][-3:] = [1e4, float("inf"), float("nan")]
    h["train_loss"][-1] = float("nan")
    fig = plots.loss_figure(h)
    assert fig.axes[0].get_yscale() == "log"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "non-finite from epoch 39" in texts
    assert png(plots.plot_loss(h, tmp_path / "l.png")).shape == (675, 1050, 3)
    assert plots.loss_figure(history()).axes[0].get_yscale() == "linear"


def test_accuracy_png(tmp_path):
    h = history()
    img = png(plots.plot_accuracy(h, tmp_path / "acc.png"))
    assert img.shape == (675, 1050, 3)
    ax = plots.accuracy_figure(h).axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["train", "validation"]
    assert ax.get_ylim()[0] == 0


def test_history_errors_are_clear():
    h = history()
    h["val_loss"] = h["val_loss"][:-1]
    with pytest.raises(ValueError, match="differ in length"):
        plots.loss_figure(h)
    with pytest.raises(ValueError, match="lacks val_acc"):
        plots.accuracy_figure({k: v for k, v in history().items() if k != "val_acc"})


def test_weight_images_follow_the_cifar_record_order():
    W = np.zeros((10, 3072))
    W[0, 0] = 1.0  # red, row 0, col 0
    W[1, 1024 + 32 * 5 + 7] = 1.0  # green, row 5, col 7
    W[2, 2048 + 32 * 31 + 31] = -1.0  # blue, last pixel, the minimum
    imgs = plots.weight_images(W)
    assert imgs.shape == (10, 32, 32, 3)
    assert imgs[0, 0, 0, 0] == 1.0 and imgs[0].sum() == 1.0
    assert imgs[1, 5, 7, 1] == 1.0 and imgs[1].sum() == 1.0
    assert imgs[2, 31, 31, 2] == 0.0 and (imgs[2].sum() == 32 * 32 * 3 - 1)
    assert np.all(imgs[3] == 0.5)  # constant row: no division by zero
    assert imgs.min() >= 0 and imgs.max() <= 1
    with pytest.raises(ValueError):
        plots.weight_images(np.zeros((10, 100)))


def test_weights_png_shows_each_class_image_in_its_panel(tmp_path):
    rng = np.random.default_rng(7)
    # smooth-ish, distinct per class so nearest-neighbour sampling is exact
    W = rng.normal(0, 0.01, size=(10, 3, 8, 8)).repeat(4, 2).repeat(4, 3).reshape(10, 3072)
    path = plots.plot_weights(W, LABEL_NAMES, tmp_path / "w.png")
    img = png(path)
    assert img.shape == (510, 1050, 3)

    fig = plots.weights_figure(W, LABEL_NAMES)
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == LABEL_NAMES
    assert all(len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0 for ax in axes)
    expected = plots.weight_images(W)
    height = img.shape[0]
    panels = []
    for i, ax in enumerate(axes):
        bb = ax.get_window_extent()
        xs = bb.x0 + (np.arange(32) + 0.5) * bb.width / 32
        ys = height - (bb.y1 - (np.arange(32) + 0.5) * bb.height / 32)  # PNG rows go down
        sample = img[np.round(ys).astype(int)][:, np.round(xs).astype(int)] / 255.0
        panels.append(sample)
        assert np.abs(sample - expected[i]).mean() < 0.02, LABEL_NAMES[i]
    for i in range(10):
        for j in range(i + 1, 10):
            assert np.abs(panels[i] - panels[j]).mean() > 0.05


def test_weights_label_count_must_match():
    with pytest.raises(ValueError, match="label names"):
        plots.weights_figure(np.zeros((10, 3072)), LABEL_NAMES[:9])


def test_confusion_png_counts_and_readable_colours(tmp_path):
    rng = np.random.default_rng(3)
    m = rng.integers(0, 50, size=(10, 10))
    m[np.arange(10), np.arange(10)] = rng.integers(300, 600, size=10)
    img = png(plots.plot_confusion(m, LABEL_NAMES, tmp_path / "c.png"))
    assert img.shape == (840, 960, 3)

    fig = plots.confusion_figure(m, LABEL_NAMES)
    ax = fig.axes[0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(texts) == 100
    for (i, j), t in texts.items():
        assert t.get_text() == str(m[i, j])
        # diagonal cells are dark: white text; small off-diagonal counts: dark text
        assert t.get_color() == ("white" if i == j else "#111827")
    assert [t.get_text() for t in ax.get_xticklabels()] == LABEL_NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == LABEL_NAMES
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    acc = np.trace(m) / m.sum()
    assert f"{acc:.4f}" in ax.get_title(loc="left")


def test_confusion_counts_left_out_of_the_layout_change_no_pixel():
    """The 100 counts are not measured by the constrained layout (they sit inside the axes): the PNG is
    byte for byte the one drawn with every count in the layout, as before."""
    import io

    rng = np.random.default_rng(3)
    names = [f"class {i}" for i in range(10)]
    for matrix in (rng.integers(0, 300, (10, 10)), rng.integers(0, 3000, (10, 10)), np.zeros((10, 10), int)):
        fast = plots.confusion_figure(matrix, names)
        counts = [t for t in fast.axes[0].texts]
        assert len(counts) == 100 and not any(t.get_in_layout() for t in counts)
        reference = plots.confusion_figure(matrix, names)
        for text in reference.axes[0].texts:
            text.set_in_layout(True)
        drawn = []
        for fig in (fast, reference):
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor(), metadata={"Software": None})
            drawn.append(buffer.getvalue())
        assert drawn[0] == drawn[1]


def test_confusion_shape_checked():
    with pytest.raises(ValueError, match="10×10"):
        plots.confusion_figure(np.zeros((9, 9)), LABEL_NAMES)


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "loss.png"
    plots.plot_loss(history(), target)
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    # cache.write_atomic, the one atomic write, names the file in one CifarError
    with pytest.raises(CifarError, match=f"cannot write {target}: disk full"):
        plots.plot_loss(history(unstable=True), target)
    assert target.read_bytes() == before
    assert no_temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_atomic_write_bytes_cleans_up_when_the_writer_fails(tmp_path):
    def half(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        plots.atomic_write_bytes(tmp_path / "x.bin", half)
    assert list(tmp_path.iterdir()) == []
