"""cifarcli predict: real image files (written with Pillow) → CIFAR records → the run's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tinycifar
from cifarcli import model, stages
from cifarcli.predict import ImageError, classify, image_record, load_image, top_k

TRAIN = ("--n-epochs", "3", "--n-batch", "20")
IMAGES = (0, 1, 2, 3, 4)  # test records written as image files


@pytest.fixture(scope="module")
def test_records():
    _, (x, y) = tinycifar.make_arrays()
    return x, y


def as_hwc(record: np.ndarray) -> np.ndarray:
    """CIFAR record (3072,) → 32 × 32 × 3, as Pillow wants it."""
    return record.reshape(3, 32, 32).transpose(1, 2, 0)


def write_images(folder: Path, x: np.ndarray) -> dict[int, list[Path]]:
    """For each chosen test record: itself as a 32×32 PNG and upscaled to a 128×128 JPEG."""
    paths = {}
    for i in IMAGES:
        png, jpg = folder / f"test{i}.png", folder / f"test{i}-big.jpg"
        Image.fromarray(as_hwc(x[i])).save(png)
        Image.fromarray(as_hwc(x[i])).resize((128, 128), Image.Resampling.BICUBIC).save(jpg, quality=95)
        paths[i] = [png, jpg]
    return paths


def bad_files(folder: Path) -> tuple[Path, Path]:
    text = folder / "notes.txt"
    text.write_text("not an image\n")
    whole = folder / "whole.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(whole)
    truncated = folder / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    return text, truncated


def trained(cli, tiny_archive, *options: str) -> dict:
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    result = cli("train", *TRAIN, *options, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def model_predictions(tmp_path: Path, run_id: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The model's own predictions and probabilities on the original test records (prepared as in training)."""
    ws = stages.Workspace(tmp_path / "cache", tmp_path / "reports")
    run = stages.find_run(ws, run_id)
    config = stages.config_of(run)
    data = stages.prepared(
        stages.dataset_by_key(ws, run.meta["inputs"]["dataset"]), config.split, config.val_size, config.dtype
    )
    W, b = run.payload["W"], run.payload["b"]
    S = model.scores(data.X_test, W, b).astype(np.float64)
    return model.predict(data.X_test, W, b), config.loss_fn.output(S), run.payload["label_names"]


# -- images → records ----------------------------------------------------------------------------


def test_record_order_is_cifar_channel_planes_row_major():
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    hwc = np.stack([rows * 8, cols * 8, np.full((32, 32), 200)], axis=-1).astype(np.uint8)
    record = image_record(Image.fromarray(hwc))
    assert record.shape == (3072,) and record.dtype == np.uint8
    np.testing.assert_array_equal(record[:1024].reshape(32, 32), rows * 8)  # red plane, row-major
    np.testing.assert_array_equal(record[1024:2048].reshape(32, 32), cols * 8)  # green plane
    assert (record[2048:] == 200).all()  # blue plane
    assert record[1] == 0 and record[32] == 8  # one step along a row is a column: pixel (0, 1), then (1, 0)


def test_png_of_a_record_reads_back_exactly_and_a_big_jpeg_closely(tmp_path, test_records):
    x, _ = test_records
    paths = write_images(tmp_path, x)
    for i, (png, _) in paths.items():
        np.testing.assert_array_equal(load_image(png), x[i])  # 32×32 lossless: untouched by the resize
        # Each pixel as a 4×4 block of a near-lossless 128×128 JPEG: BOX averages each block,
        # so the record comes back within JPEG rounding.
        blocks = tmp_path / f"blocks{i}.jpg"
        Image.fromarray(as_hwc(x[i])).resize((128, 128), Image.Resampling.NEAREST).save(
            blocks, quality=95, subsampling=0
        )
        big = load_image(blocks).astype(int)
        assert big.shape == (3072,) and np.abs(big - x[i]).mean() < 1.5, np.abs(big - x[i]).mean()


