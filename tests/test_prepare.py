"""cifarcli.prepare: splits, statistics from the training split only, normalisation."""

import numpy as np
import pytest

import tinycifar
from cifarcli.errors import CifarError
from cifarcli.options import as_typed
from cifarcli.prepare import normalisation_stats, normalise, prepare, split_indices


def _arrays(n_per_batch=200, n_test=100, seed=0):
    batches, (tx, ty) = tinycifar.make_arrays(n_per_batch, n_test, seed)
    return (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]), tx, ty)


@pytest.mark.parametrize(
    "split,expect",
    [
        ("seed", ((0, 8000), (8000, 10000))),
        ("dd2424", ((0, 10000), (10000, 20000))),
        ("full", ((0, 49000), (49000, 50000))),
    ],
)
def test_split_sizes_on_real_layout(split, expect):
    tr, va = split_indices(split, 50000, 10000, 1000)
    (a, b), (c, d) = expect
    np.testing.assert_array_equal(tr, np.arange(a, b))
    np.testing.assert_array_equal(va, np.arange(c, d))
    assert not set(tr.tolist()) & set(va.tolist())


def test_full_split_uses_val_size():
    tr, va = split_indices("full", 50000, 10000, 5000)
    assert tr.size == 45000 and va.size == 5000 and va[0] == 45000 and va[-1] == 49999


@pytest.mark.parametrize(
    "args",
    [
        ("nope", 50000, 10000, 1000),
        ("dd2424", 10000, 10000, 1000),  # one batch only
        ("full", 50000, 10000, 0),
        ("full", 50000, 10000, 50000),
        ("seed", 5000, 10000, 1000),  # fewer records than a batch
        ("seed", 1, 1, 1000),  # cannot split one record 80/20
    ],
)
def test_bad_splits_raise_cifar_error(args):
    with pytest.raises(CifarError):
        split_indices(*args)


def test_stats_match_numpy_and_zero_std_is_safe():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(300, 40), dtype=np.uint8)
    x[:, 7] = 128  # a constant pixel
    mean, std = normalisation_stats(x)
    assert mean.shape == (40, 1) and std.shape == (40, 1)
    xf = x / 255.0
    np.testing.assert_allclose(mean[:, 0], xf.mean(axis=0), rtol=1e-12)
    expected_std = xf.std(axis=0)
    expected_std[7] = 1.0
    np.testing.assert_allclose(std[:, 0], expected_std, rtol=1e-10)
    X = normalise(x, mean, std, np.float64)
    assert np.all(np.isfinite(X))
    np.testing.assert_array_equal(X[7], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalise_formula_layout_and_dtype(dtype):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(50, 30), dtype=np.uint8)
    mean, std = normalisation_stats(x)
    X = normalise(x, mean, std, dtype)
    assert X.shape == (30, 50) and X.dtype == dtype
    assert X.T.flags.c_contiguous  # one image = one contiguous column of X
    expected = (x.T / 255.0 - mean) / std
    np.testing.assert_allclose(X, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    np.testing.assert_allclose(X.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=1), 1, rtol=1e-4)


@pytest.mark.parametrize("split,n_tr,n_va", [("seed", 160, 40), ("dd2424", 200, 200), ("full", 900, 100)])
def test_prepare_shapes_and_train_only_stats(split, n_tr, n_va):
    train_x, train_y, test_x, test_y = _arrays()
    data = prepare(train_x, train_y, test_x, test_y, tinycifar.LABEL_NAMES, 200, split, 100, "float32")
    assert data.X_train.shape == (3072, n_tr) and data.X_val.shape == (3072, n_va)
    assert data.X_test.shape == (3072, 100)
    assert data.Y_train.shape == (10, n_tr) and data.y_val.shape == (n_va,)
    assert data.X_train.dtype == np.float32
    np.testing.assert_array_equal(data.Y_train.argmax(axis=0), data.y_train)
    tr, va = split_indices(split, 1000, 200, 100)
    np.testing.assert_array_equal(data.y_train, train_y[tr])
    np.testing.assert_array_equal(data.y_val, train_y[va])
    # statistics come from the training split only
    mean, std = normalisation_stats(train_x[tr])
    np.testing.assert_array_equal(data.mean, mean)
    np.testing.assert_array_equal(data.std, std)
    np.testing.assert_allclose(data.X_train.mean(axis=1, dtype=np.float64), 0, atol=1e-4)
    assert not np.allclose(normalisation_stats(train_x[va])[0], mean)
    assert data.sizes == {"train": n_tr, "val": n_va, "test": 100}


def test_prepare_float64_matches_float32():
    train_x, train_y, test_x, test_y = _arrays()
    d32 = prepare(train_x, train_y, test_x, test_y, tinycifar.LABEL_NAMES, 200, "seed", 100, "float32")
    d64 = prepare(train_x, train_y, test_x, test_y, tinycifar.LABEL_NAMES, 200, "seed", 100, "float64")
    assert d64.X_test.dtype == np.float64
    np.testing.assert_allclose(d32.X_test, d64.X_test, rtol=1e-5, atol=1e-5)


def test_prepare_rejects_bad_labels_and_dtype():
    train_x, train_y, test_x, test_y = _arrays()
    bad = train_y.copy()
    bad[3] = 12
    with pytest.raises(CifarError) as refused:
        prepare(train_x, bad, test_x, test_y, tinycifar.LABEL_NAMES, 200, "seed", 100)
    # the library names the setting that fixes it; the command line adds the command (options.as_typed)
    assert refused.value.setting == "force" and "--" not in refused.value.hint
    assert as_typed(refused.value).hint == "the dataset is damaged; import it again with: cifarcli fetch --force"
    with pytest.raises(CifarError, match="dtype"):
        prepare(train_x, train_y, test_x, test_y, tinycifar.LABEL_NAMES, 200, "seed", 100, "int8")