def test_modes_sizes_and_transparency_become_rgb_32x32(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((50, 70), 90, dtype=np.uint8), mode="L").save(grey)
    assert (load_image(grey) == 90).all()  # grey → R = G = B, any aspect ratio
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((8, 8, 3), (10, 20, 30), dtype=np.uint8)).save(tiny)
    record = load_image(tiny)  # enlarged (BICUBIC) to 32×32
    assert record.shape == (3072,) and set(record[:1024]) == {10} and set(record[2048:]) == {30}
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(clear)
    assert (load_image(clear) == 255).all()  # fully transparent → white, not red


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("notes.txt", b"hello\n", "not an image"),
        ("empty.png", b"", "not an image"),
        ("fake.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not an image"),
    ],
)
def test_non_images_raise_one_error_naming_the_file(tmp_path, name, content, says):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as error:
        load_image(path)
    assert str(path) in error.value.message and says in error.value.message
    assert "\n" not in error.value.message and error.value.exit_code == 2


def test_truncated_missing_and_folder_inputs_are_image_errors(tmp_path):
    _, truncated = bad_files(tmp_path)
    for path, says in ((truncated, "truncated"), (tmp_path / "nope.png", "no such file"), (tmp_path, "folder")):
        with pytest.raises(ImageError) as error:
            load_image(path)
        assert str(path) in error.value.message and says in error.value.message


# -- records → probabilities ---------------------------------------------------------------------


def test_classify_is_the_training_preprocessing_then_softmax_or_sigmoid():
    rng = np.random.default_rng(3)
    records = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    W, b = rng.normal(0, 0.01, (10, 3072)).astype(np.float32), rng.normal(0, 0.01, (10, 1)).astype(np.float32)
    mean, std = rng.uniform(0.3, 0.6, (3072, 1)), rng.uniform(0.1, 0.3, (3072, 1))
    S = W.astype(float) @ ((records.T / 255.0 - mean) / std) + b  # the naive formula, 10 × 4
    soft = classify(records, W, b, mean, std, "softmax")
    np.testing.assert_allclose(soft, np.exp(S) / np.exp(S).sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(soft.sum(axis=0), 1.0, rtol=1e-12)
    sig = classify(records, W, b, mean, std, "bce")
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-S)), rtol=1e-10)
    assert np.argmax(sig, axis=0).tolist() == np.argmax(soft, axis=0).tolist()
    top = top_k(soft, tinycifar.LABEL_NAMES, 3)
    for i, best in enumerate(top):
        order = np.argsort(-soft[:, i])[:3]
        assert [t["class"] for t in best] == [tinycifar.LABEL_NAMES[k] for k in order]
        assert [t["probability"] for t in best] == sorted((t["probability"] for t in best), reverse=True)


# -- the command ---------------------------------------------------------------------------------


def test_predict_json_top_class_matches_the_model_and_bad_files_are_one_line_each(
    cli, tmp_path, tiny_archive, test_records
):
    x, y = test_records
    run = trained(cli, tiny_archive)
    images = write_images(tmp_path, x)
    text, truncated = bad_files(tmp_path)
    good = [p for i in IMAGES for p in images[i]]
    args = [good[0], text, *good[1:5], truncated, *good[5:]]
    result = cli("predict", *[p.name for p in args], "--run", run["run_id"], "--json")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "notes.txt" in lines[0] and "truncated.png" in lines[1]
    assert all(line.startswith("error:") for line in lines)

    doc = json.loads(result.stdout)
    assert doc["run_id"] == run["run_id"] and doc["loss"] == "softmax" and doc["output"]["sums_to_one"] is True
    assert [image["path"] for image in doc["images"]] == [p.name for p in args]  # input order kept
    assert "notes.txt" in doc["error"] and "truncated.png" in doc["error"] and doc["exit_code"] == 2
    by_path = {image["path"]: image for image in doc["images"]}
    assert set(by_path["notes.txt"]) == {"path", "error"} and "notes.txt" in by_path["notes.txt"]["error"]
    assert "truncated" in by_path["truncated.png"]["error"]

    predicted, P, names = model_predictions(tmp_path, run["run_id"])
    assert (predicted[list(IMAGES)] == y[list(IMAGES)]).mean() >= 0.6  # the model is not guessing
    for i in IMAGES:
        for path in images[i]:
            image = by_path[path.name]
            assert "error" not in image and len(image["top3"]) == 3
            assert image["top3"][0]["class"] == names[predicted[i]], (path.name, image["top3"])
            probs = [t["probability"] for t in image["top3"]]
            assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)
            assert sum(image["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
            assert [t["probability"] for t in image["top3"]] == sorted(image["probabilities"].values(), reverse=True)[
                :3
            ]
        # the lossless PNG gives the model's own probabilities on the original record
        png = by_path[images[i][0].name]
        np.testing.assert_allclose([png["probabilities"][n] for n in names], P[:, i], rtol=1e-4, atol=1e-6)


def test_predict_table_and_exit_codes(cli, tmp_path, tiny_archive, test_records):
    x, _ = test_records
    run = trained(cli, tiny_archive)
    images = write_images(tmp_path, x)
    ok = cli("predict", images[0][0].name, images[1][1].name, "--run", run["run_id"][:8])
    assert ok.exit_code == 0, ok.stderr
    assert ok.stderr == ""
    predicted, _, names = model_predictions(tmp_path, run["run_id"])
    for i, path in ((0, images[0][0]), (1, images[1][1])):
        row = next(line for line in ok.stdout.splitlines() if path.name in line)
        assert names[predicted[i]] in row.split(path.name, 1)[1].split("│")[1]  # first column: the top class
    assert "sum to 1" not in ok.stdout

    text, _ = bad_files(tmp_path)
    mixed = cli("predict", images[2][0].name, text.name, "--run", run["run_id"])
    assert mixed.exit_code == 2
    assert images[2][0].name in mixed.stdout and text.name not in mixed.stdout  # the good one is still shown
    assert mixed.stderr.strip().count("\n") == 0 and text.name in mixed.stderr


def test_predict_with_training_options_finds_the_same_run(cli, tmp_path, tiny_archive, test_records):
    x, _ = test_records
    run = trained(cli, tiny_archive)
    images = write_images(tmp_path, x)
    by_options = json.loads(cli("predict", images[0][0].name, *TRAIN, "--json").stdout)
    by_id = json.loads(cli("predict", images[0][0].name, "--run", run["run_id"], "--json").stdout)
    assert by_options["run_id"] == run["run_id"] and by_options["images"] == by_id["images"]


def test_predict_bce_shows_sigmoid_probabilities_that_do_not_sum_to_one(cli, tmp_path, tiny_archive, test_records):
    x, _ = test_records
    run = trained(cli, tiny_archive, "--loss", "bce", "--eta", "0.01")
    images = write_images(tmp_path, x)
    doc = json.loads(cli("predict", images[0][0].name, "--run", run["run_id"], "--json").stdout)
    assert doc["loss"] == "bce" and doc["output"]["kind"] == "sigmoid" and doc["output"]["sums_to_one"] is False
    assert "do not sum to 1" in doc["output"]["note"]
    _, P, names = model_predictions(tmp_path, run["run_id"])
    probs = doc["images"][0]["probabilities"]
    np.testing.assert_allclose([probs[n] for n in names], P[:, 0], rtol=1e-4, atol=1e-6)  # σ(s), per class
    assert abs(sum(probs.values()) - 1) > 0.05
    table = cli("predict", images[0][0].name, "--run", run["run_id"])
    assert table.exit_code == 0 and "do not sum to 1" in table.stdout and "sigmoid" in table.stdout


def test_only_bad_files_exit_2_without_training(cli, tmp_path, tiny_archive):
    assert cli("fetch", "--source", tiny_archive, "--quiet").exit_code == 0
    text, truncated = bad_files(tmp_path)
    result = cli("predict", text.name, truncated.name, "missing.jpg", *TRAIN, "--json")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 3 and "missing.jpg" in result.stderr
    doc = json.loads(result.stdout)
    assert [set(image) for image in doc["images"]] == [{"path", "error"}] * 3 and "3 of 3" in doc["error"]
    assert not (tmp_path / "cache" / "train").exists() or not list((tmp_path / "cache" / "train").iterdir())


def test_predict_needs_an_image_argument(cli):
    result = cli("predict")
    assert result.exit_code == 2 and "IMAGE" in result.stderr
